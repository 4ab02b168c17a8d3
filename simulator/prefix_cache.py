"""A replica's prefix cache: KV of prompt prefix blocks keyed by hash chains, with pluggable eviction.

Keys are the block hash ids of a request's prompt (Mooncake's ``hash_ids``, one id per
``block_tokens`` prompt tokens; research/eviction-routing-anchors.md §1.2, §5). A hit needs an
unbroken chain from the first block, as in vLLM's automatic prefix caching (§1.2). The cache is lazy
like vLLM's and SGLang's (§1.1-1.2): a finished request's blocks stay cached in otherwise free KV
memory and are evicted only when an allocation needs the room; blocks pinned by running requests
(reference count > 0) are never evicted. Which unpinned block goes first is the eviction policy's
``priority(entry, cache)`` (smallest first; modules ``simulator/evict_*.py``).

Each entry remembers ``owner``, the index (trace order) of the last request that pinned or inserted it,
so that offline policies (``evict_optimum_replay``, ``evict_belady_tree``; given the whole trace by the
engine through their ``prepare``) can look up the block's next use and the offline plan's decision.
"""
from __future__ import annotations

import heapq


class Entry:
    __slots__ = ("key", "depth", "refs", "last_access", "inserted", "hits", "version", "owner")

    def __init__(self, key, depth, now):
        self.key = key
        self.depth = depth
        self.refs = 0
        self.last_access = now
        self.inserted = now
        self.hits = 0
        self.version = 0
        self.owner = -1


class PrefixCache:
    def __init__(self, policy, *, block_tokens: int, kv_blocks_per_entry: int):
        self.policy = policy
        self.block_tokens = block_tokens
        self.kv_blocks_per_entry = kv_blocks_per_entry
        self.entries: dict = {}
        self.evictable = 0  # entries with refs == 0
        self.clock = 0  # logical time: increases on every access, so ties are broken by order
        self.inflation = 0.0  # GDSF's L (Cherkasova 1998); other policies ignore it
        self._heap: list = []
        self.evictions = 0
        self.hit_blocks = 0
        self.lookup_blocks = 0

    @property
    def blocks(self) -> int:
        return len(self.entries) * self.kv_blocks_per_entry

    @property
    def evictable_blocks(self) -> int:
        return self.evictable * self.kv_blocks_per_entry

    def _push(self, e: Entry):
        e.version += 1
        heapq.heappush(self._heap, (self.policy.priority(e, self), e.version, e.key))

    def match(self, keys, limit: int) -> int:
        """Number of leading blocks of ``keys`` present (at most ``limit``)."""
        n = 0
        for k in keys[:limit]:
            if k not in self.entries:
                break
            n += 1
        self.lookup_blocks += min(len(keys), limit)
        self.hit_blocks += n
        return n

    def pin(self, keys, owner: int = -1):
        self.clock += 1
        for k in keys:
            e = self.entries[k]
            e.owner = owner
            if e.refs == 0:
                self.evictable -= 1
            e.refs += 1
            e.hits += 1
            e.last_access = self.clock

    def unpin(self, keys):
        self.clock += 1
        for k in keys:
            e = self.entries.get(k)
            if e is None:
                continue
            e.refs -= 1
            e.last_access = self.clock
            if e.refs == 0:
                self.evictable += 1
                self._push(e)

    def insert_pinned(self, keys, start_depth: int, owner: int = -1) -> list:
        """Insert computed blocks (already pinned by their request ``owner``); returns the keys added."""
        self.clock += 1
        added = []
        for d, k in enumerate(keys, start=start_depth):
            if k in self.entries:
                continue
            e = Entry(k, d, self.clock)
            e.refs = 1
            e.hits = 1  # the request that computed it is its first use
            e.owner = owner
            self.entries[k] = e
            added.append(k)
        return added

    def evict(self, blocks_needed: int) -> int:
        """Evict unpinned entries until ``blocks_needed`` KV blocks are freed; returns blocks freed."""
        freed = 0
        while freed < blocks_needed and self._heap:
            prio, version, key = heapq.heappop(self._heap)
            e = self.entries.get(key)
            if e is None or e.refs or e.version != version:
                continue
            del self.entries[key]
            self.evictable -= 1
            self.evictions += 1
            freed += self.kv_blocks_per_entry
            on_evict = getattr(self.policy, "on_evict", None)
            if on_evict:
                on_evict(e, prio, self)
        return freed
