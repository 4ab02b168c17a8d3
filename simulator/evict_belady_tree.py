"""Tree-constrained Belady heuristic (offline): the leaf block used furthest in the future goes; no bypass.

Every block of the request being served is cached (and may not go); among the others the leaf block
whose next use is furthest is evicted first.

Source: the community "tree-constrained Belady" oracle that reports LRU up to 80 % below it (research
/eviction-routing-anchors.md §0, §3.2), i.e. Belady's MIN (Belady 1966) restricted to leaves of the
prefix tree inside an engine's demand caching: every block of the request being served is inserted and
pinned, and only other blocks may go. It is a heuristic, not the optimum: the optimum
(``solvers/eviction_belady.py``) may also decline to keep the current request's blocks (bypass).
Offline: it needs each block's next use. The eviction kind's replay fills ``entry.next_use``; in the
serving simulator the engine hands the whole trace to ``prepare`` and the next use is looked up from the
request that last used the block (``entry.owner``). The serving simulator's cache does not enforce
leaf-only eviction, but furthest-next-use first with deeper blocks first on ties evicts a block's
descendants before it (every request that uses a child uses its parent).
"""

from servopt.errors import InputError

NAME = "belady_tree"
ALIASES = ("tree_belady", "belady_no_bypass")


class TreeBelady:
    LEAF_ONLY = True
    OFFLINE = True

    def __init__(self):
        self.lists = None
        self.next_use = None

    def prepare(self, prefix_lists, *, capacity_blocks=None) -> None:
        """The serving simulator's hand-over of the whole trace (request order)."""
        from servopt.instances.eviction import next_uses

        self.lists = [tuple(p) for p in prefix_lists]
        self.next_use = next_uses(self.lists)

    def priority(self, entry, cache):
        nxt = getattr(entry, "next_use", None)
        if nxt is None and self.lists is not None:
            r, d = entry.owner, entry.depth
            if 0 <= r < len(self.lists) and d < len(self.lists[r]) and self.lists[r][d] == entry.key:
                nxt = self.next_use[r][d]
            else:
                nxt = len(self.lists)  # not in the trace as planned: treated as never used again
        if nxt is None:
            raise InputError("--eviction", "belady_tree needs each block's next use: run it on an eviction instance "
                                           "or through the serving simulator, which hands it the trace")
        return (-nxt, -entry.depth)


def make():
    return TreeBelady()
