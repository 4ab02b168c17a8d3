r"""The general prefix-cache eviction model as a MILP over keep-intervals (FOO-style).

Instance: ``instances/eviction.py``. Source of the interval formulation: Berger, Beckmann,
Harchol-Balter, "Practical Bounds on Optimal Caching with Variable Object Sizes" (FOO), SIGMETRICS
2018, §4: caching as a min-cost flow in which every pair of consecutive requests of one object is an
arc ("keep interval") that bypasses the time line; our prefix constraint and pinned capacity are
added on top (research/eviction-routing-anchors.md §2.2).

Symbols (per cache/replica ``q``; its requests in list order ``t = 0..m_q-1``; ``h_t[d]`` the block at
depth ``d`` of request ``t``):

* interval ``k = (b, i, j)``: request ``i`` and the next request ``j > i`` of the same cache whose path
  contains block ``b``; keeping ``b`` from after ``i`` until ``j`` arrives covers the steps
  ``i .. j-1`` (step ``t`` = "after serving ``t``"). ``x_k \in {0,1}``.
* ``x_k = 1`` means the hit of ``j`` on ``b`` (``b`` can enter the cache only at its own requests, so a
  hit at ``j`` needs ``b`` kept over the whole interval). Hits must be prefixes:
  ``x_{(h_j[d], ., j)} <= x_{(h_j[d-1], ., j)}`` for ``d >= 1`` (the prefix rule, ``_prefix_rule``).
* capacity ``C_t`` after step ``t`` (``capacity_blocks``, less the blocks pinned by running requests
  when ``pin_running``; ``capacity_after``): ``sum_{k covers t} x_k <= C_t``. Written as flow
  conservation with slack ``f_t = C_t - sum_{k covers t} x_k >= 0`` (FOO's central arc), one row per
  step with O(1) nonzeros per interval end instead of one per covered step (``_flow_rule``):
  ``f_t - f_{t-1} + sum_{k starts at t} x_k - sum_{k last covers t-1} x_k = C_t - C_{t-1}``
  (``f_{-1} = C_{-1} = 0``).
* objective: ``max sum_k w_{d(k)} x_k`` with ``w_d = 1`` (``hit_blocks``) or ``w_d`` = the ms of
  prefilling one block at depth ``d`` (``saved_prefill_ms``, ``saved_ms_per_depth``).

* capacity covers (valid inequalities, separated at the root by ``solvers/eviction_milp.py`` and passed to
  ``build_highs`` as ``cuts``): take a step ``t`` and requests ``j_1..j_m`` with intervals covering ``t``, and
  a depth ``d_q`` for each. If ``j_q`` hits to depth ``d_q`` then, by the prefix rule, it holds at step ``t``
  at least ``u_q = #{d <= d_q : (h_{j_q}[d], ., j_q) covers t}`` blocks; so when ``sum_q u_q > C_t`` they cannot
  all hit: ``sum_q x_{(h_{j_q}[d_q], ., j_q)} <= m - 1``. These are the cover inequalities of the
  precedence-constrained knapsack (Boyd, "Polyhedral results for the precedence-constrained knapsack
  problem", Discrete Applied Mathematics 41, 1993) that one capacity row forms with the prefix chains. They
  cut off the LP's typical fractional point: with ``w_d`` growing in depth, keeping a long shared chain
  "a fraction of the time" (every block at the same value ``v``) is worth ``v sum w`` in the LP, more than
  any integral use of the same room, which must keep the chain's first blocks.

Facts used by tests and docs: with ``w = 1`` and no prefix rows the constraint matrix is an interval
(consecutive-ones) matrix, so the LP is integral and equals Belady's optimum; Belady's plan satisfies
the prefix rows too (it is ancestor-closed), so the MILP with ``w = 1`` equals
``solvers/eviction_belady.py``. With depth-dependent ``w`` the prefix rows bind and the LP relaxation
is only an upper bound (the bound at trace scale).

``build`` gives a Pyomo model (small instances, ``--export``); ``build_highs`` the same program as
arrays in highspy (trace scale; Pyomo's build cost would dominate), solved by
``solvers/eviction_milp.py``. ``extract`` / ``plan_from_x`` turn a solution into a ``CachePlan``.
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Sequence


# ----------------------------------------------------------------------------- cost-model inputs
def saved_ms_per_depth(instance, max_depth: int) -> list[float]:
    """``w_d`` for ``d < max_depth``: one ``block_tokens`` chunk prefilled after ``d * block_tokens`` cached
    tokens, as one iteration of the roofline cost model (``costmodel/roofline.py``, its
    ``iteration_ms_totals`` with ``p`` new tokens, ``c`` context: attention pairs ``p c + p (p + 1) / 2``).
    The iteration's fixed overhead is included: a hit saves the block's whole chunk."""
    from servopt.costmodel.roofline import make_cost_model

    cm = make_cost_model(instance.llm, instance.gpu, instance.tp)
    B = instance.block_tokens
    return [float(cm.iteration_ms_totals(prefill_tokens=B, prefill_attention_pairs=B * d * B + B * (B + 1) / 2,
                                         prefill_context_tokens=d * B, sampled_seqs=0)) for d in range(max_depth)]


def weights_for(instance) -> list[float] | None:
    """Per-depth savings, or None for the unit objective ``hit_blocks``."""
    if instance.objective == "hit_blocks":
        return None
    return saved_ms_per_depth(instance, max(len(r.hash_ids) for r in instance.requests))


def plan_value(hits: Sequence[int], weights: Sequence[float] | None) -> float:
    """The objective of a plan given by its hits per request: ``sum_r sum_{d < hit_r} w_d`` (hit blocks when
    ``weights`` is None)."""
    if weights is None:
        return sum(hits)
    prefix = [0.0]
    for w in weights:
        prefix.append(prefix[-1] + w)
    return float(sum(prefix[min(h, len(weights))] for h in hits))


def service_seconds(instance) -> list[float]:
    """Each request's service time alone on its replica: prefill + ``output_tokens`` decode steps (roofline)."""
    from servopt.costmodel.roofline import make_cost_model

    cm = make_cost_model(instance.llm, instance.gpu, instance.tp)
    out = []
    for r in instance.requests:
        ms = cm.prefill_ms(r.input_tokens) + r.output_tokens * cm.decode_step_ms(1, r.input_tokens + r.output_tokens / 2)
        out.append(ms / 1000.0)
    return out


