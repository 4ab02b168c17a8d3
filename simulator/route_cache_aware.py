"""SGLang-style cache-aware routing: prefix affinity above a match threshold unless loads are imbalanced.

Source: SGLang router ``cache_aware`` policy (sgl-project/sglang ``sgl-router/src/policies/
cache_aware.rs``; research/eviction-routing-anchors.md §4.1). Per request: if the in-flight loads
are imbalanced (max - min > ``balance_abs_threshold`` and max > ``balance_rel_threshold`` * min)
go to the least loaded replica; else take the replica whose routing-history tree matches the
longest prefix if the match rate exceeds ``cache_threshold``, otherwise the replica with the
smallest tree. Defaults are SGLang's current ones: 0.3, 64, 1.5. Like SGLang's router the tree is
approximate, built from routing history (here on the trace's prefix block ids instead of
characters), not from the replicas' real cache state; trees are unbounded (SGLang prunes every
120 s to 2^26 characters).
"""

NAME = "cache_aware"
ALIASES = ("sglang", "sglang_cache_aware")


class CacheAware:
    def __init__(self, cache_threshold=0.3, balance_abs_threshold=64, balance_rel_threshold=1.5):
        self.cache_threshold = float(cache_threshold)
        self.abs = float(balance_abs_threshold)
        self.rel = float(balance_rel_threshold)
        self.trees: dict = {}  # replica index -> set of prefix chains seen (block id tuples by depth)

    def route(self, req, replicas, now):
        loads = [r.n_assigned for r in replicas]
        hi, lo = max(loads), min(loads)
        keys = req.prefix
        if hi - lo > self.abs and hi > self.rel * lo:
            best = min(replicas, key=lambda r: (r.n_assigned, r.index))
        else:
            best, best_match = None, -1
            for r in replicas:
                tree = self.trees.get(r.index, set())
                m = 0
                for d in range(len(keys)):
                    if (d, keys[d]) not in tree:
                        break
                    m += 1
                if m > best_match:
                    best, best_match = r, m
            rate = best_match / len(keys) if keys else 0.0
            if rate <= self.cache_threshold:
                best = min(replicas, key=lambda r: (len(self.trees.get(r.index, ())), r.index))
        tree = self.trees.setdefault(best.index, set())
        tree.update((d, k) for d, k in enumerate(keys))
        return best


def make(rng=None, **options):
    return CacheAware(**options)
