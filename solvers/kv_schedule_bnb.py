r"""Exact combinatorial branch-and-bound for ``kv_schedule`` (issue 3: n <= 12 proven in seconds).

No LP: a depth-first search over *start rounds in chronological order* (time-indexed branching),
with a memo of visited states, a symmetry rule, and a memory-volume bound on the unstarted
requests. Semantics as in ``models/kv_schedule.py`` (issue 3): request ``i`` started at ``p_i >= a_i``
holds ``s_i + (t - p_i)`` tokens in rounds ``t = p_i+1 .. p_i+o_i``, total per round ``<= M``.

Why not branch over serial-SGS orders
-------------------------------------
For constant demands the left-shift argument says some optimum is an *active* schedule, reached
by the serial SGS from some order. It does not carry over to these ramps: moving a start from
``p`` to ``p-1`` raises the request's demand by one token in every round ``p .. p+o-1`` (it is one
round older there), so a left shift can break feasibility in rounds the request already covered.
We have no proof that SGS orders contain an optimum, so the search branches on start rounds.

Search (all symbols as in the code)
-----------------------------------
A node is a *decision round* ``t``, the set ``U`` of unstarted requests, the load ``load[t']`` that
the started requests hold in every round ``t' > t``, and the cost ``cost`` of the started requests
(their finishes are fixed: ``f_i = p_i + o_i``). At round ``t`` the candidates are the unstarted
requests whose ramp fits on top of ``load`` when started at ``t``; the search takes them one by one
(shortest output first) and branches *start at t* / *not at t*. After the last candidate it jumps to
the next decision round ``t' = min_{j in U} e_j``, where ``e_j`` is the earliest round ``>= t+1``
(and ``>= a_j``) at which ``j``'s ramp fits on top of ``load``.

*Completeness.* Every feasible schedule is reached: its starts at round ``t`` are a subset of the
candidates (a request that starts at ``t`` in a feasible schedule fits on top of a subset of the
other requests' load, hence on top of the load of those started before ``t``), and no request
starts in a skipped round ``t < t'' < t'``: loads only grow as requests are added, so a ramp that
does not fit on top of ``load`` in round ``t''`` fits on top of no completion either.

*Symmetry.* Requests with equal ``(a, s, o, w)`` are interchangeable (swapping their starts keeps
every round's memory and the cost); the search only lets such a request start when all its
lower-indexed twins have started (at an earlier round, or earlier at the same round).

*Dominance memo.* For every set ``U`` the search keeps up to ``memo_per_set`` fully explored decision
nodes ``(t_A, load_A, cost_A)``. A new node ``(t_B, U, load_B, cost_B)`` is dropped when a kept one has
``t_A <= t_B``, ``cost_A <= cost_B`` and ``load_A[r] <= load_B[r]`` for every round ``r > t_B``: any
completion of B (all its starts ``>= t_B``, so only rounds ``> t_B`` matter) is feasible from A at
the same added cost, and A's subtree was searched completely (or pruned against an incumbent no
worse than what it held), so B holds nothing better than the incumbent. A node is kept only after
its subtree is done: otherwise an ancestor would prune its own all-deferred branch, which reaches
the same ``U`` and load at a later round (the tiny brute-force tests caught exactly that).

Lower bound at a node (memory-time volume on the residual; after analysis/kv_bounds.py)
---------------------------------------------------------------------------------------
Each unstarted ``j`` finishes at ``f_j >= L_j = e_j + o_j`` (``e_j`` as above, with ``e_j >= t`` for
a candidate not yet decided at ``t``). Its volume ``v_j = s_j o_j + o_j (o_j + 1) / 2`` lies in rounds
``t+1 .. f_j``, where the free capacity is ``free[t'] = M - load[t']``. So the k unstarted requests
that finish first need the k smallest volumes ``V_k`` within rounds ``t+1 .. f_(k)``:
``f_(k) >= tau_k``, the first round at which the cumulative free capacity reaches ``V_k``; and
``f_(k) >= L_(k)``, the k-th smallest ``L`` (the first k to finish include one with ``L >= L_(k)``).
Hence (the same argument as the volume bound of Jaillet et al. arXiv 2502.07115 Lemmas 4.4-4.7
used in analysis/kv_bounds.py, here on the residual capacity):

    total latency    >= cost + sum_k max(tau_k, L_(k)) - sum_{j in U} a_j   (by_volume; see below),
    makespan         >= max(cost, tau_|U|, max_j L_j),
    weighted latency >= cost + sum_{j in U} w_j (L_j - a_j).

*Chain bounds* (total latency; the chain bound of solvers/kv_schedule_certify.py, proved there,
applied to the residual). Let ``B = {j in U : 2 P_j > M}`` with peak ``P_j = s_j + o_j``, ``b = |B| >= 2``,
``h_j = max(0, M - P_j - s_min)`` with ``s_min = min_{j in B} s_j``, ``x_j = o_j - h_j`` and
``e_min = min_{j in B} e_j``. Claim 1 there (for ``f_i <= f_j``: ``f_j - f_i >= o_j - h_i``) holds in
every feasible schedule and only uses that ``j`` has ``s_j >= s_min``. Order ``B`` by finish ``pi(1..b)``:
``f_pi(1) >= e_min + o_pi(1)`` and ``f_pi(k) >= f_pi(k-1) + o_pi(k) - h_pi(k-1)``, so

    by_chain    = b e_min + sum_{j in B} h_j + sum_m (b-m+1) x_(m) + sum_{j in U \ B} L_j
                  (x ascending; the rearrangement step of certify's Claim 2, shifted by e_min);
    by_position = sum_{j in U \ B} L_j + sum_k max(e_min + O_k - H_{k-1}, L^B_(k)),

where ``O_k`` is the sum of the k smallest ``o`` in ``B``, ``H_{k-1}`` the sum of the k-1 largest ``h``
in ``B`` and ``L^B_(k)`` the k-th smallest ``L`` in ``B``: the chain gives
``f_pi(k) >= e_min + sum_{m<=k} o_pi(m) - sum_{m<k} h_pi(m) >= e_min + O_k - H_{k-1}`` whatever the
order, and ``f_pi(k) >= L^B_(k)`` as for the volume bound. The total-latency bound is
``cost + max(by_volume, by_chain, by_position) - sum_{j in U} a_j``.

A node is pruned when its bound (rounded up for integer objectives) is not below the incumbent.
The incumbent starts from the caller's schedule (SGS + local search and the online policies of
``solvers/kv_schedule_certify.best_heuristic_schedule``). When the search finishes, the incumbent
is optimal; at the time limit the reported bound is the root node's bound (no better, but valid).
"""
from __future__ import annotations

