"""GDSF (GreedyDual-Size-Frequency): evict the smallest L + hits * cost / size, with L inflated on eviction.

Source: Cherkasova, "Improving WWW Proxies Performance with Greedy-Dual-Size-Frequency Caching
Policy", HP Labs 1998, generalising GreedyDual-Size (Cao & Irani 1997) and Landlord (Young), the
k-competitive rule for general caching (research/eviction-routing-anchors.md §2.1). Cost of a
prefix block = prefill work saved on a hit, which grows with its depth because its tokens attend
to every earlier one (§2.2): ``cost = 1 + depth`` in units of a block's linear work; all blocks have
the same size.
"""

NAME = "gdsf"
ALIASES = ("greedy_dual", "cost_aware")


class GDSF:
    def priority(self, entry, cache):
        return (cache.inflation + entry.hits * (1.0 + entry.depth), entry.last_access)

    def on_evict(self, entry, priority, cache):
        cache.inflation = max(cache.inflation, priority[0])


def make():
    return GDSF()
