r"""Direct highspy array builder for the KV-scheduling integer programs (no Pyomo in the loop).

Pyomo costs about 10 us per nonzero to build and hand over, ~35x a numpy build
(research/pyomo-highs.md §2.2); the time-indexed KV programs have O(n T o) nonzeros, so the
certification pipeline (``servopt.solvers.kv_schedule_certify``) builds them here. The programs are
the ones written out, with their proofs, in

* ``servopt.models.kv_schedule`` (formulation ``time-indexed``: one binary ``x[i,t]`` per request
  and start round; the reference, Jaillet et al. arXiv 2502.07115 eq. (1)-(4)),
* ``servopt.models.kv_schedule_aggregated`` (formulations ``aggregated``, ``aggregated-card``,
  ``aggregated-window`` and ``aggregated-count``: one integer ``z[k,t]`` per request *type* and start
  round, optionally with the per-round cardinality cuts, the exclusive-window rows, or the
  exclusive-window rows plus the completion-count rows; proofs there).

Both are the same program over *groups*: a group is one request (time-indexed) or all requests
of one type (aggregated) with a count ``n_g``; column ``(g, t)`` has bounds ``[0, n_g]`` and is
integer, cost ``w_g (t + o_g - a_g)``; one assignment row per group ``sum_t z[g,t] = n_g``; one
memory row per round ``t`` with coefficient ``s_g + t - k`` on column ``(g, k)`` for
``k < t <= k + o_g``. A memory row is left out when it can never bind (the sum of its
coefficients times the group counts is at most ``M``), the same rule as the Pyomo models, so the
two builds have the same columns, rows and nonzeros (tests/test_kv_strong_direct.py checks this
and the LP bound). Column order: groups in order, start rounds ascending within a group.

Conflict cliques (``conflict_clique_cuts``; ours, measured and *not* kept in a formulation)
----------------------------------------------------------------------------------------------------
Column ``c = (g, t)`` has start ``t_c``, finish ``f_c = t_c + o_g``, peak ``P_c = s_g + o_g`` and
*window end* ``e_c = f_c - max(0, M - P_c - s_min)``. Claim: if ``f_c <= f_d`` and ``t_d < e_c``, a request
started by ``d`` and a different request started by ``c`` cannot both run. Proof: ``t_d < e_c <= f_c <= f_d``,
so ``d``'s request covers round ``f_c`` with age ``f_c - t_d > max(0, M - P_c - s_min)`` and holds
``s_d + f_c - t_d > M - P_c`` tokens (using ``s_d >= s_min``), while ``c``'s request holds ``P_c``. So a set
``Q`` of columns, ordered by finish, in which every column starts before the window end of every
column that finishes no later (``t_d < e_c`` for all ``c`` before ``d``) is a clique of pairwise
conflicts, and ``sum_{c in Q} z_c <= 1`` holds for every schedule, provided a column may carry two
requests (``n_g >= 2``) only if it conflicts with itself (``t_c < e_c``). The exclusive-window rows of
level 1 are the cliques ``{c : t_c < u <= e_c}``; the others add late-finishing columns with short
windows (a small request alive at a big one's finish round). Separation is exact for this family:
a dynamic program over the columns in finish order whose state is the smallest window end so far.
Measured on the paper family (benchmarks/results/kv_bounds_paper.md): on top of the
``aggregated-window`` LP it finds no or almost no violated cliques, so it lifts nothing there.

Sparse assembly follows research/pyomo-highs.md §7: memory entries come from ``np.repeat`` over
(column, age) with row ``k + age`` and value ``s + age``; rows are sorted with a stable lexsort and
handed to ``Highs.addRows`` in CSR form.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from servopt.errors import InputError
from servopt.instances.kv_schedule import KVSchedule, KVScheduleInstance, ScheduledRequest

FORMULATIONS = ("time-indexed", "aggregated", "aggregated-card", "aggregated-window", "aggregated-count")


@dataclass(frozen=True)
class Groups:
    """Requests grouped for a formulation: per group the type's numbers and its members (request indices)."""

    arrival: np.ndarray
    prompt: np.ndarray
    output: np.ndarray
    weight: np.ndarray
    count: np.ndarray
    members: tuple[tuple[int, ...], ...]
    windows: tuple[tuple[int, int], ...]


