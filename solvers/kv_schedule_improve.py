r"""Primal improvement for ``kv_schedule`` schedules: iterated local search over serial-SGS orders, then
MIP-based large-neighbourhood search that re-optimises a time window (or a time-related subset of
requests) with HiGHS while every other start stays fixed (the upper side of every
certified gap, and the MC-SF / best ratio of the paper reproduction).

Semantics are those of ``instances/kv_schedule.py`` (Jaillet et al., arXiv 2502.07115, §2): request
``i`` (arrival ``a_i``, prompt ``s_i``, output ``o_i``, weight ``w_i``) started in round ``p_i >= a_i``
holds ``s_i + (t - p_i)`` tokens in rounds ``t = p_i+1 .. p_i+o_i``; the load of every round is at most
``M``. Objectives: ``total_latency`` (``w_i = 1``) and ``weighted_latency`` minimise
``sum_i w_i (p_i + o_i - a_i)``; ``makespan`` minimises ``max_i (p_i + o_i)`` (ILS phase only, below).

API: ``improve_schedule(instance, schedule, *, seconds, seed=0) -> (KVSchedule, stats)``. The result
is never worse than ``schedule`` (the input is the first incumbent and only strictly better
schedules replace it), every schedule it keeps is feasible (each decoder checks every round it
touches; the LNS result is re-checked from scratch by ``_feasible`` before it is kept, and the tests
re-verify with ``analysis/kv_check.py``), and it stops within ``seconds`` (plus one decoder call or
the tail of one HiGHS call, whose own limit is cut to what is left).

1. Decoder: serial SGS with a prefix cache
-----------------------------------------
Serial schedule generation scheme (Kolisch, "Serial and parallel resource-constrained project
scheduling methods revisited", EJOR 90 (1996); the same decoder as
``solvers/kv_schedule_certify.serial_schedule``, tests/test_kv_improve.py checks equality): requests
in a priority order ``pi``, each at the earliest ``p >= a_i`` whose ramp fits on top of the requests
already placed. With ``free[t]`` the tokens left in round ``t`` and ``g[t] = free[t] - t``, ``p`` fits
iff ``free[p+k] >= s_i + k`` for ``k = 1..o_i``, i.e. ``g[t] >= s_i - p`` for all ``t in (p, p+o_i]``.

*Skip rule (ours).* If ``p`` fails at round ``t`` (``g[t] < s_i - p``), then no ``p' < min(s_i - g[t], t)``
fits: such a ``p'`` still covers ``t`` (``p' < t <= p + o_i < p' + o_i``) and needs ``g[t] >= s_i - p'``.
So the scan checks ``t = p+o_i`` down to ``p+1`` and jumps to ``max(p+1, min(s_i - g[t], t))``. Only
``p <= max(a_i, L)`` need testing, ``L`` the last loaded round: from there on every round is free and
``s_i + o_i <= M``. In pure Python on lists this decodes a paper-size order (n = 43) in 0.23 ms,
against 1.6 ms for the numpy sliding-window decoder of kv_schedule_certify and 0.43 ms for a
van Herk running minimum (``scipy.ndimage.minimum_filter1d``; its per-call overhead dominates at
these window sizes); measured on ``synthetic(1)``, idle 2-core machine.

Prefix cache: the placements of ``pi(1..k-1)`` do not depend on ``pi(k..n)``, so the decoder keeps
``g`` (and ``L`` and the partial cost) before every position of the current order, and a
neighbour that first differs at position ``k`` is decoded from position ``k`` only. A decode is
abandoned as soon as ``partial cost + sum_{j unplaced} w_j o_j`` (each unplaced request finishes no
earlier than ``a_j + o_j``) reaches the incumbent's cost. Together: about 6,400 neighbour
evaluations per second at n = 43, against about 600 full decodes per second before.

*SGS does not reach every optimum.* A left shift raises a ramp request's demand in rounds it already
covered (solvers/kv_schedule_bnb.py), and on tiny instances no order at all reaches the optimum:
M = 10, s = 1, all at round 0, o = (1, 3, 6, 4, 9): the best of all 120 SGS orders costs 31, the
optimum 30 (brute force); likewise the paper-family instance ``synthetic([7, 2], n=8)``: best of all
8! orders 213, optimum 210. Hence the MIP-LNS of §3, whose schedules need not be SGS schedules.

2. Iterated local search on orders (Lourenco, Martin, Stutzle, "Iterated local search", Handbook of
---------------------------------------------------------------------------------------------------
Metaheuristics (2003), §3): descent = first improvement over *insertion* moves (take the request at
position ``j`` and insert it at position ``i``) and *swaps* with ``|i - j| <= D`` (``D = 10``), in a
random order, until a full pass brings nothing; perturbation = ``k`` random insertion moves with
``|i - j| <= n/4``, ``k`` uniform in ``{2, 3, 4}``; acceptance = "random walk" (Lourenco et al. §3.4:
every kicked order is descended from), and after ``R = 8`` kicks without a new best the next kick
starts from the best order. On 6 paper instances at 8 s, ``D = 100`` and kicks of 1-2 or 4-8 moves
ended within 0.25 % of this setting (mean cost / baseline 0.9548 / 0.9572 / 0.9551 / 0.9551).

3. MIP large-neighbourhood search (Shaw, "Using constraint programming and local search methods to
--------------------------------------------------------------------------------------------------
solve vehicle routing problems", CP 1998; with a MIP as the repair step, as in fix-and-optimize,
Helber & Sahling, Int. J. Production Economics 123 (2010), and Pochet & Wolsey, *Production Planning
by Mixed Integer Programming* (2006) §13 "relax-and-fix / fix-and-optimize"). Given the incumbent
starts ``p``, a *free* set ``F`` and per ``i in F`` an allowed start range ``P_i``, every ``j not in F``
keeps ``p_j``. With the fixed load ``L^fix[t] = sum_{j not in F, p_j < t <= p_j + o_j} (s_j + t - p_j)``
and capacity ``c[t] = M - L^fix[t]`` the sub-problem is the time-indexed IP of Jaillet et al.
(arXiv 2502.07115 eq. (1)-(4); ``models/kv_schedule.py``) restricted to ``F``:

    min  sum_{i in F} sum_{q in P_i} w_i q y[i,q]                                       (objective)
    s.t. sum_{q in P_i} y[i,q] = 1                                  for all i in F       (assign)
         sum_{i in F} sum_{q in P_i, q < t <= q + o_i} (s_i + t - q) y[i,q] <= c[t]   for all t (memory)
         y[i,q] in {0, 1},

where ``P_i`` keeps only the starts whose ramp fits ``c`` alone (others are infeasible in any
solution), and a memory row is left out when the sum over ``i`` of ``i``'s largest coefficient in it
is at most ``c[t]`` (it can never bind). The incumbent's starts are a feasible solution (HiGHS gets
them as a warm start), so the sub-problem never returns worse. Neighbourhoods, taken in turn:

* ``window`` (the default, ``LNS_KINDS``): ``F = {i : t0 <= p_i < t0 + W}``,
  ``P_i = [max(a_i, t0 - W/2), t0 + W + W/2]``, the window ``[t0, t0 + W)`` sliding over
  ``[0, makespan)`` by ``W/2`` from a random offset; once ``W`` reaches the makespan, ``F`` is every
  request and ``P_i = [a_i, T - o_i]`` with the proven horizon ``T = max a + sum o``
  (models/kv_schedule.py): the sub-problem is then the whole IP, and if HiGHS closes it the
  incumbent is proven optimal (``stats["proven_optimal"]``) and the search stops;
* ``related`` (available, off by default): a random pivot request and the ``K - 1`` requests with
  the closest starts, ``P_i = [max(a_i, p_i - W), p_i + W]`` (Shaw's relatedness, here distance in
  start round). In three LNS-only runs on two paper instances (from the local-search or the ILS
  schedule) it improved the incumbent in 2 of 29 steps, the windows in 19 of 22; on 12 paper
  instances at 10 s, alternating it with the windows changed the mean cost by < 0.01 %.

In every ``P_i`` the upper end is cut to ``T - o_i`` and raised to ``p_i`` if needed (the incumbent
stays feasible).

Each sub-MIP gets ``min(sub_limit, time left)`` seconds, threads = 1, and ``mip_abs_gap`` just below 1
for integer objectives (an improvement is at least 1). Sizes adapt (Ropke & Pisinger, Transportation
Science 40 (2006), adaptive LNS, in its simplest form): a sub-MIP solved to optimality in under a
quarter of its limit grows ``W`` (and ``K``) by 25 %, one that hits the limit shrinks them by 20 %.

Which phase runs when (``strategy``): ``"ils"``, ``"lns"``, or ``"hybrid"`` (the default): ILS until
it has made ``ILS_STALL_KICKS = 40`` kicks in a row without a new best, or until ``ils_share``
(default 0.9) of the budget is spent, then LNS from the best schedule for the rest (makespan: ILS
only, the sub-problem minimises latency). How this was chosen (paper instances, shared 2-core
machine, benchmarks/results/kv_improve*.md):

* mean cost / baseline at 10 s on instances 0-5 of both families: ILS 0.9386, hybrid with a fixed
  ILS share of 0.7: 0.9394, of 0.5: 0.9426; LNS alone 0.99 (4 instances);
* on 8 + 8 instances at 10 s the fixed-share hybrid (0.7) lost to ILS alone on 7, won on 3 (ties 6),
  by up to 1.3 % on the largest Poisson instances (n = 69, 72), where the ILS still improves late;
  hence the switch on stagnation instead of a fixed share;
* at paper scale the sub-MIPs are hard (a window of 5-7 requests with 300-900 columns often hits a
  1 s limit), so the LNS tail is a polish: with the fixed share at 30 s it improved the ILS result
  on 18 of 40 instances, by at most 0.71 %; on small instances the LNS is what finds the optima
  that no SGS order reaches (12 instances with n = 8, optimum by branch-and-bound, 2 s each, ILS
  share 0.25 and both neighbourhoods at the time: hybrid 12 optimal, ILS alone 10, LNS alone 10).

Determinism: ``seed`` fixes every random choice. A run that ends on ``max_rounds`` (neighbourhood
evaluations and LNS steps) rather than on the clock, and whose sub-MIPs all finish inside their
limits, returns the same schedule for the same seed.
"""
from __future__ import annotations