def capacity_after(instance) -> list[int]:
    """``C_t`` per request (global order): the room of t's cache after serving t, until its next request.

    Without ``pin_running`` it is ``capacity_blocks``. With it, every request of the same cache still
    running when the cache's next request arrives (``arrival_s + service`` later than that arrival)
    pins ``ceil((input_tokens + output_tokens) / block_tokens)`` blocks (engines' lazy caches hold only
    the free pool, research notes §1.1-1.2); floored at 0. The last request of a cache keeps ``C``.
    """
    n, C = instance.n, instance.capacity_blocks
    if not instance.pin_running:
        return [C] * n
    service = service_seconds(instance)
    B = instance.block_tokens
    caps = [C] * n
    by_replica: dict[int, list[int]] = {}
    for i, r in enumerate(instance.requests):
        by_replica.setdefault(r.replica, []).append(i)
    for idx in by_replica.values():
        running: list = []  # (finish_s, pinned blocks)
        pinned = 0
        for pos, i in enumerate(idx):
            r = instance.requests[i]
            blocks = -(-(r.input_tokens + r.output_tokens) // B)
            heapq.heappush(running, (r.arrival_s + service[i], blocks))
            pinned += blocks
            if pos + 1 == len(idx):
                break
            a_next = instance.requests[idx[pos + 1]].arrival_s
            while running and running[0][0] <= a_next:
                pinned -= heapq.heappop(running)[1]
            caps[i] = max(0, C - pinned)
    return caps


# ----------------------------------------------------------------------------- the program as arrays
@dataclass(frozen=True)
class IntervalProgram:
    """The MILP of the module docstring as plain arrays (all caches in one program).

    Columns: ``x_k`` for ``k < K`` (intervals), then ``f_t`` for each step of each cache.
    ``interval_end[k]`` = (global request index ``j``, depth ``d``) whose hit ``x_k`` is;
    ``interval_start[k]`` = global index ``i``.
    """

    n: int
    K: int
    weights: list  # objective coefficient of x_k
    interval_start: list
    interval_end: list  # (j, d)
    hit_col: dict  # (j, d) -> k
    rows: list  # list of (coefficient dict {col: coef}, lo, hi)
    col_upper: list
    steps: int
    col_lower: list | None = None  # None: all 0; else per column (presolve's fixings and free slacks)


def interval_program(instance, caps: Sequence[int], weights: Sequence[float] | None, *,
                     presolve: bool = True) -> IntervalProgram:
    """The keep-interval program (module docstring). ``presolve`` applies two reductions that change
    neither the optimum nor the LP bound: a step whose covering intervals all fit (at most ``C_t`` of
    them) gets a free slack (its capacity row is implied), and a request's leading intervals (depths
    ``0..m-1``) that cover only such steps are fixed at 1 (keeping them never costs room, and their
    parents are kept too, so some optimum keeps them)."""
    from servopt.instances.eviction import next_uses, replica_indices

    hl = instance.hash_lists()
    starts, ends, w = [], [], []
    hit_col: dict = {}
    flows = []  # per cache: list of global request indices
    for idx in replica_indices(instance):
        if not idx:
            continue
        local = [hl[i] for i in idx]
        nxt = next_uses(local)
        m = len(idx)
        for t, path in enumerate(local):
            for d, _ in enumerate(path):
                jl = nxt[t][d]
                if jl < m:
                    k = len(starts)
                    starts.append(idx[t])
                    ends.append((idx[jl], d))
                    hit_col[(idx[jl], d)] = k
                    w.append(1.0 if weights is None else float(weights[d]))
        flows.append(idx)
    K = len(starts)
    rows = []
    col_upper = [1.0] * K
    # flow rows: per cache, step t (local); f columns numbered after the x columns
    f_col = K
    start_at: dict = {}
    end_after: dict = {}  # global index of the step after the interval's last covered step -> intervals
    for k in range(K):
        start_at.setdefault(starts[k], []).append(k)
        end_after.setdefault(ends[k][0], []).append(k)  # last covered step is j-1: removed in row j
    for idx in flows:
        prev_cap = 0
        for pos, i in enumerate(idx):
            coef = {f_col + pos: 1.0}
            if pos:
                coef[f_col + pos - 1] = -1.0
            for k in start_at.get(i, ()):
                coef[k] = coef.get(k, 0.0) + 1.0
            for k in end_after.get(i, ()):
                coef[k] = coef.get(k, 0.0) - 1.0
            rhs = float(caps[i] - prev_cap)
            rows.append((coef, rhs, rhs))
            prev_cap = caps[i]
            col_upper.append(math.inf)
        f_col += len(idx)
    for (j, d), k in hit_col.items():
        if d:
            parent = hit_col.get((j, d - 1))
            if parent is None:
                col_upper[k] = 0.0  # cannot happen with tree-consistent ids; kept for safety
            else:
                rows.append(({k: 1.0, parent: -1.0}, -math.inf, 0.0))
    col_lower = _presolve_lower(K, starts, ends, hit_col, flows, caps, col_upper) if presolve else None
    return IntervalProgram(instance.n, K, w, starts, ends, hit_col, rows, col_upper, f_col - K, col_lower)


def _presolve_lower(K, starts, ends, hit_col, flows, caps, col_upper) -> list:
    """Column lower bounds after the reductions of ``interval_program``'s presolve."""
    lower = [0.0] * K
    pos_of, binding_before = {}, {}
    f_col = K
    for idx in flows:
        cover = [0] * (len(idx) + 1)
        local = {i: p for p, i in enumerate(idx)}
        pos_of.update(local)
        for k in range(K):
            if starts[k] in local:
                cover[local[starts[k]]] += 1
                cover[local[ends[k][0]]] -= 1
        run, prefix = 0, [0]
        for p, i in enumerate(idx):
            run += cover[p]
            binding = run > caps[i]
            prefix.append(prefix[-1] + binding)
            lower.append(0.0 if binding else -math.inf)
        for i in idx:
            binding_before[i] = prefix
        f_col += len(idx)
    for (j, d), k in sorted(hit_col.items()):
        if d and lower[hit_col[(j, d - 1)]] < 1.0:
            continue  # only a leading run of depths: the parent must be fixed at 1 first
        prefix = binding_before[j]
        if prefix[pos_of[j]] - prefix[pos_of[starts[k]]] == 0 and col_upper[k] > 0:
            lower[k] = 1.0
    return lower


def x_from_hits(prog: IntervalProgram, hits: Sequence[int]):
    """Interval values of a plan given by its hits (a hit at ``j`` on depth ``d`` = its interval kept)."""
    import numpy as np

    x = np.zeros(prog.K + prog.steps)
    for (j, d), k in prog.hit_col.items():
        if d < hits[j]:
            x[k] = 1.0
    return x


def complete_flows(prog: IntervalProgram, x, caps: Sequence[int], instance) -> None:
    """Fill the slack columns ``f_t`` of ``x`` from its interval values (in place)."""
    from servopt.instances.eviction import replica_indices

    covering_delta: dict = {}
    for k in range(prog.K):
        if x[k] > 0.5:
            covering_delta[prog.interval_start[k]] = covering_delta.get(prog.interval_start[k], 0) + 1
            covering_delta[prog.interval_end[k][0]] = covering_delta.get(prog.interval_end[k][0], 0) - 1
    col = prog.K
    for idx in replica_indices(instance):
        cover = 0
        for i in idx:
            cover += covering_delta.get(i, 0)
            x[col] = caps[i] - cover
            col += 1


def hits_from_x(prog: IntervalProgram, x) -> list[int]:
    """Hits per request: the kept intervals ending at each request (they form a prefix)."""
    hits = [0] * prog.n
    for (j, d), k in prog.hit_col.items():
        if x[k] > 0.5:
            hits[j] += 1
    return hits


def plan_from_x(prog: IntervalProgram, x, instance, method: str = "milp"):
    """The ``CachePlan`` of an integral solution: a block enters at its request when its next interval is
    kept and leaves at its next request unless the following interval is kept too."""
    from servopt.instances.eviction import CachePlan

    hl = instance.hash_lists()
    kept_from: dict = {}  # (start request i, depth d) -> kept?
    for k in range(prog.K):
        kept_from[(prog.interval_start[k], prog.interval_end[k][1])] = x[k] > 0.5
    hits = hits_from_x(prog, x)
    admit, evict = [], []
    for i, path in enumerate(hl):
        a, e = [], []
        for d, b in enumerate(path):
            was = d < hits[i]  # cached before i (a kept interval ended here)
            stays = kept_from.get((i, d), False)
            if stays and not was:
                a.append(b)
            elif was and not stays:
                e.append(b)
        admit.append(tuple(a))
        evict.append(tuple(e))
    return CachePlan(tuple(hits), tuple(admit), tuple(evict), method)


# ----------------------------------------------------------------------------- highspy build (trace scale)
def build_highs(prog: IntervalProgram, *, relax: bool = False, fix_from=None, cuts=()):
    """The program as a ``highspy.Highs`` (minimising ``-sum w x``); ``fix_from``: fractional interval values
    whose 0/1 entries are fixed (only the fractional intervals stay free); ``cuts``: capacity covers (lists of
    interval columns ``S`` with ``sum_{k in S} x_k <= |S| - 1``, ``solvers/eviction_milp.capacity_covers``)."""
    import highspy
    import numpy as np

    ncol = prog.K + prog.steps
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    inf = highspy.kHighsInf
    cost = np.zeros(ncol)
    cost[:prog.K] = -np.asarray(prog.weights, dtype=float)  # HiGHS minimises: min -sum w x
    lower = (np.zeros(ncol) if prog.col_lower is None else
             np.array([v if math.isfinite(v) else -inf for v in prog.col_lower], dtype=float))
    upper = np.array([u if math.isfinite(u) else inf for u in prog.col_upper], dtype=float)
    if fix_from is not None:
        xf = np.asarray(fix_from[:prog.K], dtype=float)
        lower[:prog.K] = np.where(xf > 1 - 1e-6, 1.0, lower[:prog.K])
        upper[:prog.K] = np.where(xf < 1e-6, 0.0, upper[:prog.K])
    h.addVars(ncol, lower, upper)
    h.changeColsCost(ncol, np.arange(ncol, dtype=np.int32), cost)
    if not relax and prog.K:
        h.changeColsIntegrality(prog.K, np.arange(prog.K, dtype=np.int32),
                                np.array([highspy.HighsVarType.kInteger] * prog.K))
    starts, index, value, lo, hi = [], [], [], [], []
    for coef, l, u in prog.rows:
        starts.append(len(index))
        for c, v in coef.items():
            if v:
                index.append(c)
                value.append(v)
        lo.append(l if math.isfinite(l) else -inf)
        hi.append(u if math.isfinite(u) else inf)
    for cut in cuts:
        starts.append(len(index))
        index.extend(cut)
        value.extend([1.0] * len(cut))
        lo.append(-inf)
        hi.append(float(len(cut) - 1))
    h.addRows(len(prog.rows) + len(cuts), np.array(lo), np.array(hi), len(index), np.array(starts, dtype=np.int32),
              np.array(index, dtype=np.int32), np.array(value, dtype=float))
    return h


# ----------------------------------------------------------------------------- Pyomo (small instances)
def build(instance, *, caps: Sequence[int] | None = None, weights: Sequence[float] | None = None,
          relax: bool = False):
    """The same program as a Pyomo ``ConcreteModel`` (``x``, ``f``, ``flow``, ``prefix``, ``objective``)."""
    import pyomo.environ as pyo

    caps = list(caps) if caps is not None else capacity_after(instance)
    if weights is None and instance.objective != "hit_blocks":
        weights = weights_for(instance)
    prog = interval_program(instance, caps, weights)
    m = pyo.ConcreteModel(name=f"eviction_{instance.name or 'instance'}")
    m.K = pyo.RangeSet(0, prog.K - 1) if prog.K else pyo.Set(initialize=[])
    m.T = pyo.RangeSet(0, prog.steps - 1)
    m.x = pyo.Var(m.K, domain=pyo.UnitInterval if relax else pyo.Binary)
    lower = prog.col_lower
    for k in m.K:
        if prog.col_upper[k] == 0.0:
            m.x[k].fix(0)
        elif lower is not None and lower[k] == 1.0:
            m.x[k].fix(1)
    m.f = pyo.Var(m.T, domain=pyo.NonNegativeReals)
    if lower is not None:
        for t in m.T:
            if not math.isfinite(lower[prog.K + t]):
                m.f[t].setlb(None)  # an implied capacity row (presolve)
    flow_rows = [r for r in prog.rows if r[1] == r[2]]
    prefix_rows = [r for r in prog.rows if r[1] != r[2]]

    def col(c):
        return m.x[c] if c < prog.K else m.f[c - prog.K]

    def _flow_rule(m, r):
        coef, lo, _ = flow_rows[r]
        return sum(v * col(c) for c, v in coef.items()) == lo

    def _prefix_rule(m, r):
        coef, _, hi = prefix_rows[r]
        return sum(v * col(c) for c, v in coef.items()) <= hi

    m.flow = pyo.Constraint(pyo.RangeSet(0, len(flow_rows) - 1), rule=_flow_rule)
    if prefix_rows:
        m.prefix = pyo.Constraint(pyo.RangeSet(0, len(prefix_rows) - 1), rule=_prefix_rule)
    m.objective = pyo.Objective(expr=sum(prog.weights[k] * m.x[k] for k in m.K), sense=pyo.maximize)
    m._program = prog
    m._instance = instance
    return m


def extract(model):
    """The ``CachePlan`` of a solved Pyomo model from ``build``."""
    import pyomo.environ as pyo

    prog = model._program
    x = [pyo.value(model.x[k]) or 0.0 for k in range(prog.K)]
    return plan_from_x(prog, x, model._instance)