@dataclass
class DirectModel:
    """A program held by a ``highspy.Highs`` plus what is needed to read schedules back."""

    highs: object
    instance: KVScheduleInstance
    formulation: str
    groups: Groups
    col_group: np.ndarray
    col_start: np.ndarray
    horizon: int
    horizon_is_proven: bool
    relaxed: bool
    build_seconds: float
    size: dict = field(default_factory=dict)

    @property
    def num_columns(self) -> int:
        return int(len(self.col_group))


def group_requests(instance: KVScheduleInstance, formulation: str, windows) -> Groups:
    """One group per request (``time-indexed``) or per type (arrival, prompt, output, weight).

    Requests of one type are interchangeable: same window (the windows of
    ``models.kv_schedule.start_windows`` depend only on these four numbers), same cost, same
    memory coefficients; the aggregated models rely on this (proof in
    ``servopt.models.kv_schedule_aggregated``).
    """
    reqs = instance.requests
    weighted = instance.objective == "weighted_latency"
    keys = [(int(r.arrival), int(r.prompt_tokens), int(r.output_tokens), float(r.weight) if weighted else 1.0)
            for r in reqs]
    if formulation == "time-indexed":
        order = [[i] for i in range(len(reqs))]
    else:
        by_key: dict[tuple, list[int]] = {}
        for i, key in enumerate(keys):
            by_key.setdefault(key, []).append(i)
        order = [by_key[k] for k in sorted(by_key)]
    first = [m[0] for m in order]
    return Groups(
        arrival=np.array([keys[i][0] for i in first], dtype=np.int64),
        prompt=np.array([keys[i][1] for i in first], dtype=np.int64),
        output=np.array([keys[i][2] for i in first], dtype=np.int64),
        weight=np.array([keys[i][3] for i in first], dtype=float),
        count=np.array([len(m) for m in order], dtype=np.int64),
        members=tuple(tuple(m) for m in order),
        windows=tuple(windows[i] for i in first),
    )


def _csr_rows(row_keys: np.ndarray, cols: np.ndarray, vals: np.ndarray):
    """Sort COO entries by (row, column); return the distinct row keys, CSR starts, columns, values."""
    order = np.lexsort((cols, row_keys))
    rk, c, v = row_keys[order], cols[order], vals[order]
    rows = np.unique(rk)
    starts = np.searchsorted(rk, rows).astype(np.int32)
    return rows, starts, c.astype(np.int32), v.astype(float)


def alive_entries(groups: Groups, col_group: np.ndarray, col_start: np.ndarray):
    """For every column and every round it covers: (column, round, age); age 1..o_g."""
    oc = groups.output[col_group]
    col = np.repeat(np.arange(len(col_group)), oc)
    age = np.arange(int(oc.sum())) - np.repeat(np.cumsum(oc) - oc, oc) + 1
    return col, col_start[col] + age, age


def _add_at_most_rows(h, rounds: np.ndarray, cols: np.ndarray, counts: np.ndarray, q: int) -> tuple[int, int]:
    """Add ``sum of the columns listed for round u <= q`` for every round u; rows whose group counts
    already sum to at most ``q`` can never bind and are left out (as in the Pyomo models)."""
    if len(rounds) == 0:
        return 0, 0
    per_round = np.bincount(rounds, weights=counts.astype(float))
    sel = per_round[rounds] > q
    if not sel.any():
        return 0, 0
    rk, st, c, v = _csr_rows(rounds[sel], cols[sel], np.ones(int(sel.sum())))
    h.addRows(len(rk), np.full(len(rk), -np.inf), np.full(len(rk), float(q)), len(c), st, c, v)
    return len(rk), len(c)