import math
import time

import numpy as np
from scipy.ndimage import minimum_filter1d

from servopt.errors import InputError
from servopt.instances.kv_schedule import KVSchedule, KVScheduleInstance
from servopt.solvers.kv_schedule_certify import _Arrays, _nonpreemptive, _schedule

STRATEGIES = ("hybrid", "ils", "lns")
ILS_REACH = 10  # D of §2
ILS_KICK = (2, 4)  # k of §2, uniform in this closed range
ILS_KICK_SPAN = 0.25  # a kick moves a request by at most this share of n positions
ILS_RESTART = 8  # R of §2
ILS_STALL_KICKS = 40  # hybrid: the ILS hands over to the LNS after this many kicks without a new best
LNS_KINDS = ("window",)  # neighbourhoods of §3 taken in turn; "related" measured worse (docstring)


# ----------------------------------------------------------------------------- decoder

class _Decoder:
    """Serial SGS (module docstring §1) over ``g[t] = free[t] - t``, a Python list of ``horizon`` ints."""

    def __init__(self, arr: _Arrays):
        self.arr = arr
        self.a = arr.a.astype(np.int64)
        self.s = arr.s.astype(np.int64)
        self.o = arr.o.astype(np.int64)
        self.w = arr.w
        self.A, self.S, self.O = self.a.tolist(), self.s.tolist(), self.o.tolist()
        self.W = [float(x) for x in arr.w]
        self.makespan = arr.objective == "makespan"
        self.proven = int(self.a.max() + self.o.sum())  # T of models/kv_schedule.py
        self.horizon = self.proven + int(self.o.max()) + 2
        self.rounds = np.arange(self.horizon + 1, dtype=np.int64)
        self.g0 = [arr.M - t for t in range(self.horizon)]
        self.min_cost = [w * o for w, o in zip(self.W, self.O)]  # each request's least contribution

    def empty(self) -> list[int]:
        return list(self.g0)

    def place(self, g: list[int], last: int, i: int) -> int:
        """Earliest fitting start of ``i`` on top of ``g``; updates ``g`` in place.

        Scan with skips: if ``p`` fails at round ``t`` (``g[t] < s - p``), no ``p' < min(s - g[t], t)``
        fits either (``t`` is still covered and needs ``g[t] >= s - p'``), so the scan jumps there.
        """
        a, s, o = self.A[i], self.S[i], self.O[i]
        hi = a if a > last else last  # from hi on every round is free and s + o <= M
        p = a
        while p < hi:
            need = s - p
            bad = -1
            for t in range(p + o, p, -1):
                if g[t] < need:
                    bad = t
                    break
            if bad < 0:
                break
            nxt = s - g[bad]
            if nxt > bad:
                nxt = bad
            p = nxt if nxt > p + 1 else p + 1
        if p > hi:
            p = hi
        for k in range(1, o + 1):
            g[p + k] -= s + k
        return p

    def contribution(self, i: int, p: int) -> float:
        return float(p + self.O[i]) if self.makespan else self.W[i] * (p + self.O[i] - self.A[i])

    def combine(self, partial: float, value: float) -> float:
        return max(partial, value) if self.makespan else partial + value


