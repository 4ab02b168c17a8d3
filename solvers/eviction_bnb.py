r"""Exact branch-and-bound for the keep-interval program of ``models/eviction.py`` over *runs*.

The MILP gives every (request, depth) hit its own binary ``x_k``. On traces with long shared prefixes
most of those binaries come in runs that cover exactly the same steps, and HiGHS's search spends its
time in LPs of many thousand columns (measured: a 500-request synthetic slice, 8,751 intervals, 87
nodes in 60 s). This search works on the runs instead; its node LP has one column per run.

Symbols (those of ``models/eviction.py``; ``w_d`` the saving of a hit at depth ``d``):

* run ``g``: the depths ``a_g .. a_g + L_g - 1`` of request ``j_g`` whose keep intervals all start at the
  same request ``i_g`` (so they all cover the steps ``i_g .. j_g - 1``). The runs of one request, in
  depth order, form its chain. ``V_g(u) = sum_{m < u} w_{a_g + m}``.
* a plan keeps a prefix of each run: ``u_g \in {0..L_g}`` hits, and the next run of the chain may be
  hit only if ``u_g = L_g`` (the prefix rule). Capacity at step ``t``:
  ``sum_{g covers t} u_g <= C_t``. Objective ``max sum_g V_g(u_g)``.
* node: a box ``lo_g <= u_g <= hi_g`` per run (the root's box holds the presolve's fixings).

**Lemma (uniform runs).** If ``w`` is non-decreasing in depth, the LP relaxation of the MILP restricted
to a node's box has an optimal solution in which, on each run, ``x`` is 1 on depths below ``lo_g``, 0
from ``hi_g`` on, and one value ``y_g`` on ``[lo_g, hi_g)``. *Proof.* The depths of ``[lo_g, hi_g)``
cover the same steps, so the capacity rows see only their sum ``s``; the prefix rows make ``x``
non-increasing along them. Among non-increasing vectors in ``[0,1]`` with sum ``s``, the constant one
maximises ``sum w_d x_d`` when ``w`` is non-decreasing (averaging any two unequal entries moves value
from a shallower to a deeper depth, which never loses), and it keeps the rows to the neighbouring runs:
its value is the largest the run's last depth can take for that sum. So the node LP is, exactly,

  ``max sum_g [V_g(lo_g) + (V_g(hi_g) - V_g(lo_g)) y_g]``
  ``s.t. sum_{g covers t} (lo_g + (hi_g - lo_g) y_g) <= C_t`` (written as the flow rows of
  ``models/eviction.py``, two nonzeros per run), ``y_{g'} <= y_g`` for consecutive runs of a chain,
  ``0 <= y <= 1``,

and at the root it equals the MILP's LP relaxation (``tests/test_eviction_bnb.py`` checks both). The
integrality gap is the convexity of ``V_g``: the LP values ``y`` of a run at ``y V_g(L_g)``, a plan
that uses the same room keeps the run's cheap shallow blocks, ``V_g(y L_g)``.

**Search.** Best-first branch-and-bound (Land and Doig, Econometrica 28, 1960) on the integer hit
depths: branch on the run with the largest convexity loss ``(V(hi) - V(lo)) y - (V(m) - V(lo))``,
``m = lo + floor(y (hi - lo))``, into ``u_g <= m`` and ``u_g >= m + 1``; a cut-down run empties the rest
of its chain, a raised one fills the runs before it. A node whose LP has every ``y`` in {0, 1} is a
plan. Every tenth node rounds its LP down and fills free room greedily (a plan). Nodes within
``rel_gap`` of the incumbent are pruned; the bound reported is the largest bound of a node not
explored or pruned, so it is a valid upper bound. Each node LP starts from the last basis (dual
simplex in HiGHS, only the changed runs' coefficients rewritten).

Measured (``benchmarks/eviction.py``, parts C and E; a shared 2-core machine, 60 s limit): every one of
78 500-request slices of the two Mooncake traces at C = 250, 500 and 1,000 blocks proven optimal, the
slowest in 49 s (60,559 nodes); the five slices where HiGHS's MILP stopped 0.3-3.1 % short in 7-47 s.
"""
from __future__ import annotations