def _add_completion_count_rows(h, instance: KVScheduleInstance, g: Groups, col_group: np.ndarray,
                               col_start: np.ndarray) -> tuple[int, int]:
    """``sum of the columns finishing by round T <= k`` for each ``(T, k)`` of
    ``models.kv_schedule_aggregated.completion_count_rows`` (proof there); rows whose column counts
    already sum to at most ``k`` can never bind and are left out, as in the Pyomo model."""
    from servopt.models.kv_schedule_aggregated import completion_count_rows

    finish = col_start + g.output[col_group]
    order = np.argsort(finish, kind="stable")
    finish_sorted = finish[order]
    counts_cum = np.concatenate([[0], np.cumsum(g.count[col_group[order]])])
    keys, cols = [], []
    for T, k in completion_count_rows(instance):
        n_cols = int(np.searchsorted(finish_sorted, T, side="right"))
        if counts_cum[n_cols] <= k:
            continue
        keys.append((len(keys), k))
        cols.append(order[:n_cols])
    if not keys:
        return 0, 0
    lengths = np.array([len(c) for c in cols])
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int32)
    # columns ascending within a row (HiGHS accepts any order; sorted keeps rows comparable)
    index = np.concatenate([np.sort(c) for c in cols]).astype(np.int32)
    upper = np.array([k for _, k in keys], dtype=float)
    h.addRows(len(keys), np.full(len(keys), -np.inf), upper, len(index), starts, index, np.ones(len(index)))
    return len(keys), int(len(index))