class _OrderState:
    """An order with its SGS decode and the prefix cache of §1."""

    def __init__(self, dec: _Decoder, order: list[int]):
        self.dec = dec
        self.set(order)

    def set(self, order: list[int], starts: np.ndarray | None = None):
        dec = self.dec
        n = len(order)
        self.order = list(order)
        self.frees = [None] * (n + 1)
        self.lasts = [0] * (n + 1)
        self.partials = [0.0] * (n + 1)
        free = dec.empty()
        last = 0
        partial = 0.0
        self.starts = np.zeros(n, dtype=np.int64)
        for k, i in enumerate(self.order):
            self.frees[k] = list(free)
            self.lasts[k] = last
            self.partials[k] = partial
            p = dec.place(free, last, i)
            self.starts[i] = p
            last = max(last, p + dec.O[i])
            partial = dec.combine(partial, dec.contribution(i, p))
        self.frees[n], self.lasts[n], self.partials[n] = free, last, partial
        self.cost = partial

    def evaluate(self, cand: list[int], k: int, bound: float):
        """Decode ``cand`` (equal to ``self.order`` before position ``k``); None once it cannot beat ``bound``."""
        dec = self.dec
        free = list(self.frees[k])
        last = self.lasts[k]
        partial = self.partials[k]
        rest = float(sum(dec.min_cost[i] for i in cand[k:])) if not dec.makespan else 0.0
        starts = self.starts.copy()
        for i in cand[k:]:
            p = dec.place(free, last, i)
            starts[i] = p
            last = max(last, p + dec.O[i])
            value = dec.contribution(i, p)
            partial = dec.combine(partial, value)
            if not dec.makespan:
                rest -= dec.min_cost[i]
            if partial + rest >= bound - 1e-9:
                return None
        return starts, partial