import heapq
import math
import time
from dataclasses import dataclass, field
from typing import Sequence


@dataclass(frozen=True)
class Run:
    """Depths ``first_depth .. first_depth + length - 1`` of ``request``, all kept from the same request."""

    request: int
    first_depth: int
    length: int
    start_step: int  # segment of the intervals' start request (the flow row that adds the run)
    end_step: int  # segment of the request (the flow row that removes it)
    values: tuple  # V(u) for u = 0..length
    lo: int  # root box (presolve's fixings)
    hi: int
    prev: int | None  # the run before it in its request's chain
    next: int | None


@dataclass
class SearchResult:
    """What the search found: a plan (hits per request), its value and a valid upper bound."""

    objective: float
    bound: float
    hits: list
    nodes: int
    proven: bool
    status: str  # "optimal", "time_limit", "node_limit" or "lp_error"
    seconds: float
    runs: int
    root_bound: float | None = None
    notes: list = field(default_factory=list)


def non_decreasing(weights: Sequence[float] | None) -> bool:
    """The lemma's condition (unit weights included)."""
    return weights is None or all(b >= a - 1e-12 for a, b in zip(weights, weights[1:]))


def runs_of(prog, instance, caps: Sequence[int]):
    """The runs of ``prog``, and the capacity per *segment*: the steps between two consecutive steps where
    some run starts or ends (caches one after another). Inside a segment every run's usage is constant,
    so one capacity row, the segment's smallest ``C_t``, stands for all its steps (fewer LP rows). Runs'
    ``start_step``/``end_step`` are segment indices; ``first[s]``: segment ``s`` opens its cache."""
    import numpy as np

    from servopt.instances.eviction import replica_indices

    by_request: dict = {}
    for (j, d), k in prog.hit_col.items():
        by_request.setdefault(j, []).append((d, k))
    weights = np.asarray(prog.weights, dtype=float)
    lower = (np.zeros(prog.K) if prog.col_lower is None else np.asarray(prog.col_lower[:prog.K], dtype=float))
    upper = np.asarray(prog.col_upper[:prog.K], dtype=float)
    spans = []  # (request, first depth, interval columns, start request)
    for j in sorted(by_request):
        cols = [k for _, k in sorted(by_request[j])]
        a = 0
        for d in range(1, len(cols) + 1):
            if d == len(cols) or prog.interval_start[cols[d]] != prog.interval_start[cols[a]]:
                spans.append((j, a, cols[a:d], prog.interval_start[cols[a]]))
                a = d
    events = {i for _, _, _, i in spans} | {j for j, _, _, _ in spans}
    segment_of, capacity, first = {}, [], []
    for idx in replica_indices(instance):
        for p, i in enumerate(idx):
            if p == 0 or i in events:
                capacity.append(float(caps[i]))
                first.append(p == 0)
            else:
                capacity[-1] = min(capacity[-1], float(caps[i]))
            segment_of[i] = len(capacity) - 1
    runs: list[Run] = []
    prev = None
    for n, (j, a, seg, i) in enumerate(spans):
        if a == 0:
            prev = None
        values = tuple(float(v) for v in np.concatenate([[0.0], np.cumsum(weights[seg])]))
        # presolve fixes a leading run of depths at 1; an upper bound of 0 ends the chain
        lo = int(np.count_nonzero(lower[seg] >= 1))
        hi = next((m for m, k in enumerate(seg) if upper[k] <= 0), len(seg))
        runs.append(Run(j, a, len(seg), segment_of[i], segment_of[j], values, min(lo, hi), hi, prev, None))
        prev = len(runs) - 1
    for g, run in enumerate(runs):
        if run.prev is not None:
            runs[run.prev] = _with_next(runs[run.prev], g)
    return runs, np.array(capacity), first


def _with_next(run: Run, g: int) -> Run:
    from dataclasses import replace

    return replace(run, next=g)


