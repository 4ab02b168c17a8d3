"""Shortest remaining processing time (preemptive) on predicted remaining output tokens.

Source: Schrage, "A proof of the optimality of the shortest remaining processing time
discipline", Operations Research 1968; for LLM serving with predicted lengths, e.g. Qiu et al.
2024 and Shahout et al., "Don't Stop Me Now: Embedding Based Scheduling for LLMs" (ICLR'25). Each
iteration the ``max_batch`` requests with the least predicted remaining output run; others keep
their KV but pause, and a shorter arrival that lacks memory preempts the longest residents
(recompute by default). Remaining = prediction (or truth) minus tokens generated, at least 1.
"""
from servopt.simulator.scheduler import PriorityPreemptive

NAME = "srpt"
ALIASES = ("shortest_remaining",)


class SRPT(PriorityPreemptive):
    def priority(self, req):
        return (max(req.seen - req.generated, 1), req.arrival)


def make(**options):
    return SRPT(**options)