# ----------------------------------------------------------------------------- helpers

def _feasible(dec: _Decoder, starts: np.ndarray) -> bool:
    """From scratch: every start >= arrival and every round's load <= M (module docstring)."""
    if np.any(starts < dec.a):
        return False
    load = np.zeros(int((starts + dec.o).max()) + 2, dtype=np.int64)
    for i in range(len(starts)):
        p, o = int(starts[i]), int(dec.o[i])
        load[p + 1: p + o + 1] += dec.s[i] + dec.rounds[1: o + 1]
    return bool(load.max() <= dec.arr.M)


def _cost(dec: _Decoder, starts: np.ndarray) -> float:
    return dec.arr.cost(np.asarray(starts, dtype=np.int64))


def _input_starts(instance: KVScheduleInstance, schedule: KVSchedule) -> np.ndarray:
    by_id = {r.id: r for r in _nonpreemptive(schedule).requests}
    starts = []
    for idx, r in enumerate(instance.requests):
        row = by_id.get(r.id)
        if row is None:
            raise InputError("schedule", f"request '{r.id}' (requests[{idx}]) is missing from the schedule")
        starts.append(int(row.start))
    if len(by_id) != instance.n or len(schedule.requests) != instance.n:
        raise InputError("schedule", f"the schedule has {len(schedule.requests)} rows for {len(by_id)} ids, "
                                     f"the instance {instance.n} requests")
    return np.array(starts, dtype=np.int64)


