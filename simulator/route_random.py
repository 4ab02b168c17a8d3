"""Uniformly random replica (Vidur's ``random`` global scheduler), from the run's seeded generator."""

NAME = "random"


class Random:
    def __init__(self, rng):
        self.rng = rng

    def route(self, req, replicas, now):
        return replicas[int(self.rng.integers(len(replicas)))]


def make(rng=None):
    import numpy as np

    return Random(rng if rng is not None else np.random.default_rng(0))
