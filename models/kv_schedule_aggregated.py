r"""KV-memory-constrained scheduling, aggregated by request type (formulations ``aggregated``,
``aggregated-card``, ``aggregated-window``, ``aggregated-count``).

Base program: the time-indexed hindsight IP of ``servopt.models.kv_schedule`` (Jaillet, Jiang,
Mellou, Molinaro, Podimata, Zhou, arXiv 2502.07115, eq. (1)-(4); research/scheduling-anchors.md
§1.3), same round semantics: started in round ``k``, request ``i`` holds ``s_i + (t - k)`` tokens in
rounds ``t = k+1 .. k+o_i`` and finishes at ``k + o_i``. Aggregation by type is the first direction
of the certification work ("requests with equal (arrival, s, o) are interchangeable").

Symbols (code names in brackets)
--------------------------------
``K``          request types [``m.K``]: the distinct (a_k, s_k, o_k, w_k) (w_k = 1 unless the objective
               is ``weighted_latency``), each with ``n_k`` requests [``groups.count``].
``W_k``        start window ``{a_k .. L_k}`` [``groups.windows``], the window of every member in
               ``models.kv_schedule.start_windows`` (it depends on a, o, w only, so members share it).
``z[k,t]``     number of type-k requests started in round t, integer in [0, n_k] [``m.z``].

Program (``aggregated``)
------------------------
    min  sum_k sum_{t in W_k} w_k (t + o_k - a_k) z[k,t]
    s.t. sum_{t in W_k} z[k,t] = n_k                                       for all k     [_assign_rule]
         sum_k sum_{t in W_k, u-o_k <= t <= u-1} (s_k + u - t) z[k,t] <= M  for rounds u  [_memory_rule]
         z[k,t] in {0, .., n_k}

A memory row is left out when ``sum (s_k + u - t) n_k`` over its terms is at most ``M`` (it can
never bind), as in the reference model.

``aggregated-card`` adds, for every round ``u`` and every ``q`` in ``cardinality_levels``
(``q = 1, 2, ..`` while ``(q+1)(min_k s_k + 1) <= M``)

    sum_{(k,t): u-o_k <= t <= u-1, (q+1)(s_k + u - t) > M} z[k,t] <= q                    [_cardinality_rule]

(left out where the counts ``n_k`` of its terms already sum to at most ``q``).

``aggregated-window`` adds the *exclusive-window* rows (ours): with peak ``P_k = s_k + o_k``,
``s_min = min_k s_k``, for a level ``q`` in ``WINDOW_LEVELS`` the window length
``y_k^q = o_k - g_k^q``, ``g_k^q = max(0, floor((M - P_k) / q) - s_min)``, and for every round ``u``

    sum_{(k,t): y_k^q > 0, t < u <= t + y_k^q} z[k,t] <= q                                  [_window_rule]

(a type-k request started at t is "in its level-q window" in rounds t+1 .. t+y_k^q; left out where
the counts of its terms already sum to at most ``q``).

Proofs
------
*Aggregation is exact.* Map a schedule ``p`` to ``z[k,t] = |{i of type k : p_i = t}|``: the
assignment rows hold; the memory row of round u is the reference row with the terms of equal
coefficient collected, so it holds; the objective is the same sum. Conversely, an integer ``z``
satisfying the rows gives a schedule by handing type k's ``n_k`` start rounds (with
multiplicity) to its members in any order; every member gets a start in ``W_k``, and memory and
cost only depend on the multiset of (type, start) pairs, which is the same. So both programs have
the same optimal value, and schedules map onto each other (``extract`` does the second map). The
LP relaxations are also equal: averaging the reference LP solution over the members of a type
gives ``z/n_k`` per member, and summing maps back (both maps keep feasibility and cost since all
constraints are linear and symmetric in the members). Aggregation removes symmetry from branch
and bound, not LP weakness.

*Cardinality cuts are valid.* In round ``u`` a started request of age ``u - t`` holds
``s_k + u - t`` tokens; if ``q+1`` requests alive in u each held more than ``M/(q+1)`` the total
would exceed ``M``. So at most ``q`` such requests are alive, and the left side counts exactly them.

*Exclusive windows are valid.* Suppose ``q+1`` requests are in their level-q windows in round ``u``
and let ``i`` be the one that finishes first (``f_i <= f_j`` for the others ``j``). Each ``j`` started
at ``p_j <= u - 1`` and ``u <= p_i + y_i^q = f_i - g_i^q``, so ``p_j <= f_i - g_i^q - 1 < f_i <= f_j``: all
``q`` of them run in round ``f_i`` with age ``f_i - p_j >= g_i^q + 1``, holding at least
``s_min + g_i^q + 1`` tokens each, while ``i`` holds ``P_i``. By the choice of ``g_i^q``,
``q (s_min + g_i^q + 1) = q (floor((M - P_i)/q) + 1) > M - P_i`` when ``g_i^q > 0`` (and
``q (s_min + 1) > M - P_i`` when ``g_i^q = 0`` because then ``floor((M - P_i)/q) <= s_min``), so
round ``f_i`` holds more than ``M`` tokens: a contradiction. Hence at most ``q`` requests are in their
windows in any round, which is the row. For ``q = 1`` this is the time-indexed form of the chain
bound of ``solvers/kv_schedule_certify.py`` (big requests' windows ``(p_i, p_i + o_i - h_i]`` are
disjoint), which the LP can no longer smear: measured on the paper's family it lifts the LP bound
from ~68% to 83-88% of the best known schedule on 4 instances (README, "Certifying the KV-scheduling optimum").

``aggregated-count`` is ``aggregated-window`` plus the *completion-count* rows (ours): with
``C_k`` (k = 1..n) a valid lower bound on ``F_(k)``, the k-th smallest finish round of any feasible
schedule (``prefix_finish_lower_bounds``), for every k = 1..n-1

    sum_{(k',t): t + o_k' <= C_{k+1} - 1} z[k',t] <= k                                       [_completion_count_rule]

(one row per distinct round ``C_{k+1} - 1``, the smallest k kept; left out where the counts of its
terms already sum to at most ``k``). With every row present the LP value is at least
``sum_k C_k - sum_i a_i`` (the LP objective is ``sum_i (f_i - a_i)`` = ``sum_{T >= 0}`` (requests not
finished by T) ``- sum_i a_i``, and the rows cap the finished ones by the number of ``C_k <= T``).

*Completion-count rows are valid.* If ``k+1`` requests finished by round ``C_{k+1} - 1``, then
``F_(k+1) <= C_{k+1} - 1 < C_{k+1}``, contradicting the bound. So at most ``k`` requests finish by that
round, and the left side counts exactly the requests that do (aggregation: a column's value is the
number of type-k' requests started at t, all finishing at ``t + o_k'``).

*Prefix finish bounds* (``prefix_finish_lower_bounds``). Let ``S`` be the k requests that finish
first in a feasible schedule; ``F_(k) = max_{i in S} f_i`` and the schedule restricted to ``S`` is
feasible. Each of these is a lower bound on ``F_(k)``:

1. volume (the bound of analysis/kv_bounds.py, Jaillet et al. Lemmas 4.4-4.7): request i holds
   ``v_i = s_i o_i + o_i (o_i + 1)/2`` token-rounds, all inside rounds ``a_min + 1 .. F_(k)``, at most
   ``M`` per round, so ``F_(k) >= a_min + ceil(V_k / M)`` with ``V_k`` the sum of the k smallest ``v_i``;
2. own length: ``F_(k) >= c_(k)``, the k-th smallest ``a_i + o_i``;
3. chain (the chain of solvers/kv_schedule_certify.py, Claim 1): big requests ``B = {i : 2 P_i > M}``,
   ``h_i = max(0, M - P_i - s_min)``, ``x_i = o_i - h_i``. ``S`` holds at least ``b = k - |I \ B|``
   big requests; ordered by finish ``pi(1..b')`` (b' >= b), ``f_pi(1) >= a_min + o_pi(1)`` and
   ``f_pi(m) >= f_pi(m-1) + o_pi(m) - h_pi(m-1)``, so
   ``F_(k) >= a_min + sum_m x_pi(m) + h_pi(b') >= a_min + X_b + min_{i in B} h_i`` where ``X_b`` is the
   smallest sum of ``x`` over at least ``b`` big requests (all negative ``x`` and then the smallest
   others, in ascending order);
4. dominance chain (only when the requests can be ordered so that ``a``, ``s`` and ``o`` are all
   non-decreasing, e.g. the paper's all-at-0 family with one ``s``): replacing a member ``j`` of ``S``
   by an earlier request ``i`` of that order not in ``S`` keeps the schedule feasible (``i`` starts
   at ``p_j >= a_j >= a_i`` and holds ``s_i + age <= s_j + age`` for ``o_i <= o_j`` rounds), so some
   set of k requests that finish by ``F_(k)`` is the first k of the order, ``R_k``. Its big members
   ``B_k`` (``b`` of them) chain as in 3: ``F_(k) >= a_min(R_k) + sum_{B_k} o_i - (sum of the b-1
   largest h_i in B_k)``.

``F_(k)`` is non-decreasing in k, so ``C_k`` is the running maximum over ``j <= k`` of the largest
of these. Measured on the paper family (benchmarks/results/kv_bounds_paper.md, 10 instances per
arrival model) the rows lift the window LP by at most 0.0002 of the best schedule (median 0.0000):
the prefix bound ``sum_k C_k - sum a`` is 0.79 / 0.74 of the best schedule (median) against the
window LP's 0.86 / 0.84. With prefix makespans taken from heuristic schedules instead (upper bounds,
*not* valid) the same rows lifted the LP from 0.869 / 0.890 / 0.879 to 0.949 / 0.963 / 0.905 on
three all-at-0 instances, so stronger valid prefix makespan bounds are the lever; the LP's own
makespan (the shortest horizon at which the window LP of the first k requests is feasible) equals
the volume bound there and does not provide them.

*Horizon and windows.* ``T = max_i a_i + sum_i o_i`` and the cut-off windows from a known schedule
of cost ``U`` are those of ``models.kv_schedule`` (proved in its docstring: every optimal schedule
lies inside them).

Measured (benchmarks/results/kv_certify.md): neither aggregation nor these cuts moves the
LP bound by more than 0.1% on the paper's family; the LP's weakness is the fluid spreading of each
request over many start rounds, which no per-round inequality sees.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from servopt.errors import InputError
from servopt.instances.kv_schedule import KVSchedule, KVScheduleInstance, ScheduledRequest

FORMULATIONS = ("aggregated", "aggregated-card", "aggregated-window", "aggregated-count")
WINDOW_LEVELS = (1, 2)
# ``servopt solve --formulation NAME`` runs these through solvers/kv_schedule_certify.py (direct
# highspy build, heuristics, chain bound); ``analysis.kv_optimum.solve_optimum`` uses ``build`` here.
DIRECT_PIPELINE = FORMULATIONS


@dataclass(frozen=True)
class AggregatedModelData:
    instance: KVScheduleInstance
    formulation: str
    groups: object  # servopt.solvers-free copy of the grouping: see group_types
    horizon: int
    horizon_is_proven: bool
    relaxed: bool


@dataclass(frozen=True)
class TypeGroups:
    """Request types: per type its numbers, its member request indices and its start window."""

    arrival: tuple[int, ...]
    prompt: tuple[int, ...]
    output: tuple[int, ...]
    weight: tuple[float, ...]
    count: tuple[int, ...]
    members: tuple[tuple[int, ...], ...]
    windows: tuple[tuple[int, int], ...]


def group_types(instance: KVScheduleInstance, windows) -> TypeGroups:
    """Types sorted by (arrival, prompt, output, weight); members in request order."""
    weighted = instance.objective == "weighted_latency"
    by_key: dict[tuple, list[int]] = {}
    for i, r in enumerate(instance.requests):
        key = (int(r.arrival), int(r.prompt_tokens), int(r.output_tokens), float(r.weight) if weighted else 1.0)
        by_key.setdefault(key, []).append(i)
    keys = sorted(by_key)
    return TypeGroups(
        arrival=tuple(k[0] for k in keys), prompt=tuple(k[1] for k in keys), output=tuple(k[2] for k in keys),
        weight=tuple(k[3] for k in keys), count=tuple(len(by_key[k]) for k in keys),
        members=tuple(tuple(by_key[k]) for k in keys), windows=tuple(windows[by_key[k][0]] for k in keys),
    )


def cardinality_levels(memory_tokens: int, min_weight: int) -> list[int]:
    """``q`` with ``(q+1) * min_weight <= M``: levels at which q+1 alive requests can fit at all."""
    return [q for q in range(1, max(memory_tokens // max(min_weight, 1), 1)) if (q + 1) * min_weight <= memory_tokens]


def window_lengths(memory_tokens: int, prompt, output, q: int) -> list[int]:
    """``y_k^q = o_k - max(0, floor((M - P_k)/q) - s_min)`` per type (module docstring)."""
    s_min = min(prompt)
    return [o - max(0, (memory_tokens - s - o) // q - s_min) for s, o in zip(prompt, output)]


def prefix_finish_lower_bounds(instance: KVScheduleInstance) -> list[int]:
    """``C_1 <= .. <= C_n``: ``C_k`` is a lower bound on the k-th smallest finish round of any feasible
    schedule (the four bounds of the module docstring, "Prefix finish bounds")."""
    reqs = instance.requests
    n = len(reqs)
    M = int(instance.memory_tokens)
    a = np.array([int(r.arrival) for r in reqs], dtype=np.int64)
    s = np.array([int(r.prompt_tokens) for r in reqs], dtype=np.int64)
    o = np.array([int(r.output_tokens) for r in reqs], dtype=np.int64)
    a_min, s_min = int(a.min()), int(s.min())
    volumes = np.cumsum(np.sort(s * o + o * (o + 1) // 2))
    own = np.sort(a + o)
    peak = s + o
    big = 2 * peak > M
    head = np.maximum(0, M - peak - s_min)
    x_big = np.sort((o - head)[big])
    x_prefix = np.concatenate([[0], np.cumsum(x_big)])
    negative = int((x_big < 0).sum())
    head_min = int(head[big].min()) if big.any() else 0
    non_big = int((~big).sum())
    # bound 4 needs one order in which a, s and o are all non-decreasing
    order = np.lexsort((s, a, o))
    dominance = bool(np.all(np.diff(a[order]) >= 0) and np.all(np.diff(s[order]) >= 0))
    bounds = []
    for k in range(1, n + 1):
        lb = max(a_min - (-int(volumes[k - 1]) // M), int(own[k - 1]))
        b = k - non_big
        if b > 0:
            lb = max(lb, a_min + int(x_prefix[max(b, negative)]) + head_min)
        if dominance:
            first = order[:k]
            in_big = first[big[first]]
            if len(in_big):
                heads = np.sort(head[in_big])  # the b-1 largest: all but the smallest
                lb = max(lb, int(a[first].min()) + int(o[in_big].sum()) - int(heads[1:].sum()))
        bounds.append(lb)
    return [int(v) for v in np.maximum.accumulate(np.array(bounds, dtype=np.int64))]


def completion_count_rows(instance: KVScheduleInstance) -> list[tuple[int, int]]:
    """``(T, k)``: at most ``k`` requests finish by round ``T`` (one per distinct T, smallest k kept)."""
    bounds = prefix_finish_lower_bounds(instance)
    rows: dict[int, int] = {}
    for k in range(1, len(bounds)):
        T = bounds[k] - 1
        rows.setdefault(T, k)  # k ascends: the first k seen for a T is the smallest
    return sorted(rows.items())


def build(instance: KVScheduleInstance, *, formulation: str = "aggregated", horizon: int | None = None,
          cutoff: float | None = None, relax: bool = False):
    """The Pyomo model of the module docstring (``relax=True``: its LP relaxation)."""
    import pyomo.environ as pyo

    from servopt.models.kv_schedule import start_windows

    if formulation not in FORMULATIONS:
        raise InputError("--formulation", f"unknown formulation '{formulation}' (known: {', '.join(FORMULATIONS)})")
    if instance.objective == "makespan":
        raise InputError("--formulation", f"'{formulation}' minimises (weighted) latency; for the makespan use time-indexed")
    T, proven, windows = start_windows(instance, horizon=horizon, cutoff=cutoff)
    for idx, (lo, hi) in enumerate(windows):
        if hi < lo:
            raise InputError("horizon" if cutoff is None else "cutoff",
                             f"request '{instance.requests[idx].id}' has no feasible start round (window {lo}..{hi})")
    g = group_types(instance, windows)
    M = instance.memory_tokens
    m = pyo.ConcreteModel(name=f"kv_schedule_{formulation}[{instance.name or instance.n}]")
    m.K = pyo.RangeSet(0, len(g.count) - 1)
    m.KT = pyo.Set(dimen=2, ordered=True,
                   initialize=[(k, t) for k in range(len(g.count)) for t in range(g.windows[k][0], g.windows[k][1] + 1)])
    m.z = pyo.Var(m.KT, domain=pyo.NonNegativeReals if relax else pyo.NonNegativeIntegers,
                  bounds=lambda m, k, t: (0, g.count[k]))
    m._kv = AggregatedModelData(instance, formulation, g, T, proven, relax)

    # who is alive in round u, with which age; built once
    alive: dict[int, list[tuple[int, int, int]]] = {}
    for k in range(len(g.count)):
        lo, hi = g.windows[k]
        for t in range(lo, hi + 1):
            for age in range(1, g.output[k] + 1):
                alive.setdefault(t + age, []).append((k, t, g.prompt[k] + age))
    m.U = pyo.Set(initialize=sorted(alive), ordered=True)

    def _assign_rule(m, k):
        return sum(m.z[k, t] for t in range(g.windows[k][0], g.windows[k][1] + 1)) == g.count[k]

    def _memory_rule(m, u):
        terms = alive[u]
        if sum(c * g.count[k] for k, _, c in terms) <= M:
            return pyo.Constraint.Skip  # can never bind
        return pyo.quicksum(c * m.z[k, t] for k, t, c in terms) <= M

    m.assign = pyo.Constraint(m.K, rule=_assign_rule)
    m.memory = pyo.Constraint(m.U, rule=_memory_rule)

    if formulation == "aggregated-card":
        m.Q = pyo.Set(initialize=cardinality_levels(M, min(g.prompt) + 1), ordered=True)

        def _cardinality_rule(m, q, u):
            heavy = [(k, t) for k, t, c in alive[u] if (q + 1) * c > M]
            if sum(g.count[k] for k, _ in heavy) <= q:
                return pyo.Constraint.Skip  # can never bind
            return pyo.quicksum(m.z[k, t] for k, t in heavy) <= q

        m.cardinality = pyo.Constraint(m.Q, m.U, rule=_cardinality_rule)

    if formulation in ("aggregated-window", "aggregated-count"):
        m.L = pyo.Set(initialize=WINDOW_LEVELS, ordered=True)
        y = {q: window_lengths(M, g.prompt, g.output, q) for q in WINDOW_LEVELS}
        in_window: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for q in WINDOW_LEVELS:
            for k in range(len(g.count)):
                for t in range(g.windows[k][0], g.windows[k][1] + 1):
                    for u in range(t + 1, t + y[q][k] + 1):
                        in_window.setdefault((q, u), []).append((k, t))
        m.W = pyo.Set(dimen=2, initialize=sorted(in_window), ordered=True)

        def _window_rule(m, q, u):
            terms = in_window[q, u]
            if sum(g.count[k] for k, _ in terms) <= q:
                return pyo.Constraint.Skip  # can never bind
            return pyo.quicksum(m.z[k, t] for k, t in terms) <= q

        m.window = pyo.Constraint(m.W, rule=_window_rule)

    if formulation == "aggregated-count":
        count_rows = completion_count_rows(instance)
        m.N = pyo.Set(initialize=range(len(count_rows)), ordered=True)

        def _completion_count_rule(m, r):
            T, k = count_rows[r]
            terms = [(kk, t) for kk, t in m.KT if t + g.output[kk] <= T]
            if sum(g.count[kk] for kk, _ in terms) <= k:
                return pyo.Constraint.Skip  # can never bind
            return pyo.quicksum(m.z[kk, t] for kk, t in terms) <= k

        m.completion_count = pyo.Constraint(m.N, rule=_completion_count_rule)

    m.obj = pyo.Objective(
        expr=pyo.quicksum(g.weight[k] * (t + g.output[k] - g.arrival[k]) * m.z[k, t] for k, t in m.KT),
        sense=pyo.minimize)
    return m


def extract(model) -> KVSchedule:
    """The schedule in the model's loaded values: a type's members take its start rounds in order."""
    import pyomo.environ as pyo

    data: AggregatedModelData = model._kv
    g = data.groups
    reqs = data.instance.requests
    start = [0] * len(reqs)
    for k, members in enumerate(g.members):
        rounds = []
        for t in range(g.windows[k][0], g.windows[k][1] + 1):
            rounds += [t] * int(round(pyo.value(model.z[k, t], exception=False) or 0.0))
        if len(rounds) != len(members):
            raise ValueError(f"type {k}: {len(rounds)} start rounds for {len(members)} requests (values not integral?)")
        for i, p in zip(members, rounds):
            start[i] = p
    rows = tuple(ScheduledRequest(r.id, int(r.arrival), start[i], start[i] + int(r.output_tokens))
                 for i, r in enumerate(reqs))
    return KVSchedule(rows, objective_name=data.instance.objective, method=f"ip[{data.formulation}]")


def warm_start(model, schedule: KVSchedule):
    """A full MIP start (ComponentMap) from a schedule."""
    from pyomo.common.collections import ComponentMap

    data: AggregatedModelData = model._kv
    g = data.groups
    start_by_id = {r.id: r.start for r in schedule.requests}
    values = ComponentMap()
    for k, members in enumerate(g.members):
        hist: dict[int, int] = {}
        for i in members:
            p = start_by_id[data.instance.requests[i].id]
            hist[p] = hist.get(p, 0) + 1
        for t in range(g.windows[k][0], g.windows[k][1] + 1):
            values[model.z[k, t]] = float(hist.get(t, 0))
    return values
