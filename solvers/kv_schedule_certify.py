r"""Certify the optimum of a ``kv_schedule`` instance: primal heuristics, valid windows, a chosen
formulation built directly in highspy, a warm-started HiGHS solve, and an honest report.

Pipeline (a warm start was the biggest lever on the gap: research notes pyomo-highs.md §6.4)

1. **Incumbent.** The serial schedule generation scheme (SGS; Kolisch, "Serial and parallel
   resource-constrained project scheduling methods revisited", EJOR 90 (1996), adapted to ramp
   demands): requests taken in a priority order, each placed at the earliest round ``p >= a_i`` at
   which its ramp ``s_i + 1 .. s_i + o_i`` fits under ``M`` on top of the requests already placed.
   Orders tried: shortest output first by arrival (for a batch arriving at round 0 this gave
   MC-SF's schedule, Jaillet et al. arXiv 2502.07115 §4, on the 4 instances we compared), FCFS, and any
   schedules passed in ``warm_starts`` (the caller's online policies, e.g. MC-SF and FCFS of
   ``servopt.simulator``: this module may not import the simulator, ARCHITECTURE.md layering).
   Then first-improvement local search on the best order (swap two requests, or move one request
   to another position; re-decode; keep strictly better), within ``heuristic_seconds``.
   Every schedule produced is feasible by construction (each placement checks every round of its
   ramp), and the independent checker ``analysis/kv_check.py`` re-verifies results in the tests.
2. **Windows.** ``models.kv_schedule.start_windows`` with the proven horizon
   ``T = max a + sum o`` and the cut-off from the incumbent's cost ``U`` (both proved in
   ``models/kv_schedule.py``: no optimal schedule is lost).
3. **Formulation.** ``time-indexed`` (the reference), ``aggregated``, ``aggregated-card`` or
   ``aggregated-window`` (``models/kv_schedule_aggregated.py``), built by
   ``solvers/kv_schedule_direct.py``.
4. **Solve.** HiGHS through ``servopt.solvers.highs.solve_highspy`` from the incumbent, within what
   is left of ``time_limit_s`` (the whole pipeline is charged to the limit, build included).
5. **Report.** The bound is the larger of HiGHS's dual bound (only when the horizon is the proven
   one) and the *chain bound* below (total latency only). Total and makespan objectives are
   integers, so the bound is rounded up (``ceil(bound - 1e-6)``): the optimum is certified once
   the rounded bound reaches the incumbent. The incumbent is the better of HiGHS's and the
   heuristics' (never nothing).

Chain bound (``chain_lower_bound``; ours)
--------------------------------------------------
Peak ``P_i = s_i + o_i`` (tokens held in the last round ``f_i``), ``s_min = min_i s_i``,
head-room ``h_i = max(0, M - P_i - s_min)``, big requests ``B = {i : 2 P_i > M}`` (``b = |B|``).

*Claim 1.* For any two requests ``i != j`` with ``f_i <= f_j``: ``f_j - f_i >= o_j - h_i``.
Proof: if ``f_j - f_i >= o_j`` this holds as ``h_i >= 0``. Otherwise ``p_j = f_j - o_j < f_i <= f_j``,
so ``j`` covers round ``f_i`` holding ``s_j + (f_i - p_j) = s_j + o_j - (f_j - f_i)`` tokens while
``i`` holds ``P_i``; memory gives ``P_i + s_j + o_j - (f_j - f_i) <= M``, i.e.
``f_j - f_i >= o_j - (M - P_i - s_j) >= o_j - h_i``. []

*Claim 2.* Order ``B`` by finish, ``pi(1..b)``. Then ``f_pi(1) >= o_pi(1)`` and, by Claim 1,
``f_pi(k) >= f_pi(k-1) + o_pi(k) - h_pi(k-1)``; summing the chain,
``sum_{i in B} f_i >= sum_m (b-m+1) o_pi(m) - sum_m (b-m) h_pi(m) = sum_{i in B} h_i + sum_m (b-m+1) x_pi(m)``
with ``x_i = o_i - h_i``. The weights ``b-m+1`` decrease in ``m``, so by the rearrangement
inequality the right side is smallest when ``x`` is sorted ascending; that minimum is a bound
over every order. Every other request has ``f_j >= a_j + o_j``. So
``sum_i (f_i - a_i) >= sum_{i in B} h_i + sum_m (b-m+1) x_(m) - sum_{i in B} a_i + sum_{j not in B} o_j``. []

It uses the integrality that the LP loses (a big request's last round is one round, not a
fraction spread over many), but not the small requests' delay of the chain; measured in
benchmarks/results/kv_certify.md it beats the LP bound on some instances and loses on others.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from servopt.errors import InputError
from servopt.instances.kv_schedule import KVSchedule, KVScheduleInstance, ScheduledRequest
from servopt.solvers.kv_schedule_direct import FORMULATIONS  # the pipeline certifies what the direct build builds


# ----------------------------------------------------------------------------- primal heuristics

@dataclass(frozen=True)
class _Arrays:
    a: np.ndarray
    s: np.ndarray
    o: np.ndarray
    w: np.ndarray
    M: int
    objective: str

    @classmethod
    def of(cls, instance: KVScheduleInstance) -> "_Arrays":
        reqs = instance.requests
        weighted = instance.objective == "weighted_latency"
        return cls(np.array([int(r.arrival) for r in reqs]), np.array([int(r.prompt_tokens) for r in reqs]),
                   np.array([int(r.output_tokens) for r in reqs]),
                   np.array([float(r.weight) if weighted else 1.0 for r in reqs]), instance.memory_tokens,
                   instance.objective)

    def cost(self, starts: np.ndarray) -> float:
        finish = starts + self.o
        if self.objective == "makespan":
            return float(finish.max())
        return float(np.dot(self.w, finish - self.a))


def serial_schedule(arr: _Arrays, order) -> np.ndarray:
    """Serial SGS (module docstring): each request in ``order`` at its earliest fitting start round."""
    from numpy.lib.stride_tricks import sliding_window_view

    horizon = int(arr.a.max() + arr.o.sum() + 2)
    free = np.full(horizon + int(arr.o.max()) + 2, float(arr.M))  # free[t]: tokens still free in round t
    starts = np.zeros(len(arr.o), dtype=np.int64)
    for i in order:
        o, a = int(arr.o[i]), int(arr.a[i])
        ramp = arr.s[i] + np.arange(1, o + 1)
        # windows[t] = free[t .. t+o-1]; a start p needs free[p+1 .. p+o] >= ramp, i.e. windows[p+1] >= ramp
        ok = np.all(sliding_window_view(free, o)[a + 1:] >= ramp, axis=1)
        p = a + int(np.argmax(ok))  # the request alone always fits after everything placed (s+o <= M)
        free[p + 1: p + o + 1] -= ramp
        starts[i] = p
    return starts


def local_search(arr: _Arrays, order: list[int], *, seconds: float, max_passes: int = 50) -> tuple[list[int], np.ndarray, float]:
    """First-improvement search over SGS orders: swap two positions, or move one request elsewhere."""
    best_order = list(order)
    best_starts = serial_schedule(arr, best_order)
    best_cost = arr.cost(best_starts)
    deadline = time.perf_counter() + seconds
    n = len(best_order)
    for _ in range(max_passes):
        improved = False
        for i in range(n):
            for j in range(i + 1, n):
                if time.perf_counter() > deadline:
                    return best_order, best_starts, best_cost
                for kind in ("swap", "move"):
                    cand = list(best_order)
                    if kind == "swap":
                        if arr.o[cand[i]] == arr.o[cand[j]] and arr.a[cand[i]] == arr.a[cand[j]] and arr.s[cand[i]] == arr.s[cand[j]]:
                            continue  # identical requests: same schedule
                        cand[i], cand[j] = cand[j], cand[i]
                    else:
                        cand.insert(i, cand.pop(j))
                    st = serial_schedule(arr, cand)
                    c = arr.cost(st)
                    if c < best_cost - 1e-9:
                        best_order, best_starts, best_cost, improved = cand, st, c, True
        if not improved:
            break
    return best_order, best_starts, best_cost


def _schedule(instance: KVScheduleInstance, starts, method: str) -> KVSchedule:
    rows = tuple(ScheduledRequest(r.id, int(r.arrival), int(p), int(p) + int(r.output_tokens))
                 for r, p in zip(instance.requests, starts))
    return KVSchedule(rows, objective_name=instance.objective, method=method)


def _nonpreemptive(schedule: KVSchedule) -> KVSchedule:
    """Drop preempted attempts: the final starts alone are a feasible non-preemptive schedule."""
    rows = tuple(ScheduledRequest(r.id, r.arrival, r.start, r.finish) for r in schedule.requests)
    return KVSchedule(rows, objective_name=schedule.objective_name, method=schedule.method)


def best_heuristic_schedule(instance: KVScheduleInstance, *, warm_starts: dict[str, KVSchedule] | None = None,
                            heuristic_seconds: float = 2.0, improve_seconds: float = 0.0) -> tuple[str, KVSchedule, float, dict]:
    """The cheapest of SGS(SPT), SGS(FCFS), the given schedules, and local search from the best SGS order;
    then ``improve_seconds`` of ILS + MIP-LNS on it (solvers/kv_schedule_improve.py; 0 = off)."""
    arr = _Arrays.of(instance)
    n = instance.n
    orders = {
        "sgs-spt": sorted(range(n), key=lambda i: (arr.a[i], arr.o[i], i)),
        "sgs-fcfs": sorted(range(n), key=lambda i: (arr.a[i], i)),
    }
    tried: dict[str, float] = {}
    best = None
    best_order = None
    for name, order in orders.items():
        st = serial_schedule(arr, order)
        c = arr.cost(st)
        tried[name] = c
        if best is None or c < best[2]:
            best, best_order = (name, _schedule(instance, st, f"heuristic:{name}"), c), order
    for name, sched in (warm_starts or {}).items():
        sched = _nonpreemptive(sched)
        c = sched.objective_value(instance)
        tried[name] = c
        if c < best[2] - 1e-9:
            best = (name, sched, c)
    if heuristic_seconds > 0 and n > 1:
        t0 = time.perf_counter()
        order, st, c = local_search(arr, best_order, seconds=heuristic_seconds)
        tried["sgs-local-search"] = c
        tried["local_search_seconds"] = round(time.perf_counter() - t0, 3)
        if c < best[2] - 1e-9:
            best = ("sgs-local-search", _schedule(instance, st, "heuristic:sgs-local-search"), c)
    if improve_seconds > 0 and n > 1:
        from servopt.solvers.kv_schedule_improve import improve_schedule

        sched, _ = improve_schedule(instance, best[1], seconds=improve_seconds)
        tried["improve"] = c = sched.objective_value(instance)
        if c < best[2] - 1e-9:
            best = ("improve", sched, c)
    return best[0], best[1], best[2], tried


# ----------------------------------------------------------------------------- pipeline

@dataclass
class CertifyResult:
    """The outcome of ``certify``; ``to_dict`` is the kind's result JSON."""

    formulation: str
    status: str
    objective: float | None
    bound: float | None
    gap: float | None
    schedule: KVSchedule | None
    solve_seconds: float
    build_seconds: float
    heuristic_seconds: float
    solver_seconds: float | None
    nodes: int | None
    horizon: int
    horizon_is_proven: bool
    incumbent_source: str
    heuristics: dict = field(default_factory=dict)
    model_size: dict = field(default_factory=dict)
    warm_start_used: bool = False
    bound_source: str | None = None
    highs_bound: float | None = None
    chain_bound: float | None = None

    @property
    def certified(self) -> bool:
        return self.status == "optimal"

    def to_dict(self, instance: KVScheduleInstance) -> dict:
        out = {
            "kind": "kv_schedule",
            "method": f"ip[{self.formulation}]",
            "formulation": self.formulation,
            "objective_name": instance.objective,
            "status": self.status,
            "objective": self.objective,
            "bound": self.bound,
            "gap": self.gap,
            "solve_seconds": round(self.solve_seconds, 4),
            "solver": "highs",
            "solver_seconds": None if self.solver_seconds is None else round(self.solver_seconds, 4),
            "nodes": self.nodes,
            "horizon": self.horizon,
            "horizon_is_proven": self.horizon_is_proven,
            "build_seconds": round(self.build_seconds, 4),
            "heuristic_seconds": round(self.heuristic_seconds, 4),
            "incumbent_source": self.incumbent_source,
            "bound_source": self.bound_source,
            "highs_bound": self.highs_bound,
            "chain_bound": self.chain_bound,
            "heuristics": self.heuristics,
            "warm_start": {"used": self.warm_start_used, "source": self.incumbent_source},
            "model_size": self.model_size,
        }
        out["requests"] = self.schedule.to_dict()["requests"] if self.schedule is not None else []
        return out

    def to_dataframe(self):
        import pandas as pd

        return self.schedule.to_dataframe() if self.schedule is not None else pd.DataFrame()


