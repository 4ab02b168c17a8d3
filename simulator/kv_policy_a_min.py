"""``a-min``: adaptive lower-bound scheduling with interval predictions (A_min).

Source: Chen, Ye, Zhou, "Adaptively Robust LLM Inference Optimization under Prediction
Uncertainty", arXiv 2508.14544, algorithm A_min (research notes scheduling-anchors.md §3.1;
competitive ratio O(log(1/alpha)), alpha = l/u). Each request's output length is predicted as an
interval [l, u] (``output_tokens_interval``; without one, l is ``predicted_output_tokens``, else
the true length). A_min uses only l:

* its current estimate of a request is e = l, raised to what the request has revealed: a request
  still running after g generated tokens has length at least g + 1, and a preempted one keeps
  that knowledge;
* admission: waiting requests sorted by e (ties: arrival, position), admitted as a prefix while
  the batch fits M at every future completion round under the estimates (MC-SF's test with e);
* on overflow (true lengths beyond the estimates), running requests are evicted in increasing
  order of tokens generated so far (ties: larger estimate first, then later position) until the
  next round fits; an evicted request restarts from scratch with its raised estimate.

The eviction order is our reading of the paper's description ("in an order determined by tokens
already generated", notes §3.1, a single third-party summary): fewest tokens first loses the
least work and keeps the most advanced requests, which guarantees progress.
"""
from __future__ import annotations

from servopt.simulator.kv_rounds import admit_while_future_fits

NAME = "a-min"
ALIASES = ("amin", "a_min")  # the canonical spelling is NAME; these are accepted too
PARAMS: dict = {}


def _lower(req) -> int:
    lo = req.output_tokens_interval[0] if req.output_tokens_interval else req.predicted_output_tokens
    return max(int(lo), 1)


def _estimate(req) -> int:
    """The lower bound raised to what earlier attempts revealed (running ones also by ``generated + 1``)."""
    return max(_lower(req), req.revealed_min_output_tokens)


class AMin:
    def admit(self, view):
        ordered = sorted(view.waiting, key=lambda w: (_estimate(w), w.arrival, w.position))
        return admit_while_future_fits(view, ordered, _estimate)

    def on_overflow(self, view):
        return [r.id for r in sorted(view.running, key=lambda r: (r.generated, -max(_estimate(r), r.generated + 1), -r.position))]


def make():
    return AMin()
