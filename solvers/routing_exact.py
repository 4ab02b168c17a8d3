r"""Exact hindsight optimum of a small ``routing`` instance: assignments enumerated as a subset DP
over replicas, each part solved by the one-replica exact branch-and-bound, with bound pruning.

Semantics: instances/routing.py (K replicas, each the ``kv_schedule`` round model of Jaillet et
al., arXiv 2502.07115, §2). Symbols as in the code: requests ``0..n-1``, a subset ``T`` is a bit
mask, replica ``k`` has memory ``M_k`` and *class* ``c(k)`` (replicas with equal memory share a
class), ``OPT_c(T)`` is the optimum of the ``kv_schedule`` instance "requests ``T`` on one replica
of memory ``M_c``" (``+inf`` when some request of ``T`` does not fit alone), and ``(+)`` is ``+``
for total latency, ``max`` for the makespan.

Decomposition
-------------
Once the assignment is fixed the replicas do not interact, so

    OPT = min over partitions (T_1, .., T_K) of the requests of  (+)_k OPT_{c(k)}(T_k).

The minimum over partitions is the subset DP ``F_k(S) = min_{T subset of S} F_{k-1}(S \ T) (+) V_k(T)``,
``F_0(S) = 0 if S is empty else +inf``, ``OPT = F_K(all)`` (3^n pairs per replica). It enumerates
every assignment, so it is exact given exact ``V_k = OPT_{c(k)}``; with lower bounds in place of
some ``OPT`` it gives a lower bound, with upper bounds (feasible schedules) a feasible schedule.

Bounds and pruning (which ``OPT_c(T)`` are worth solving)
---------------------------------------------------------
``LB_c(T)``: the memory-time volume bound (Jaillet et al., Lemmas 4.4-4.7, as in analysis/kv_bounds.py:
the k-th finisher of ``T`` ends no earlier than the k-th finish of the shortest-remaining-volume-first
fluid schedule of the volumes on a server of speed ``M_c``, each released at its arrival
(solvers/routing_search.py), and no earlier than the k-th smallest ``a_i + o_i``), the chain bound of
solvers/kv_schedule_certify.py, lifted along subsets: removing request ``i`` from an optimal schedule
of ``T`` leaves a feasible schedule of ``T \ {i}``, so ``OPT(T) >= OPT(T \ {i}) + o_i`` (total
latency; ``OPT(T) >= OPT(T \ {i})`` for the makespan), applied with the best known value of
``T \ {i}`` (exact once solved). ``G_{-k}(S)``: the DP above over the replicas other than ``k`` on
the ``LB`` values, a lower bound on the cost of serving ``S`` there. With an incumbent of cost
``U`` (the best online router's schedule, given by the caller), a subset ``T`` on replica ``k`` can
be part of a better routing only if ``LB_c(T) (+) G_{-k}(all \ T) < U`` (integer objectives:
``<= U - 1``); only such ``(c, T)`` are solved exactly, smallest first, each test re-done with the
lifted bound just before its solve. Every partition using a skipped subset costs ``>= U``.

Symmetry. Identical replicas (equal memory) share one class, so each ``OPT_c(T)`` is solved once
for all of them; the DP's permuted partitions then cost nothing but arithmetic.

Per part: ``solvers/kv_schedule_bnb.branch_and_bound`` (the compiled search, LP policy ``none``:
at n <= 12 per part the combinatorial bounds were faster than building the LP, measured 1-5 ms
per part of 10 requests). A part whose search hits the time limit contributes its bound to the
lower DP and its incumbent to the upper DP, so the result stays valid (status ``time_limit``).

Threshold. A part ``T`` on replica ``k`` matters only if ``OPT_c(T) <= theta = U - 1 - G_{-k}(all \ T)``
(makespan: ``U - 1``). Its search starts from a *stand-in* incumbent of cost ``theta + 1`` (finish
rounds with that objective, never returned as a schedule), so it prunes every node whose bound
reaches ``theta + 1``: it either finds the part's optimum below ``theta + 1`` or proves
``OPT_c(T) >= theta + 1``, which is then the part's lower value (the part is settled without a schedule).
Each part's search is capped at a quarter of the time left, so one hard part cannot use the whole limit.
For the makespan the search gets ``MAKESPAN_SEARCH_SECONDS`` first (its bound is weak there: measured
tails of 0.4-1.5 s on parts of 6-8 requests); a part it leaves open goes to the time-indexed
``kv_schedule`` MILP with horizon ``theta`` (``_makespan_decision``): infeasible proves
``OPT_c(T) >= theta + 1``, an optimal solution is the part's optimum (a better schedule fits the horizon
too), a stopped solve still gives ``min(its bound, theta + 1)`` as a valid lower value.

Certificate: ``bound = F_K(all)`` on the lower values (exact, a part's search bound, or the lifted
``LB``), ``objective`` = the better of ``U`` and ``F_K(all)`` on the solved parts' schedules;
``optimal`` when they meet.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from servopt.errors import InputError
from servopt.instances.kv_schedule import KVSchedule, KVScheduleInstance, ScheduledRequest
from servopt.instances.routing import RoutingInstance, RoutingSchedule, make_schedule

MAX_EXACT_N = 12
INF = math.inf


@dataclass
class ExactResult:
    status: str
    objective: float
    bound: float
    schedule: RoutingSchedule
    solve_seconds: float
    parts_solved: int
    parts_pruned: int
    parts_total: int
    incumbent_source: str
    stats: dict = field(default_factory=dict)

    @property
    def gap(self) -> float:
        return 0.0 if self.objective <= self.bound + 1e-9 else (self.objective - self.bound) / max(abs(self.objective), 1e-9)


def _combine(objective):
    return (lambda x, y: x if x > y else y) if objective == "makespan" else (lambda x, y: x + y)


def subset_dp(values, n: int, objective: str, with_choice: bool = False):
    """``F_K`` of the module docstring over every subset; ``values[k][T]`` per replica ``k``.

    Returns the table ``F`` (and the per-replica choice tables to rebuild an argmin partition).
    Vectorised per part ``T``: every ``S = T | U`` with ``U`` disjoint from ``T`` at once (3^n pairs in all)."""
    import numpy as np

    full = 1 << n
    masks = np.arange(full, dtype=np.int64)
    F = np.full(full, INF)
    F[0] = 0.0
    choices = []
    for V in values:
        V = np.asarray(V, dtype=float)
        G = np.full(full, INF)
        choice = np.zeros(full, dtype=np.int64)
        for T in np.nonzero(np.isfinite(V))[0]:
            U = masks[(masks & T) == 0]
            f = F[U]
            keep = np.isfinite(f)
            U, f = U[keep], f[keep]
            cand = np.maximum(f, V[T]) if objective == "makespan" else f + V[T]
            S = U | T
            better = cand < G[S]
            G[S[better]] = cand[better]
            choice[S[better]] = T
        F = G
        choices.append(choice)
    F = F.tolist()
    return (F, [c.tolist() for c in choices]) if with_choice else F


def _partition(choices, n: int) -> list[int]:
    """Per replica its mask in the DP's argmin partition of all requests."""
    S = (1 << n) - 1
    out = [0] * len(choices)
    for k in range(len(choices) - 1, -1, -1):
        T = choices[k][S]
        out[k] = T
        S ^= T
    return out