import math
import time

import numpy as np
from dataclasses import dataclass, field

from servopt.instances.kv_schedule import KVSchedule, KVScheduleInstance, ScheduledRequest

FORMULATIONS = ("branch-and-bound",)


class _TimeUp(Exception):
    pass


@dataclass
class BnBResult:
    """The outcome of ``branch_and_bound``; ``to_dict`` is the kind's result JSON."""

    status: str
    objective: float
    bound: float
    gap: float
    schedule: KVSchedule
    solve_seconds: float
    search_seconds: float
    heuristic_seconds: float
    nodes: int
    memo_hits: int
    incumbent_source: str
    horizon: int
    heuristics: dict = field(default_factory=dict)

    def to_dict(self, instance: KVScheduleInstance) -> dict:
        out = {
            "kind": "kv_schedule",
            "method": "branch-and-bound",
            "formulation": "branch-and-bound",
            "objective_name": instance.objective,
            "status": self.status,
            "objective": self.objective,
            "bound": self.bound,
            "bound_source": "branch-and-bound",
            "gap": self.gap,
            "solve_seconds": round(self.solve_seconds, 4),
            "solver": "servopt-bnb",
            "solver_seconds": round(self.search_seconds, 4),
            "nodes": self.nodes,
            "memo_hits": self.memo_hits,
            "horizon": self.horizon,
            "horizon_is_proven": True,
            "heuristic_seconds": round(self.heuristic_seconds, 4),
            "incumbent_source": self.incumbent_source,
            "heuristics": self.heuristics,
            "warm_start": {"used": True, "source": self.incumbent_source},
            "model_size": {},
        }
        out["requests"] = self.schedule.to_dict()["requests"]
        return out

    def to_dataframe(self):
        return self.schedule.to_dataframe()


def _integral(instance: KVScheduleInstance) -> bool:
    return instance.objective in ("total_latency", "makespan") or all(float(r.weight).is_integer() for r in instance.requests)


