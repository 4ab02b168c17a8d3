"""Combinatorial lower bounds on the hindsight optimum of a ``kv_schedule`` instance (no solver).

Used next to the solver's dual bound: whichever is larger is reported, so a compare or a
benchmark never shows a vacuous bound of 0 when HiGHS ran out of time before its root LP.

*Memory-time volume.* A request holds ``s_i + j`` tokens in the j-th round of its run, so it needs
the volume ``v_i = s_i o_i + o_i (o_i + 1) / 2`` token-rounds (the "vol" of Jaillet et al.,
arXiv 2502.07115, Lemmas 4.4-4.7; research notes scheduling-anchors.md §1.5). No memory is held
before round ``a_min + 1`` and at most ``M`` per round, so the k requests that finish first in any
schedule, finishing by ``f_(k)``, satisfy ``M (f_(k) - a_min) >= sum of their volumes >= V_k``, the
sum of the k smallest volumes: ``f_(k) >= a_min + ceil(V_k / M)``. Each of them also has
``f >= a + o``, so ``f_(k) >= c_(k)``, the k-th smallest ``a_i + o_i``. Hence

    total latency >= sum_k max(a_min + ceil(V_k / M), c_(k)) - sum_i a_i,
    makespan      >= max(a_min + ceil(V_n / M), max_i (a_i + o_i)),
    weighted      >= sum_i w_i o_i  (each request waits at least its own length).
"""
from __future__ import annotations

import math

from servopt.instances.kv_schedule import KVScheduleInstance


def volume(prompt_tokens: int, output_tokens: int) -> int:
    return prompt_tokens * output_tokens + output_tokens * (output_tokens + 1) // 2


def volume_lower_bound(instance: KVScheduleInstance) -> float:
    """The bound of the module docstring for the instance's objective."""
    reqs = instance.requests
    M = instance.memory_tokens
    a_min = min(int(r.arrival) for r in reqs)
    if instance.objective == "weighted_latency":
        return float(sum(r.weight * r.output_tokens for r in reqs))
    vols = sorted(volume(r.prompt_tokens, r.output_tokens) for r in reqs)
    if instance.objective == "makespan":
        return float(max(a_min + math.ceil(sum(vols) / M), max(int(r.arrival) + r.output_tokens for r in reqs)))
    own = sorted(int(r.arrival) + r.output_tokens for r in reqs)
    total, cumulative = 0, 0
    for k, v in enumerate(vols):
        cumulative += v
        total += max(a_min + math.ceil(cumulative / M), own[k])
    return float(total - sum(int(r.arrival) for r in reqs))


def volume_lower_bounds_without_each(instance: KVScheduleInstance) -> list[float]:
    """For each request k, the volume bound on the (weighted) latency of all the *other* requests.

    An optimal schedule restricted to the others is feasible for them, so its latency over them is
    at least this; with a schedule of cost U known, request k's own latency is at most
    ``U - bound_without_k`` (used for start windows by ``models.kv_schedule.start_windows``).
    Makespan: not defined (returns zeros).
    """
    reqs = instance.requests
    n = len(reqs)
    if instance.objective == "makespan" or n == 1:
        return [0.0] * n
    if instance.objective == "weighted_latency":
        total = sum(r.weight * r.output_tokens for r in reqs)
        return [float(total - r.weight * r.output_tokens) for r in reqs]
    M = instance.memory_tokens
    arrivals = [int(r.arrival) for r in reqs]
    vols = [volume(r.prompt_tokens, r.output_tokens) for r in reqs]
    own = [a + r.output_tokens for a, r in zip(arrivals, reqs)]
    by_vol = sorted(range(n), key=lambda i: vols[i])
    by_own = sorted(range(n), key=lambda i: own[i])
    sum_a = sum(arrivals)
    out = []
    for k in range(n):
        a_min = min(arrivals[i] for i in range(n) if i != k)
        v_sorted = [vols[i] for i in by_vol if i != k]
        o_sorted = [own[i] for i in by_own if i != k]
        total, cumulative = 0, 0
        for j in range(n - 1):
            cumulative += v_sorted[j]
            total += max(a_min + math.ceil(cumulative / M), o_sorted[j])
        out.append(float(total - (sum_a - arrivals[k])))
    return out
