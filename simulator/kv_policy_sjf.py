"""``sjf``: shortest predicted output first, memory-unaware admission with preemption.

Source: shortest-job-first as analysed for this model by Wang, Ye, Zhou (arXiv 2508.06133,
"SF", research notes scheduling-anchors.md §3.2) and as the length-aware baseline in Jaillet et
al. (arXiv 2502.07115); the admission and preemption mechanics are vLLM's (see ``vllm``). Waiting
requests are admitted in order of predicted output length (ties: arrival, position) while the
next round's memory fits, stopping at the first that does not. On overflow the running request
with the longest predicted output (ties: latest arrival) is preempted first; no admission in a
round with a preemption.
"""
from __future__ import annotations

from servopt.simulator.kv_rounds import greedy_prefix, next_round_fits

NAME = "sjf"
PARAMS: dict = {}


class SJF:
    no_admission_after_preemption = True

    def admit(self, view):
        ordered = sorted(view.waiting, key=lambda w: (w.predicted_output_tokens, w.arrival, w.position))
        return greedy_prefix(view, ordered, next_round_fits(view))

    def on_overflow(self, view):
        return [r.id for r in sorted(view.running, key=lambda r: (-r.predicted_output_tokens, -r.arrival, -r.position))]


def make():
    return SJF()
