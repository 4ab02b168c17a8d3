r"""The search of solvers/kv_schedule_bnb.py compiled with numba (``engine="compiled"``).

Same tree, same bounds, same rules as the Python search there (its module docstring has the
proofs): chronological branching *start at t* / *not at t* over the candidates of each decision
round, the symmetry rule for twins, the justified-deferral rule, the residual volume / chain /
position bounds, and the Lagrangian bound with the root LP's row duals (LP policy ``root``) or
none (``none``). The differences are about reach, not correctness:

* the dominance memo (same rules: ``MEMO_PER_SET`` newest per unstarted set, a new node drops the
  kept ones it dominates) holds at most ``MEMO_BYTES`` of load vectors (int16) and runs only for
  n <= 62 (the set is a bit mask); a decision node joins it when its stack frame is popped, which
  is when its subtree is done (a frame's in-place chain of decision rounds ends with the last one);
  node counts equal the Python search's on every instance we compared;
* node LPs are never re-solved (HiGHS cannot be called from compiled code), so the LP policies
  ``decision``, ``shallow``, ``quarter`` and ``always`` stay with the Python search.

All three objectives: total and weighted latency (costs add up, the deferral rule applies) and the
makespan (the cost is the latest finish so far, its bound ``max(cost, tau_|U|, max_j L_j)``, no
deferral rule and no LP, as in the Python search).

Measured on the 12 n = 12 instances of git history: benchmarks/results/kv_schedule_exact_lp.md (seeds 0-5 per
arrival model; 2-core development machine, one solve at a time): all 12 proven, 11 of them within
2.7 s, Poisson seed 0 (optimum 551, 6.5 M nodes) in 12.6 s; about 500,000 nodes per second against
about 20,000 in the Python search. Makespan, n = 7: 0.2-0.35 s against 8.7-16 s.

Every function works on plain numpy arrays (``unst[j]`` true while j is unstarted, ``starts[j]`` the
start or -1, ``load[r]`` the tokens held in round r, ``e[j]`` a valid earliest start of unstarted j).
The search is a loop over an explicit stack (``_search``), so that numba can cache the compiled
code on disk (``cache=True``; it cannot cache recursive functions).
"""
from __future__ import annotations

import math
import time
from typing import NamedTuple

import numpy as np
from numba import njit, objmode, types
from numba.typed import Dict

CLOCK_EVERY = 4096  # nodes between two reads of the clock
MEMO_BYTES = 256 * 2**20  # load vectors kept by the dominance memo (int16 per round)
MEMO_PER_SET = 64  # kept decision nodes per unstarted set, as in the Python search
TOTAL_LATENCY, WEIGHTED_LATENCY, MAKESPAN = 0, 1, 2
OBJECTIVE_CODES = {"total_latency": TOTAL_LATENCY, "weighted_latency": WEIGHTED_LATENCY, "makespan": MAKESPAN}


@njit(cache=True)
def _fits(load, cap, o, j, p):
    for k in range(o[j]):
        if load[p + 1 + k] > cap[j, k]:
            return False
    return True


@njit(cache=True)
def _earliest(load, cap, a, o, j, lo):
    p = max(lo, a[j])
    while not _fits(load, cap, o, j, p):
        p += 1
    return p


@njit(cache=True)
def _add(load, s, o, j, p, sign):
    for k in range(o[j]):
        load[p + 1 + k] += sign * (s[j] + k + 1)