# ----------------------------------------------------------------------------- ILS (§2)

class _Clock:
    def __init__(self, seconds: float, max_rounds: int | None):
        self.deadline = time.perf_counter() + seconds
        self.rounds_left = max_rounds

    def tick(self) -> bool:
        """Count one evaluation; False once the time or the round budget is spent."""
        if self.rounds_left is not None:
            if self.rounds_left <= 0:
                return False
            self.rounds_left -= 1
        return time.perf_counter() < self.deadline

    def left(self) -> float:
        return self.deadline - time.perf_counter()


def _descend(state: _OrderState, rng: np.random.Generator, clock: _Clock, reach: int, stats: dict) -> bool:
    """First-improvement descent (§2) on ``state`` in place; False when the budget ran out."""
    n = len(state.order)
    moves = [(i, j, kind) for i in range(n) for j in range(n) if i != j and abs(i - j) <= reach
             for kind in (("insert", "swap") if i < j else ("insert",))]
    if not moves:
        return True
    dec = state.dec
    perm = rng.permutation(len(moves))
    since = 0
    idx = 0
    while since < len(moves):
        if not clock.tick():
            return False
        i, j, kind = moves[perm[idx % len(moves)]]
        idx += 1
        since += 1
        cand = list(state.order)
        if kind == "swap":
            x, y = cand[i], cand[j]
            if dec.o[x] == dec.o[y] and dec.a[x] == dec.a[y] and dec.s[x] == dec.s[y] and dec.w[x] == dec.w[y]:
                continue  # twins: the same schedule
            cand[i], cand[j] = y, x
        else:
            cand.insert(i, cand.pop(j))
        stats["evaluations"] += 1
        out = state.evaluate(cand, min(i, j), state.cost)
        if out is not None:
            state.set(cand)
            since = 0
    return True


def _perturb(order: list[int], rng: np.random.Generator) -> list[int]:
    n = len(order)
    cand = list(order)
    reach = max(2, int(n * ILS_KICK_SPAN))
    for _ in range(int(rng.integers(ILS_KICK[0], ILS_KICK[1] + 1))):
        j = int(rng.integers(n))
        i = int(np.clip(j + rng.integers(-reach, reach + 1), 0, n - 1))
        cand.insert(i, cand.pop(j))
    return cand


