"""LRU over radix-tree leaves, whole leaf nodes at a time (SGLang RadixCache's default ``lru``).

Source: SGLang ``python/sglang/srt/mem_cache/radix_cache.py`` and ``evict_policy.py``
(research/eviction-routing-anchors.md §1.1): a heap over *evictable leaves* (no cached child, not
locked) keyed by ``last_access_time``; a popped leaf node is freed whole (all its tokens, so eviction
can overshoot), and its parent becomes a candidate once its last child is gone. Nodes are split where
a request's match ends. In the eviction kind's replay (``simulator/eviction_replay.py``) both
``LEAF_ONLY`` and ``WHOLE_NODES`` apply; the serving simulator's ``PrefixCache`` evicts single blocks
by the same key (there it equals ``lru`` at block level, since a parent is never less recent than its
children).
"""

NAME = "lru_sglang"
ALIASES = ("sglang_lru", "radix_lru")


class SGLangLRU:
    LEAF_ONLY = True
    WHOLE_NODES = True

    def priority(self, entry, cache):
        return (entry.last_access, -entry.depth)


def make():
    return SGLangLRU()