class _NodeLP:
    """The node LP of the module docstring in one ``highspy.Highs``, re-used from node to node."""

    def __init__(self, runs: Sequence[Run], capacity, first):
        import highspy
        import numpy as np

        self.runs = runs
        G, T = len(runs), len(capacity)
        self.G = G
        h = highspy.Highs()
        h.setOptionValue("output_flag", False)
        h.setOptionValue("threads", 1)
        inf = highspy.kHighsInf
        h.addVars(G + T, np.zeros(G + T), np.concatenate([np.ones(G), np.full(T, inf)]))  # y_g, then slack f_t
        starts, index, value = [], [], []
        for t in range(T):
            starts.append(len(index))
            index.append(G + t)
            value.append(1.0)
            if not first[t]:
                index.append(G + t - 1)
                value.append(-1.0)
        self.base_rhs = np.array([capacity[t] - (0.0 if first[t] else capacity[t - 1]) for t in range(T)])
        h.addRows(T, self.base_rhs, self.base_rhs, len(index), np.array(starts, dtype=np.int32),
                  np.array(index, dtype=np.int32), np.array(value, dtype=float))
        for g, run in enumerate(runs):
            if run.next is not None:
                h.addRow(-inf, 0.0, 2, np.array([run.next, g], dtype=np.int32), np.array([1.0, -1.0]))
        self.h = h
        self.lo = np.full(G, -1, dtype=np.int64)  # the box the LP holds now (-1: not set yet)
        self.hi = np.full(G, -1, dtype=np.int64)
        self.fixed_use = np.zeros(T)  # per flow row: the change of sum_g lo_g it carries
        self.fixed_value = 0.0  # sum_g V_g(lo_g)

    def set_box(self, lo, hi) -> None:
        import numpy as np

        h, runs = self.h, self.runs
        touched = set()
        for g in np.nonzero((lo != self.lo) | (hi != self.hi))[0]:
            run = runs[g]
            old_lo = max(0, int(self.lo[g]))
            self.fixed_value += run.values[lo[g]] - run.values[old_lo]
            self.fixed_use[run.start_step] += lo[g] - old_lo
            self.fixed_use[run.end_step] -= lo[g] - old_lo
            touched.update((run.start_step, run.end_step))
            width = float(hi[g] - lo[g])
            h.changeCoeff(run.start_step, int(g), width)
            h.changeCoeff(run.end_step, int(g), -width)
            h.changeColCost(int(g), -(run.values[hi[g]] - run.values[lo[g]]))  # HiGHS minimises
            if width > 0:
                h.changeColBounds(int(g), 0.0, 1.0)
            else:  # y_g stands for the run's last depth in the chain rows: 1 if the run is full
                v = 1.0 if lo[g] == run.length else 0.0
                h.changeColBounds(int(g), v, v)
            self.lo[g], self.hi[g] = lo[g], hi[g]
        for t in touched:
            rhs = float(self.base_rhs[t] - self.fixed_use[t])
            h.changeRowBounds(int(t), rhs, rhs)

    def solve(self, seconds_left: float = math.inf):
        """(LP value, y) of the box set last; (None, None) if the box is infeasible. Raises TimeoutError
        past ``seconds_left``, RuntimeError when HiGHS ends otherwise twice (the second time from a
        cleared basis)."""
        import highspy
        import numpy as np

        MS = highspy.HighsModelStatus
        # HiGHS's time limit counts its run time summed over every run of this object
        self.h.setOptionValue("time_limit", self.h.getRunTime() + max(0.01, seconds_left)
                              if math.isfinite(seconds_left) else highspy.kHighsInf)
        for attempt in range(2):
            self.h.run()
            status = self.h.getModelStatus()
            if status == MS.kTimeLimit:
                raise TimeoutError("node LP reached the time limit")
            if status == MS.kOptimal:
                y = np.clip(np.array(self.h.getSolution().col_value)[:self.G], 0.0, 1.0)
                return -self.h.getInfo().objective_function_value + self.fixed_value, y
            if status == MS.kInfeasible:
                return None, None
            self.h.clearSolver()
        raise RuntimeError(f"node LP ended {self.h.modelStatusToString(status)}")