def _ils(dec: _Decoder, orders: list[list[int]], rng, clock: _Clock, stats: dict,
         best_cost: float, stall_kicks: int | None = None) -> tuple[np.ndarray | None, float]:
    """ILS of §2 from the best of ``orders``; returns (best starts found or None, its cost).

    ``stall_kicks``: stop after this many kicks in a row without a new best (None: run to the clock)."""
    states = [_OrderState(dec, o) for o in orders]
    stats["evaluations"] += len(states)
    cur = min(states, key=lambda st: st.cost)
    best_starts = None
    if cur.cost < best_cost - 1e-9:
        best_starts, best_cost = cur.starts.copy(), cur.cost
    best_order, best_order_cost = list(cur.order), cur.cost
    stale = 0
    since_best = 0
    while True:
        alive = _descend(cur, rng, clock, ILS_REACH, stats)
        since_best += 1
        if cur.cost < best_order_cost - 1e-9:
            best_order, best_order_cost, stale, since_best = list(cur.order), cur.cost, 0, 0
            if cur.cost < best_cost - 1e-9:
                best_starts, best_cost = cur.starts.copy(), cur.cost
                stats["ils_improvements"] += 1
        else:
            stale += 1
        if not alive or not clock.tick():
            break
        if stall_kicks is not None and since_best > stall_kicks:
            stats["ils_stalled"] = True
            break
        stats["ils_kicks"] += 1
        base = best_order if stale >= ILS_RESTART else cur.order
        if stale >= ILS_RESTART:
            stale = 0
        nxt = _OrderState(dec, _perturb(base, rng))
        stats["evaluations"] += 1
        # acceptance: the kicked order replaces the current one; the descent then decides
        cur = nxt
    return best_starts, best_cost


# ----------------------------------------------------------------------------- LNS (§3)

