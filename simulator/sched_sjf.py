"""Shortest-job-first (non-preemptive): waiting requests admitted by predicted output length, Sarathi batching.

Source: classical SJF (e.g. Conway, Maxwell, Miller, "Theory of Scheduling", 1967); for LLM serving
on predicted lengths see Qiu et al., "Efficient Interactive LLM Serving with Proxy Model-based
Sequence Length Prediction" (2024) and Fu et al., "Efficient LLM Scheduling by Learning to Rank"
(NeurIPS'24). Oracle lengths when the trace has no prediction. Batching is Sarathi's
(decode-first, chunked prefill); once admitted a request is only preempted by memory pressure.
"""
from servopt.simulator.scheduler import ContinuousBatching

NAME = "sjf"
ALIASES = ("shortest_job_first",)


class SJF(ContinuousBatching):
    fcfs = False
    chunk_stretch = True  # its plan repeats while one long prompt fills the budget (replica.py)

    def order_key(self, req):
        return (req.seen, req.arrival)


def make(**options):
    return SJF(**options)
