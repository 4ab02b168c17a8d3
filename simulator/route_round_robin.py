"""Round-robin: request k goes to replica k mod N (Vidur's ``round_robin`` global scheduler)."""

NAME = "round_robin"
ALIASES = ("rr",)


class RoundRobin:
    def __init__(self, rng=None):
        self.k = 0

    def route(self, req, replicas, now):
        rep = replicas[self.k % len(replicas)]
        self.k += 1
        return rep


def make(rng=None):
    return RoundRobin(rng)