def _sub_mip(dec: _Decoder, starts: np.ndarray, free_set: np.ndarray, ranges: list[tuple[int, int]], *,
             time_limit_s: float, seed: int, integral: bool):
    """Solve the sub-problem of §3; returns (new starts or None, SolveResult or None)."""
    import highspy

    from servopt.solvers.highs import solve_highspy

    M = dec.arr.M
    fixed = np.ones(len(starts), dtype=bool)
    fixed[free_set] = False
    top = int(max(int((starts + dec.o).max()), max(hi + int(dec.o[i]) for i, (lo, hi) in zip(free_set, ranges)))) + 2
    load = np.zeros(top, dtype=np.int64)
    for j in np.nonzero(fixed)[0]:
        p, o = int(starts[j]), int(dec.o[j])
        load[p + 1: p + o + 1] += dec.s[j] + dec.rounds[1: o + 1]
    cap = M - load
    g = cap - np.arange(top, dtype=np.int64)
    col_req, col_start = [], []
    for i, (lo, hi) in zip(free_set, ranges):
        o, s = int(dec.o[i]), int(dec.s[i])
        q = np.arange(lo, hi + 1, dtype=np.int64)
        # ramp of i alone must fit c: min_{t in (q, q+o]} (c[t] - t) >= s - q
        win = minimum_filter1d(g[lo + 1: hi + o + 1], o, origin=-(o // 2), mode="nearest")[: hi - lo + 1]
        q = q[win >= s - q]
        if int(starts[i]) not in set(q.tolist()):
            return None, None  # cannot happen for a feasible incumbent; refuse rather than guess
        col_req.append(np.full(len(q), i, dtype=np.int64))
        col_start.append(q)
    col_req = np.concatenate(col_req)
    col_start = np.concatenate(col_start)
    ncol = len(col_req)
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    cost = (dec.w[col_req] * col_start).astype(float)
    h.addVars(ncol, np.zeros(ncol), np.ones(ncol))
    idx = np.arange(ncol, dtype=np.int32)
    h.changeColsCost(ncol, idx, cost)
    h.changeColsIntegrality(ncol, idx, np.ones(ncol, dtype=np.uint8))
    # assignment rows: columns are grouped by request already
    local = np.searchsorted(free_set, col_req)  # free_set is sorted
    counts = np.bincount(local, minlength=len(free_set))
    row_starts = (np.cumsum(counts) - counts).astype(np.int32)
    h.addRows(len(free_set), np.ones(len(free_set)), np.ones(len(free_set)), ncol, row_starts, idx, np.ones(ncol))
    # memory rows
    oc = dec.o[col_req]
    col = np.repeat(np.arange(ncol), oc)
    age = np.arange(int(oc.sum())) - np.repeat(np.cumsum(oc) - oc, oc) + 1
    rnd = col_start[col] + age
    coef = dec.s[col_req[col]] + age
    biggest = np.zeros((len(free_set), top), dtype=np.int64)
    np.maximum.at(biggest, (local[col], rnd), coef)
    need = biggest.sum(axis=0)
    keep = need[rnd] > cap[rnd]
    if keep.any():
        rk, cc, vv = rnd[keep], col[keep], coef[keep]
        order = np.lexsort((cc, rk))
        rk, cc, vv = rk[order], cc[order], vv[order]
        rows = np.unique(rk)
        rs = np.searchsorted(rk, rows).astype(np.int32)
        h.addRows(len(rows), np.full(len(rows), -np.inf), cap[rows].astype(float), len(cc), rs,
                  cc.astype(np.int32), vv.astype(float))
    x0 = (col_start == starts[col_req]).astype(float)
    options = {"mip_abs_gap": 1.0 - 1e-6} if integral else None
    res, values = solve_highspy(h, time_limit_s=max(time_limit_s, 0.01), rel_gap=0.0, threads=1, seed=seed,
                                warm_start=x0, options=options)
    if values is None:
        return None, res
    chosen = np.asarray(values[:ncol]) > 0.5
    new = starts.copy()
    new[col_req[chosen]] = col_start[chosen]
    if int(chosen.sum()) != len(free_set):
        return None, res
    return new, res


def _lns(dec: _Decoder, starts: np.ndarray, cost: float, rng, clock: _Clock, stats: dict, *,
         sub_limit_s: float, integral: bool, seed: int) -> tuple[np.ndarray, float]:
    """Adaptive window / related-set LNS of §3 from ``starts``; returns the best (starts, cost)."""
    n = len(starts)
    width = 24.0  # W, rounds; grows and shrinks with the sub-MIP outcome
    size = 10.0  # K, requests of the 'related' neighbourhood
    t0 = None
    step = 0
    while clock.left() > 0.02 and clock.tick():
        kind = LNS_KINDS[step % len(LNS_KINDS)]
        step += 1
        makespan = int((starts + dec.o).max())
        W = max(4, int(round(width)))
        whole = False
        if kind == "window" and W >= makespan:
            # the window holds every request: the sub-problem is the whole time-indexed IP with the
            # proven windows [a_i, T - o_i], so an optimal sub-MIP proves the incumbent optimal
            whole = True
            free_set = np.arange(n)
            ranges = [(dec.A[i], dec.proven - dec.O[i]) for i in range(n)]
        elif kind == "window":
            if t0 is None or t0 >= makespan:
                t0 = int(rng.integers(0, max(1, W // 2)))
            free_set = np.nonzero((starts >= t0) & (starts < t0 + W))[0]
            ranges = [(max(int(dec.a[i]), t0 - W // 2), t0 + W + W // 2) for i in free_set]
            t0 += max(1, W // 2)
        else:
            K = min(n, max(3, int(round(size))))
            pivot = int(rng.integers(n))
            near = np.argsort(np.abs(starts - starts[pivot]) + rng.random(n) * 0.5, kind="stable")[:K]
            free_set = np.sort(near)
            ranges = [(max(int(dec.a[i]), int(starts[i]) - W), int(starts[i]) + W) for i in free_set]
        if len(free_set) == 0:
            continue
        # starts after the proven horizon T - o_i (models/kv_schedule.py) are never needed
        ranges = [(lo, max(min(hi, dec.proven - dec.O[i]), int(starts[i]))) for i, (lo, hi) in zip(free_set, ranges)]
        limit = min(sub_limit_s, clock.left())
        if limit <= 0.02:
            break
        stats["lns_steps"] += 1
        stats[f"lns_{kind}_steps"] += 1
        new, res = _sub_mip(dec, starts, free_set, ranges, time_limit_s=limit, seed=seed + step, integral=integral)
        if res is not None and res.status == "optimal" and res.wall_seconds < 0.25 * limit:
            width, size = min(width * 1.25, 400.0), min(size * 1.25, float(n))
        elif res is not None and res.status == "time_limit":
            width, size = max(width * 0.8, 4.0), max(size * 0.8, 3.0)
        if new is not None:
            c = _cost(dec, new)
            if c < cost - 1e-9 and _feasible(dec, new):
                starts, cost = new, c
                stats["lns_improvements"] += 1
                stats[f"lns_{kind}_improvements"] += 1
        if whole and res is not None and res.status == "optimal":
            stats["proven_optimal"] = True
            break
    stats["lns_final_window"] = round(width, 1)
    return starts, cost


# ----------------------------------------------------------------------------- entry point

def improve_schedule(instance: KVScheduleInstance, schedule: KVSchedule, *, seconds: float, seed: int = 0,
                     strategy: str = "hybrid", ils_share: float = 0.9, sub_limit_s: float = 1.0,
                     max_rounds: int | None = None) -> tuple[KVSchedule, dict]:
    """Improve ``schedule`` within ``seconds`` of wall time (module docstring); never returns a worse one.

    ``schedule``'s preempted attempts are dropped (its final starts are a non-preemptive schedule).
    Returns the best schedule and a stats dict (``initial``, ``final``, ``seconds``, counts per phase).
    """
    if strategy not in STRATEGIES:
        raise InputError("strategy", f"must be one of {', '.join(STRATEGIES)}; got '{strategy}'")
    if seconds is None or not seconds >= 0 or not math.isfinite(seconds):
        raise InputError("seconds", f"must be a finite number >= 0, got {seconds!r}")
    t_start = time.perf_counter()
    arr = _Arrays.of(instance)
    dec = _Decoder(arr)
    starts = _input_starts(instance, schedule)
    if not _feasible(dec, starts):
        raise InputError("schedule", "the schedule to improve is infeasible (a start before its arrival, or a round over memory_tokens)")
    initial = _cost(dec, starts)
    best_starts, best_cost = starts.copy(), initial
    rng = np.random.default_rng(seed)
    stats = {"initial": initial, "strategy": strategy, "seed": seed, "evaluations": 0, "ils_improvements": 0,
             "ils_kicks": 0, "lns_steps": 0, "lns_window_steps": 0, "lns_related_steps": 0, "lns_improvements": 0,
             "lns_window_improvements": 0, "lns_related_improvements": 0, "proven_optimal": False,
             "ils_stalled": False}
    n = instance.n
    integral = instance.objective in ("total_latency", "makespan") or all(float(r.weight).is_integer()
                                                                         for r in instance.requests)
    lns_ok = instance.objective != "makespan"
    if seconds > 0 and n > 1:
        share = 1.0 if (strategy == "ils" or not lns_ok) else (0.0 if strategy == "lns" else ils_share)
        rounds_ils = None if max_rounds is None else int(max_rounds * share)
        if share > 0:
            clock = _Clock(seconds * share, rounds_ils)
            orders = [sorted(range(n), key=lambda i: (int(starts[i]), int(arr.o[i]), i)),
                      sorted(range(n), key=lambda i: (int(arr.a[i]), int(arr.o[i]), i))]
            stall = ILS_STALL_KICKS if strategy == "hybrid" and lns_ok else None
            found, c = _ils(dec, orders, rng, clock, stats, best_cost, stall_kicks=stall)
            if found is not None and c < best_cost - 1e-9 and _feasible(dec, found):
                best_starts, best_cost = found, c
        stats["ils_best"] = best_cost
        if lns_ok and strategy != "ils":
            left = seconds - (time.perf_counter() - t_start)
            clock = _Clock(max(left, 0.0), None if max_rounds is None else max_rounds - (rounds_ils or 0))
            best_starts, best_cost = _lns(dec, best_starts, best_cost, rng, clock, stats, sub_limit_s=sub_limit_s,
                                          integral=integral, seed=seed)
    stats["final"] = best_cost
    stats["seconds"] = round(time.perf_counter() - t_start, 3)
    method = schedule.method if best_cost >= initial else f"improve[{strategy}]"
    out = _schedule(instance, best_starts, method or f"improve[{strategy}]")
    return out, stats