def _propagate(runs: Sequence[Run], lo, hi, g: int) -> bool:
    """The prefix rule after run ``g``'s box changed; False if a box became empty."""
    run = runs[g]
    if hi[g] < run.length:  # not full: the rest of the chain cannot be hit
        n = run.next
        while n is not None:
            if lo[n] > 0:
                return False
            hi[n] = 0
            n = runs[n].next
    if lo[g] > 0:  # hit at all: every run before it is full
        p = run.prev
        while p is not None:
            if hi[p] < runs[p].length:
                return False
            lo[p] = runs[p].length
            p = runs[p].prev
    return bool(lo[g] <= hi[g])


def _hit_depths(runs: Sequence[Run], u, n: int) -> tuple[float, list]:
    """Value and hits per request of run depths ``u`` (a run counts only after full runs before it)."""
    hits = [0] * n
    value = 0.0
    for g, run in enumerate(runs):
        if run.prev is None:
            k = g
            while k is not None:
                hits[runs[k].request] += int(u[k])
                value += runs[k].values[int(u[k])]
                if u[k] < runs[k].length:
                    break
                k = runs[k].next
    return value, hits


def _round_and_fill(runs: Sequence[Run], capacity, lo, hi, y, n: int) -> tuple[float, list]:
    """A plan near the node LP: round each run down, then extend runs (highest ``y`` first, then value
    per block-step) while every step they cover has room."""
    import numpy as np

    G = len(runs)
    u = np.array([lo[g] + int(math.floor(y[g] * (hi[g] - lo[g]) + 1e-9)) for g in range(G)], dtype=np.int64)
    for g, run in enumerate(runs):  # a run after a non-full one keeps nothing (chains run in index order)
        if run.prev is not None and u[run.prev] < runs[run.prev].length:
            u[g] = 0
    T = len(capacity)
    delta = np.zeros(T + 1)
    for g, run in enumerate(runs):
        delta[run.start_step] += u[g]
        delta[run.end_step] -= u[g]
    room = capacity - np.cumsum(delta)[:T]
    order = sorted(range(G), key=lambda g: (-round(float(y[g]), 6),
                                             -runs[g].values[-1] / max(1, runs[g].length * (runs[g].end_step - runs[g].start_step))))
    for _ in range(3):
        grown = False
        for g in order:
            run = runs[g]
            if u[g] >= hi[g] or (run.prev is not None and u[run.prev] < runs[run.prev].length):
                continue
            extra = int(min(hi[g] - u[g], room[run.start_step:run.end_step].min()))
            if extra > 0:
                u[g] += extra
                room[run.start_step:run.end_step] -= extra
                grown = True
        if not grown:
            break
    return _hit_depths(runs, u, n)


