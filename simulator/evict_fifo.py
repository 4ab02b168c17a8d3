"""FIFO: the block inserted first goes first (SGLang's ``fifo`` key ``creation_time``).

Source: SGLang evict policies (research/eviction-routing-anchors.md §1.1); k-competitive like LRU
(Sleator & Tarjan 1985, §2.1).
"""

NAME = "fifo"


class FIFO:
    def priority(self, entry, cache):
        return (entry.inserted, -entry.depth)


def make():
    return FIFO()