@njit(cache=True)
def _bound(t, unst, e, cost, M, a, s, o, w, vol_order, vol, peak, load, objective, scratch):
    """The combinatorial bound of the Python search (``bound`` there), term by term. ``vol_order``
    lists the requests by volume; ``scratch`` (6 x n) holds the small sorted arrays, so that a node
    allocates nothing."""
    n = len(a)
    m = 0
    for j in range(n):
        if unst[j]:
            m += 1
    if m == 0:
        return cost
    if objective == WEIGHTED_LATENCY:
        total = cost
        for j in range(n):
            if unst[j]:
                total += w[j] * (e[j] + o[j] - a[j])
        return total
    L = scratch[0, :m]
    q = 0
    sum_a = 0
    for j in range(n):
        if unst[j]:
            L[q] = e[j] + o[j]
            sum_a += a[j]
            q += 1
    L.sort()
    # the k-th smallest volume is covered by the free capacity of rounds t+1 .. tau_k
    H = len(load) - 1
    by_volume = 0
    k = 0
    q = 0
    while not unst[vol_order[q]]:
        q += 1
    need = vol[vol_order[q]]
    acc = 0
    tt = t
    while k < m:
        tt += 1
        acc += (M - load[tt]) if tt <= H else M
        while k < m and acc >= need:
            by_volume += max(tt, L[k])
            k += 1
            if k < m:
                q += 1
                while not unst[vol_order[q]]:
                    q += 1
                need += vol[vol_order[q]]
    if objective == MAKESPAN:
        return max(cost, tt, L[m - 1])  # all volume fits by round tt; the last release-bound finish
    b = 0
    s_min = 1 << 40
    e_min = 1 << 40
    for j in range(n):
        if unst[j] and 2 * peak[j] > M:
            b += 1
            s_min = min(s_min, s[j])
            e_min = min(e_min, e[j])
    if b < 2:
        return cost + by_volume - sum_a
    head = scratch[1, :b]
    x = scratch[2, :b]
    o_up = scratch[3, :b]
    L_big = scratch[4, :b]
    rest = 0
    q = 0
    for j in range(n):
        if not unst[j]:
            continue
        if 2 * peak[j] > M:
            head[q] = max(0, M - peak[j] - s_min)
            x[q] = o[j] - head[q]
            o_up[q] = o[j]
            L_big[q] = e[j] + o[j]
            q += 1
        else:
            rest += e[j] + o[j]
    by_chain = b * e_min + head.sum() + rest
    x.sort()
    o_up.sort()
    L_big.sort()
    head.sort()  # read from the end: largest head-room first
    for k in range(b):
        by_chain += (b - k) * x[k]
    by_position = rest
    o_acc = 0
    h_acc = 0
    for k in range(b):
        o_acc += o_up[k]
        if k:
            h_acc += head[b - k]
        by_position += max(e_min + o_acc - h_acc, L_big[k])
    return cost + max(by_volume, by_chain, by_position) - sum_a


@njit(cache=True)
def _lagrangian(lp, starts, unst, e, group_of, lo, hi, offset, rc, suffix_min):
    """``L(u)`` of ``_NodeLP.lagrangian`` with the root multipliers; ``lp[0]`` = ``-u b``."""
    total = lp[0]
    for j in range(len(starts)):
        k = group_of[j]
        if starts[j] >= 0:
            p = starts[j]
            if p < lo[k] or p > hi[k]:
                return np.inf
            total += rc[offset[k] + p - lo[k]]
        elif unst[j]:
            first = max(e[j], lo[k])
            if first > hi[k]:
                return np.inf
            total += suffix_min[offset[k] + first - lo[k]]
    return total


@njit(cache=True)
def _prunes(b, best, integral):
    if b == np.inf:
        return True
    if integral:
        return math.ceil(b - 1e-6) >= best - 1e-9
    return b >= best - 1e-9


