"""Replay a request sequence through one prefix cache under an online eviction policy (base model).

Semantics, the engines' lazy demand caching (research notes §1.1-1.2, §6) on the base model of
``instances/eviction.py``: requests are served one at a time; request ``r`` hits the longest prefix of
its hash ids in the cache; its blocks are pinned while it is served; the blocks it misses are
inserted, and when that needs room unpinned blocks are evicted in the policy's order (smallest
``policy.priority(entry, cache)`` first, the interface of ``simulator/evict_*.py``, shared with the
serving simulator's ``PrefixCache``); then its blocks are unpinned and stay cached. A request with
more blocks than the capacity caches only its first ones. So, unlike the optimum, an online policy
never *bypasses*: after ``r`` the cache holds all of r's blocks (when they fit).

Optional policy attributes understood here (the serving simulator ignores them):

``LEAF_ONLY``    only blocks with no cached child may go (SGLang's RadixCache, research notes §1.1);
``WHOLE_NODES``  evicting a leaf block also frees the rest of its radix node: the unbranched chain of
                 blocks above it up to the last block where some request's match ended or branched
                 (SGLang frees whole leaf nodes, splitting nodes where matches end);
``OFFLINE``      the policy reads ``entry.next_use`` (index of the block's next request), which this
                 replay fills in from the trace (the tree-constrained Belady heuristic).

Entries carry the fields the ``evict_*`` policies read (``key``, ``depth``, ``refs``, ``last_access``,
``inserted``, ``hits``, ``owner``: the last request that used it) and here also ``from_end`` (blocks between it and the end of the last request
that used it), ``next_use``, ``parent`` and ``children``.

``replay(hash_lists, capacity, policy)`` returns a ``CachePlan`` (hits, admitted and evicted blocks per
request) that ``analysis/eviction_check.py`` re-verifies. ``policy_hits(hash_lists, capacity, name)``
is the plain hits-per-request function.
"""
from __future__ import annotations

import heapq
from typing import Sequence

from servopt.instances.eviction import CachePlan, next_uses


class ReplayEntry:
    __slots__ = ("key", "depth", "refs", "last_access", "inserted", "hits", "version", "parent", "children",
                 "from_end", "next_use", "node_end", "prio", "owner")

    def __init__(self, key, depth, parent, now):
        self.key = key
        self.depth = depth
        self.parent = parent
        self.children = 0
        self.refs = 0
        self.last_access = now
        self.inserted = now
        self.hits = 0
        self.version = 0
        self.from_end = 0
        self.next_use = None
        self.node_end = False
        self.prio = None  # the priority it was last pushed with (GDSF's H is fixed at access time)
        self.owner = -1


class ReplayCache:
    """The cache state a policy sees (``clock``, ``inflation`` as in ``PrefixCache``; ``hash_lists`` and
    ``capacity`` per request for offline policies that plan the whole sequence)."""

    def __init__(self, policy, hash_lists=None, capacity=None):
        self.policy = policy
        self.hash_lists = hash_lists
        self.capacity = capacity
        self.entries: dict[int, ReplayEntry] = {}
        self.clock = 0
        self.inflation = 0.0
        self.heap: list = []
        self.evictions = 0
        self.leaf_only = bool(getattr(policy, "LEAF_ONLY", False))
        self.whole_nodes = bool(getattr(policy, "WHOLE_NODES", False))

    def push(self, e: ReplayEntry) -> None:
        e.version += 1
        e.prio = self.policy.priority(e, self)
        heapq.heappush(self.heap, (e.prio, e.version, e.key))

    def _remove(self, e: ReplayEntry, out: list) -> None:
        del self.entries[e.key]
        self.evictions += 1
        out.append(e.key)
        if e.parent is not None:
            p = self.entries.get(e.parent)
            if p is not None:
                p.children -= 1
                if p.children == 0 and self.leaf_only and p.refs == 0:
                    self.push(p)

    def evict_one(self, out: list) -> bool:
        """Evict the policy's first evictable block (and, for WHOLE_NODES, the rest of its node)."""
        heap = self.heap
        while heap:
            prio, version, key = heapq.heappop(heap)
            e = self.entries.get(key)
            if e is None or e.refs or e.version != version:
                continue
            if self.leaf_only and e.children:
                continue  # pushed again when its last child goes
            self._remove(e, out)
            on_evict = getattr(self.policy, "on_evict", None)
            if on_evict:
                on_evict(e, prio, self)
            if self.whole_nodes:
                p = self.entries.get(e.parent) if e.parent is not None else None
                while p is not None and not p.node_end and p.refs == 0 and p.children == 0:
                    nxt = self.entries.get(p.parent) if p.parent is not None else None
                    self._remove(p, out)
                    p = nxt
            return True
        return False