def branch_and_bound(instance: KVScheduleInstance, *, time_limit_s: float, incumbent: KVSchedule | None = None,
                     incumbent_source: str = "given", heuristic_seconds: float = 0.5,
                     memo_limit: int = 3_000_000, memo_per_set: int = 64) -> BnBResult:
    """Exact optimum by the search of the module docstring (incumbent and a valid bound at the limit).

    ``incumbent``: a feasible non-preemptive schedule to start from; when None, the SGS and
    local-search heuristics of ``solvers/kv_schedule_certify`` provide one (within ``heuristic_seconds``).
    """
    from servopt.solvers.kv_schedule_certify import best_heuristic_schedule

    t0 = time.perf_counter()
    reqs = instance.requests
    n = len(reqs)
    obj = instance.objective
    M = int(instance.memory_tokens)
    a = [int(r.arrival) for r in reqs]
    s = [int(r.prompt_tokens) for r in reqs]
    o = [int(r.output_tokens) for r in reqs]
    w = [float(r.weight) if obj == "weighted_latency" else 1.0 for r in reqs]
    vol = [s[j] * o[j] + o[j] * (o[j] + 1) // 2 for j in range(n)]
    peak = [s[j] + o[j] for j in range(n)]
    integral = _integral(instance)

    name, sched, cost, tried = best_heuristic_schedule(
        instance, warm_starts={incumbent_source: incumbent} if incumbent is not None else None,
        heuristic_seconds=heuristic_seconds)
    heur_s = time.perf_counter() - t0
    by_id = {r.id: r.start for r in sched.requests}
    best_cost = [float(cost)]
    best_starts = [[int(by_id[r.id]) for r in reqs]]
    best_source = [name]

    horizon = max(a) + sum(o)
    H = horizon + max(o) + 2
    load = [0] * (H + 1)
    # cap[j][k-1] = most load the other requests may hold in the k-th round of j's run
    cap = [[M - s[j] - k for k in range(1, o[j] + 1)] for j in range(n)]
    twin_before = []  # lower-indexed requests interchangeable with j (module docstring, Symmetry)
    for j in range(n):
        key = (a[j], s[j], o[j], w[j])
        twin_before.append([i for i in range(j) if (a[i], s[i], o[i], w[i]) == key])
    order = sorted(range(n), key=lambda j: (o[j], a[j], j))  # candidates: shortest output first
    starts = [-1] * n

    def fits(j, p):
        c = cap[j]
        for k in range(o[j]):
            if load[p + 1 + k] > c[k]:
                return False
        return True

    def earliest(j, lo):
        p = max(lo, a[j])
        while not fits(j, p):
            p += 1
        return p

    def add(j, p, sign):
        for k in range(o[j]):
            load[p + 1 + k] += sign * (s[j] + k + 1)

    def finish_cost(j, p):
        return p + o[j] if obj == "makespan" else w[j] * (p + o[j] - a[j])

    def combine(c, v):
        return max(c, v) if obj == "makespan" else c + v

    def bound(t, unstarted, e, cost_so_far):
        """Module docstring bound; ``e[j]`` are valid earliest starts of the unstarted requests."""
        if not unstarted:
            return cost_so_far
        L = sorted(e[j] + o[j] for j in unstarted)
        if obj == "weighted_latency":
            return cost_so_far + sum(w[j] * (e[j] + o[j] - a[j]) for j in unstarted)
        vols = sorted(vol[j] for j in unstarted)
        taus = []
        need_idx, need = 0, vols[0]
        acc, tt = 0, t
        while need_idx < len(vols):
            tt += 1
            acc += M - load[tt] if tt <= H else M
            while need_idx < len(vols) and acc >= need:
                taus.append(tt)
                need_idx += 1
                if need_idx < len(vols):
                    need += vols[need_idx]
        if obj == "makespan":
            return max(cost_so_far, taus[-1], L[-1])
        sum_a = sum(a[j] for j in unstarted)
        by_volume = sum(max(tk, lk) for tk, lk in zip(taus, L))
        big = [j for j in unstarted if 2 * peak[j] > M]
        if len(big) < 2:
            return cost_so_far + by_volume - sum_a
        s_min = min(s[j] for j in big)
        head = {j: max(0, M - peak[j] - s_min) for j in big}
        x = sorted(o[j] - head[j] for j in big)
        b = len(big)
        e_min = min(e[j] for j in big)
        rest = sum(e[j] + o[j] for j in unstarted if 2 * peak[j] <= M)
        by_chain = b * e_min + sum(head.values()) + sum((b - m) * x[m] for m in range(b)) + rest
        # per position: the k-th big finisher waits for k ramps less k-1 head-rooms, and for its release
        o_up = sorted(o[j] for j in big)
        h_down = sorted(head.values(), reverse=True)
        L_big = sorted(e[j] + o[j] for j in big)
        by_position, o_acc, h_acc = rest, 0, 0
        for k in range(b):
            o_acc += o_up[k]
            if k:
                h_acc += h_down[k - 1]
            by_position += max(e_min + o_acc - h_acc, L_big[k])
        return cost_so_far + max(by_volume, by_chain, by_position) - sum_a

    def prunes(b):
        if integral:
            return math.ceil(b - 1e-6) >= best_cost[0] - 1e-9
        return b >= best_cost[0] - 1e-9

    memo: dict = {}
    stats = {"nodes": 0, "memo_hits": 0, "memo_size": 0}
    deadline = t0 + time_limit_s
    open_bounds: list[float] = []  # bounds of nodes abandoned at the time limit

    def refresh(unstarted, e, lo_of):
        return {j: earliest(j, max(e[j], lo_of(j))) for j in unstarted}

    def decision_round(t, unstarted, e, cost_so_far):
        # e: valid earliest starts (>= t) of the unstarted on the current load; t = min e
        key = frozenset(unstarted)
        here = np.asarray(load, dtype=np.int32)
        kept = memo.get(key)
        if kept is not None:
            for t_seen, load_seen, cost_seen in kept:
                if t_seen <= t and cost_seen <= cost_so_far + 1e-9 and np.all(load_seen[t + 1:] <= here[t + 1:]):
                    stats["memo_hits"] += 1
                    return
        else:
            kept = memo[key] = []
        cands = [j for j in order if j in unstarted and e[j] == t]
        choose(t, cands, 0, set(unstarted), e, cost_so_far, set())
        # kept only once its subtree is done: an ancestor still being explored must not prune its
        # own descendants (the all-deferred branch reaches the same U and load at a later round)
        if stats["memo_size"] < memo_limit:
            # drop the kept states that this one dominates (same test, the other way round)
            kept[:] = [k for k in kept if not (t <= k[0] and cost_so_far <= k[2] + 1e-9
                                                and np.all(here[k[0] + 1:] <= k[1][k[0] + 1:]))]
            kept.append((t, here, cost_so_far))
            if len(kept) > memo_per_set:
                kept.pop(0)
            stats["memo_size"] += 1

    def choose(t, cands, idx, unstarted, e, cost_so_far, deferred):
        stats["nodes"] += 1
        if stats["nodes"] % 512 == 0 and time.perf_counter() > deadline:
            raise _TimeUp
        if not unstarted:
            if cost_so_far < best_cost[0] - 1e-9:
                best_cost[0], best_starts[0], best_source[0] = cost_so_far, list(starts), "branch-and-bound"
            return
        b = bound(t, unstarted, e, cost_so_far)
        if prunes(b):
            return
        if idx == len(cands):
            e2 = {j: earliest(j, max(e[j], t + 1)) for j in unstarted}
            decision_round(min(e2.values()), unstarted, e2, cost_so_far)
            return
        j = cands[idx]
        twin_waiting = any(i in unstarted for i in twin_before[j])
        if not twin_waiting and fits(j, t):
            add(j, t, 1)
            starts[j] = t
            unstarted.discard(j)
            try:
                e2 = {i: earliest(i, e[i]) for i in unstarted}
                choose(t, cands, idx + 1, unstarted, e2, combine(cost_so_far, finish_cost(j, t)), deferred)
            finally:
                unstarted.add(j)
                starts[j] = -1
                add(j, t, -1)
        e3 = dict(e)
        e3[j] = earliest(j, t + 1)
        deferred.add(j)
        try:
            choose(t, cands, idx + 1, unstarted, e3, cost_so_far, deferred)
        finally:
            deferred.discard(j)

    all_req = set(range(n))
    e0 = {j: earliest(j, 0) for j in all_req}
    root_bound = bound(min(e0.values()), all_req, e0, 0.0)  # no request starts before min e0
    status = "optimal"
    t1 = time.perf_counter()
    try:
        decision_round(min(e0.values()), all_req, e0, 0.0)
    except _TimeUp:
        status = "time_limit"
    search_s = time.perf_counter() - t1
    if status == "optimal":
        final_bound = best_cost[0]
    else:
        final_bound = min(best_cost[0], root_bound)
        if integral:
            final_bound = min(best_cost[0], float(math.ceil(final_bound - 1e-6)))
    starts_final = best_starts[0]
    rows = tuple(ScheduledRequest(r.id, int(r.arrival), int(p), int(p) + int(r.output_tokens))
                 for r, p in zip(reqs, starts_final))
    schedule = KVSchedule(rows, objective_name=obj, method=f"branch-and-bound({best_source[0]})")
    objective = schedule.objective_value(instance)
    gap = 0.0 if objective <= final_bound + 1e-9 else (objective - final_bound) / max(abs(objective), 1e-9)
    if gap == 0.0:
        status = "optimal"
    tried = dict(tried)
    return BnBResult(status=status, objective=objective, bound=float(final_bound), gap=gap, schedule=schedule,
                     solve_seconds=time.perf_counter() - t0, search_seconds=search_s, heuristic_seconds=heur_s,
                     nodes=stats["nodes"], memo_hits=stats["memo_hits"], incumbent_source=best_source[0],
                     horizon=horizon, heuristics=tried)