@njit(cache=True)
def _unjustified(t, wj, wt, wn, unst, starts, load, cap, s, o, peak):
    """Move the deferrals not yet blocked to the front of ``wj``/``wt``; -1 when one can no longer be
    blocked, else their count."""
    n = len(s)
    live = 0
    add_max = np.zeros(0, np.int64)
    for q in range(wn):
        j = wj[q]
        t0 = wt[q]
        p = starts[j]
        blocked = False
        for k in range(o[j]):
            r = t0 + 1 + k
            own = s[j] + r - p if (p >= 0 and p < r <= p + o[j]) else 0
            if load[r] - own > cap[j, k]:
                blocked = True
                break
        if blocked:
            continue
        if t0 + o[j] <= t:
            return -1
        if len(add_max) == 0:
            add_max = np.zeros(o.max() + 2, np.int64)
            for i in range(n):
                if unst[i]:
                    for d in range(1, len(add_max)):
                        add_max[d] += min(s[i] + d, peak[i])
        can_block = False
        for r in range(t + 1, t0 + o[j] + 1):
            own = s[j] + r - p if (p >= 0 and p < r <= p + o[j]) else 0
            extra = add_max[r - t] - (min(s[j] + r - t, peak[j]) if unst[j] else 0)
            if load[r] - own + extra > cap[j, r - t0 - 1]:
                can_block = True
                break
        if not can_block:
            return -1
        wj[live] = j  # live <= q: the entry at q was read above
        wt[live] = t0
        live += 1
    return live


@njit(cache=True)
def _dominated(key, t, cost, load, memo_head, ENT_T, ENT_COST, ENT_NEXT, memo_load):
    """A kept decision node with the same unstarted set, no later round, no higher cost and no more
    load in every round after ``t`` (the Python search's memo test)."""
    e = memo_head[key] if key in memo_head else -1
    while e >= 0:
        if ENT_T[e] <= t and ENT_COST[e] <= cost + 1e-9:
            below = True
            for r in range(t + 1, len(load)):
                if memo_load[e, r] > load[r]:
                    below = False
                    break
            if below:
                return True
        e = ENT_NEXT[e]
    return False


@njit(cache=True)
def _below_from(first, x, y, memo_load):
    """``memo_load[x, r] <= memo_load[y, r]`` for every round ``r >= first``."""
    for r in range(first, memo_load.shape[1]):
        if memo_load[x, r] > memo_load[y, r]:
            return False
    return True


@njit(cache=True)
def _commit(FRAME_PENDING, d, ENT_T, ENT_COST, ENT_KEY, ENT_NEXT, memo_head, memo_count, memo_per_set, memo_load,
            FREE, free_top):
    """Frame ``d`` is popped: its decision nodes' subtrees are done, so they join the memo, as in the
    Python search: a new node first drops the kept nodes of its set that it dominates, and a set keeps
    its ``memo_per_set`` newest nodes (lists run newest first). Dropped slots go to the free stack."""
    e = FRAME_PENDING[d]
    while e >= 0:
        pending_next = ENT_NEXT[e]
        key = ENT_KEY[e]
        count = memo_count[key] if key in memo_count else 0
        head = memo_head[key] if key in memo_head else -1
        prev = -1
        x = head
        while x >= 0:
            nxt = ENT_NEXT[x]
            if (ENT_T[e] <= ENT_T[x] and ENT_COST[e] <= ENT_COST[x] + 1e-9
                    and _below_from(ENT_T[x] + 1, e, x, memo_load)):
                if prev < 0:
                    head = nxt
                else:
                    ENT_NEXT[prev] = nxt
                count -= 1
                FREE[free_top[0]] = x
                free_top[0] += 1
            else:
                prev = x
            x = nxt
        ENT_NEXT[e] = head
        head = e
        count += 1
        if count > memo_per_set:  # drop the oldest, the list's last
            prev = -1
            x = head
            while ENT_NEXT[x] >= 0:
                prev = x
                x = ENT_NEXT[x]
            ENT_NEXT[prev] = -1
            count -= 1
            FREE[free_top[0]] = x
            free_top[0] += 1
        memo_head[key] = head
        memo_count[key] = count
        e = pending_next
    FRAME_PENDING[d] = -1