def build_direct(instance: KVScheduleInstance, *, formulation: str = "aggregated", horizon: int | None = None,
                 cutoff: float | None = None, relax: bool = False, window_levels=None) -> DirectModel:
    """Build ``formulation`` for ``instance`` in a fresh ``highspy.Highs`` (see the module docstring).

    ``window_levels`` overrides the exclusive-window levels ``q`` (default
    ``models.kv_schedule_aggregated.WINDOW_LEVELS``; every level is valid, proof there), for the
    measurements of benchmarks/kv_bounds_paper.py."""
    import highspy

    from servopt.models.kv_schedule import start_windows

    if formulation not in FORMULATIONS:
        raise InputError("--formulation", f"unknown formulation '{formulation}' (known: {', '.join(FORMULATIONS)})")
    if instance.objective == "makespan" and formulation != "time-indexed":
        raise InputError("--formulation", f"'{formulation}' minimises (weighted) latency; for the makespan use time-indexed")
    t0 = time.perf_counter()
    T, proven, windows = start_windows(instance, horizon=horizon, cutoff=cutoff)
    for idx, (lo, hi) in enumerate(windows):
        if hi < lo:
            raise InputError("horizon" if cutoff is None else "cutoff",
                             f"request '{instance.requests[idx].id}' has no feasible start round (window {lo}..{hi})")
    g = group_requests(instance, formulation, windows)
    lengths = np.array([hi - lo + 1 for lo, hi in g.windows], dtype=np.int64)
    col_group = np.repeat(np.arange(len(lengths)), lengths)
    col_start = (np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
                 + np.repeat(np.array([lo for lo, _ in g.windows], dtype=np.int64), lengths))
    ncol = len(col_group)
    M = instance.memory_tokens

    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    upper = g.count[col_group].astype(float)
    idx = np.arange(ncol, dtype=np.int32)
    makespan = instance.objective == "makespan"
    h.addVars(ncol, np.zeros(ncol), upper)
    cost = g.weight[col_group] * (col_start + g.output[col_group] - g.arrival[col_group])
    if makespan:
        cost = np.zeros(ncol)
    h.changeColsCost(ncol, idx, cost.astype(float))
    if not relax:
        h.changeColsIntegrality(ncol, idx, np.ones(ncol, dtype=np.uint8))
    # assignment rows: columns are already grouped, so CSR starts are the group offsets
    starts = (np.cumsum(lengths) - lengths).astype(np.int32)
    counts = g.count.astype(float)
    h.addRows(len(lengths), counts, counts, ncol, starts, idx, np.ones(ncol))
    rows = len(lengths)
    nnz = ncol

    col, rnd, age = alive_entries(g, col_group, col_start)
    weight = g.prompt[col_group[col]] + age
    # a row whose coefficients times the group counts sum to <= M can never bind (Pyomo model: Constraint.Skip)
    total = np.bincount(rnd, weights=weight * g.count[col_group[col]])
    keep = total[rnd] > M
    rk, st, c, v = _csr_rows(rnd[keep], col[keep], weight[keep])
    h.addRows(len(rk), np.full(len(rk), -np.inf), np.full(len(rk), float(M)), len(c), st, c, v)
    rows += len(rk)
    nnz += len(c)
    size = {"columns": ncol, "rows": rows, "nonzeros": nnz, "memory_rows": int(len(rk)), "horizon": T}

    if formulation in ("aggregated-card", "aggregated-window", "aggregated-count"):
        from servopt.models.kv_schedule_aggregated import WINDOW_LEVELS, cardinality_levels, window_lengths

        cut_rows = cut_nnz = 0
        if formulation == "aggregated-card":
            for q in cardinality_levels(M, int(g.prompt.min()) + 1):
                heavy = weight * (q + 1) > M
                r, z = _add_at_most_rows(h, rnd[heavy], col[heavy], g.count[col_group[col[heavy]]], q)
                cut_rows, cut_nnz = cut_rows + r, cut_nnz + z
        else:
            for q in (WINDOW_LEVELS if window_levels is None else tuple(window_levels)):
                y = np.array(window_lengths(M, g.prompt.tolist(), g.output.tolist(), q), dtype=np.int64)
                yc = np.maximum(y[col_group], 0)
                wcol = np.repeat(np.arange(ncol), yc)
                wround = col_start[wcol] + np.arange(int(yc.sum())) - np.repeat(np.cumsum(yc) - yc, yc) + 1
                r, z = _add_at_most_rows(h, wround, wcol, g.count[col_group[wcol]], q)
                cut_rows, cut_nnz = cut_rows + r, cut_nnz + z
        if formulation == "aggregated-count":
            r, z = _add_completion_count_rows(h, instance, g, col_group, col_start)
            cut_rows, cut_nnz = cut_rows + r, cut_nnz + z
            size["count_rows"] = r
        rows += cut_rows
        nnz += cut_nnz
        size.update({"rows": rows, "nonzeros": nnz, "cut_rows": cut_rows})

    if makespan:
        # column C (last): C - (t + o_i) x[i,t] >= 0 per request, the reference model's _makespan_rule
        h.addVars(1, np.zeros(1), np.array([np.inf]))
        h.changeColsCost(1, np.array([ncol], dtype=np.int32), np.ones(1))
        vals = np.concatenate([np.ones(len(lengths)), -(col_start + g.output[col_group]).astype(float)])
        cols = np.concatenate([np.full(len(lengths), ncol), np.arange(ncol)])
        keys = np.concatenate([np.arange(len(lengths)), col_group])
        rk, st, c, v = _csr_rows(keys, cols, vals)
        h.addRows(len(rk), np.zeros(len(rk)), np.full(len(rk), np.inf), len(c), st, c, v)
        rows += len(rk)
        nnz += len(c)
        size.update({"columns": ncol + 1, "rows": rows, "nonzeros": nnz})

    return DirectModel(h, instance, formulation, g, col_group, col_start, T, proven, relax,
                       time.perf_counter() - t0, size)


