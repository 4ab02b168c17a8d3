r"""The time-indexed hindsight-optimal integer program for routing across replicas (kind ``routing``).

The ``kv_schedule`` program of Jaillet, Jiang, Mellou, Molinaro, Podimata, Zhou (arXiv 2502.07115,
v4/v5, hindsight IP, eq. (1)-(4); models/kv_schedule.py) with a replica index: each request picks
one replica and one start round, and every replica has its own memory rows.

Symbols (code names in brackets)
--------------------------------
``I``            requests [``m.I``]; ``a_i``, ``s_i``, ``o_i`` arrival, prompt and output tokens.
``K``            replicas [``m.K``], memory ``M_k`` [``memory``].
``K_i``          replicas where ``i`` fits alone, ``s_i + o_i <= M_k`` [``allowed``].
``T``            horizon ``max_i a_i + sum_i o_i`` (valid: models/kv_schedule.py proves it for one
                 replica; a replica serves a subset of the requests, whose proven horizon is no larger).
``W_i``          start window ``{a_i, .., L_i}``, ``L_i <= T - o_i`` [``windows``].
``x[i,k,t]``     1 if request ``i`` starts on replica ``k`` in round ``t``, ``k in K_i``, ``t in W_i`` [``m.x``].
``C``            makespan [``m.C``], objective ``makespan`` only.

Program
-------
    min  sum_{i,k,t} (t + o_i - a_i) x[i,k,t]                          (total latency)
    or   min  C  s.t.  C >= sum_{k,t} (t + o_i) x[i,k,t]  for all i     (makespan) [_makespan_rule]

    s.t. sum_{k in K_i} sum_{t in W_i} x[i,k,t] = 1                      for all i        [_assign_rule]
         sum_i sum_{t-o_i <= tau <= t-1} (s_i + t - tau) x[i,k,tau] <= M_k  for all k, t  [_memory_rule]
         x binary (in [0, 1] with ``relax=True``)

A request started in round ``tau`` holds ``s_i + (t - tau)`` tokens of its replica in rounds
``t = tau+1 .. tau+o_i`` (the kv_schedule convention).

Cut-off windows (``cutoff = U``, the cost of a known routing): as in models/kv_schedule.py, every
request waits at least its own length, so ``f_i - a_i <= U - sum_{j != i} o_j`` in any routing of
cost ``<= U`` (total latency) and ``f_i <= U`` (makespan); no optimal routing is cut off.

Identical replicas make the program symmetric (any permutation of their assignments); the exact
method of solvers/routing_exact.py removes that symmetry, this model is the plain reference.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from servopt.errors import InputError
from servopt.instances.routing import RoutingInstance, RoutingSchedule, make_schedule

FORMULATIONS = ("time-indexed",)


@dataclass(frozen=True)
class RoutingModelData:
    instance: RoutingInstance
    horizon: int
    windows: tuple[tuple[int, int], ...]
    allowed: tuple[tuple[int, ...], ...]
    relaxed: bool


def proven_horizon(instance: RoutingInstance) -> int:
    return int(max(r.arrival for r in instance.requests) + sum(r.output_tokens for r in instance.requests))


def start_windows(instance: RoutingInstance, *, cutoff: float | None = None) -> tuple[int, tuple[tuple[int, int], ...]]:
    T = proven_horizon(instance)
    reqs = instance.requests
    total_o = sum(r.output_tokens for r in reqs)
    out = []
    for r in reqs:
        latest = T - r.output_tokens
        if cutoff is not None:
            if instance.objective == "makespan":
                latest = min(latest, int(math.floor(cutoff + 1e-9)) - r.output_tokens)
            else:
                latest = min(latest, int(r.arrival + math.floor(cutoff - total_o + 1e-9)))
        out.append((int(r.arrival), int(latest)))
    return T, tuple(out)


def build(instance: RoutingInstance, *, formulation: str = "time-indexed", relax: bool = False,
          cutoff: float | None = None):
    """The Pyomo model of the module docstring."""
    import pyomo.environ as pyo

    if formulation not in FORMULATIONS:
        raise InputError("--formulation", f"this module builds {', '.join(FORMULATIONS)}; got '{formulation}'")
    T, windows = start_windows(instance, cutoff=cutoff)
    for i, (lo, hi) in enumerate(windows):
        if hi < lo:
            raise InputError("cutoff", f"request '{instance.requests[i].id}' has no start round within the cut-off")
    reqs = instance.requests
    allowed = tuple(tuple(instance.allowed(i)) for i in range(len(reqs)))
    memory = [rep.memory_tokens for rep in instance.replicas]
    m = pyo.ConcreteModel(name=f"routing[{instance.name or len(reqs)}]")
    m.I = pyo.RangeSet(0, len(reqs) - 1)
    m.K = pyo.RangeSet(0, len(memory) - 1)
    idx = [(i, k, t) for i in range(len(reqs)) for k in allowed[i] for t in range(windows[i][0], windows[i][1] + 1)]
    m.IKT = pyo.Set(dimen=3, initialize=idx, ordered=True)
    m.x = pyo.Var(m.IKT, domain=pyo.UnitInterval if relax else pyo.Binary)
    m._routing = RoutingModelData(instance, T, windows, allowed, relax)

    alive: dict[tuple[int, int], list[tuple[int, int, int]]] = {}
    for i, k, tau in idx:
        r = reqs[i]
        for t in range(tau + 1, tau + r.output_tokens + 1):
            alive.setdefault((k, t), []).append((i, tau, r.prompt_tokens + t - tau))
    m.KR = pyo.Set(dimen=2, initialize=sorted(alive), ordered=True)

    def _assign_rule(m, i):
        return sum(m.x[i, k, t] for k in allowed[i] for t in range(windows[i][0], windows[i][1] + 1)) == 1

    def _memory_rule(m, k, t):
        terms = alive[(k, t)]
        if sum(c for _, _, c in terms) <= memory[k]:
            return pyo.Constraint.Skip  # can never bind
        return pyo.quicksum(c * m.x[i, k, tau] for i, tau, c in terms) <= memory[k]

    m.assign = pyo.Constraint(m.I, rule=_assign_rule)
    m.memory = pyo.Constraint(m.KR, rule=_memory_rule)
    if instance.objective == "makespan":
        m.C = pyo.Var(domain=pyo.NonNegativeReals)

        def _makespan_rule(m, i):
            o = reqs[i].output_tokens
            return m.C >= sum((t + o) * m.x[i, k, t] for k in allowed[i] for t in range(windows[i][0], windows[i][1] + 1))

        m.makespan = pyo.Constraint(m.I, rule=_makespan_rule)
        m.obj = pyo.Objective(expr=m.C, sense=pyo.minimize)
    else:
        m.obj = pyo.Objective(expr=pyo.quicksum((t + reqs[i].output_tokens - reqs[i].arrival) * m.x[i, k, t]
                                                for i, k, t in idx), sense=pyo.minimize)
    return m


def extract(model) -> RoutingSchedule:
    """The routing in the model's loaded values (the largest x per request wins)."""
    import pyomo.environ as pyo

    data: RoutingModelData = model._routing
    inst = data.instance
    replica_of, starts = [], []
    for i in range(inst.n):
        lo, hi = data.windows[i]
        k, t = max(((k, t) for k in data.allowed[i] for t in range(lo, hi + 1)),
                   key=lambda kt: pyo.value(model.x[i, kt[0], kt[1]], exception=False) or 0.0)
        replica_of.append(k)
        starts.append(t)
    return make_schedule(inst, replica_of, starts, method="ip")


def warm_start(model, schedule: RoutingSchedule):
    """A full MIP start (ComponentMap) from a routing; entries outside the windows are left out."""
    from pyomo.common.collections import ComponentMap

    data: RoutingModelData = model._routing
    inst = data.instance
    ks = schedule.replica_index(inst)
    ps = schedule.starts(inst)
    values = ComponentMap()
    for i in range(inst.n):
        lo, hi = data.windows[i]
        for k in data.allowed[i]:
            for t in range(lo, hi + 1):
                values[model.x[i, k, t]] = 1.0 if (k, t) == (ks[i], ps[i]) else 0.0
    if hasattr(model, "C"):
        values[model.C] = float(max(p + r.output_tokens for p, r in zip(ps, inst.requests)))
    return values