@njit(cache=True)
def _search(t0, cands0, idx0, e0, unst, starts, cost0, wj0, wt0, load, cap, M, a, s, o, w, vol, peak, order,
            twin_before, objective, integral, justify, use_lp, lp, group_of, lo, hi, offset, rc, suffix_min, best,
            best_starts, stats, deadline, memo_load, memo_per_set):
    """The Python search's ``choose`` / ``decision_round`` recursion as a loop over an explicit stack.

    Frame ``d`` is one node; only the *start at t* branch needs its parent back (to undo the start
    and then take *not at t*), so a frame is pushed for it alone; *not at t* and the jump to the next
    decision round replace the frame in place. Hence every frame below the top waits for its start
    branch, and the bound of what is left unexplored is the least of their bounds and the top's.
    """
    n = len(a)
    wcap = n * (o.max() + 2) + n  # live deferrals: at most o_j per request (their windows are open) + one round's
    T = np.zeros(n + 1, np.int64)
    IDX = np.zeros(n + 1, np.int64)
    NC = np.zeros(n + 1, np.int64)
    MM = np.zeros(n + 1, np.int64)
    WN = np.zeros(n + 1, np.int64)
    J = np.zeros(n + 1, np.int64)
    COST = np.zeros(n + 1)
    B = np.zeros(n + 1)
    PHASE = np.zeros(n + 1, np.int64)  # 0: enter the node; 1: its start branch is done (or impossible)
    STARTED = np.zeros(n + 1, np.bool_)
    E = np.zeros((n + 1, n), np.int64)
    C = np.zeros((n + 1, n), np.int64)
    WJ = np.zeros((n + 1, wcap), np.int64)
    WT = np.zeros((n + 1, wcap), np.int64)
    # dominance memo (the Python search's, module docstring there): entries (t, cost, load) of decision
    # nodes, linked per unstarted set (bit mask); an entry waits on its frame's list until the frame is
    # popped, i.e. until its subtree is done
    use_memo = n <= 62 and memo_load.shape[0] > 0
    memo_head = Dict.empty(key_type=types.int64, value_type=types.int64)
    memo_count = Dict.empty(key_type=types.int64, value_type=types.int64)
    ENT_T = np.empty(memo_load.shape[0], np.int64)
    ENT_COST = np.empty(memo_load.shape[0])
    ENT_KEY = np.empty(memo_load.shape[0], np.int64)
    ENT_NEXT = np.empty(memo_load.shape[0], np.int64)
    FREE = np.empty(memo_load.shape[0], np.int64)  # slots of dropped entries, reused first
    free_top = np.zeros(1, np.int64)
    used = 0
    FRAME_PENDING = np.full(n + 1, -1, np.int64)
    vol_order = np.argsort(vol)
    scratch = np.empty((6, n), np.int64)
    T[0] = t0
    NC[0] = len(cands0)
    C[0, : len(cands0)] = cands0
    IDX[0] = idx0
    MM[0] = unst.sum()
    COST[0] = cost0
    E[0, :] = e0
    WN[0] = len(wj0)
    WJ[0, : len(wj0)] = wj0
    WT[0, : len(wt0)] = wt0
    d = 0
    while d >= 0:
        if PHASE[d] == 1:
            j = J[d]
            t = T[d]
            if STARTED[d]:
                unst[j] = True
                starts[j] = -1
                _add(load, s, o, j, t, -1)
            E[d, j] = _earliest(load, cap, a, o, j, t + 1)
            if justify:
                WJ[d, WN[d]] = j  # j fits at t on the current load: some later start must block it
                WT[d, WN[d]] = t
                WN[d] += 1
            IDX[d] += 1
            PHASE[d] = 0
            continue
        stats[0] += 1
        t = T[d]
        m = MM[d]
        e = E[d]
        if stats[0] % CLOCK_EVERY == 0:
            with objmode(now="float64"):
                now = time.perf_counter()
            if now > deadline:
                open_bound = _bound(t, unst, e, COST[d], M, a, s, o, w, vol_order, vol, peak, load, objective, scratch) if m else COST[d]
                for q in range(d):
                    open_bound = min(open_bound, B[q])
                stats[2] = 1
                best[1] = open_bound
                return
        if m == 0:
            if COST[d] < best[0] - 1e-9:
                best[0] = COST[d]
                best_starts[:] = starts
                stats[3] = 1
            _commit(FRAME_PENDING, d, ENT_T, ENT_COST, ENT_KEY, ENT_NEXT, memo_head, memo_count, memo_per_set, memo_load,
                        FREE, free_top)
            d -= 1
            continue
        b = _bound(t, unst, e, COST[d], M, a, s, o, w, vol_order, vol, peak, load, objective, scratch)
        if _prunes(b, best[0], integral):
            _commit(FRAME_PENDING, d, ENT_T, ENT_COST, ENT_KEY, ENT_NEXT, memo_head, memo_count, memo_per_set, memo_load,
                        FREE, free_top)
            d -= 1
            continue
        if use_lp:
            b = max(b, _lagrangian(lp, starts, unst, e, group_of, lo, hi, offset, rc, suffix_min))
            if _prunes(b, best[0], integral):
                _commit(FRAME_PENDING, d, ENT_T, ENT_COST, ENT_KEY, ENT_NEXT, memo_head, memo_count, memo_per_set, memo_load,
                        FREE, free_top)
                d -= 1
                continue
        B[d] = b
        if IDX[d] == NC[d]:
            # next decision round: the earliest round >= t+1 at which some unstarted ramp fits
            t2 = 1 << 40
            for j in range(n):
                if unst[j]:
                    e[j] = _earliest(load, cap, a, o, j, max(e[j], t + 1))
                    t2 = min(t2, e[j])
            nc = 0
            for q in range(n):
                j = order[q]
                if unst[j] and e[j] == t2:
                    C[d, nc] = j
                    nc += 1
            T[d] = t2
            NC[d] = nc
            IDX[d] = 0
            if justify:
                live = _unjustified(t2, WJ[d], WT[d], WN[d], unst, starts, load, cap, s, o, peak)
                if live < 0:
                    stats[1] += 1
                    _commit(FRAME_PENDING, d, ENT_T, ENT_COST, ENT_KEY, ENT_NEXT, memo_head, memo_count, memo_per_set, memo_load,
                        FREE, free_top)
                    d -= 1
                    continue
                WN[d] = live
            if use_memo:
                key = 0
                for j in range(n):
                    if unst[j]:
                        key |= 1 << j
                if _dominated(key, t2, COST[d], load, memo_head, ENT_T, ENT_COST, ENT_NEXT, memo_load):
                    stats[4] += 1
                    _commit(FRAME_PENDING, d, ENT_T, ENT_COST, ENT_KEY, ENT_NEXT, memo_head, memo_count, memo_per_set, memo_load,
                        FREE, free_top)
                    d -= 1
                    continue
                slot = -1
                if free_top[0] > 0:
                    free_top[0] -= 1
                    slot = FREE[free_top[0]]
                elif used < memo_load.shape[0]:
                    slot = used
                    used += 1
                if slot >= 0:
                    ENT_T[slot] = t2
                    ENT_COST[slot] = COST[d]
                    ENT_KEY[slot] = key
                    memo_load[slot, :] = load
                    ENT_NEXT[slot] = FRAME_PENDING[d]
                    FRAME_PENDING[d] = slot
            continue
        j = C[d, IDX[d]]
        J[d] = j
        PHASE[d] = 1
        STARTED[d] = False
        twin_waiting = False
        for i in range(n):
            if twin_before[j, i] and unst[i]:
                twin_waiting = True
                break
        if twin_waiting or not _fits(load, cap, o, j, t):
            continue
        STARTED[d] = True
        _add(load, s, o, j, t, 1)
        starts[j] = t
        unst[j] = False
        c = d + 1
        for i in range(n):
            E[c, i] = _earliest(load, cap, a, o, i, e[i]) if unst[i] else e[i]
        C[c, :] = C[d, :]
        NC[c] = NC[d]
        IDX[c] = IDX[d] + 1
        T[c] = t
        MM[c] = m - 1
        COST[c] = max(COST[d], t + o[j]) if objective == MAKESPAN else COST[d] + w[j] * (t + o[j] - a[j])
        WN[c] = WN[d]
        WJ[c, : WN[d]] = WJ[d, : WN[d]]
        WT[c, : WN[d]] = WT[d, : WN[d]]
        PHASE[c] = 0
        d = c


