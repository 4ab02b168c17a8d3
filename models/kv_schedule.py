r"""The time-indexed hindsight-optimal integer program for KV-memory-constrained scheduling.

Source: Jaillet, Jiang, Mellou, Molinaro, Podimata, Zhou, "Online Scheduling for LLM Inference
with KV Cache Constraints", arXiv 2502.07115 (v4/v5), the hindsight-optimal IP, eq. (1)-(4) in
research/scheduling-anchors.md §1.3. This module is the plain reference formulation; stronger
formulations live in their own modules.

Symbols (code names in brackets)
--------------------------------
``I``                 requests [``m.I``], ``a_i`` arrival round [``a``], ``s_i`` prompt tokens [``s``],
                      ``o_i`` output tokens [``o``], ``w_i`` weight [``w``], ``M`` memory [``M``].
``T``                 horizon: every request finishes by round ``T`` [``horizon``].
``W_i``               start window ``{a_i, ..., L_i}`` with latest start ``L_i <= T - o_i`` [``window``].
``x[i,t]``            1 if request ``i`` starts in round ``t``, for ``t in W_i`` [``m.x``].
``C``                 makespan [``m.C``], only for objective ``makespan``.

Program
-------
    min  sum_i sum_{t in W_i} w_i (t + o_i - a_i) x[i,t]        (total / weighted latency; w_i = 1 for total)
    or   min  C  s.t.  C >= sum_{t in W_i} (t + o_i) x[i,t]  for all i              (makespan) [_makespan_rule]

    s.t. sum_{t in W_i} x[i,t] = 1                                for all i         [_assign_rule]
         sum_i sum_{k in W_i, t-o_i <= k <= t-1} (s_i + t - k) x[i,k] <= M
                                                                  for t = 1..T      [_memory_rule]
         x[i,t] in {0,1}                    (in [0,1] for the LP relaxation, ``relax=True``)

A request that starts in round ``k`` holds ``s_i + (t - k)`` tokens in rounds ``t = k+1 .. k+o_i``
and none in round ``k`` itself (the paper's convention, confirmed by the authors' code), so row
``t`` sums over starts ``k`` with ``k < t <= k + o_i``. Its finish is ``f_i = k + o_i``.

Validity of the default horizon ``T = max_i a_i + sum_i o_i`` (proof)
--------------------------------------------------------------------
Request ``i`` *covers* round ``u`` when ``p_i < u <= p_i + o_i``. Take any feasible schedule and a
round ``u > a_max = max_i a_i`` that no request covers while some request starts at
``p_j >= u``. Move every request with ``p_j >= u`` one round earlier. It stays after its
arrival (``p_j - 1 >= u - 1 >= a_max >= a_j``). Requests with ``p_j < u`` do not cover ``u``,
so they end by round ``u - 1``; moved requests covered only rounds ``>= p_j + 1 >= u + 1`` and
after the move cover rounds ``>= u``. So after the move the memory in a round ``r <= u - 1`` is
the old memory in ``r`` (only unmoved requests are there), and the memory in a round ``r >= u``
is the old memory in round ``r + 1`` (only moved requests are there). So the moved
schedule is feasible; every moved finish drops by one, so total and weighted latency strictly
decrease (``w_i > 0``) and the makespan does not increase. Hence every optimal schedule for
(weighted) latency, and some optimal schedule for the makespan (repeat the move; ``sum_i p_i``
drops each time), has every round in ``(a_max, f_max]`` covered: rounds up to ``p_max`` by the
argument, later ones by the request that finishes last. Covered rounds number at most
``sum_i o_i``, so ``f_max <= a_max + sum_i o_i = T``. []

Cut-off windows from a known schedule (``cutoff``)
--------------------------------------------------
If a feasible schedule of cost ``U`` is known (an online policy's), an optimal schedule costs at
most ``U``. For (weighted) latency every request waits ``f_j - a_j >= o_j``, so
``w_i (p_i - a_i) <= U - sum_j w_j o_j``, i.e. ``L_i = a_i + floor((U - sum_j w_j o_j) / w_i)``;
for the makespan ``f_i <= U`` gives ``L_i = U - o_i``. Either is intersected with ``T - o_i``.
With ``others_lower_bound[i]``, a valid lower bound on the (weighted) latency of all requests but
``i`` (e.g. the volume bound of analysis/kv_bounds.py), the same argument gives the tighter
``w_i (p_i + o_i - a_i) <= U - others_lower_bound[i]``: an optimal schedule restricted to the
others is feasible for them, so they cost at least that bound. ``others_lower_bound[i] >=
sum_{j != i} w_j o_j`` always holds for a valid bound, so this only tightens.
The windows keep every optimal schedule (the cut-off is valid), they only remove worse ones.
A preempting policy's schedule also gives a valid ``U``: dropping its preempted attempts leaves
a feasible non-preemptive schedule with the same finishes.

A user-given ``horizon`` below the proven one may cut off every optimum; the model records
``horizon_is_proven`` so results can say so.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from servopt.errors import InputError
from servopt.instances.kv_schedule import KVSchedule, KVScheduleInstance, ScheduledRequest

FORMULATIONS = ("time-indexed",)


@dataclass(frozen=True)
class KVModelData:
    """The numbers the Pyomo model is built from (kept on the model for ``extract``)."""

    instance: KVScheduleInstance
    horizon: int
    horizon_is_proven: bool
    windows: tuple[tuple[int, int], ...]  # (earliest, latest) start per request
    relaxed: bool


def proven_horizon(instance: KVScheduleInstance) -> int:
    """``T = max_i a_i + sum_i o_i``, valid by the proof in the module docstring."""
    return int(max(r.arrival for r in instance.requests) + sum(r.output_tokens for r in instance.requests))


def start_windows(instance: KVScheduleInstance, *, horizon: int | None = None, cutoff: float | None = None,
                  others_lower_bound=None):
    """Per request the (earliest, latest) start round; the latest is tightened by ``cutoff`` when given
    (and further by ``others_lower_bound``, one number per request; module docstring)."""
    proven = proven_horizon(instance)
    T = proven if horizon is None else int(horizon)
    reqs = instance.requests
    slack = None
    if cutoff is not None and instance.objective != "makespan":
        weights = [r.weight if instance.objective == "weighted_latency" else 1.0 for r in reqs]
        slack = float(cutoff) - sum(w * r.output_tokens for w, r in zip(weights, reqs))
    windows = []
    for idx, r in enumerate(reqs):
        latest = T - r.output_tokens
        if cutoff is not None:
            if instance.objective == "makespan":
                latest = min(latest, int(math.floor(cutoff + 1e-9)) - r.output_tokens)
            else:
                w = r.weight if instance.objective == "weighted_latency" else 1.0
                latest = min(latest, int(r.arrival + math.floor(slack / w + 1e-9)))
                if others_lower_bound is not None:
                    own_slack = float(cutoff) - float(others_lower_bound[idx])  # w_i (f_i - a_i) <= this
                    latest = min(latest, int(r.arrival + math.floor(own_slack / w + 1e-9)) - r.output_tokens)
        windows.append((int(r.arrival), int(latest)))
    return T, T >= proven, tuple(windows)


def build(instance: KVScheduleInstance, *, formulation: str = "time-indexed", horizon: int | None = None,
          relax: bool = False, cutoff: float | None = None, others_lower_bound=None):
    """The Pyomo model of the module docstring (``relax=True``: its LP relaxation)."""
    import pyomo.environ as pyo

    if formulation not in FORMULATIONS:
        raise InputError("--formulation", f"this module builds {', '.join(FORMULATIONS)}; got '{formulation}'")
    T, proven, windows = start_windows(instance, horizon=horizon, cutoff=cutoff, others_lower_bound=others_lower_bound)
    for idx, (lo, hi) in enumerate(windows):
        if hi < lo:
            raise InputError(
                "horizon" if cutoff is None else "cutoff",
                f"request '{instance.requests[idx].id}' has no feasible start round (window {lo}..{hi})",
            )
    reqs = instance.requests
    m = pyo.ConcreteModel(name=f"kv_schedule[{instance.name or len(reqs)}]")
    m.I = pyo.RangeSet(0, len(reqs) - 1)
    m.IT = pyo.Set(dimen=2, initialize=[(i, t) for i in range(len(reqs)) for t in range(windows[i][0], windows[i][1] + 1)],
                   ordered=True)
    m.x = pyo.Var(m.IT, domain=pyo.UnitInterval if relax else pyo.Binary)
    m._kv = KVModelData(instance, T, proven, windows, relax)
    # a key for exported LP/MPS files (solvers.highs.write_model): x indices are positions, not ids
    m._export_legend = ["x(i_t) = 1: request i starts in round t; i = " + ", ".join(
        f"{i}: {r.id}" for i, r in enumerate(reqs[:40])) + (f", ... ({len(reqs)} requests)" if len(reqs) > 40 else "")]

    # memory rows: who is alive in round t with which coefficient, built once (O(nnz)) instead of per row.
    alive: dict[int, list[tuple[int, int, int]]] = {}
    for i, r in enumerate(reqs):
        lo, hi = windows[i]
        for k in range(lo, hi + 1):
            for t in range(k + 1, k + r.output_tokens + 1):
                alive.setdefault(t, []).append((i, k, r.prompt_tokens + t - k))
    m.R = pyo.Set(initialize=sorted(alive), ordered=True)

    def _assign_rule(m, i):
        return sum(m.x[i, t] for t in range(windows[i][0], windows[i][1] + 1)) == 1

    def _memory_rule(m, t):
        terms = alive[t]
        if sum(c for _, _, c in terms) <= instance.memory_tokens:
            return pyo.Constraint.Skip  # can never bind: even every start alive at once fits
        return pyo.quicksum(c * m.x[i, k] for i, k, c in terms) <= instance.memory_tokens

    m.assign = pyo.Constraint(m.I, rule=_assign_rule)
    m.memory = pyo.Constraint(m.R, rule=_memory_rule)

    if instance.objective == "makespan":
        m.C = pyo.Var(domain=pyo.NonNegativeReals)

        def _makespan_rule(m, i):
            o = reqs[i].output_tokens
            return m.C >= sum((t + o) * m.x[i, t] for t in range(windows[i][0], windows[i][1] + 1))

        m.makespan = pyo.Constraint(m.I, rule=_makespan_rule)
        m.obj = pyo.Objective(expr=m.C, sense=pyo.minimize)
    else:
        weighted = instance.objective == "weighted_latency"

        def _latency_cost(i, t):
            r = reqs[i]
            return (r.weight if weighted else 1.0) * (t + r.output_tokens - r.arrival)

        m.obj = pyo.Objective(expr=pyo.quicksum(_latency_cost(i, t) * m.x[i, t] for i, t in m.IT), sense=pyo.minimize)
    return m


def extract(model) -> KVSchedule:
    """The schedule in the model's loaded values (the largest x per request wins)."""
    import pyomo.environ as pyo

    data: KVModelData = model._kv
    inst = data.instance
    out = []
    for i, r in enumerate(inst.requests):
        lo, hi = data.windows[i]
        start = max(range(lo, hi + 1), key=lambda t: pyo.value(model.x[i, t], exception=False) or 0.0)
        out.append(ScheduledRequest(r.id, int(r.arrival), int(start), int(start + r.output_tokens)))
    return KVSchedule(tuple(out), objective_name=inst.objective, method="ip")


def warm_start(model, schedule: KVSchedule):
    """A full MIP start (ComponentMap) from a schedule; requests outside their window are left out."""
    from pyomo.common.collections import ComponentMap

    data: KVModelData = model._kv
    starts = {r.id: r.start for r in schedule.requests}
    values = ComponentMap()
    for i, r in enumerate(data.instance.requests):
        lo, hi = data.windows[i]
        p = starts.get(r.id)
        for t in range(lo, hi + 1):
            values[model.x[i, t]] = 1.0 if t == p else 0.0
    if hasattr(model, "C"):
        values[model.C] = float(max(starts[r.id] + r.output_tokens for r in data.instance.requests))
    return values


def model_size(model) -> dict:
    """Columns and rows of a built Pyomo model, any formulation (for benchmarks and logs)."""
    import pyomo.environ as pyo

    cols = sum(1 for _ in model.component_data_objects(pyo.Var))
    rows = sum(1 for _ in model.component_data_objects(pyo.Constraint, active=True))
    return {"columns": cols, "rows": rows, "horizon": getattr(model._kv, "horizon", None)}
