"""Solving the keep-interval program of ``models/eviction.py`` at trace scale: the MILP or its LP
relaxation through HiGHS (``solvers/highs.solve_highspy``), and a primal plan from the LP.

``solve_direct``: build (``models.eviction.build_highs``) and solve; ``round_lp`` + ``fill_plan``: an
integral plan from the LP's fractional values (a Belady-like sweep that keeps the largest LP values
within capacity, then a greedy fill of free room); with ``fix_from`` the MILP is restricted to the
intervals the LP left fractional (plans feasible for the whole program, no bound for it).

``strengthen_lp``: the LP with capacity covers (``models/eviction.py``; separated by
``CoverSeparator``) added round after round: a tighter bound, and rows that ``solve_direct(cuts=...)``
can hand to the MILP. Measured on 500-request Mooncake slices (benchmarks/results/eviction.md, part C):
the LP's integrality gap is where a long shared prefix is kept fractionally along its whole chain; the
covers remove the part a single capacity row can see (about half of it on the hardest slices). As
MILP rows they slowed HiGHS's nodes more than they helped, so ``servopt solve`` uses them for the bound
when the MILP stops open (``servopt/kinds/eviction.py``).
"""
from __future__ import annotations

import heapq
import math
from typing import Sequence

from servopt.models.eviction import (IntervalProgram, build_highs, complete_flows, interval_program,
                                     x_from_hits)


def solve_direct(instance, *, caps: Sequence[int], weights: Sequence[float] | None, time_limit_s: float,
                 rel_gap: float = 1e-6, relax: bool = False, warm_hits: Sequence[int] | None = None,
                 node_limit: int | None = None, fix_from=None, prog: IntervalProgram | None = None, cuts=(),
                 highs_options: dict | None = None):
    """Build the program in highspy and solve it; returns (SolveResult, IntervalProgram, column values).

    ``fix_from``: fractional interval values (an LP solution); intervals at 0 or 1 there are fixed, so
    only the fractional ones stay free (a restricted MILP whose plans are feasible for the full one).
    ``prog``: a program already built for the same instance, capacities and weights. ``cuts``: capacity
    covers from ``strengthen_lp`` (valid for every integral plan, so the optimum is unchanged)."""
    import numpy as np

    from servopt.solvers.highs import solve_highspy

    prog = prog if prog is not None else interval_program(instance, caps, weights)
    h = build_highs(prog, relax=relax, fix_from=fix_from, cuts=cuts)
    warm = None
    if warm_hits is not None and not relax:
        warm = x_from_hits(prog, warm_hits)
        if prog.col_lower is not None:  # presolve's fixings: keeping those intervals too stays feasible
            warm[:prog.K] = np.maximum(warm[:prog.K], np.asarray(prog.col_lower[:prog.K]))
        complete_flows(prog, warm, caps, instance)
    res, values = solve_highspy(h, time_limit_s=time_limit_s, rel_gap=rel_gap, warm_start=warm, sense="min",
                                node_limit=node_limit, options=highs_options)
    return res, prog, values


PAIR_CHAINS = 8  # covers that upgrade two chains: tried among this many chains with the largest fractional values


