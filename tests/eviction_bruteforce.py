"""Exhaustive optimum of tiny prefix-cache instances, written independently of the solvers.

Dynamic programming over (request index, cache content): after request t the cache may become any
subset of (cache before t) | (t's blocks) of at most ``caps[t]`` blocks; request t gains
``weights[d]`` for each block d of the longest prefix of its path that is cached when it arrives.
"""
from __future__ import annotations

import itertools
import random
from functools import lru_cache


def hits_of(path, cache) -> int:
    k = 0
    for h in path:
        if h not in cache:
            break
        k += 1
    return k


def brute_force(paths, caps, weights=None) -> float:
    """Maximum total gain over all cache plans (unit weights: total hit blocks)."""
    n = len(paths)
    caps = [caps] * n if isinstance(caps, int) else list(caps)
    w = weights

    def gain(path, cache):
        k = hits_of(path, cache)
        return k if w is None else sum(w[d] for d in range(k))

    @lru_cache(maxsize=None)
    def best(t, cache):
        if t == n:
            return 0
        g = gain(paths[t], cache)
        pool = sorted(set(cache) | set(paths[t]))
        top = 0
        for size in range(0, min(caps[t], len(pool)) + 1):
            for keep in itertools.combinations(pool, size):
                v = best(t + 1, frozenset(keep))
                if v > top:
                    top = v
        return g + top

    return best(0, frozenset())


def random_paths(rng: random.Random, n: int, max_depth: int, fanout: int):
    """n root paths in a random small trie (ids name prefixes, so trees are consistent)."""
    ids = {}
    paths = []
    for _ in range(n):
        depth = rng.randint(1, max_depth)
        prefix = ()
        path = []
        for _ in range(depth):
            prefix = prefix + (rng.randrange(fanout),)
            if prefix not in ids:
                ids[prefix] = len(ids)
            path.append(ids[prefix])
        paths.append(path)
    return paths
