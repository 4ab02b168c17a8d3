"""Solving the batching MILP (models/batching.py) within a time limit, and combinatorial bounds.

``solve_milp`` builds the model for a horizon, passes an optional warm start (a batch sequence,
e.g. the best policy's), runs HiGHS through ``servopt.solvers.highs`` and re-times the extracted
batch sequence exactly (``best_timing``): the reported objective is recomputed from the discrete
decisions, not read from the solver's floating-point times. Goodput is solved lexicographically:
stage 1 maximises the number of SLO-meeting requests, stage 2 minimises total latency with that
number as a floor.

``combinatorial_bound`` is valid for every instance size (no horizon); the bounds and their
arguments:

* every request alone needs ``ceil(P_i/B)`` prefill iterations and ``o_i - 1`` decode iterations,
  each at least ``fixed`` plus its own token and context costs: ``C_i >= a_i + own_i``;
* single-machine relaxation (total latency): in every iteration the variable part of ``tau``
  (``tau - fixed``) is the sum of its participants' own variable costs, so the variable works
  ``W_i`` are processed on one machine of speed 1, preemptively, after ``a_i``; the optimal
  preemptive schedule (shortest remaining processing time, optimal for 1|r_j,pmtn|sum C_j:
  Schrage 1968; Baker, *Introduction to Sequencing and Scheduling*, 1974) bounds ``sum C_i``;
* makespan: for each arrival ``r``, the requests arriving at or after ``r`` need at least
  ``max(ceil(tokens/B), max_i(iterations of i))`` iterations after ``r``, each ``>= fixed``, plus
  their variable work;
* the exact search's order-statistic bound at the root (solvers/batching_search.py);
* goodput: a request whose own minimal TTFT or TPOT already misses the SLO can never meet it.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from servopt.instances.batching import BatchingInstance, BatchSchedule, best_timing


def own_time_ms(inst: BatchingInstance, i: int) -> float:
    r = inst.requests[i]
    it = inst.iteration
    o1 = r.output_tokens - 1
    return (math.ceil(r.prompt_tokens / inst.token_budget) * it.fixed_ms + it.per_prefill_token_ms * r.prompt_tokens
            + o1 * (it.fixed_ms + it.per_decode_token_ms)
            + it.per_context_token_ms * (o1 * r.prompt_tokens + o1 * (o1 - 1) / 2))


def variable_work_ms(inst: BatchingInstance, i: int) -> float:
    r = inst.requests[i]
    it = inst.iteration
    o1 = r.output_tokens - 1
    return (it.per_prefill_token_ms * r.prompt_tokens + it.per_decode_token_ms * o1
            + it.per_context_token_ms * (o1 * r.prompt_tokens + o1 * (o1 - 1) / 2))


def _srpt_sum_completion(releases, works) -> float:
    """sum C_j of the optimal preemptive single-machine schedule (SRPT with release dates)."""
    import heapq

    jobs = sorted(zip(releases, works))
    heap: list[float] = []
    t = 0.0
    total = 0.0
    j = 0
    n = len(jobs)
    while j < n or heap:
        if not heap:
            t = max(t, jobs[j][0])
        while j < n and jobs[j][0] <= t:
            heapq.heappush(heap, jobs[j][1])
            j += 1
        rem = heapq.heappop(heap)
        next_release = jobs[j][0] if j < n else math.inf
        if t + rem <= next_release:
            t += rem
            total += t
        else:
            heapq.heappush(heap, rem - (next_release - t))
            t = next_release
    return total


def combinatorial_bound(inst: BatchingInstance) -> float:
    """A valid bound on the optimum (module docstring): a lower bound, or for goodput an upper bound."""
    n = inst.n
    reqs = inst.requests
    it = inst.iteration
    own = [own_time_ms(inst, i) for i in range(n)]
    if inst.objective == "goodput":
        count = 0
        for i, r in enumerate(reqs):
            ttft = math.ceil(r.prompt_tokens / inst.token_budget) * it.fixed_ms + it.per_prefill_token_ms * r.prompt_tokens
            o1 = r.output_tokens - 1
            tpot = (own[i] - ttft) / o1 if o1 else 0.0
            if inst.meets_slo(ttft, tpot):
                count += 1
        return float(count)
    if inst.objective == "makespan":
        best = max(r.arrival_ms + own[i] for i, r in enumerate(reqs))
        for r0 in sorted({r.arrival_ms for r in reqs}):
            group = [i for i, r in enumerate(reqs) if r.arrival_ms >= r0]
            tokens = sum(reqs[i].prompt_tokens + reqs[i].output_tokens - 1 for i in group)
            iters = max(math.ceil(tokens / inst.token_budget),
                        max(math.ceil(reqs[i].prompt_tokens / inst.token_budget) + reqs[i].output_tokens - 1 for i in group))
            best = max(best, r0 + iters * it.fixed_ms + sum(variable_work_ms(inst, i) for i in group))
        return max(best, _order_statistic_bound(inst, True))
    own_sum = sum(own)
    srpt = _srpt_sum_completion([r.arrival_ms for r in reqs], [variable_work_ms(inst, i) for i in range(n)])
    return max(own_sum, srpt - sum(r.arrival_ms for r in reqs), _order_statistic_bound(inst, False))


def _order_statistic_bound(inst: BatchingInstance, makespan: bool) -> float:
    """The exact search's root bound (solvers/batching_search.py ``_remaining_bound``) from time 0."""
    from servopt.solvers.batching_search import _remaining_bound

    n = inst.n
    return _remaining_bound(inst, [0] * n, [0] * n, [False] * n, 0.0, makespan)