def prepare(*, M: int, a, s, o, w, objective: str, integral: bool, justify: bool, order, twin_before, lp=None) -> dict:
    """The arrays ``search`` needs, built once per instance.

    ``lp``: None, or ``(const, rc, suffix_min, group_of, lo, hi, offset)`` from the root LP of ``_NodeLP``
    (``suffix_min`` flattened like ``rc``).
    """
    n = len(a)
    a = np.asarray(a, np.int64)
    s = np.asarray(s, np.int64)
    o = np.asarray(o, np.int64)
    cap = np.full((n, int(o.max())), -1, np.int64)
    for j in range(n):
        cap[j, : o[j]] = M - s[j] - np.arange(1, o[j] + 1)
    prep = {"M": int(M), "a": a, "s": s, "o": o, "w": np.asarray(w, np.float64), "vol": s * o + o * (o + 1) // 2,
            "peak": s + o, "cap": cap, "order": np.asarray(order, np.int64),
            "twin_before": np.asarray(twin_before, np.bool_), "objective": OBJECTIVE_CODES[objective],
            "integral": bool(integral), "justify": bool(justify)}
    if lp is None:
        prep.update(use_lp=False, lp=np.zeros(1), group_of=np.zeros(1, np.int64), lo=np.zeros(1, np.int64),
                    hi=np.zeros(1, np.int64), offset=np.zeros(1, np.int64), rc=np.zeros(1), suffix_min=np.zeros(1))
    else:
        const, rc, suffix_min, group_of, lo, hi, offset = lp
        prep.update(use_lp=True, lp=np.array([const], np.float64), rc=np.asarray(rc, np.float64),
                    suffix_min=np.asarray(suffix_min, np.float64), group_of=np.asarray(group_of, np.int64),
                    lo=np.asarray(lo, np.int64), hi=np.asarray(hi, np.int64), offset=np.asarray(offset, np.int64))
    return prep


