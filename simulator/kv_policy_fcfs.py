"""``fcfs``: first come, first served, admitting while the whole future footprint fits.

Source: the "MC-Benchmark" of Jaillet et al., arXiv 2502.07115, §6 (research notes
scheduling-anchors.md §1.6 (iii)): FCFS order with MC-SF's future-memory check. Waiting requests
are taken in arrival order (ties: position in the instance); a request is admitted if, with
everything running and everything admitted so far, memory stays <= M at every future completion
round (predicted lengths, refined for running requests by what they have revealed). Admission
stops at the first request that does not fit (no overtaking: strict FCFS). It never preempts
when predictions do not under-estimate; with under-estimates the newest start is preempted first.
"""
from __future__ import annotations

from servopt.simulator.kv_rounds import admit_while_future_fits, newest_start_first

NAME = "fcfs"
PARAMS: dict = {}


class FCFS:
    def admit(self, view):
        return admit_while_future_fits(view, view.waiting, lambda r: r.predicted_output_tokens)

    def on_overflow(self, view):
        return newest_start_first(view)


def static_priority(request, position: int) -> tuple:
    """The fixed order ``admit`` ranks waiting requests by (kv_rounds.simulate_static_priority)."""
    return (request.arrival, position)


def make():
    return FCFS()
