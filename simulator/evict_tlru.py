"""T-LRU (Tail-Optimized LRU): conversation tails go first, in LRU order, then plain LRU.

A tail block is one whose loss cannot push a next turn's uncached prefill over the latency threshold.

Source: Zhang, Li, Moallemi, Peng, "Tail-Optimized Caching for LLM Inference", arXiv 2510.15152
(ES-FoMo 2025; research/eviction-routing-anchors.md §2.3): a two-line change to LRU that evicts the
cache entries unlikely to affect future turns' tail TTFT. Our block-level reading: the next turn of a
conversation re-reads its whole history, and a TTFT target tolerates ``slack_blocks`` uncached blocks
of prefill, so the deepest ``slack_blocks`` blocks of the last request that used a block are "free" to
evict (``entry.from_end < slack_blocks``, filled in by the eviction kind's replay); in the serving
simulator, which does not track ``from_end``, T-LRU is plain LRU. ``slack_blocks`` (default 1) is the
threshold in blocks: with Mooncake's 512-token blocks, one block of prefill.
"""

NAME = "tlru"
ALIASES = ("t_lru", "tail_lru")


class TailOptimizedLRU:
    def __init__(self, slack_blocks: int = 1):
        if not isinstance(slack_blocks, int) or slack_blocks < 0:
            raise ValueError(f"slack_blocks must be an integer >= 0, got {slack_blocks!r}")
        self.slack_blocks = slack_blocks

    def priority(self, entry, cache):
        free = getattr(entry, "from_end", self.slack_blocks) < self.slack_blocks
        return (0 if free else 1, entry.last_access, -entry.depth)


def make(slack_blocks: int = 1):
    return TailOptimizedLRU(slack_blocks)