class CoverSeparator:
    """The chains a step's capacity row sees, built once per program.

    Per request ``j`` (a chain): its interval columns by depth ``ks`` and their start positions ``sp`` in
    its cache's step order (non-increasing in depth: a block's ancestors are on every path it is on, so
    they were used at least as recently). At step ``t`` the chain's intervals covering ``t`` are the
    depths ``d >= d0`` with ``sp[d] <= t``.
    """

    def __init__(self, prog: IntervalProgram, instance, caps: Sequence[int]):
        import numpy as np

        from servopt.instances.eviction import replica_indices

        pos_of = {}
        for idx in replica_indices(instance):
            for p, i in enumerate(idx):
                pos_of[i] = p
        col = prog.K
        self.steps = []  # (slack column, capacity, position in its cache, [chain ids covering it])
        first_step = {}
        for idx in replica_indices(instance):
            for p, i in enumerate(idx):
                first_step[i] = len(self.steps)
                self.steps.append((col, int(caps[i]), p, []))
                col += 1
        by_j: dict = {}
        for (j, d), k in prog.hit_col.items():
            by_j.setdefault(j, []).append((d, k))
        self.chains = []  # (ks, sp) with sp negated so that bisect finds d0
        for j, lst in by_j.items():
            lst.sort()
            ks = np.array([k for _, k in lst], dtype=np.int64)
            sp = [pos_of[prog.interval_start[k]] for _, k in lst]
            c = len(self.chains)
            self.chains.append((ks, [-v for v in sp]))
            base = first_step[j] - pos_of[j]  # global step index of the cache's step 0
            for t in range(sp[-1], pos_of[j]):
                self.steps[base + t][3].append(c)

    def separate(self, x, *, max_cuts: int = 400, eps: float = 1e-6) -> list:
        """Violated capacity covers at ``x``, most violated first: (columns, violation) pairs."""
        from bisect import bisect_right

        import numpy as np

        full = []  # per chain: its values and how many leading intervals are at 1
        for ks, _ in self.chains:
            xs = np.asarray(x)[ks]
            full.append((xs, int(np.count_nonzero(xs >= 1 - eps))))  # x is monotone along a chain
        found = []
        for slack_col, cap, t, covering in self.steps:
            if not covering or x[slack_col] >= 1 - eps:
                continue  # a row with a whole block of room left holds no violated cover worth adding
            base = []  # (chain, first covering depth d0, first covering depth not at 1)
            used = 0
            for c in covering:
                ks, neg_sp = self.chains[c]
                d0 = bisect_right(neg_sp, -t - 1)  # sp[d] > t exactly for d < d0
                e = max(full[c][1], d0)
                base.append((c, d0, e))
                used += e - d0
            need = cap + 1 - used  # more blocks the upgraded chain must hold at t to overflow the row
            best = None
            for c, d0, e in base:
                idx = e + need - 1
                if idx < len(full[c][0]):
                    v = float(full[c][0][idx])
                    if v > 1e-3 and (best is None or v > best[0]):
                        best = (v, c, idx)
            # two chains upgraded together (a blocks and need - a): violated when their values sum above 1
            pair = None
            frac = sorted(((float(full[c][0][e]), c, e) for c, d0, e in base if e < len(full[c][0])
                           and full[c][0][e] > 1e-3), reverse=True)[:PAIR_CHAINS]
            for p1 in range(len(frac)):
                for p2 in range(p1 + 1, len(frac)):
                    (_, c1, e1), (_, c2, e2) = frac[p1], frac[p2]
                    v1, v2 = full[c1][0][e1:], full[c2][0][e2:]
                    lo, hi = max(1, need - len(v2)), min(len(v1), need - 1)
                    if lo > hi:
                        continue
                    a = np.arange(lo, hi + 1)
                    tot = v1[a - 1] + v2[need - a - 1]
                    m = int(np.argmax(tot))
                    if pair is None or tot[m] > pair[0]:
                        pair = (float(tot[m]), (c1, e1 + int(a[m]) - 1), (c2, e2 + need - int(a[m]) - 1))
            if pair is not None and pair[0] - 1 > (best[0] if best else 0.0):
                ups = [pair[1], pair[2]]
            elif best is not None:
                ups = [(best[1], best[2])]
            else:
                continue
            # an upgrade reaches down its run of equal values for free (same violation, more blocks held),
            # which lets the cover drop chains at 1 with the fewest blocks: a stronger inequality
            first = {c: d0 for c, d0, _ in base}
            items = []  # (blocks held at t, column, upgraded?)
            for c, idx in ups:
                xs = full[c][0]
                v = xs[idx]
                while idx + 1 < len(xs) and xs[idx + 1] >= v - 1e-9:
                    idx += 1
                items.append((idx - first[c] + 1, int(self.chains[c][0][idx]), True))
            upgraded = {c for c, _ in ups}
            items += [(e - d0, int(self.chains[c][0][e - 1]), False) for c, d0, e in base
                      if e > d0 and c not in upgraded]
            total = sum(u for u, _, _ in items)
            kept = []
            for u, k, up in sorted(items):
                if not up and total - u > cap:
                    total -= u
                    continue
                kept.append(k)
            found.append((kept, sum(x[k] for k in kept) - (len(kept) - 1)))
        found = [f for f in found if f[1] > 1e-3]
        found.sort(key=lambda f: -f[1])
        return found[:max_cuts]

