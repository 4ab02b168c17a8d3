"""``vllm``: the vLLM-style benchmark: FCFS, admit while the current round fits, preempt the newest.

Source: the behaviour of vLLM's scheduler as described by Kwon et al., "Efficient Memory
Management for Large Language Model Serving with PagedAttention" (SOSP'23, §4.5: FCFS, and on
memory exhaustion the most recently arrived requests are preempted and recomputed later), in the
round model of Jaillet et al. (arXiv 2502.07115; to benchmark vLLM-style behaviour).
Waiting requests are admitted in arrival order while the next round's memory fits (memory-unaware
of the future: lengths are not used), stopping at the first that does not. When the running batch
would overflow in the next round, the newest request (latest arrival, ties later position) is
preempted, loses its KV and waits again at its arrival position; in a round with a preemption no
new request is admitted (vLLM admits new prefills only when nothing was preempted).
"""
from __future__ import annotations

from servopt.simulator.kv_rounds import greedy_prefix, next_round_fits

NAME = "vllm"
PARAMS: dict = {}


class VLLM:
    no_admission_after_preemption = True

    def admit(self, view):
        return greedy_prefix(view, view.waiting, next_round_fits(view))

    def on_overflow(self, view):
        return [r.id for r in sorted(view.running, key=lambda r: (-r.arrival, -r.position))]


def make():
    return VLLM()
