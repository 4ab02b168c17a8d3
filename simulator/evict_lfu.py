"""LFU: fewest hits first, then least recent (SGLang's ``lfu`` key ``(hit_count, last_access_time)``).

Source: SGLang ``python/sglang/srt/mem_cache/evict_policy.py`` (research/eviction-routing-anchors.md §1.1).
"""

NAME = "lfu"


class LFU:
    def priority(self, entry, cache):
        return (entry.hits, entry.last_access, -entry.depth)


def make():
    return LFU()