def root_node(prep: dict) -> dict:
    """The search's root: nothing started, the first decision round and its candidates."""
    n = len(prep["a"])
    horizon = int(prep["a"].max() + prep["o"].sum())
    load = np.zeros(horizon + int(prep["o"].max()) + 3, np.int64)
    e0 = np.array([_earliest(load, prep["cap"], prep["a"], prep["o"], j, 0) for j in range(n)], np.int64)
    t0 = int(e0.min())
    return {"t": t0, "cands": [int(j) for j in prep["order"] if e0[j] == t0], "idx": 0, "e": e0,
            "unstarted": np.ones(n, np.bool_), "starts": np.full(n, -1, np.int64), "load": load, "cost": 0.0,
            "waits": []}


class Outcome(NamedTuple):
    """What ``search`` found in the subtree it was given."""

    best_cost: float
    best_starts: list  # start round per request of the best schedule (the given one if not improved)
    nodes: int
    deferral_prunes: int
    finished: bool  # False: stopped at the deadline
    open_bound: float  # least bound over what was left unexplored (only when not finished)
    improved: bool  # a schedule better than ``best_cost`` was found
    memo_hits: int


def search(prep: dict, node: dict, *, best_cost: float, best_starts, deadline: float,
           memo_entries: int = 10**7) -> Outcome:
    """Search the subtree of ``node`` (keys as ``root_node`` returns; ``waits`` the deferrals (j, t0)
    not yet blocked) against the incumbent ``best_cost``; stops at ``deadline`` (``time.perf_counter``).
    ``memo_entries`` caps the dominance memo (also capped at ``MEMO_BYTES``); 0 switches it off."""
    n = len(prep["a"])
    waits = np.array(node["waits"], np.int64).reshape(-1, 2)
    best = np.array([best_cost, -np.inf])
    best_out = np.asarray(best_starts, np.int64).copy()
    stats = np.zeros(5, np.int64)  # nodes, deferral prunes, time up, improved, memo hits
    rounds = len(node["load"])
    # no more slots than can be live: MEMO_PER_SET kept per unstarted set, plus the decision nodes
    # still waiting on their frames (at most one per round and frame); dropped slots are reused
    slots = min(memo_entries, MEMO_BYTES // (2 * rounds), MEMO_PER_SET * 2 ** min(n, 40) + (n + 1) * rounds)
    memo_load = np.empty((max(0, slots), rounds), np.int16 if prep["M"] < 2**15 else np.int64)
    _search(int(node["t"]), np.asarray(node["cands"], np.int64), int(node["idx"]),
            np.asarray(node["e"], np.int64).copy(), np.asarray(node["unstarted"], np.bool_).copy(),
            np.asarray(node["starts"], np.int64).copy(), float(node["cost"]), waits[:, 0].copy(), waits[:, 1].copy(),
            np.asarray(node["load"], np.int64).copy(), prep["cap"], prep["M"], prep["a"], prep["s"], prep["o"],
            prep["w"], prep["vol"], prep["peak"], prep["order"], prep["twin_before"], prep["objective"],
            prep["integral"], prep["justify"], prep["use_lp"], prep["lp"], prep["group_of"], prep["lo"], prep["hi"],
            prep["offset"], prep["rc"], prep["suffix_min"], best, best_out, stats, deadline, memo_load, MEMO_PER_SET)
    return Outcome(float(best[0]), [int(p) for p in best_out], int(stats[0]), int(stats[1]), bool(stats[2] == 0),
                   float(best[1]), bool(stats[3]), int(stats[4]))


def compiled_on_disk() -> bool:
    """Whether numba's on-disk cache holds every function of this module, so that a call loads machine
    code (about 1 s) instead of compiling it (15-45 s on a 2-core machine: longer than many time
    limits). Reads numba's cache index files; if numba's internals differ, assume compiled."""
    import os

    try:
        dispatchers = [f for f in globals().values() if hasattr(f, "_cache") and hasattr(f, "py_func")]
        return all(os.path.exists(f._cache._cache_file._index_path) for f in dispatchers)
    except AttributeError:
        return True


def warm_up() -> None:
    """Compile every function on a tiny instance, which writes numba's on-disk cache."""
    import servopt.solvers.kv_schedule_bnb as bnb
    from servopt.instances.kv_schedule import KVScheduleInstance
    from servopt.instances.requests import Request

    requests = tuple(Request(f"r{i}", 0, 1, o) for i, o in enumerate((1, 2, 3)))
    for objective in ("total_latency", "makespan"):
        bnb.branch_and_bound(KVScheduleInstance(6, requests, objective), time_limit_s=600, heuristic_seconds=0.0,
                             engine="compiled", lp_policy="none")


def start_background_warm_up() -> bool:
    """Compile the kernel in a detached process (it outlives the caller and writes the on-disk cache), at
    most once per 10 minutes per cache folder; True if one was started."""
    import os
    import subprocess
    import sys
    import tempfile

    import hashlib

    tag = hashlib.sha1(f"{__file__}|{os.environ.get('NUMBA_CACHE_DIR', '')}".encode()).hexdigest()[:12]
    marker = os.path.join(tempfile.gettempdir(), f"servopt-bnb-warm-up-{tag}")
    try:
        if os.path.exists(marker) and time.time() - os.path.getmtime(marker) < 600:
            return False
        with open(marker, "w", encoding="utf-8") as fh:
            fh.write(str(os.getpid()))
        subprocess.Popen([sys.executable, "-m", "servopt.solvers.kv_schedule_bnb_kernel"], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        return True
    except OSError:
        return False


if __name__ == "__main__":
    warm_up()
