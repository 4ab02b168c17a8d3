"""A_min: schedule on the lower ends of interval predictions, evict the least-advanced on overflow.

Source: Chen, Ye, Zhou, "Adaptively Robust LLM Inference Optimization under Prediction
Uncertainty", arXiv 2508.14544 (research/scheduling-anchors.md §3.1; O(log(u/l))-competitive in the
round model). Each request's estimate is the lower end l of its ``output_tokens_interval`` (else
its prediction, else the truth), raised to what it has revealed (a request with g tokens out has
length >= g + 1). Admission is MC-SF's future-peak test on those estimates, shortest estimate
first; when decode growth overflows memory, the running requests with the fewest generated tokens
are preempted first (our reading, shared with ``kv_policy_a_min``: "in an order determined by tokens
already generated"), by recompute.
"""
from servopt.simulator.sched_mcsf import MCSF

NAME = "a-min"  # one spelling across commands (the round-model policy is "a-min" too)
ALIASES = ("amin", "a_min")


class AMin(MCSF):
    def estimate(self, req):
        return max(req.lo, req.generated + 1)

    def victim_key(self, req):
        return (-req.generated, self.estimate(req), req.admit_seq)

    def victims(self, rep):
        for r in rep.d_req:
            r.generated = rep.sync_generated(r)
        return super().victims(rep)


def make(**options):
    return AMin(**options)