def conflict_clique_cuts(dm: DirectModel, values, *, max_cuts: int = 50, eps: float = 1e-6) -> list[tuple[float, tuple[int, ...]]]:
    """Violated conflict cliques (module docstring) for the column values ``values``: a list of
    (weight > 1, column indices), the heaviest first; each gives the row ``sum z_c <= 1``."""
    x = np.asarray(values, dtype=float)[: dm.num_columns]
    g = dm.groups
    M = dm.instance.memory_tokens
    start = dm.col_start
    output = g.output[dm.col_group]
    finish = start + output
    window_end = finish - np.maximum(0, M - (g.prompt[dm.col_group] + output) - int(g.prompt.min()))
    count = g.count[dm.col_group]
    eligible = np.nonzero((x > 1e-9) & ((count == 1) | (start < window_end)))[0]
    order = eligible[np.lexsort((start[eligible], finish[eligible]))]
    never = np.iinfo(np.int64).max  # the empty clique's "smallest window end"
    states = np.unique(np.concatenate([window_end[eligible], [never]]))
    value = np.full(len(states), -np.inf)
    value[-1] = 0.0
    members: list = [None] * len(states)  # persistent linked lists (column, rest)
    for c in order:
        first_open = int(np.searchsorted(states, start[c], side="right"))  # states with end > t_c
        own = int(np.searchsorted(states, window_end[c]))
        best_from = max(first_open, own)  # cliques whose smallest end is >= e_c move to state e_c
        candidate, linked = -np.inf, None
        if best_from < len(states):
            j = best_from + int(np.argmax(value[best_from:]))
            candidate, linked = value[j] + x[c], (int(c), members[j])
        for state in range(first_open, own):  # t_c < end < e_c: c joins, the smallest end stays
            if value[state] > -np.inf:
                value[state] += x[c]
                members[state] = (int(c), members[state])
        if candidate > value[own]:
            value[own], members[own] = candidate, linked
    cuts, seen = [], set()
    for state in np.argsort(-value):
        if value[state] <= 1 + eps or len(cuts) >= max_cuts:
            break
        cols, node = [], members[state]
        while node is not None:
            cols.append(node[0])
            node = node[1]
        key = tuple(sorted(cols))
        if key not in seen:
            seen.add(key)
            cuts.append((float(value[state]), key))
    return cuts


def warm_start_vector(dm: DirectModel, schedule: KVSchedule) -> np.ndarray | None:
    """The column vector of ``schedule`` (None if a start lies outside its window)."""
    start_by_id = {r.id: r.start for r in schedule.requests}
    x = np.zeros(dm.num_columns + (1 if dm.instance.objective == "makespan" else 0))
    offset = np.concatenate([[0], np.cumsum([hi - lo + 1 for lo, hi in dm.groups.windows])])
    reqs = dm.instance.requests
    for gi, members in enumerate(dm.groups.members):
        lo, hi = dm.groups.windows[gi]
        for i in members:
            p = start_by_id.get(reqs[i].id)
            if p is None or not lo <= p <= hi:
                return None
            x[offset[gi] + p - lo] += 1
    if dm.instance.objective == "makespan":
        x[-1] = max(start_by_id[r.id] + r.output_tokens for r in reqs)
    return x


def schedule_from_values(dm: DirectModel, values, *, method: str) -> KVSchedule:
    """Turn column values into a schedule: a group's members take its start rounds in order.

    Any assignment of a type's members to the type's starts gives the same cost and memory
    (the members are interchangeable), so members are given the starts in request order.
    """
    values = np.asarray(values, dtype=float)[: dm.num_columns]
    counts = np.rint(values).astype(np.int64)
    reqs = dm.instance.requests
    start = [0] * len(reqs)
    for gi, members in enumerate(dm.groups.members):
        sel = np.nonzero((dm.col_group == gi) & (counts > 0))[0]
        rounds = np.repeat(dm.col_start[sel], counts[sel])
        if len(rounds) != len(members):
            raise ValueError(f"group {gi}: {len(rounds)} starts for {len(members)} requests (values not integral?)")
        for i, p in zip(members, rounds):
            start[i] = int(p)
    rows = tuple(ScheduledRequest(r.id, int(r.arrival), start[i], start[i] + int(r.output_tokens))
                 for i, r in enumerate(reqs))
    return KVSchedule(rows, objective_name=dm.instance.objective, method=method)


def solve_direct(dm: DirectModel, *, time_limit_s: float, rel_gap: float = 1e-4, warm_start: KVSchedule | None = None,
                 threads: int = 1, seed: int = 0, options: dict | None = None):
    """Solve through ``servopt.solvers.highs.solve_highspy``; returns (SolveResult, KVSchedule | None)."""
    from servopt.solvers.highs import solve_highspy

    x0 = warm_start_vector(dm, warm_start) if warm_start is not None else None
    res, values = solve_highspy(dm.highs, time_limit_s=time_limit_s, rel_gap=rel_gap, threads=threads, seed=seed,
                                warm_start=x0, options=options)
    schedule = None
    if values is not None and not dm.relaxed:
        schedule = schedule_from_values(dm, values, method=f"ip[{dm.formulation}]")
    return res, schedule
