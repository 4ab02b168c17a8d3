r"""Trace-scale routing: a valid lower bound and the best routing found within a time limit.

Semantics: instances/routing.py. Used where the exact method (solvers/routing_exact.py) is out of
reach (hundreds of requests): the whole run, bounds and search, is charged to ``time_limit_s``.

Lower bounds (all valid for every routing; the best one is reported)
--------------------------------------------------------------------
*Pooled relaxation.* Merge all replicas into one of memory ``sum_k M_k``: in any routing the
tokens held in a round on all replicas together are at most ``sum_k M_k``, so every routing is a
feasible ``kv_schedule`` of the pooled instance and ``OPT_pooled <= OPT``. Any valid lower bound on
the pooled instance bounds the routing optimum: the SRPT fluid bound (``_volume``: the volume bound
of analysis/kv_bounds.py, Jaillet et al. arXiv 2502.07115 Lemmas 4.4-4.7, with each volume released
at its own arrival and served shortest-remaining-first) and the LP relaxation of the ``aggregated-window``
program (models/kv_schedule_aggregated.py) with the cut-off windows from the routing incumbent
``U`` (valid since ``OPT_pooled <= OPT <= U``).

*Restricted pools.* A request with ``s_i + o_i > M_k`` cannot go to replica ``k``. For a memory
threshold ``m``, let ``Q_m`` be the replicas with ``M_k >= m`` and ``R_m`` the requests that fit on
no replica outside ``Q_m``. In any routing ``R_m`` runs on ``Q_m`` only, so (total latency)

    OPT >= OPT_pooled(Q_m)(R_m) + sum_{i not in R_m} o_i,

every other request waiting at least its own length; ``OPT_pooled(Q_m)(R_m)`` is bounded by its own
volume bound and LP (cut-off ``U - sum_{i not in R_m} o_i``). For the makespan the pooled bound of
``R_m`` on ``Q_m`` is itself a bound. Thresholds: every distinct memory above the smallest.

Search (primal)
---------------
From the best given routing (an online router's, preempted attempts dropped: the final starts
alone are feasible and keep the finishes): every replica's requests are re-scheduled by the serial
SGS of solvers/kv_schedule_certify.py in the order of their current starts (kept only if no worse),
then first-improvement local search over (a) *relocations* of one request to another replica where
it fits and (b) *swaps* of two requests on different replicas, each evaluated by re-running the SGS
on the two replicas touched (orders by current start, the moved request placed by its arrival),
requests with the largest wait ``f_i - a_i - o_i`` tried first; then (c) the one-replica SGS local
search (move one request in the order) on each replica; then (d) simulated annealing on random
relocations and swaps with the time left, keeping the best routing seen. Every schedule is feasible by
construction (the SGS checks every round of a ramp against its replica's memory).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from servopt.instances.kv_schedule import KVScheduleInstance
from servopt.instances.routing import RoutingInstance, RoutingSchedule, make_schedule


@dataclass
class SearchResult:
    status: str
    objective: float
    bound: float
    schedule: RoutingSchedule
    solve_seconds: float
    incumbent_source: str
    bound_source: str
    bounds: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)

    @property
    def gap(self) -> float:
        return 0.0 if self.objective <= self.bound + 1e-9 else (self.objective - self.bound) / max(abs(self.objective), 1e-9)


# ----------------------------------------------------------------------------- bounds

LP_NONZEROS_PER_SECOND = 2e5  # LP skipped when its estimated size exceeds this times the seconds it may use


def lp_size_estimate(requests, cutoff: float | None) -> float:
    """Nonzeros of the time-indexed pooled LP with the cut-off windows (an upper estimate for the
    aggregated build): per request its window length times its output length."""
    a_max = max(int(r.arrival) for r in requests)
    total_o = sum(r.output_tokens for r in requests)
    T = a_max + total_o
    slack = math.inf if cutoff is None else cutoff - total_o
    return float(sum(max(0.0, min(T - r.output_tokens - r.arrival, slack) + 1) * r.output_tokens for r in requests))


def _pool_bound(requests, memory: int, objective: str, *, cutoff: float | None, seconds: float, use_lp: bool) -> tuple[float, str]:
    from servopt.solvers.kv_schedule_certify import lp_bound

    inst = KVScheduleInstance(int(memory), tuple(requests), objective)
    vol = _volume(inst)
    best, src = vol, "srpt"
    # the build is not bounded by HiGHS's time limit: skip an LP too big for the seconds it may use
    if lp_size_estimate(requests, cutoff) > LP_NONZEROS_PER_SECOND * seconds:
        return best, src
    if use_lp and objective != "makespan" and seconds > 0.2 and len(requests) > 1:
        try:
            value, _, _ = lp_bound(inst, formulation="aggregated-window", cutoff=cutoff, time_limit_s=seconds)
        except Exception:  # an empty cut-off window (nothing beats U) or a solver failure: no LP bound
            value = None
        if value is not None and value > best:
            best, src = float(value), "lp"
    return best, src


def srpt_finishes(arrivals, volumes, memory: int) -> list[int]:
    """Per request the round by which the shortest-remaining-volume-first fluid schedule has served it.

    Work is measured in token-rounds, one replica serves ``memory`` of them per round, request ``j``'s
    volume becomes available at its arrival round ``a_j`` (it holds memory from round ``a_j + 1`` on).
    Integer arithmetic: time in 1/``memory`` rounds. Returns the finish rounds in the input order."""
    import heapq

    n = len(arrivals)
    order = sorted(range(n), key=lambda j: arrivals[j])
    done = [0] * n
    heap: list = []
    t = None
    k = 0
    while k < n or heap:
        if not heap:
            t = arrivals[order[k]] * memory if t is None else max(t, arrivals[order[k]] * memory)
        while k < n and arrivals[order[k]] * memory <= t:
            j = order[k]
            heapq.heappush(heap, (volumes[j], j))
            k += 1
        rem, j = heapq.heappop(heap)
        nxt = arrivals[order[k]] * memory if k < n else math.inf
        if t + rem <= nxt:
            t += rem
            done[j] = -(-t // memory)  # ceil: the round in which its last token-round is served
        else:
            heapq.heappush(heap, (rem - (nxt - t), j))
            t = nxt
    return done


def _volume(inst: KVScheduleInstance) -> float:
    """The SRPT bound: request ``i`` holds ``v_i = s_i o_i + o_i (o_i + 1) / 2`` token-rounds after its arrival,
    at most ``M`` per round in all. Every schedule is then a fluid schedule of these volumes on one server
    of speed ``M``, finishing each request no earlier than it really finishes; shortest remaining volume first
    keeps the fewest requests unfinished at every time (Schrage, "A proof of the optimality of the shortest
    remaining processing time discipline", Oper. Res. 16 (1968)), so the k-th SRPT finish round is at most
    the k-th finish of any schedule. Each finish is also at least ``a_i + o_i`` (k-th smallest, as in
    analysis/kv_bounds.py, whose bound this one dominates: it releases every volume at ``a_min``)."""
    reqs = inst.requests
    M = inst.memory_tokens
    arrivals = [int(r.arrival) for r in reqs]
    vols = [r.prompt_tokens * r.output_tokens + r.output_tokens * (r.output_tokens + 1) // 2 for r in reqs]
    fluid = sorted(srpt_finishes(arrivals, vols, M))
    own = sorted(int(r.arrival) + r.output_tokens for r in reqs)
    if inst.objective == "makespan":
        return float(max(fluid[-1], own[-1]))
    return float(sum(max(f, c) for f, c in zip(fluid, own)) - sum(arrivals))


def lower_bounds(instance: RoutingInstance, *, cutoff: float | None, seconds: float, use_lp: bool = True) -> dict:
    """Every bound of the module docstring: ``{name: value}`` plus ``best`` and ``best_source``."""
    t0 = time.perf_counter()
    reqs = instance.requests
    obj = instance.objective
    total_mem = sum(r.memory_tokens for r in instance.replicas)
    out: dict = {}
    v, src = _pool_bound(reqs, total_mem, obj, cutoff=cutoff, seconds=0.6 * seconds, use_lp=use_lp)
    out[f"pooled-{src}"] = v
    mems = sorted({r.memory_tokens for r in instance.replicas})
    for idx in range(1, len(mems)):
        left = seconds - (time.perf_counter() - t0)
        below = mems[idx - 1]
        restricted = [r for r in reqs if r.prompt_tokens + r.output_tokens > below]
        if not restricted:
            continue
        pool = sum(r.memory_tokens for r in instance.replicas if r.memory_tokens >= mems[idx])
        others = sum(r.output_tokens for r in reqs if r.prompt_tokens + r.output_tokens <= below)
        cut = None if cutoff is None else (cutoff - others if obj != "makespan" else cutoff)
        v, src = _pool_bound(restricted, pool, obj, cutoff=cut, seconds=max(0.0, left / (len(mems) - idx)), use_lp=use_lp)
        out[f"restricted>={mems[idx]}-{src}"] = v + (others if obj != "makespan" else 0.0)
    name = max(out, key=out.get)
    out["best"] = float(math.ceil(out[name] - 1e-6))  # integer objectives
    out["best_source"] = name
    out["seconds"] = round(time.perf_counter() - t0, 3)
    return out


# ----------------------------------------------------------------------------- search

class _Replica:
    """One replica's requests, SGS order, starts and cost (total latency or makespan of its part)."""

    def __init__(self, k: int, memory: int, members: list[int], starts: dict[int, int], data):
        self.k, self.M = k, memory
        self.data = data
        self.members = sorted(members, key=lambda i: (starts[i], data.a[i], i))
        self.starts = {i: starts[i] for i in members}
        self.cost = self.cost_of(self.starts)

    def cost_of(self, starts: dict) -> float:
        d = self.data
        if not starts:
            return 0.0
        if d.objective == "makespan":
            return float(max(p + d.o[i] for i, p in starts.items()))
        return float(sum(p + d.o[i] - d.a[i] for i, p in starts.items()))

    def sgs(self, order: list[int]) -> tuple[dict, float]:
        if not order:
            return {}, 0.0
        d = self.data
        starts = serial_starts(d.a, d.s, d.o, self.M, order)
        return starts, self.cost_of(starts)


def serial_starts(a, s, o, M: int, order) -> dict:
    """The serial SGS of solvers/kv_schedule_certify.py (each request in ``order`` at its earliest start
    ``p >= a_i`` whose ramp ``s_i + 1 .. s_i + o_i`` fits in rounds ``p+1 .. p+o_i``), with the work growing
    with the waits, not with the horizon: short ramps are tested round by round in plain Python (measured
    about 10x faster than numpy's per-call overhead at o <= 16), long ones in numpy chunks of start rounds."""
    from numpy.lib.stride_tricks import sliding_window_view

    horizon = int(max(a[i] for i in order) + sum(int(o[i]) for i in order) + 2)
    size = horizon + int(max(o[i] for i in order)) + 2
    free = [int(M)] * size
    out = {}
    for i in order:
        oi, ai, si = int(o[i]), int(a[i]), int(s[i])
        if oi <= 16:
            p = ai
            while True:
                k = 1
                while k <= oi and free[p + k] >= si + k:
                    k += 1
                if k > oi:
                    break
                p += 1
        else:
            arr = np.asarray(free, dtype=np.int64)
            ramp = si + np.arange(1, oi + 1)
            p0, chunk = ai, 64
            while True:
                seg = arr[p0 + 1: p0 + chunk + oi]
                ok = np.all(sliding_window_view(seg, oi) >= ramp, axis=1)
                if ok.any():
                    p = p0 + int(np.argmax(ok))
                    break
                p0 += len(ok)
                chunk *= 2
        for k in range(1, oi + 1):
            free[p + k] -= si + k
        out[i] = p
    return out


@dataclass(frozen=True)
class _Data:
    a: np.ndarray
    s: np.ndarray
    o: np.ndarray
    objective: str


def _total(reps, objective) -> float:
    return max(r.cost for r in reps) if objective == "makespan" else sum(r.cost for r in reps)


def _key(reps, objective):
    # makespan: the max first, then the sum (so moves off the critical replica count as progress)
    return (max(r.cost for r in reps), sum(r.cost for r in reps)) if objective == "makespan" else (sum(r.cost for r in reps),)


def improve(instance: RoutingInstance, schedule: RoutingSchedule, *, seconds: float, seed: int = 0,
            anneal: bool = True) -> tuple[RoutingSchedule, dict]:
    """The search of the module docstring from ``schedule``; returns the best routing and counters."""
    t0 = time.perf_counter()
    deadline = t0 + seconds
    rng = np.random.default_rng(seed)
    reqs = instance.requests
    n = len(reqs)
    data = _Data(np.array([int(r.arrival) for r in reqs]), np.array([r.prompt_tokens for r in reqs]),
                 np.array([r.output_tokens for r in reqs]), instance.objective)
    obj = instance.objective
    replica_of = schedule.replica_index(instance)
    starts0 = schedule.starts(instance)
    start_map = {i: starts0[i] for i in range(n)}
    reps = [_Replica(k, rep.memory_tokens, [i for i in range(n) if replica_of[i] == k], start_map, data)
            for k, rep in enumerate(instance.replicas)]
    stats = {"relocations": 0, "swaps": 0, "resequenced": 0, "evaluations": 0, "intra": 0}
    for r in reps:  # re-sequence by SGS in start order
        if time.perf_counter() > deadline:
            break
        st, c = r.sgs(r.members)
        if c < r.cost - 1e-9:
            r.starts, r.cost = st, c
            stats["resequenced"] += 1
    allowed = [instance.allowed(i) for i in range(n)]

    def order_with(r, i):
        key = (int(data.a[i]), i)
        out = sorted(r.members, key=lambda j: (r.starts[j], data.a[j], j))
        pos = 0
        while pos < len(out) and (r.starts[out[pos]], data.a[out[pos]], out[pos]) <= (key[0], data.a[i], i):
            pos += 1
        out.insert(pos, i)
        return out

    def order_without(r, i):
        return sorted((j for j in r.members if j != i), key=lambda j: (r.starts[j], data.a[j], j))

    def apply(r, members, st, c):
        r.members, r.starts, r.cost = members, st, c

    improved = True
    while improved and time.perf_counter() < deadline:
        improved = False
        owner = {i: r for r in reps for i in r.members}
        waits = sorted(range(n), key=lambda i: -(owner[i].starts[i] - data.a[i]))
        for i in waits:
            if time.perf_counter() > deadline:
                break
            A = owner[i]
            base = _key(reps, obj)
            # (a) relocation
            for kb in allowed[i]:
                B = reps[kb]
                if B is A or time.perf_counter() > deadline:
                    continue
                ordA, ordB = order_without(A, i), order_with(B, i)
                stA, cA = A.sgs(ordA)
                stB, cB = B.sgs(ordB)
                stats["evaluations"] += 1
                saved = (A.members, A.starts, A.cost, B.members, B.starts, B.cost)
                apply(A, ordA, stA, cA)
                apply(B, ordB, stB, cB)
                if _key(reps, obj) < base:
                    stats["relocations"] += 1
                    improved = True
                    break
                A.members, A.starts, A.cost, B.members, B.starts, B.cost = saved
            if owner[i] is not A or i not in A.members:
                owner = {j: r for r in reps for j in r.members}
                continue
            # (b) swap with a request of another replica (a few sampled partners, the long-waiting ones first)
            partners = [j for j in waits[:60] if owner[j] is not A and owner[j].k in allowed[i] and A.k in allowed[j]]
            if len(partners) > 8:
                partners = list(rng.choice(partners, size=8, replace=False))
            for j in partners:
                if time.perf_counter() > deadline:
                    break
                B = owner[j]
                ordA = order_with(_Shadow(A, exclude=i), j)
                ordB = order_with(_Shadow(B, exclude=j), i)
                stA, cA = A.sgs(ordA)
                stB, cB = B.sgs(ordB)
                stats["evaluations"] += 1
                saved = (A.members, A.starts, A.cost, B.members, B.starts, B.cost)
                apply(A, ordA, stA, cA)
                apply(B, ordB, stB, cB)
                if _key(reps, obj) < base:
                    stats["swaps"] += 1
                    improved = True
                    break
                A.members, A.starts, A.cost, B.members, B.starts, B.cost = saved
            owner = {j: r for r in reps for j in r.members}
    # (c) one-replica local search on the SGS order (move one request to another position), with the
    # time left, costliest replica first
    for r in sorted(reps, key=lambda r: -r.cost):
        if len(r.members) < 2:
            continue
        order = sorted(r.members, key=lambda j: (r.starts[j], data.a[j], j))
        m = len(order)
        improved = True
        while improved and time.perf_counter() < deadline:
            improved = False
            for x in range(m):
                for y in range(m):
                    if x == y or time.perf_counter() > deadline:
                        continue
                    cand = list(order)
                    cand.insert(y, cand.pop(x))
                    st, c = r.sgs(cand)
                    stats["evaluations"] += 1
                    if c < r.cost - 1e-9:
                        r.starts, r.cost, order, improved = st, c, cand, True
                        stats["intra"] += 1
                        break
                if improved or time.perf_counter() > deadline:
                    break
    # (d) simulated annealing on relocations and swaps with the time left (from the local optimum; the best
    # routing seen is kept): accept a worse move with probability exp(-delta / temp), temp cooling
    # geometrically from 3 to 0.09 latency rounds over the time left (on the 400 x 4 rate-4 trace: 1842,
    # against 1869 from 1 to 0.05, 1863 from 10 to 0.1 and 1879 without annealing)
    best_state = [(list(r.members), dict(r.starts), r.cost) for r in reps]
    best_key = _key(reps, obj)
    sa_start, sa_span = time.perf_counter(), max(1e-9, deadline - time.perf_counter())
    while anneal and time.perf_counter() < deadline and n > 1 and len(reps) > 1:
        temp = 3.0 * (0.03 ** ((time.perf_counter() - sa_start) / sa_span))
        i = int(rng.integers(n))
        A = next(r for r in reps if i in r.starts)
        others = [k for k in allowed[i] if k != A.k]
        if not others:
            continue
        B = reps[int(rng.choice(others))]
        before = _key(reps, obj)
        saved = (A.members, A.starts, A.cost, B.members, B.starts, B.cost)
        swap = [j for j in B.members if A.k in allowed[j]]
        if swap and rng.random() < 0.5:
            j = swap[int(rng.integers(len(swap)))]
            ordA, ordB = order_with(_Shadow(A, exclude=i), j), order_with(_Shadow(B, exclude=j), i)
        else:
            ordA, ordB = order_without(A, i), order_with(B, i)
        stA, cA = A.sgs(ordA)
        stB, cB = B.sgs(ordB)
        apply(A, ordA, stA, cA)
        apply(B, ordB, stB, cB)
        stats["evaluations"] += 1
        after = _key(reps, obj)
        delta = after[0] - before[0] if after[0] != before[0] else (after[-1] - before[-1]) * 1e-3
        if delta <= 0 or rng.random() < math.exp(-delta / temp):
            stats["annealing_moves"] = stats.get("annealing_moves", 0) + 1
            if after < best_key:
                best_key = after
                best_state = [(list(r.members), dict(r.starts), r.cost) for r in reps]
                stats["annealing_best"] = stats.get("annealing_best", 0) + 1
        else:
            A.members, A.starts, A.cost, B.members, B.starts, B.cost = saved
    for r, (members, starts_r, cost) in zip(reps, best_state):
        r.members, r.starts, r.cost = members, starts_r, cost
    replica_of = [0] * n
    starts = [0] * n
    for r in reps:
        for i in r.members:
            replica_of[i] = r.k
            starts[i] = r.starts[i]
    stats["seconds"] = round(time.perf_counter() - t0, 3)
    return make_schedule(instance, replica_of, starts, method="routing-search"), stats


class _Shadow:
    """A replica's members and starts with one request left out (for building a swap's orders)."""

    def __init__(self, rep, exclude):
        self.members = [j for j in rep.members if j != exclude]
        self.starts = rep.starts


def solve_search(instance: RoutingInstance, *, time_limit_s: float, incumbents: dict[str, RoutingSchedule],
                 seed: int = 0, bound_share: float = 0.3, use_lp: bool = True) -> SearchResult:
    """Bounds, then the search from the best incumbent, all within ``time_limit_s``."""
    t0 = time.perf_counter()
    best_name, best = min(incumbents.items(), key=lambda kv: kv[1].objective_value(instance))
    U = best.objective_value(instance)
    bounds = lower_bounds(instance, cutoff=U, seconds=bound_share * time_limit_s, use_lp=use_lp)
    left = max(0.0, time_limit_s - (time.perf_counter() - t0) - 0.05)
    if bounds["best"] >= U - 1e-9:
        left = 0.0  # the best router is already proven optimal
    sched, stats = improve(instance, best, seconds=left, seed=seed)
    cost = sched.objective_value(instance)
    source = "routing-search" if cost < U - 1e-9 else best_name
    if cost >= U - 1e-9:
        sched, cost = make_schedule(instance, best.replica_index(instance), best.starts(instance),
                                    method=f"incumbent:{best_name}"), U
    bound = min(bounds["best"], cost)
    # not proven: time_limit when the search used its time, feasible when it stopped at a local optimum first
    ran_out = time.perf_counter() - t0 >= 0.95 * time_limit_s
    status = "optimal" if bound >= cost - 1e-9 else ("time_limit" if ran_out else "feasible")
    stats["start_cost"] = U
    return SearchResult(status=status, objective=cost, bound=bound, schedule=sched, solve_seconds=time.perf_counter() - t0,
                        incumbent_source=source, bound_source=bounds["best_source"], bounds=bounds, stats=stats)