def _volume_bound(a, s, o, M, members, objective) -> float:
    """Volume bound of the module docstring for requests ``members`` on one replica of memory ``M``, with
    each volume released at its own arrival and served shortest-remaining-first (solvers/routing_search.py,
    ``srpt_finishes``: the k-th fluid finish is a lower bound on the k-th finish)."""
    from servopt.solvers.routing_search import srpt_finishes

    fluid = sorted(srpt_finishes([a[i] for i in members], [s[i] * o[i] + o[i] * (o[i] + 1) // 2 for i in members], M))
    own = sorted(a[i] + o[i] for i in members)
    if objective == "makespan":
        return float(max(fluid[-1], own[-1]))
    return float(sum(max(f, c) for f, c in zip(fluid, own)) - sum(a[i] for i in members))


_THRESHOLD = "threshold"
MAKESPAN_SEARCH_SECONDS = 0.5  # makespan parts: the one-replica search first, then the MILP (measured tails)


def _makespan_decision(sub: KVScheduleInstance, theta: int, seconds: float):
    """Is there a schedule of the part with makespan <= ``theta``? The time-indexed kv_schedule MILP with
    horizon ``theta`` (every start window ends at ``theta - o_i``): infeasible means ``OPT >= theta + 1``; an
    optimal solution of value ``v`` means ``OPT = v`` (a better schedule would also fit the horizon).
    Returns (settled, lower value, schedule or None)."""
    from servopt.errors import InputError as _InputError
    from servopt.solvers.kv_schedule_direct import build_direct, solve_direct

    try:
        dm = build_direct(sub, formulation="time-indexed", horizon=theta)
    except _InputError:  # some request cannot finish by theta
        return True, float(theta + 1), None
    res, sched = solve_direct(dm, time_limit_s=max(0.05, seconds), rel_gap=0.0)
    if res.status == "infeasible":
        return True, float(theta + 1), None
    if res.status == "optimal" and sched is not None:
        v = sched.objective_value(sub)
        return True, v, sched
    bound = res.bound if res.bound is not None else 0.0
    return False, min(float(math.ceil(bound - 1e-6)), float(theta + 1)), sched


def _threshold_schedule(sub: KVScheduleInstance, cost: float) -> KVSchedule:
    """A stand-in incumbent of objective exactly ``cost`` (not a feasible schedule: it is never returned as one).

    The one-replica search prunes every node whose bound reaches its incumbent's cost; started from this
    stand-in it either finds a schedule below ``cost`` (then optimal for the part) or proves that none
    exists, so ``OPT >= cost``. ``cost`` exceeds the part's lower bound, so every start below is >= arrival."""
    reqs = sub.requests
    starts = [int(r.arrival) for r in reqs]
    if sub.objective == "makespan":
        starts[0] = int(cost) - reqs[0].output_tokens
    else:
        starts[0] += int(cost) - sum(r.output_tokens for r in reqs)
    rows = tuple(ScheduledRequest(r.id, int(r.arrival), p, p + r.output_tokens) for r, p in zip(reqs, starts))
    return KVSchedule(rows, objective_name=sub.objective, method="threshold")


def _chain_bound(a, s, o, M, members) -> float:
    """The chain bound of solvers/kv_schedule_certify.py (``chain_lower_bound``, proved there) for
    requests ``members`` on one replica of memory ``M``: big requests (``2 (s_i + o_i) > M``) finish one
    after another up to their head-rooms (the first no earlier than the big ones' first arrival ``e_min``,
    as kv_schedule_bnb's residual form), the others wait at least their own length."""
    s_min = min(s[i] for i in members)
    big = [i for i in members if 2 * (s[i] + o[i]) > M]
    head = {i: max(0, M - s[i] - o[i] - s_min) for i in big}
    x = sorted(o[i] - head[i] for i in big)
    b = len(x)
    if not big:
        return float(sum(o[i] for i in members))
    e_min = min(a[i] for i in big)  # the first big finisher starts no earlier (kv_schedule_bnb's shift)
    return float(b * e_min + sum(head.values()) + sum((b - m) * x[m] for m in range(b)) - sum(a[i] for i in big)
                 + sum(o[i] for i in members if i not in head))


def solve_exact(instance: RoutingInstance, *, time_limit_s: float, incumbents: dict[str, RoutingSchedule] | None = None,
                part_lp_policy: str = "none", improve_seconds: float = 1.0) -> ExactResult:
    """The exact method of the module docstring; ``incumbents``: feasible schedules to start from."""
    from servopt.solvers.kv_schedule_bnb import branch_and_bound

    t0 = time.perf_counter()
    deadline = t0 + time_limit_s
    n, K = instance.n, instance.num_replicas
    if n > MAX_EXACT_N:
        raise InputError("--formulation", f"the exact subset method handles n <= {MAX_EXACT_N} requests, got {n}; "
                                          "use the default (search) for larger instances")
    obj = instance.objective
    comb = _combine(obj)
    reqs = instance.requests
    a = [int(r.arrival) for r in reqs]
    s = [int(r.prompt_tokens) for r in reqs]
    o = [int(r.output_tokens) for r in reqs]
    full = 1 << n
    mems = sorted({rep.memory_tokens for rep in instance.replicas})
    cls = [mems.index(rep.memory_tokens) for rep in instance.replicas]
    C = len(mems)
    fits = [[s[i] + o[i] <= mems[c] for i in range(n)] for c in range(C)]

    # incumbent U
    best_cost, best_sched, best_src = INF, None, "none"
    for name, sch in (incumbents or {}).items():
        c = sch.objective_value(instance)
        if c < best_cost - 1e-9:
            nonpre = make_schedule(instance, sch.replica_index(instance), sch.starts(instance), method=f"incumbent:{name}")
            best_cost, best_sched, best_src = c, nonpre, name

    if best_sched is not None and improve_seconds > 0 and n > 1:
        from servopt.solvers.routing_search import improve

        better, _ = improve(instance, best_sched, seconds=min(improve_seconds, 0.2 * time_limit_s), anneal=False)
        c = better.objective_value(instance)
        if c < best_cost - 1e-9:
            best_cost, best_sched, best_src = c, better, "routing-search"

    # LB_c(T), lifted along subsets (masks increase numerically, so T \ {i} comes first)
    lower = [[0.0] * full for _ in range(C)]
    members_of = [[i for i in range(n) if T >> i & 1] for T in range(full)]
    for c in range(C):
        L = lower[c]
        for T in range(1, full):
            mem = members_of[T]
            if not all(fits[c][i] for i in mem):
                L[T] = INF
                continue
            v = _volume_bound(a, s, o, mems[c], mem, obj)
            if obj == "total_latency" and len(mem) > 1:
                v = max(v, _chain_bound(a, s, o, mems[c], mem))
            for i in mem:
                u = L[T ^ (1 << i)]
                lifted = u + o[i] if obj != "makespan" else max(u, a[i] + o[i])
                if lifted > v:
                    v = lifted
            L[T] = v
    exact = [dict() for _ in range(C)]  # T -> (value, bound, KVSchedule)
    upper = [[INF] * full for _ in range(C)]
    for c in range(C):
        upper[c][0] = 0.0
        for i in range(n):
            if fits[c][i]:  # one request alone starts at its arrival
                T = 1 << i
                v = float(o[i]) if obj != "makespan" else float(a[i] + o[i])
                lower[c][T] = upper[c][T] = v
                exact[c][T] = (v, v, None)

    # G_{-k}: DP over the other replicas on the lower bounds (one per class: replicas of a class are alike)
    rest = {}
    for c in range(C):
        k0 = cls.index(c)
        rest[c] = subset_dp([lower[cls[k]] for k in range(K) if k != k0], n, obj)
    ALL = full - 1
    integral = True

    def promising(c, T):
        if best_cost == INF:
            return True
        v = comb(lower[c][T], rest[c][ALL ^ T])
        return v < best_cost - (1.0 - 1e-6 if integral else 1e-9)

    cands = sorted(((c, T) for c in range(C) for T in range(1, full)
                    if lower[c][T] < INF and T not in exact[c] and promising(c, T)),
                   key=lambda ct: (bin(ct[1]).count("1"), ct[1], ct[0]))
    parts_total = sum(1 for c in range(C) for T in range(1, full) if lower[c][T] < INF)
    solved = pruned = pruned_by_search = unresolved = mip_settled = 0
    timed_out = False
    size_now = 0

    def refresh_incumbent():
        nonlocal best_cost, best_sched, best_src
        F, choices = subset_dp([upper[cls[k]] for k in range(K)], n, obj, with_choice=True)
        if F[ALL] < best_cost - 1e-9:
            parts = _partition(choices, n)
            best_cost, best_sched, best_src = F[ALL], _assemble(parts), "routing-exact"

    def _assemble(parts):
        replica_of = [0] * n
        starts = [0] * n
        for k, T in enumerate(parts):
            c = cls[k]
            mem = members_of[T]
            for i in mem:
                replica_of[i] = k
            if not mem:
                continue
            sched = exact[c][T][2]
            if sched is None:  # a single request: starts at its arrival
                starts[mem[0]] = a[mem[0]]
            else:
                by_id = {r.id: r.start for r in sched.requests}
                for i in mem:
                    starts[i] = by_id[reqs[i].id]
        return make_schedule(instance, replica_of, starts, method="routing-exact")

    for c, T in cands:
        size = bin(T).count("1")
        if size != size_now:
            if size_now and any(exact[cc] for cc in range(C)):
                refresh_incumbent()
            size_now = size
        # lift with what is now known about T's subsets, then re-test
        L = lower[c][T]
        for i in members_of[T]:
            u = lower[c][T ^ (1 << i)]
            L = max(L, u + o[i] if obj != "makespan" else max(u, a[i] + o[i]))
        lower[c][T] = L
        if not promising(c, T):
            pruned += 1
            continue
        left = deadline - time.perf_counter()
        if left <= 0.05:
            timed_out = True
            break
        sub = instance.replica_instance(cls.index(c), members_of[T])
        # the part matters only below theta + 1 (module docstring, "Threshold"): a stand-in incumbent of that cost
        theta = None
        if best_cost < INF:
            theta = best_cost - 1 - (rest[c][ALL ^ T] if obj != "makespan" else 0.0)
        stand_in = _threshold_schedule(sub, theta + 1) if theta is not None else None
        cap = max(0.5, left / 4)  # one hard part must not eat the whole limit
        first_cap = min(left, cap) if obj != "makespan" or theta is None else min(left, cap, MAKESPAN_SEARCH_SECONDS)
        res = branch_and_bound(sub, time_limit_s=first_cap, heuristic_seconds=0.0, lp_policy=part_lp_policy,
                               incumbent=stand_in, incumbent_source=_THRESHOLD)
        lower[c][T] = max(lower[c][T], res.bound)
        solved += 1
        if res.incumbent_source != _THRESHOLD:
            upper[c][T] = res.objective
            exact[c][T] = (res.objective, res.bound, res.schedule)
        if res.status != "optimal" and first_cap < min(left, cap):
            # makespan: a part the search did not settle quickly goes to the MILP with horizon theta (module docstring)
            settled, value, sched = _makespan_decision(sub, int(theta), min(left, cap) - first_cap)
            lower[c][T] = max(lower[c][T], value)
            if sched is not None and sched.objective_value(sub) < upper[c][T]:
                upper[c][T] = sched.objective_value(sub)
                exact[c][T] = (upper[c][T], lower[c][T], sched)
            if settled:
                mip_settled += 1
                res = None
        if res is not None and res.incumbent_source == _THRESHOLD and res.status == "optimal":
            pruned_by_search += 1  # nothing below theta + 1: res.bound is a valid bound, no schedule
        if res is not None and res.status != "optimal":
            unresolved += 1
    if any(exact[cc] for cc in range(C)):
        refresh_incumbent()
    if best_sched is None:
        raise InputError("incumbents", "the exact method needs a starting schedule when it cannot finish")
    # ``lower`` holds a valid bound for every part, so this DP bounds every partition; when every candidate
    # was settled it meets the incumbent (module docstring, "Certificate")
    F_low = subset_dp([lower[cls[k]] for k in range(K)], n, obj)
    bound = min(F_low[ALL], best_cost)
    if integral and bound < INF:
        bound = float(math.ceil(bound - 1e-6))
    bound = min(bound, best_cost)
    status = "optimal" if bound >= best_cost - 1e-9 else "time_limit"
    return ExactResult(status=status, objective=best_cost, bound=bound, schedule=best_sched,
                       solve_seconds=time.perf_counter() - t0, parts_solved=solved, parts_pruned=pruned,
                       parts_total=parts_total, incumbent_source=best_src,
                       stats={"candidates": len(cands), "classes": C, "settled_by_threshold": pruned_by_search,
                              "parts_unresolved": unresolved, "stopped_early": timed_out,
                              "settled_by_milp": mip_settled})
