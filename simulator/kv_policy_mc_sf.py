"""``mc-sf``: Memory-Constrained Shortest First.

Source: Jaillet, Jiang, Mellou, Molinaro, Podimata, Zhou, "Online Scheduling for LLM Inference
with KV Cache Constraints", arXiv 2502.07115, Algorithm 1 (research notes scheduling-anchors.md
§1.4). In round t: keep every running request; sort the waiting ones by predicted output length
(ties: arrival, then position in the instance); grow the admitted set along that order while the
batch stays within M at every future completion round ``{p_j + o~_j}`` of the running and
admitted requests (footprints grow linearly and drop at completion, so the peaks are there);
stop at the first candidate that does not fit (the authors' shortest-first prefix). Running
requests that outlive their prediction are counted with length ``generated + 1`` (they have
revealed at least that). Never preempts when predictions do not under-estimate.
"""
from __future__ import annotations

from servopt.simulator.kv_rounds import admit_while_future_fits, newest_start_first

NAME = "mc-sf"
ALIASES = ("mcsf", "mc_sf")  # the canonical spelling is NAME; these are accepted too
PARAMS: dict = {}


class MCSF:
    def admit(self, view):
        ordered = sorted(view.waiting, key=lambda w: (w.predicted_output_tokens, w.arrival, w.position))
        return admit_while_future_fits(view, ordered, lambda r: r.predicted_output_tokens)

    def on_overflow(self, view):
        return newest_start_first(view)


def static_priority(request, position: int) -> tuple:
    """The fixed order ``admit`` ranks waiting requests by (kv_rounds.simulate_static_priority)."""
    return (request.output_tokens_seen, request.arrival, position)


def make():
    return MCSF()
