"""Power of two choices: sample two distinct replicas, send to the one with fewer requests in flight.

Source: Azar, Broder, Karlin, Upfal (1994/1999) and Mitzenmacher (2001): max load
ln ln n / ln 2 + O(1) instead of ln n / ln ln n (research/eviction-routing-anchors.md §4.6); the
default router of Ray Serve LLM and the decode router of SGLang's PD mode (§4.1).
"""

NAME = "power_of_two"
ALIASES = ("p2c", "po2")


class PowerOfTwo:
    def __init__(self, rng):
        self.rng = rng

    def route(self, req, replicas, now):
        n = len(replicas)
        if n == 1:
            return replicas[0]
        i, j = self.rng.choice(n, size=2, replace=False)
        a, b = replicas[int(i)], replicas[int(j)]
        return a if (a.n_assigned, a.index) <= (b.n_assigned, b.index) else b


def make(rng=None):
    import numpy as np

    return PowerOfTwo(rng if rng is not None else np.random.default_rng(0))
