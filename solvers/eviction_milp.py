"""Solving the keep-interval program of ``models/eviction.py`` at trace scale: the MILP or its LP
relaxation through HiGHS (``solvers/highs.solve_highspy``), and a primal plan from the LP.

``solve_direct``: build (``models.eviction.build_highs``) and solve; ``round_lp`` + ``fill_plan``: an
integral plan from the LP's fractional values (a Belady-like sweep that keeps the largest LP values
within capacity, then a greedy fill of free room); with ``fix_from`` the MILP is restricted to the
intervals the LP left fractional (plans feasible for the whole program, no bound for it).
"""
from __future__ import annotations

import heapq
import math
from typing import Sequence

from servopt.models.eviction import (IntervalProgram, build_highs, complete_flows, interval_program,
                                     x_from_hits)


def solve_direct(instance, *, caps: Sequence[int], weights: Sequence[float] | None, time_limit_s: float,
                 rel_gap: float = 1e-6, relax: bool = False, warm_hits: Sequence[int] | None = None,
                 node_limit: int | None = None, fix_from=None, prog: IntervalProgram | None = None):
    """Build the program in highspy and solve it; returns (SolveResult, IntervalProgram, column values).

    ``fix_from``: fractional interval values (an LP solution); intervals at 0 or 1 there are fixed, so
    only the fractional ones stay free (a restricted MILP whose plans are feasible for the full one).
    ``prog``: a program already built for the same instance, capacities and weights."""
    from servopt.solvers.highs import solve_highspy

    prog = prog if prog is not None else interval_program(instance, caps, weights)
    h = build_highs(prog, relax=relax, fix_from=fix_from)
    warm = None
    if warm_hits is not None and not relax:
        warm = x_from_hits(prog, warm_hits)
        complete_flows(prog, warm, caps, instance)
    res, values = solve_highspy(h, time_limit_s=time_limit_s, rel_gap=rel_gap, warm_start=warm, sense="min",
                                node_limit=node_limit)
    return res, prog, values


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
