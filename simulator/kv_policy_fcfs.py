"""``fcfs``: first come, first served, admitting while the whole future footprint fits.

Source: the "MC-Benchmark" of Jaillet et al., arXiv 2502.07115, §6 (research notes
scheduling-anchors.md §1.6 (iii)): FCFS order with MC-SF's future-memory check. Waiting requests
are taken in arrival order (ties: position in the instance); a request is admitted if, with
everything running and everything admitted so far, memory stays <= M at every future completion
round (predicted lengths, refined for running requests by what they have revealed). Admission
stops at the first request that does not fit (no overtaking: strict FCFS). It never preempts
when predictions do not under-estimate.
"""
from __future__ import annotations

from servopt.simulator.kv_rounds import expected_completion, future_peaks_fit, greedy_prefix

NAME = "fcfs"
PARAMS: dict = {}


class FCFS:
    def admit(self, view):
        base = [(r.prompt_tokens, r.start, expected_completion(r, r.predicted_output_tokens)) for r in view.running]

        def fits(admitted, cand):
            new = [(w.prompt_tokens, view.t, view.t + w.predicted_output_tokens) for w in admitted + [cand]]
            return future_peaks_fit(base + new, view.memory_tokens)

        return greedy_prefix(view, view.waiting, fits)

    def on_overflow(self, view):
        return [r.id for r in sorted(view.running, key=lambda r: (-r.start, -r.position))]


def make():
    return FCFS()