def replay(hash_lists: Sequence[Sequence[int]], capacity: int | Sequence[int], policy, *, name: str = "") -> CachePlan:
    """Serve ``hash_lists`` in order through one cache under ``policy`` (module docstring)."""
    n = len(hash_lists)
    caps = [int(capacity)] * n if isinstance(capacity, int) else [int(c) for c in capacity]
    cache = ReplayCache(policy, hash_lists, caps)
    entries = cache.entries
    nxt = next_uses(hash_lists) if getattr(policy, "OFFLINE", False) else None
    begin = getattr(policy, "begin_request", None)
    hits, admits, evicts = [], [], []
    for r in range(n):
        hs = hash_lists[r]
        L = len(hs)
        k = 0
        for h in hs:
            if h not in entries:
                break
            k += 1
        hits.append(k)
        if begin:
            begin(cache, r)
        if k:
            entries[hs[k - 1]].node_end = True  # a radix node ends where a match ends (SGLang splits there)
        present = [entries[h] for h in hs if h in entries]
        for e in present:
            e.refs += 1
        missing = L - len(present)
        cap = caps[r]
        out: list = []
        while len(entries) + missing > cap:
            if not cache.evict_one(out):
                break
        room = cap - len(entries)
        cache.clock += 1
        now = cache.clock
        new = []
        for d, h in enumerate(hs):
            e = entries.get(h)
            if e is None:
                if room <= 0:
                    continue
                parent = hs[d - 1] if d else None
                if parent is not None and parent not in entries:
                    continue  # its ancestor did not fit: a block nobody can reach is not stored
                e = ReplayEntry(h, d, parent, now)
                entries[h] = e
                if parent is not None:
                    entries[parent].children += 1
                e.refs = 1
                room -= 1
                new.append(h)
            e.hits += 1
            e.owner = r
            e.last_access = now
            e.from_end = L - 1 - d
            if nxt is not None:
                e.next_use = nxt[r][d]
        for h in hs:
            e = entries.get(h)
            if e is not None:
                e.refs -= 1
                if e.refs == 0 and not (cache.leaf_only and e.children):
                    cache.push(e)
                elif e.refs == 0:
                    e.version += 1  # its old heap entries are stale; pushed when it becomes a leaf
        while len(entries) > cap:  # the capacity after r can be below what r pinned (pinned running requests)
            if not cache.evict_one(out):
                break
        if len(cache.heap) > 4 * len(entries) + 1024:
            _rebuild_heap(cache)
        if new and out:  # a block inserted and evicted within r was never admitted
            gone, added = set(out), set(new)
            new = [h for h in new if h not in gone]
            out = [h for h in out if h not in added]
        admits.append(tuple(new))
        evicts.append(tuple(out))
    return CachePlan(tuple(hits), tuple(admits), tuple(evicts), name or getattr(policy, "NAME", type(policy).__name__))


def _rebuild_heap(cache: ReplayCache) -> None:
    cache.heap = [(e.prio, e.version, e.key) for e in cache.entries.values()
                  if e.refs == 0 and e.prio is not None and not (cache.leaf_only and e.children)]
    heapq.heapify(cache.heap)


def policy_hits(hash_lists: Sequence[Sequence[int]], capacity: int | Sequence[int], name: str = "lru",
                options: dict | None = None) -> list[int]:
    """Hits per request when one cache of ``capacity`` blocks runs eviction policy ``name`` (registry)."""
    from servopt.simulator import registry

    return list(replay(hash_lists, capacity, registry.make("eviction", name, options or {}, "--eviction"), name=name).hits)
