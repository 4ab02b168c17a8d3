"""Weighted round-robin from given weights (smooth WRR, as in nginx), e.g. a plan's traffic shares.

Source: the smooth weighted round-robin of nginx (each pick adds every weight to its counter, takes
the largest, subtracts the total), which spreads a replica's share evenly; Helix (Mei et al.,
ASPLOS'25) routes its max-flow plan by weighted round-robin (research/eviction-routing-anchors.md
§4.5). Options: ``weights`` (one per replica, >= 0, not all 0).
"""

NAME = "weighted_rr"
ALIASES = ("wrr", "weighted_round_robin")


class WeightedRR:
    def __init__(self, weights):
        self.weights = [float(w) for w in weights] if weights is not None else None
        if self.weights is not None and (any(w < 0 for w in self.weights) or not any(self.weights)):
            raise ValueError("weights must be >= 0 and not all zero")
        self.current = None

    def route(self, req, replicas, now):
        w = self.weights or [1.0] * len(replicas)
        if len(w) != len(replicas):
            raise ValueError(f"{len(w)} weights for {len(replicas)} replicas")
        if self.current is None:
            self.current = [0.0] * len(w)
        total = sum(w)
        for i, wi in enumerate(w):
            self.current[i] += wi
        best = max(range(len(w)), key=lambda i: (self.current[i], -i))
        self.current[best] -= total
        return replicas[best]


def make(rng=None, weights=None):
    return WeightedRR(weights)
