"""Replay of the offline optimum's keep decisions (Belady with bypass on the trace's request order).

Source: the optimum of the base model, ``solvers/eviction_belady.py`` (Belady 1966, MIN, with bypass),
computed once over the whole trace in request order at ``capacity_blocks`` prefix blocks (default: the
whole KV memory in prefix blocks, the most the lazy cache can ever hold). In the serving simulator the
cache cannot follow the plan literally (requests overlap, their own KV takes room, the engine inserts
every computed block), so the plan becomes an eviction order: a block whose last user was request ``r``
(``entry.owner``) is *planned* if the plan keeps it from ``r`` until its next use (that next request hits
it in the plan). Unplanned blocks (the ones the plan bypasses, evicts, or keeps in vain) go first;
among equals the block whose next use is furthest goes first, then the deepest. So with room for the
plan's cache beside the running requests, and requests one at a time, every hit of the plan is a hit
here too (tests/test_eviction_sim.py); under concurrency and with less room it is a heuristic.

In the eviction kind's own replay (``simulator/eviction_replay.py``, one request at a time, no running
requests) the same order applies, with the plan computed on the instance's hash lists and capacity.
"""
from __future__ import annotations

NAME = "optimum_replay"
ALIASES = ("plan_replay", "belady_bypass_replay", "optimum")


class OptimumReplay:
    OFFLINE = True  # the eviction kind's replay fills entry.next_use; prepare() is what the simulator calls

    def __init__(self, capacity_blocks: int | None = None):
        if capacity_blocks is not None and int(capacity_blocks) < 0:
            raise ValueError(f"capacity_blocks must be >= 0, got {capacity_blocks}")
        self.capacity_blocks = None if capacity_blocks is None else int(capacity_blocks)
        self.lists = None
        self.next_use = None
        self.planned = None
        self.plan = None

    def prepare(self, prefix_lists, *, capacity_blocks) -> None:
        """Plan the whole trace: Belady with bypass at ``self.capacity_blocks`` (else ``capacity_blocks``)."""
        from servopt.instances.eviction import next_uses
        from servopt.solvers.eviction_belady import belady_plan

        if self.capacity_blocks is not None:
            C = self.capacity_blocks
        else:  # one capacity, or one per request (the eviction kind's pinned-capacity model)
            C = int(capacity_blocks) if isinstance(capacity_blocks, (int, float)) else [int(c) for c in capacity_blocks]
        lists = [tuple(p) for p in prefix_lists]
        self.lists = lists
        self.plan = belady_plan(lists, C)
        hits = self.plan.hits
        n = len(lists)
        self.next_use = next_uses(lists)
        self.planned = [[j < n and d < hits[j] for d, j in enumerate(row)] for row in self.next_use]

    def begin_request(self, cache, r) -> None:  # the eviction kind's replay: plan its own hash lists lazily
        if self.lists is None and getattr(cache, "hash_lists", None) is not None:
            self.prepare(cache.hash_lists, capacity_blocks=cache.capacity)

    def priority(self, entry, cache):
        r, d = entry.owner, entry.depth
        lists = self.lists
        if lists is None or not (0 <= r < len(lists)) or d >= len(lists[r]) or lists[r][d] != entry.key:
            return (0, 0, -d)  # nothing known about it: first to go
        return (1 if self.planned[r][d] else 0, -self.next_use[r][d], -d)


def make(capacity_blocks: int | None = None):
    return OptimumReplay(capacity_blocks)
