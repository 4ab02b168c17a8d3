"""Join-the-shortest-queue on requests in flight (waiting + running), ties to the lowest index.

Source: Winston 1977 / Weber 1978 (JSQ optimal for identical exponential servers); on in-flight
counts it is "least outstanding requests" (research/eviction-routing-anchors.md §4.6). Unlike
Vidur's ``lor``, which counts only the waiting queue (§1.3 of research/costmodel-anchors.md),
running requests count too.
"""

NAME = "jsq"
ALIASES = ("least_requests", "least_outstanding_requests", "lor")


class JSQ:
    def route(self, req, replicas, now):
        return min(replicas, key=lambda r: (r.n_assigned, r.index))


def make(rng=None):
    return JSQ()
