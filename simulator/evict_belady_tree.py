"""Tree-constrained Belady heuristic (offline): the leaf block used furthest in the future goes; no bypass.

Every block of the request being served is cached (and may not go); among the others the leaf block
whose next use is furthest is evicted first.

Source: the community "tree-constrained Belady" oracle that reports LRU up to 80 % below it (research
/eviction-routing-anchors.md §0, §3.2), i.e. Belady's MIN (Belady 1966) restricted to leaves of the
prefix tree inside an engine's demand caching: every block of the request being served is inserted and
pinned, and only other blocks may go. It is a heuristic, not the optimum: the optimum
(``solvers/eviction_belady.py``) may also decline to keep the current request's blocks (bypass).
Offline: it needs each block's next use, which only the eviction kind's replay provides.
"""

from servopt.errors import InputError

NAME = "belady_tree"
ALIASES = ("tree_belady", "belady_no_bypass")


class TreeBelady:
    LEAF_ONLY = True
    OFFLINE = True

    def priority(self, entry, cache):
        nxt = getattr(entry, "next_use", None)
        if nxt is None:
            raise InputError("--eviction", "belady_tree needs each block's next use: run it on an eviction instance "
                                           "(servopt simulate INSTANCE.json --eviction belady_tree), not in the serving simulator")
        return (-nxt, -entry.depth)


def make():
    return TreeBelady()