def strengthen_lp(prog: IntervalProgram, instance, caps: Sequence[int], *, time_limit_s: float,
                  max_rounds: int = 200, stall_rounds: int = 8, stall_rel: float = 2e-5):
    """The LP relaxation with capacity covers added round by round (dual simplex from the last basis).

    Stops when no cover is violated, after ``max_rounds``, when ``stall_rounds`` rounds together improved
    the bound by less than ``stall_rel`` (relative), or at ``time_limit_s``. Returns
    ``(bound, x, cuts, first_bound, rounds)``: the last LP's bound (an upper bound on the program's
    optimum; ``None`` if the first LP did not finish) and values, the covers added (column lists), and the
    plain LP's bound."""
    import time

    import highspy
    import numpy as np

    t0 = time.perf_counter()
    sep = CoverSeparator(prog, instance, caps)
    h = build_highs(prog, relax=True)
    h.setOptionValue("output_flag", False)
    h.setOptionValue("threads", 1)
    cuts: list = []
    bounds: list = []
    x = None
    rounds = 0
    while True:
        left = time_limit_s - (time.perf_counter() - t0)
        if left <= 0.05:
            break
        h.setOptionValue("time_limit", left)
        h.run()
        if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            break
        x = np.array(h.getSolution().col_value)
        bounds.append(-h.getInfo().objective_function_value)
        if rounds >= max_rounds or (len(bounds) > stall_rounds
                                    and bounds[-1 - stall_rounds] - bounds[-1] < stall_rel * abs(bounds[-1])):
            break
        found = sep.separate(x)
        if not found:
            break
        rounds += 1
        for cols, _ in found:
            h.addRow(-highspy.kHighsInf, float(len(cols) - 1), len(cols), np.array(cols, dtype=np.int32),
                     np.ones(len(cols)))
            cuts.append(cols)
    if not bounds:
        return None, None, [], None, 0
    # hand on only the covers tight at the last LP: the others no longer shape the bound, and every row
    # makes each node's LP dearer
    tight = [c for c in cuts if sum(x[k] for k in c) >= len(c) - 1 - 1e-6]
    return bounds[-1], x, tight, bounds[0], rounds


def round_lp(prog: IntervalProgram, x, caps: Sequence[int], instance):
    """An integral plan from fractional interval values ``x``: a sweep over each cache's steps keeps every
    interval with ``x_k > 0`` as it starts and, where more than ``C_t`` cover step ``t``, drops the
    lowest ``x_k`` (then the furthest end) until they fit (Belady's rule with the LP's values first);
    then hits that break the prefix rule are dropped. Returns the interval vector (with slacks filled)."""
    import numpy as np

    from servopt.instances.eviction import replica_indices

    K = prog.K
    keep = np.zeros(K, dtype=bool)
    by_start: dict = {}
    for k in range(K):
        if x[k] > 1e-6:
            by_start.setdefault(prog.interval_start[k], []).append(k)
    for idx in replica_indices(instance):
        heap: list = []
        ends_at: dict = {}
        active = 0
        for i in idx:
            for k in ends_at.pop(i, ()):
                if keep[k]:
                    active -= 1
            for k in by_start.get(i, ()):
                end = prog.interval_end[k][0]
                keep[k] = True
                active += 1
                # lowest LP value first, then the furthest end, then the deepest (a parent outlives its child)
                heapq.heappush(heap, (float(x[k]), -end, -prog.interval_end[k][1], k))
                ends_at.setdefault(end, []).append(k)
            while active > caps[i] and heap:
                _, neg_end, _, k = heapq.heappop(heap)
                if not keep[k] or -neg_end <= i:
                    continue
                keep[k] = False
                active -= 1
    out = np.zeros(K + prog.steps)
    for (j, d), k in sorted(prog.hit_col.items(), key=lambda item: item[0][1]):
        if keep[k] and (d == 0 or out[prog.hit_col[(j, d - 1)]] > 0.5):
            out[k] = 1.0
    complete_flows(prog, out, caps, instance)
    return out


