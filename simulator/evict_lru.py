"""LRU over unpinned prefix blocks, deepest block first among equally recent ones (vLLM and SGLang).

Source: vLLM automatic prefix caching (free-block queue in LRU order, a finished request's blocks
appended in reverse so its deepest block goes first; V0 evictor breaks ties by most hashed
tokens) and SGLang's RadixCache default ``lru`` on ``last_access_time`` with leaf-first eviction
(research/eviction-routing-anchors.md §1.1-1.2).
"""

NAME = "lru"
ALIASES = ("lru_vllm", "vllm_lru")


class LRU:
    def priority(self, entry, cache):
        return (entry.last_access, -entry.depth)


def make():
    return LRU()