@dataclass
class MilpOutcome:
    schedule: BatchSchedule | None
    status: str
    bound: float | None  # on the optimum over schedules of at most `horizon` iterations
    horizon: int
    horizon_proven: bool
    seconds: float
    nodes: int | None = None
    stages: list = field(default_factory=list)


def solve_milp(instance: BatchingInstance, *, time_limit_s: float, rel_gap: float = 1e-4, horizon: int | None = None,
               warm: list | None = None, cutoff: float | None = None, lower_bound: float | None = None) -> MilpOutcome:
    """Build, warm-start and solve the MILP; the deadline covers building (module docstring).

    ``cutoff`` (a known schedule's objective) and ``lower_bound`` (a valid bound) become rows of the
    model; with a cutoff, a proven-infeasible MILP means no schedule beats the known one
    (status ``"cutoff_optimal"``).
    """
    from servopt.models import batching as model_mod
    from servopt.solvers.highs import solve

    t0 = time.perf_counter()
    deadline = t0 + time_limit_s
    inst = instance
    stages = []
    if inst.objective == "goodput":
        m = model_mod.build(inst, horizon=horizon, stage="goodput", cutoff=cutoff)
        ws = model_mod.warm_start(m, inst, warm) if warm else None
        left = deadline - time.perf_counter()
        if left <= 0.2:
            return MilpOutcome(None, "time_limit", None, m._info.horizon, m._info.horizon_proven, time.perf_counter() - t0)
        r1 = solve(m, time_limit_s=left * (0.6 if left > 2 else 1.0), rel_gap=0.0, warm_start=ws)
        stages.append({"stage": "max goodput", "status": r1.status, "objective": r1.objective, "bound": r1.bound,
                       "seconds": round(r1.wall_seconds, 3)})
        if r1.status == "infeasible" and cutoff is not None:
            return MilpOutcome(None, "cutoff_optimal", float(cutoff), m._info.horizon, m._info.horizon_proven,
                               time.perf_counter() - t0, r1.nodes, stages)
        if not r1.has_solution:
            return MilpOutcome(None, r1.status, _goodput_bound(r1.bound, inst.n), m._info.horizon,
                               m._info.horizon_proven, time.perf_counter() - t0, r1.nodes, stages)
        g_star = int(round(r1.objective))
        stage1_batches = model_mod.extract(m)
        m2 = model_mod.build(inst, horizon=horizon, stage="latency")
        m2.goodput_floor = g_star
        left = deadline - time.perf_counter()
        sched = best_timing(inst, stage1_batches, method="milp")
        status = r1.status
        if left > 0.2:
            ws2 = model_mod.warm_start(m2, inst, stage1_batches)
            r2 = solve(m2, time_limit_s=left, rel_gap=rel_gap, warm_start=ws2)
            stages.append({"stage": "min total latency at that goodput", "status": r2.status, "objective": r2.objective,
                           "bound": r2.bound, "seconds": round(r2.wall_seconds, 3)})
            if r2.has_solution:
                cand = best_timing(inst, model_mod.extract(m2), method="milp")
                if _key(inst, cand) < _key(inst, sched):
                    sched = cand
            if r1.status == "optimal" and r2.status != "optimal":
                status = "time_limit"
        else:
            status = "time_limit" if r1.status == "optimal" else r1.status
        return MilpOutcome(sched, status, _goodput_bound(r1.bound, inst.n), m._info.horizon, m._info.horizon_proven,
                           time.perf_counter() - t0, r1.nodes, stages)
    m = model_mod.build(inst, horizon=horizon, cutoff=cutoff, lower_bound=lower_bound)
    ws = model_mod.warm_start(m, inst, warm) if warm else None
    left = deadline - time.perf_counter()
    if left <= 0.2:
        return MilpOutcome(None, "time_limit", None, m._info.horizon, m._info.horizon_proven, time.perf_counter() - t0)
    r = solve(m, time_limit_s=left, rel_gap=rel_gap, warm_start=ws)
    stages.append({"stage": inst.objective, "status": r.status, "objective": r.objective, "bound": r.bound,
                   "seconds": round(r.wall_seconds, 3), "warm_start_accepted": r.extra.get("warm_start_accepted")})
    sched = best_timing(inst, model_mod.extract(m), method="milp") if r.has_solution else None
    if r.status == "infeasible" and cutoff is not None:
        return MilpOutcome(None, "cutoff_optimal", float(cutoff), m._info.horizon, m._info.horizon_proven,
                           time.perf_counter() - t0, r.nodes, stages)
    return MilpOutcome(sched, r.status, r.bound, m._info.horizon, m._info.horizon_proven, time.perf_counter() - t0,
                       r.nodes, stages)


def _goodput_bound(bound, n):
    if bound is None:
        return None
    return float(min(n, math.floor(bound + 1e-6)))


def _key(inst: BatchingInstance, sched: BatchSchedule):
    v = sched.objective_value(inst)
    return (-v, sched.total_latency_ms(inst)) if inst.objective == "goodput" else (v,)