def search(prog, instance, caps: Sequence[int], *, time_limit_s: float, rel_gap: float = 1e-4,
           node_limit: int | None = None, incumbent_hits: Sequence[int] | None = None) -> SearchResult:
    """Best-first branch-and-bound on the runs of ``prog`` (module docstring).

    ``prog.weights`` must be non-decreasing in depth (``non_decreasing``); ``incumbent_hits``: a feasible
    plan to start from (hits per request). Stops when proven (every open node within ``rel_gap`` of the
    plan), at ``time_limit_s`` or after ``node_limit`` nodes."""
    import numpy as np

    from servopt.models.eviction import plan_value

    t0 = time.perf_counter()
    depth_weights = _depth_weights(prog)
    if not non_decreasing(depth_weights):
        raise ValueError("the run search needs savings that do not decrease with depth")
    runs, capacity, first = runs_of(prog, instance, caps)
    n = prog.n
    best_hits = list(incumbent_hits) if incumbent_hits is not None else [0] * n
    best = plan_value(best_hits, depth_weights)
    if not runs:
        return SearchResult(best, best, best_hits, 0, True, "optimal", time.perf_counter() - t0, 0, best)
    lp = _NodeLP(runs, capacity, first)
    root_lo = np.array([r.lo for r in runs], dtype=np.int64)
    root_hi = np.array([r.hi for r in runs], dtype=np.int64)
    for g in range(len(runs)):  # the presolve's fixings, spread along the chains
        if not _propagate(runs, root_lo, root_hi, g):
            raise ValueError("the presolve's fixings contradict the prefix rule")

    def tol(v: float) -> float:
        return max(1e-9, rel_gap * max(1.0, abs(v)))

    # a node: (-bound from its parent, counter, runs whose box differs from the root's, their lo, their hi)
    heap: list = [(-math.inf, 0, np.zeros(0, dtype=np.int64), root_lo[:0], root_hi[:0])]
    count, nodes, pruned_bound, root_bound = 1, 0, -math.inf, None
    status = "optimal"
    notes: list = []
    while heap:
        if time.perf_counter() - t0 > time_limit_s:
            status = "time_limit"
            break
        if node_limit is not None and nodes >= node_limit:
            status = "node_limit"
            break
        parent_bound = -heap[0][0]
        if parent_bound <= best + tol(best):
            pruned_bound = max(pruned_bound, parent_bound)
            heap = []  # best-first: every other open node is within the tolerance too
            break
        item = heapq.heappop(heap)
        _, _, changed, c_lo, c_hi = item
        lo, hi = root_lo.copy(), root_hi.copy()
        lo[changed], hi[changed] = c_lo, c_hi
        lp.set_box(lo, hi)
        try:
            value, y = lp.solve(time_limit_s - (time.perf_counter() - t0))
        except TimeoutError:
            heapq.heappush(heap, item)  # its bound still counts
            status = "time_limit"
            break
        except RuntimeError as exc:
            heapq.heappush(heap, item)
            status = "lp_error"
            notes.append(str(exc))
            break
        nodes += 1
        if value is None:
            continue
        if root_bound is None:
            root_bound = value
        if value <= best + tol(best):
            pruned_bound = max(pruned_bound, value)
            continue
        width = (hi - lo).astype(float)
        fractional = np.nonzero((y > 1e-7) & (y < 1 - 1e-7) & (width > 0))[0]
        if not len(fractional):  # the LP's solution is a plan
            best, best_hits = _hit_depths(runs, lo + np.round(y * width).astype(np.int64), n)
            continue
        if nodes % 10 == 1:
            h_value, h_hits = _round_and_fill(runs, capacity, lo, hi, y, n)
            if h_value > best:
                best, best_hits = h_value, h_hits
        branch, top = None, -1.0
        for g in fractional:
            run = runs[g]
            m = int(lo[g] + math.floor(y[g] * width[g] + 1e-9))
            loss = (run.values[hi[g]] - run.values[lo[g]]) * y[g] - (run.values[m] - run.values[lo[g]])
            if loss > top:
                branch, top = (int(g), m), loss
        g, m = branch
        for side in ("down", "up"):
            lo2, hi2 = lo.copy(), hi.copy()
            if side == "down":
                hi2[g] = m
            else:
                lo2[g] = m + 1
            if lo2[g] > hi2[g] or not _propagate(runs, lo2, hi2, g):
                continue
            diff = np.nonzero((lo2 != root_lo) | (hi2 != root_hi))[0]
            heapq.heappush(heap, (-value, count, diff, lo2[diff], hi2[diff]))
            count += 1
    open_bound = max((-item[0] for item in heap), default=-math.inf)
    bound = max(best, pruned_bound, open_bound)  # infinite if the root LP never solved
    proven = not heap
    return SearchResult(best, bound, best_hits, nodes, proven, status if not proven else "optimal",
                        time.perf_counter() - t0, len(runs), root_bound, notes)


def _depth_weights(prog) -> list[float]:
    """``w_d`` per depth as the program holds it (every interval of depth ``d`` carries ``w_d``)."""
    by_depth: dict = {}
    for (j, d), k in prog.hit_col.items():
        by_depth[d] = prog.weights[k]
    return [by_depth[d] for d in sorted(by_depth)] if by_depth else []