def chain_lower_bound(instance: KVScheduleInstance) -> float | None:
    """The chain bound of the module docstring for total latency (None for other objectives)."""
    if instance.objective != "total_latency":
        return None
    arr = _Arrays.of(instance)
    M = arr.M
    peak = arr.s + arr.o
    big = 2 * peak > M
    head = np.maximum(0, M - peak - int(arr.s.min()))
    x = np.sort((arr.o - head)[big])
    b = len(x)
    weights = b - np.arange(b)  # b - m + 1 for m = 1..b
    bound = float(head[big].sum() + np.dot(weights, x) - arr.a[big].sum() + arr.o[~big].sum())
    return bound


def _integral(instance: KVScheduleInstance) -> bool:
    return instance.objective in ("total_latency", "makespan") or all(float(r.weight).is_integer() for r in instance.requests)


def certify(instance: KVScheduleInstance, *, formulation: str = "aggregated", time_limit_s: float, rel_gap: float = 1e-4,
            warm_starts: dict[str, KVSchedule] | None = None, heuristic_seconds: float | None = None,
            horizon: int | None = None, threads: int = 1, seed: int = 0, improve_seconds: float = 0.0) -> CertifyResult:
    """Run the pipeline of the module docstring; the whole run is charged to ``time_limit_s``."""
    from servopt.solvers.highs import relative_gap
    from servopt.solvers.kv_schedule_direct import build_direct, solve_direct, warm_start_vector

    if formulation not in FORMULATIONS:
        raise InputError("--formulation", f"unknown formulation '{formulation}' (known: {', '.join(FORMULATIONS)})")
    if not time_limit_s or time_limit_s <= 0:
        raise InputError("--time-limit", "must be positive")
    if instance.objective == "makespan" and formulation != "time-indexed":
        raise InputError("--formulation", f"'{formulation}' minimises (weighted) latency; for the makespan use time-indexed")
    t0 = time.perf_counter()
    if heuristic_seconds is None:
        # local search is where the incumbent improves most at paper scale (benchmarks/results/kv_certify.md)
        heuristic_seconds = min(10.0, 0.15 * time_limit_s)
    source, incumbent, cost, tried = best_heuristic_schedule(instance, warm_starts=warm_starts,
                                                             heuristic_seconds=heuristic_seconds,
                                                             improve_seconds=improve_seconds)
    heur_s = time.perf_counter() - t0
    cutoff = cost if horizon is None else None
    dm = build_direct(instance, formulation=formulation, horizon=horizon, cutoff=cutoff)
    build_s = dm.build_seconds
    left = max(time_limit_s - (time.perf_counter() - t0), 0.5)
    # integral objective: stop once incumbent - bound < 1, since then the rounded-up bound meets it
    options = {"mip_abs_gap": 1.0 - 1e-6} if _integral(instance) else None
    res, sched = solve_direct(dm, time_limit_s=left, rel_gap=rel_gap, warm_start=incumbent, threads=threads, seed=seed,
                              options=options)
    schedule, objective = incumbent, cost
    if sched is not None:
        c = sched.objective_value(instance)
        if c < objective - 1e-9:
            schedule, objective, source = sched, c, f"highs[{formulation}]"
    bound = res.bound
    if res.status == "infeasible":
        # the incumbent lies inside the windows, so this only happens with a too-short user horizon
        bound = None
    if not dm.horizon_is_proven:
        bound = None  # a horizon below the proven one proves nothing about the true optimum
    chain = chain_lower_bound(instance)
    bound_source = "highs" if bound is not None else None
    if chain is not None and (bound is None or chain > bound):
        bound, bound_source = chain, "chain"
    if bound is not None and _integral(instance):
        bound = float(math.ceil(bound - 1e-6))
    if bound is not None:
        bound = min(bound, objective)
    gap = relative_gap(objective, bound, "min")
    if bound is not None and bound >= objective - 1e-9:
        status = "optimal"
    elif gap is not None and gap <= rel_gap and res.status == "optimal":
        status = "optimal"
    elif res.status == "time_limit":
        status = "time_limit"
    else:
        status = "feasible"
    return CertifyResult(
        formulation=formulation, status=status, objective=objective, bound=bound, gap=gap, schedule=schedule,
        solve_seconds=time.perf_counter() - t0, build_seconds=build_s, heuristic_seconds=heur_s,
        solver_seconds=res.solver_seconds, nodes=res.nodes, horizon=dm.horizon, horizon_is_proven=dm.horizon_is_proven,
        incumbent_source=source, heuristics=tried, model_size=dm.size, bound_source=bound_source,
        highs_bound=res.bound, chain_bound=chain,
        warm_start_used=warm_start_vector(dm, incumbent) is not None,
    )


def lp_bound(instance: KVScheduleInstance, *, formulation: str = "aggregated", cutoff: float | None = None,
             horizon: int | None = None, time_limit_s: float = 60.0) -> tuple[float | None, float, float]:
    """LP relaxation value of ``formulation`` (with the same windows as ``certify``); (value, build s, solve s)."""
    from servopt.solvers.kv_schedule_direct import build_direct, solve_direct

    dm = build_direct(instance, formulation=formulation, horizon=horizon, cutoff=cutoff, relax=True)
    res, _ = solve_direct(dm, time_limit_s=time_limit_s, rel_gap=0.0)
    return (res.objective if res.status == "optimal" else None), dm.build_seconds, res.wall_seconds