def fill_plan(prog: IntervalProgram, xi, caps: Sequence[int], instance, x=None, passes: int = 3):
    """Add intervals to an integral plan ``xi`` (in place) while capacity and the prefix rule allow:
    candidates in order of LP value ``x`` (if given), then value per step kept ``w / (j - i)``; an
    interval joins if its parent's interval to the same request is kept and every step it covers has
    room (a segment tree over the steps of each cache). Returns ``xi``."""
    import numpy as np

    from servopt.instances.eviction import replica_indices

    pos_of: dict = {}
    cache_of: dict = {}
    for c, idx in enumerate(replica_indices(instance)):
        for p, i in enumerate(idx):
            pos_of[i] = p
            cache_of[i] = c
    trees = {}
    for c, idx in enumerate(replica_indices(instance)):
        if idx:
            trees[c] = _MaxTree([-(caps[i]) for i in idx])  # usage - capacity per step, <= 0 when feasible
    for k in range(prog.K):
        if xi[k] > 0.5:
            i, j = prog.interval_start[k], prog.interval_end[k][0]
            trees[cache_of[i]].add(pos_of[i], pos_of[j] - 1, 1)
    order = [k for k in range(prog.K) if xi[k] < 0.5]
    lp = x if x is not None else np.zeros(prog.K)
    order.sort(key=lambda k: (-round(float(lp[k]), 6), -prog.weights[k] / max(1, pos_of[prog.interval_end[k][0]] - pos_of[prog.interval_start[k]])))
    for _ in range(passes):
        added = 0
        rest = []
        for k in order:
            j, d = prog.interval_end[k]
            if d and xi[prog.hit_col[(j, d - 1)]] < 0.5:
                rest.append(k)
                continue
            i = prog.interval_start[k]
            tree, lo, hi = trees[cache_of[i]], pos_of[i], pos_of[j] - 1
            if tree.max(lo, hi) <= -1:
                tree.add(lo, hi, 1)
                xi[k] = 1.0
                added += 1
            else:
                rest.append(k)
        order = rest
        if not added:
            break
    complete_flows(prog, xi, caps, instance)
    return xi


class _MaxTree:
    """Range add, range max over a fixed array (iterative segment tree with lazy tags)."""

    def __init__(self, values):
        n = 1
        while n < len(values):
            n *= 2
        self.n = n
        self.mx = [-math.inf] * (2 * n)
        self.tag = [0] * (2 * n)
        self.mx[n:n + len(values)] = list(values)
        for v in range(n - 1, 0, -1):
            self.mx[v] = max(self.mx[2 * v], self.mx[2 * v + 1])

    def add(self, lo, hi, val, v=1, l=0, r=None):
        if r is None:
            r = self.n - 1
        if hi < l or r < lo:
            return
        if lo <= l and r <= hi:
            self.mx[v] += val
            self.tag[v] += val
            return
        m = (l + r) // 2
        self.add(lo, hi, val, 2 * v, l, m)
        self.add(lo, hi, val, 2 * v + 1, m + 1, r)
        self.mx[v] = max(self.mx[2 * v], self.mx[2 * v + 1]) + self.tag[v]

    def max(self, lo, hi, v=1, l=0, r=None):
        if r is None:
            r = self.n - 1
        if hi < l or r < lo:
            return -math.inf
        if lo <= l and r <= hi:
            return self.mx[v]
        m = (l + r) // 2
        return max(self.max(lo, hi, 2 * v, l, m), self.max(lo, hi, 2 * v + 1, m + 1, r)) + self.tag[v]
