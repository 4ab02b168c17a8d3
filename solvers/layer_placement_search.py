"""Layer placement: bounds, baseline layouts, the constructive heuristic and the HiGHS search.

Bounds (valid for every layout, any links, exact-abutment semantics):

* ``compute_upper_bound`` — Helix's "max compute throughput" Σ_i max_k k·T_i(k) / L (Helix §4.3;
  2803.86 on cluster24, as printed in Helix's README).
* ``saturation_upper_bound`` — the largest F with Σ_i max_k k·min(T_i(k), F) >= L·F
  (research/placement-anchors.md §1.7): every source-sink path crosses each of the L layers exactly
  once, so the flow over the nodes covering any layer is F; a node carries at most min(T_i(k), F).
  Also capped by the total capacity of the source links and of the sink links.

Baselines (each evaluated by the exact max flow, ``solvers.maxflow``):

* ``petals`` — Petals (Borzunov et al., ACL 2023 demo / NeurIPS 2023, "Distributed inference and
  fine-tuning of LLMs over the internet", §3.2: a joining server holds as many blocks as its memory
  allows and takes the span where the swarm's throughput is lowest). Nodes join in descending order of
  T_i(K_i); each holds K_i layers at the start minimising (min, sum) of the throughput already there.
* ``swarm`` — SWARM parallelism (Ryabinin et al., ICML 2023, §3.2): equal pipeline stages of
  min_i K_i layers; each node (descending T_i(len)) joins the stage with the lowest total throughput.
* ``separate_pipelines`` — Helix's "SP" baseline (Helix §6.1): homogeneous pipelines, one GPU type
  each; type τ forms floor(N_τ / ceil(L / K_τ)) pipelines, nodes spread evenly, layers split evenly.
* ``uniform_partition`` — one pipeline through all nodes with the layers split as evenly as the K_i
  allow (the GPipe/Megatron default of equal stages).
* ``single_chain`` — ours: the best single pipeline. For a target F each node can hold
  k_i(F) = max{k : T_i(k) >= F} layers alone; F is feasible iff Σ_i k_i(F) >= L. The best F is found
  by bisection over the sorted T values; lengths are trimmed to sum to exactly L.

Search (``solve_layer_placement``), the formulation choices that made the difference:

1. The boundary formulation (``models.layer_placement``): nodes aggregated into classes, no big-M,
   coefficients capped at the saturation bound U, so the LP bound is U instead of Helix's 50–60x.
2. Threshold covers: to look for a layout with F >= F_t, every layer's cover must satisfy
   Σ_covering min(T, F) >= F; with a = min(T / F_t, 1) the subadditive weight
   phi_r(a) = min(r, 1 + floor((r-1)a)) gives Σ_covering phi_r(a)·n >= r, valid for every F >= F_t
   (r = 2: one node that carries F alone, or at least two; r in 2, 3, 4, 6, 8 by default). These cuts make "no layout beats F_t"
   an LP-infeasibility proof on Helix's instances.
3. Iterated cutoff: incumbent v from the heuristics; solve the threshold model at F_t = v·(1+δ)
   (stop at the first improving solution); a solution raises v (its exact max flow is evaluated on the
   real links), infeasibility proves v optimal within δ, a time limit leaves the bound max(F_t, MILP bound).
   When the incumbent cannot be raised, bisection on F_t between v and the bound tightens the bound.
4. Links that can bind (or missing links): the boundary model is a relaxation; its layouts are
   evaluated exactly and, with time left, improved by Helix's formulation with capped coefficients,
   warm-started from the incumbent.
5. Network first (``solvers.layer_placement_network``): before any of the above, an exhaustive
   chain search decides whether any layout has positive flow (no: ``InputError`` naming
   ``num_layers``, ``links`` or ``max_pipeline_depth``, exit 2), then chains, trunk-and-feeder
   constructions and the link-cut / network bounds. Where the boundary model is not exact, local
   searches restricted to "every flowing node holds >= m layers" (m = a GPU type's K), then the
   unrestricted iterated local search and ruin-and-recreate take about 90 % of the time; the
   boundary MILP runs only when enough time is left to build it (its build and hand-over are
   charged to the limit). Small clusters (nodes x L <= 120) first try Helix's capped MILP from the
   incumbent, which usually proves the optimum.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from servopt.instances import layer_placement as lpi
from servopt.instances.layer_placement import SINK, SOURCE, LayerPlacementInstance, Layout, layout_violations
from servopt.solvers import layer_placement_network as net
from servopt.solvers.maxflow import evaluate_layout

REL_TOL = 1e-9


# --------------------------------------------------------------------------------------------
# bounds


def compute_upper_bound(instance: LayerPlacementInstance) -> float:
    L = instance.num_layers
    return sum(max(k * t for k, t in enumerate(n.throughput_tokens_per_s, 1)) for n in instance.nodes) / L


def _link_cap_bound(instance: LayerPlacementInstance) -> float:
    out = sum(l.tokens_per_s for l in instance.links if l.src == SOURCE)
    into = sum(l.tokens_per_s for l in instance.links if l.dst == SINK)
    return min(out, into)


def saturation_upper_bound(instance: LayerPlacementInstance) -> float:
    L = instance.num_layers
    tables = [n.throughput_tokens_per_s for n in instance.nodes]

    def layer_capacity(F: float) -> float:
        return sum(max(k * min(t, F) for k, t in enumerate(T, 1)) for T in tables)

    def feasible(F: float) -> bool:
        # round-off slack on the safe side: a bound a hair too high is still a bound
        return layer_capacity(F) >= L * F * (1 - 1e-12)

    if sum(len(T) for T in tables) < L:
        return 0.0  # even all nodes in one pipeline cannot hold the model: no path exists
    lo, hi = 0.0, compute_upper_bound(instance)
    if feasible(hi):
        return min(hi, _link_cap_bound(instance))
    # layer_capacity(F)/F is non-increasing in F, so the feasible F form an interval [0, F*].
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if feasible(mid):
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-13 * max(hi, 1.0):
            break
    return min(hi, _link_cap_bound(instance))


# --------------------------------------------------------------------------------------------
# baselines and the constructive heuristic


def _split_even(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if j < extra else 0) for j in range(parts)]


def _park(instance: LayerPlacementInstance) -> tuple[int, int]:
    """Where an unused node goes: one layer at the end (never a source arc)."""
    return (instance.num_layers - 1, instance.num_layers)


def petals_layout(instance: LayerPlacementInstance) -> Layout:
    L = instance.num_layers
    have = [0.0] * L
    ranges = {}
    order = sorted(instance.nodes, key=lambda n: (-n.throughput(n.max_layers), n.id))
    for n in order:
        k = min(n.max_layers, L)
        best = None
        for s in range(0, L - k + 1):
            span = have[s:s + k]
            key = (min(span), sum(span), s)
            if best is None or key < best[0]:
                best = (key, s)
        s = best[1]
        ranges[n.id] = (s, s + k)
        for layer in range(s, s + k):
            have[layer] += n.throughput(k)
    return Layout(ranges)


def swarm_layout(instance: LayerPlacementInstance) -> Layout:
    L = instance.num_layers
    length = min(min(n.max_layers for n in instance.nodes), L)
    bounds = [(s, min(s + length, L)) for s in range(0, L, length)]
    total = [0.0] * len(bounds)
    ranges = {}
    order = sorted(instance.nodes, key=lambda n: (-n.throughput(length), n.id))
    for n in order:
        j = min(range(len(bounds)), key=lambda j: (total[j], j))
        s, e = bounds[j]
        ranges[n.id] = (s, e)
        total[j] += n.throughput(e - s)
    return Layout(ranges)


def separate_pipelines_layout(instance: LayerPlacementInstance) -> Layout:
    L = instance.num_layers
    by_type: dict[str, list] = {}
    for n in instance.nodes:
        by_type.setdefault(n.type, []).append(n)
    ranges = {}
    leftovers = []
    for nodes in by_type.values():
        k_max = min(n.max_layers for n in nodes)
        need = math.ceil(L / k_max)
        pipelines = len(nodes) // need
        if pipelines == 0:
            leftovers.extend(nodes)
            continue
        sizes = _split_even(len(nodes), pipelines)
        it = iter(nodes)
        for size in sizes:
            members = [next(it) for _ in range(size)]
            s = 0
            for n, k in zip(members, _split_even(L, size)):
                ranges[n.id] = (s, s + k)
                s += k
    # Helix's "SP+": nodes of types too few for a pipeline of their own form mixed pipelines,
    # largest K first, layers split in proportion to K.
    leftovers.sort(key=lambda n: (-n.max_layers, n.id))
    while leftovers and sum(n.max_layers for n in leftovers) >= L:
        members, held = [], 0
        while held < L:
            members.append(leftovers.pop(0))
            held += members[-1].max_layers
        lengths = [n.max_layers for n in members]
        excess = held - L
        j = 0
        while excess > 0:  # trim the longest first, keep every member >= 1 layer
            j = max(range(len(lengths)), key=lambda i: lengths[i])
            lengths[j] -= 1
            excess -= 1
        s = 0
        for n, k in zip(members, lengths):
            ranges[n.id] = (s, s + k)
            s += k
    for n in leftovers:
        ranges[n.id] = _park(instance)
    return Layout(ranges)


def uniform_partition_layout(instance: LayerPlacementInstance) -> Layout:
    L = instance.num_layers
    nodes = list(instance.nodes)
    caps = [n.max_layers for n in nodes]
    if sum(caps) < L:  # one pipeline cannot hold the model: give every node all it can hold
        lengths = caps
    else:
        lengths = [0] * len(nodes)
        left = L
        # water-filling: equal shares, capped by K_i
        active = list(range(len(nodes)))
        while left > 0 and active:
            share = max(1, left // len(active))
            nxt = []
            for i in active:
                take = min(share, caps[i] - lengths[i], left)
                lengths[i] += take
                left -= take
                if lengths[i] < caps[i]:
                    nxt.append(i)
            active = nxt
    ranges = {}
    s = 0
    for n, k in zip(nodes, lengths):
        if k == 0 or s >= L:
            ranges[n.id] = _park(instance)
            continue
        k = min(k, L - s)
        ranges[n.id] = (s, s + k)
        s += k
    return Layout(ranges)


def _chain_lengths(instance: LayerPlacementInstance, F: float) -> list[tuple[str, int]] | None:
    """Per node the lengths k with T(k) >= F; a chain exists iff some choice sums to exactly L."""
    L = instance.num_layers
    options = []
    for n in instance.nodes:
        ks = [k for k, t in enumerate(n.throughput_tokens_per_s, 1) if t >= F]
        options.append((n.id, ks))
    if sum(max(ks) for _, ks in options if ks) < L:
        return None
    # subset-sum over nodes with a choice of length (or unused): reachable sums as a bitset
    mask_all = (1 << (L + 1)) - 1
    reach = [1]
    for _, ks in options:
        prev = reach[-1]
        cur = prev
        for k in ks:
            cur |= (prev << k) & mask_all
        reach.append(cur)
    if not (reach[-1] >> L) & 1:
        return None
    chosen = []
    target = L
    for idx in range(len(options) - 1, -1, -1):
        nid, ks = options[idx]
        prev = reach[idx]
        if (prev >> target) & 1:
            continue  # node idx not needed
        for k in ks:
            if target - k >= 0 and (prev >> (target - k)) & 1:
                chosen.append((nid, k))
                target -= k
                break
    chosen.reverse()
    return chosen


def single_chain_layout(instance: LayerPlacementInstance) -> Layout | None:
    """The best single pipeline (ours; see the module docstring)."""
    values = sorted({t for n in instance.nodes for t in n.throughput_tokens_per_s})
    lo, hi, best = 0, len(values) - 1, None
    while lo <= hi:
        mid = (lo + hi) // 2
        chain = _chain_lengths(instance, values[mid])
        if chain is not None:
            best, lo = chain, mid + 1
        else:
            hi = mid - 1
    if best is None:
        return None
    # order the chain: nodes with a source link first, with a sink link last (links are checked
    # by the exact evaluation; this is only a good default ordering)
    src = {l.dst for l in instance.links if l.src == SOURCE}
    snk = {l.src for l in instance.links if l.dst == SINK}
    best.sort(key=lambda item: (item[0] not in src, item[0] in snk))
    ranges, s = {}, 0
    for nid, k in best:
        ranges[nid] = (s, s + k)
        s += k
    used = set(ranges)
    for n in instance.nodes:
        if n.id not in used:
            ranges[n.id] = _park(instance)
    return Layout(ranges)


def _stage_patterns(classes, L: int, F: float, limit: int) -> list[tuple[tuple[int, ...], int, float]]:
    """Groups (count per class, length l) whose summed T(l) reaches F, the last node added needed."""
    out: list = []
    C = len(classes)
    per_length = max(limit // max(L, 1), 20)
    for length in range(1, L + 1):
        stop_at = len(out) + per_length
        usable = [c for c in range(C) if classes[c].max_layers >= length]
        if not usable:
            continue
        thr = {c: classes[c].throughput_tokens_per_s[length - 1] for c in usable}
        counts = [0] * C
        # suffix sums of what the remaining classes could add, for pruning
        rest = [0.0] * (len(usable) + 1)
        for q in range(len(usable) - 1, -1, -1):
            c = usable[q]
            rest[q] = rest[q + 1] + thr[c] * classes[c].count

        def grow(pos: int, cap: float) -> None:
            if len(out) >= stop_at:
                return
            if cap >= F:
                out.append((tuple(counts), length, cap))
                return
            if cap + rest[pos] - sum(thr[usable[q]] * counts[usable[q]] for q in range(pos, len(usable))) < F:
                return
            for q in range(pos, len(usable)):
                c = usable[q]
                if counts[c] < classes[c].count:
                    counts[c] += 1
                    grow(q, cap + thr[c])
                    counts[c] -= 1

        grow(0, 0.0)
    return out


def _stage_cover(classes, L: int, F: float, time_limit_s: float, limit: int):
    """Stages of parallel groups covering exactly L layers, every group reaching F (a small MILP)."""
    import highspy
    import numpy as np

    from servopt.solvers.highs import solve_highspy

    pats = _stage_patterns(classes, L, F, limit)
    if not pats:
        return None
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)  # before the first addVar, or HiGHS prints its banner
    n = len(pats)
    h.addVars(n, np.zeros(n), np.full(n, float(L)))
    h.changeColsIntegrality(n, np.arange(n, dtype=np.int32), np.ones(n, dtype=np.uint8))
    h.addRow(L, L, n, np.arange(n, dtype=np.int32), np.array([p[1] for p in pats], dtype=float))
    for c, cls in enumerate(classes):
        idx = [j for j, p in enumerate(pats) if p[0][c] > 0]
        if idx:
            h.addRow(0, cls.count, len(idx), np.array(idx, dtype=np.int32), np.array([pats[j][0][c] for j in idx], dtype=float))
    res, x = solve_highspy(h, time_limit_s=max(time_limit_s, 0.05), rel_gap=0.0, sense="min",
                           options={"output_flag": False})
    if not res.has_solution:
        return None
    return [(pats[j], int(round(x[j]))) for j in range(n) if x[j] > 0.5]


def stage_layout(instance: LayerPlacementInstance, *, time_limit_s: float = 10.0, max_patterns: int = 3000) -> Layout | None:
    """Ours: the best layout made of consecutive stages, each a group of nodes holding the same range.

    For a target F the stages are a covering problem: pick groups (count per class, length l) with
    Σ_group T(l) >= F whose lengths sum to exactly L, within the class counts (an integer program
    over enumerated minimal groups, at most ``max_patterns`` of them). The best F is bisected;
    a found cover's own minimum group capacity moves the lower end up. Spare nodes join the
    bottleneck stage when they can hold its range (that can only raise the flow).
    """
    from servopt.models.layer_placement import node_classes

    t0 = time.perf_counter()
    classes = node_classes(instance)
    L = instance.num_layers
    lo, hi = 0.0, saturation_upper_bound(instance) * (1 + 1e-9)
    best = None
    for _ in range(40):
        left = time_limit_s - (time.perf_counter() - t0)
        if left <= 0 or hi - lo <= 1e-7 * hi:
            break
        mid = 0.5 * (lo + hi) if best is not None else max(lo, 0.5 * hi)
        cover = _stage_cover(classes, L, mid, left, max_patterns)
        if cover:
            best = cover
            lo = max(mid, min(p[2] for p, _ in cover))
        else:
            hi = mid
    if best is None:
        return None
    free = {c.key: list(c.node_ids) for c in classes}
    stages = []  # [length, [node ids], capacity]
    for (counts, length, cap), times in sorted(best, key=lambda item: -item[0][1]):
        for _ in range(times):
            members = []
            for c, cnt in enumerate(counts):
                for _ in range(cnt):
                    members.append((classes[c], free[classes[c].key].pop(0)))
            stages.append([length, members, cap])
    spare = [(c, nid) for c in classes for nid in free[c.key]]
    for c, nid in sorted(spare, key=lambda item: -max(item[0].throughput_tokens_per_s)):
        fits = [st for st in stages if c.max_layers >= st[0]]
        if fits:
            st = min(fits, key=lambda st: st[2])
            st[1].append((c, nid))
            st[2] += c.throughput_tokens_per_s[st[0] - 1]
    ranges, s = {}, 0
    # stages whose members all reach the source go first, those reaching the sink last
    stages.sort(key=lambda st: (not all(c.from_source for c, _ in st[1]), all(c.to_sink for c, _ in st[1])))
    for length, members, _cap in stages:
        for _c, nid in members:
            ranges[nid] = (s, s + length)
        s += length
    for n in instance.nodes:
        if n.id not in ranges:
            ranges[n.id] = _park(instance)
    return Layout(ranges)


def polish_layout(instance: LayerPlacementInstance, layout: Layout, *, time_limit_s: float = 5.0) -> Layout:
    """Swap the ranges of two nodes with the same throughput table while the exact max flow rises.

    Used where links can bind: the boundary formulation decides how many nodes of a class hold
    each range, not which ones; which one matters when their links differ.
    """
    t0 = time.perf_counter()
    ranges = dict(layout.ranges)
    value = evaluate_layout(instance, Layout(ranges)).value
    by_table: dict[tuple, list[str]] = {}
    for n in instance.nodes:
        by_table.setdefault(n.throughput_tokens_per_s, []).append(n.id)
    pairs = [(a, b) for ids in by_table.values() for i, a in enumerate(ids) for b in ids[i + 1:]]
    improved = True
    while improved and time.perf_counter() - t0 < time_limit_s:
        improved = False
        for a, b in pairs:
            if time.perf_counter() - t0 >= time_limit_s:
                break
            if ranges[a] == ranges[b]:
                continue
            ranges[a], ranges[b] = ranges[b], ranges[a]
            trial = evaluate_layout(instance, Layout(ranges)).value
            if trial > value * (1 + 1e-9):
                value, improved = trial, True
            else:
                ranges[a], ranges[b] = ranges[b], ranges[a]
    return Layout(ranges)


BASELINES = {
    "petals": petals_layout,
    "swarm": swarm_layout,
    "separate_pipelines": separate_pipelines_layout,
    "uniform_partition": uniform_partition_layout,
}


# --------------------------------------------------------------------------------------------
# the search


@dataclass
class SearchOutcome:
    layout: Layout
    value: float
    bound: float
    status: str  # optimal | feasible | time_limit
    method: str
    seconds: float
    first_layout_s: float
    proof: str
    bounds: dict = field(default_factory=dict)
    baselines: dict = field(default_factory=dict)
    trace: list = field(default_factory=list)  # [{"t_s", "event", "objective", "bound"}]
    milp_calls: list = field(default_factory=list)


def solve_layer_placement(instance: LayerPlacementInstance, *, time_limit_s: float = 60.0, rel_gap: float = 1e-6,
                          formulation: str = "boundary", cover_orders: tuple[int, ...] = (2, 3, 4, 6, 8),
                          threads: int = 1, seed: int = 0, starts: dict | None = None) -> SearchOutcome:
    """Best layout within ``time_limit_s``: heuristics, then HiGHS on the chosen formulation."""
    from servopt.models import layer_placement as lp

    t0 = time.perf_counter()

    def elapsed() -> float:
        return time.perf_counter() - t0

    trace: list = []
    compute_ub = compute_upper_bound(instance)
    upper = saturation_upper_bound(instance)
    bounds = {"compute_upper_bound": compute_ub, "saturation_upper_bound": upper}
    exact = lp.boundary_is_exact(instance)
    bounds["boundary_formulation_exact"] = exact

    best_layout, best_value, best_method = None, -1.0, ""

    def offer(layout: Layout | None, method: str) -> float | None:
        nonlocal best_layout, best_value, best_method
        if layout is None or layout_violations(instance, layout):
            return None
        value = evaluate_layout(instance, layout).value
        if value > best_value * (1 + REL_TOL) or best_layout is None:
            best_layout, best_value, best_method = layout, value, method
            trace.append({"t_s": round(elapsed(), 4), "event": method, "objective": value, "bound": upper})
        return value

    # Network-following constructions first (solvers.layer_placement_network): a positive-flow
    # layout within a fraction of a second wherever one exists, or a proof that none does.
    oracle = net.FlowOracle(instance)
    pre_calls: list = []
    net_starts = _network_constructions(instance, oracle, t0, time_limit_s, exact, offer, bounds)
    upper = min(upper, bounds.get("link_cut_upper_bound", math.inf), bounds.get("network_upper_bound", math.inf))

    baselines = {}
    for name, fn in BASELINES.items():
        baselines[name] = {"objective": offer(fn(instance), name)}
    offer(single_chain_layout(instance), "single_chain")
    stage_s = max(0.2 * time_limit_s, 1.0) if exact else min(max(0.03 * time_limit_s, 0.5), 3.0)
    offer(stage_layout(instance, time_limit_s=stage_s), "stages")
    for name, layout in (starts or {}).items():
        value = offer(layout, name)
        baselines.setdefault(name, {"objective": value})
    if not exact and best_layout is not None:
        offer(polish_layout(instance, best_layout, time_limit_s=min(2.0, 0.05 * time_limit_s)), best_method + "+swaps")
    first_layout_s = trace[0]["t_s"] if trace else elapsed()
    if (not exact and best_layout is not None and best_value < upper * (1 - rel_gap)
            and len(instance.nodes) * instance.num_layers <= 120):
        # small clusters: Helix's MILP (capped coefficients) from the incumbent usually proves the optimum fast
        layout, value, bnd, st = _helix_search(instance, best_layout, min(0.3 * time_limit_s, 10.0), rel_gap,
                                               "helix_capped", upper, threads, seed, pre_calls)
        if layout is not None:
            offer(layout, "helix_capped")
        if bnd is not None and st == "optimal":
            upper = min(upper, max(bnd, best_value))
    if not exact and best_layout is not None and best_value < upper * (1 - rel_gap):
        # iterated local search from the best starts, then ruin-and-recreate, before the MILPs
        _network_search(instance, oracle, net_starts, best_layout, t0, time_limit_s, offer, seed)

    status, proof, milp_calls = "feasible", "", pre_calls
    # Pyomo model builds and HiGHS presolve are not charged to HiGHS' own time limit: keep a margin
    milp_limit_s = time_limit_s - (max(1.0, 0.06 * time_limit_s) if exact else max(3.0, 0.12 * time_limit_s))
    if upper <= 0.0:
        return _outcome(best_layout, best_value, 0.0, "optimal", best_method, elapsed(), first_layout_s,
                        "no flow is possible: the saturation bound is 0 (too few layers can be held, or zero-capacity "
                        "source/sink links)", bounds, baselines, trace, milp_calls)
    if best_value >= upper * (1 - rel_gap):
        return _outcome(best_layout, best_value, upper, "optimal", best_method, elapsed(), first_layout_s,
                        "helix_capped MILP (HiGHS) proved the incumbent optimal"
                        if milp_calls and milp_calls[-1].get("status") == "optimal"
                        else "incumbent meets the saturation upper bound", bounds, baselines, trace, milp_calls)

    if formulation in ("helix", "helix_capped"):
        layout, value, bnd, st = _helix_search(instance, best_layout, milp_limit_s - elapsed(), rel_gap,
                                               formulation, upper, threads, seed, milp_calls)
        if layout is not None:
            offer(layout, formulation)
        upper = min(upper, bnd) if bnd is not None else upper
        final_status = "optimal" if best_value >= upper * (1 - rel_gap) else ("time_limit" if st == "time_limit" else "feasible")
        return _outcome(best_layout, best_value, upper, final_status, best_method, elapsed(), first_layout_s,
                        f"{formulation} MILP bound" if final_status == "optimal" else "", bounds, baselines, trace, milp_calls)

    # Iterated cutoff with threshold covers on the boundary formulation. Each test asks HiGHS for
    # a layout with F >= F_t and stops at the first one. Order: F_t just above the incumbent (a
    # proof of optimality when infeasible); if that runs out of its slice, large-neighbourhood
    # search (the same test with the incumbent fixed outside a window of layers) to raise the
    # incumbent; then the midpoint between incumbent and bound (bisection on the bound).
    ran_out = False
    proven = False
    phase = "prove"
    # a model build is not charged to HiGHS' limit: guess its cost from the model's size (about 1.5 s
    # per 100k arc-layer incidences on this machine), then measure it
    arcs = len(lp._boundary_arcs(instance, lp.node_classes(instance)))
    build_s = 1.5 * arcs * max(1, instance.num_layers // 4) / 1e5
    if milp_limit_s - elapsed() < (max(10.0, 0.15 * time_limit_s) if not exact else 2.0 * build_s + 1.0):
        # building the boundary model alone takes seconds on large pruned clusters (8 s on cluster42):
        # with this little time left it could not finish within the limit
        ran_out = True
        upper = upper if upper > best_value else best_value
        return _outcome(best_layout, best_value, upper, "time_limit", best_method, elapsed(), first_layout_s, "",
                        bounds, baselines, trace, milp_calls)
    lns_window = max(instance.num_layers // 3, 2)
    lns_failures = 0
    while best_value < upper * (1 - rel_gap):
        # keep a second for building the last model and evaluating its layout
        left = milp_limit_s - elapsed() - 1.0
        if left <= (max(0.5, 1.5 * build_s) if exact else max(2.0, 1.5 * build_s)):
            ran_out = True
            break
        # above the incumbent by more than HiGHS' feasibility tolerance (1e-7 absolute on a row),
        # so that a "solution" at F_t is a strictly better layout, not round-off
        at_incumbent = best_value * (1 + 1e-8) + 1e-5 if best_value > 0 else upper * 1e-6
        if phase == "lns":
            found = _lns_sweep(instance, lp, best_layout, at_incumbent, upper, cover_orders, lns_window,
                               min(left, max(0.35 * left, 2.0)), rel_gap, threads, seed, milp_calls)
            improved = False
            for layout in found:
                if not exact:
                    layout = polish_layout(instance, layout, time_limit_s=min(5.0, 0.1 * (milp_limit_s - elapsed())))
                before = best_value
                offer(layout, "boundary+threshold (LNS)")
                improved = improved or best_value > before
            if improved:
                phase, lns_failures = "prove", 0
            else:
                lns_failures += 1
                lns_window = int(lns_window * 1.5) + 1
                if lns_failures >= 2 or lns_window >= instance.num_layers:
                    phase = "bisect"
            continue
        target = 0.5 * (best_value + upper) if phase == "bisect" else at_incumbent
        first = len(milp_calls) == 0
        slice_s = left if (phase == "final" or (first and left < 8)) else max(min(left / 5, 10.0), min(left, 2.0))
        built = time.perf_counter()
        model = lp.build(instance, formulation="boundary", upper_bound=upper, threshold=target, cover_orders=cover_orders)
        build_s = max(build_s, time.perf_counter() - built) if milp_calls else time.perf_counter() - built
        # the hand-over to HiGHS costs about as much as the build: keep that much in reserve
        left = milp_limit_s - elapsed() - 1.0 - build_s
        if left <= 0.3:
            ran_out = True
            break
        res = _highs(model, min(slice_s, left), rel_gap, threads, seed, improving=1)
        milp_calls.append({"threshold": target, "status": res.status, "objective": res.objective,
                           "bound": res.bound, "seconds": round(res.wall_seconds, 3)})
        if res.status == "infeasible":
            upper = min(upper, target)
            trace.append({"t_s": round(elapsed(), 4), "event": "threshold infeasible", "objective": best_value, "bound": upper})
            if target == at_incumbent:
                # no layout reaches F_t (in the relaxation where links may bind): the incumbent is
                # optimal up to the round-off margin of F_t
                proven = True
                proof = f"no layout reaches {target:.9g}: threshold-cover model infeasible (HiGHS)"
                break
            continue
        if res.has_solution:
            layout = lp.extract(model, instance)
            if not exact:
                layout = polish_layout(instance, layout, time_limit_s=min(5.0, 0.1 * (milp_limit_s - elapsed())))
            before = best_value
            offer(layout, "boundary+threshold")
            if best_value > before:
                phase = "prove" if phase != "final" else "final"
                continue
            # the layout is no better on the real links (a relaxation, or round-off): go on as if
            # this test had run out of time, keeping only its bound
            if not exact:
                if res.bound is not None:
                    upper = min(upper, max(res.bound, target))
                break
        if res.bound is not None:
            upper = min(upper, max(res.bound, target))
        if phase == "prove":
            phase = "lns" if lns_failures < 2 else "bisect"
        elif phase == "bisect" and milp_limit_s - elapsed() > 2.0:
            phase = "final"  # one last test at the incumbent with all the time that is left
        else:
            ran_out = True
            break

    if not proven and not exact and best_value < upper * (1 - rel_gap) and milp_limit_s - elapsed() > 1.0:
        layout, value, bnd, st = _helix_search(instance, best_layout, milp_limit_s - elapsed(), rel_gap,
                                               "helix_capped", upper, threads, seed, milp_calls)
        if layout is not None:
            offer(layout, "helix_capped")
        if bnd is not None:
            upper = min(upper, bnd)
    if proven or best_value >= upper * (1 - rel_gap):
        status = "optimal"
        proof = proof or "incumbent meets the proven bound"
    else:
        status = "time_limit" if ran_out or elapsed() >= time_limit_s - 1.0 else "feasible"
    return _outcome(best_layout, best_value, upper, status, best_method, elapsed(), first_layout_s, proof, bounds,
                    baselines, trace, milp_calls)


def _network_constructions(instance, oracle, t0, time_limit_s, exact, offer, bounds):
    """Feasibility (exit 2 with the reason when no layout has positive flow), chains, trunks, cut bounds."""
    from servopt.errors import InputError

    L = instance.num_layers
    held = sum(max((k for k, t in enumerate(n.throughput_tokens_per_s, 1) if t > 1e-9), default=0)
               for n in instance.nodes)
    depth = instance.max_pipeline_depth
    if held < L:
        if depth and sum(n.max_layers for n in instance.nodes) >= L:
            raise InputError("max_pipeline_depth", f"only nodes holding at least ceil({L} / {depth}) layers may carry "
                             f"flow, and together they hold at most {held} < {L} layers: no layout meets the depth bound")
        raise InputError("num_layers", f"the model has {L} layers but all {len(instance.nodes)} nodes together hold "
                         f"at most {held} (sum of their throughput list lengths): no layout can serve it")
    budget = max(min(0.2 * time_limit_s, 6.0), 0.3)
    deadline = t0 + budget
    chain, exhaustive = net.find_chain(oracle, 0.0, max_expansions=10**7,
                                       deadline=t0 + max(0.3 * time_limit_s, min(time_limit_s, 2.0)))
    if chain is None:
        if exhaustive:
            field = "max_pipeline_depth" if depth else "links"
            extra = f" with at least ceil({L} / {depth}) layers per node" if depth else ""
            raise InputError(field, f"no chain of linked nodes from source to sink can hold all {L} layers{extra} "
                             "(exhaustive search over simple source-sink paths): no layout has positive flow")
    else:
        s = np.full(oracle.n, L - 1)
        e = np.full(oracle.n, L)
        pos = 0
        for i, k in chain:
            s[i], e[i] = pos, pos + k
            pos += k
        offer(oracle.layout(s, e), "network chain")
    starts = []
    got = net.chains_layout(oracle, deadline=deadline)
    if got is not None:
        offer(oracle.layout(*got), "network chains")
        starts.append(got)
    if not exact:
        for value, s, e in net.trunk_layouts(oracle, deadline=deadline + budget):
            offer(oracle.layout(s, e), "network trunk")
            starts.append((s, e))
    cut, info = net.link_cut_bound(oracle, deadline=deadline + budget)
    bounds["network_upper_bound"] = net.network_bound(oracle)
    if math.isfinite(cut):
        bounds["link_cut_upper_bound"] = cut
        bounds["link_cut"] = info
    return starts


def _network_search(instance, oracle, starts, best_layout, t0, time_limit_s, offer, seed):
    """Local search from the best layout and the best constructions, then ruin-and-recreate;
    every improvement is offered (and so traced). Takes about half of the time that is left."""
    left = time_limit_s - (time.perf_counter() - t0)
    budget = 0.92 * left - 1.0
    if budget <= 0.2:
        return
    end = time.perf_counter() + budget
    s, e = oracle.arrays(best_layout)
    seeds = [(s, e)] + [st for st in starts[:2]]
    # Restricted searches first: every node that carries flow holds at least m layers (m = a GPU
    # type's K). The space is far smaller and its layouts are layouts of the instance; on Helix's
    # 3cluster24 this finds 1515.7 tok/s where the unrestricted search stalls at 1347.9.
    L = instance.num_layers
    ks = sorted({n.max_layers for n in instance.nodes if n.max_layers >= 2})
    ms = [m for m in ks if sum(n.max_layers for n in instance.nodes if n.max_layers >= m) >= L][:2]
    for j, m in enumerate(ms):
        restricted = lpi.with_min_stage(instance, m)
        r_oracle = net.FlowOracle(restricted)
        r_end = min(end, time.perf_counter() + 0.4 * budget / len(ms))
        r_starts = [st[1:] for st in net.trunk_layouts(r_oracle, deadline=min(r_end, time.perf_counter() + 2.0))]
        if not r_starts:
            got = net.chains_layout(r_oracle, deadline=min(r_end, time.perf_counter() + 1.0))
            r_starts = [got] if got is not None else []
        if not r_starts:
            continue
        got = net.local_search(r_oracle, r_starts[0][0], r_starts[0][1], deadline=r_end, seed=seed + 10 + j,
                               on_improve=lambda s2, e2, _v: offer(oracle.layout(s2, e2), f"network local search (>= {m} layers a node)"))
        offer(oracle.layout(got[0], got[1]), f"network local search (>= {m} layers a node)")
        seeds.insert(0, (got[0], got[1]))
    budget = end - time.perf_counter()
    if budget <= 0.2:
        return

    def improved(s2, e2, _v):
        offer(oracle.layout(s2, e2), "network local search")

    share = 0.6 * budget / len(seeds)
    best = None
    for j, (s0, e0) in enumerate(seeds):
        got = net.local_search(oracle, s0, e0, deadline=min(end, time.perf_counter() + share), seed=seed + j,
                               on_improve=improved)
        if best is None or got[2] > best[2]:
            best = got
    if best is not None and time.perf_counter() < end:
        net.ruin_recreate(oracle, best[0], best[1], deadline=end, seed=seed,
                          on_improve=lambda s2, e2, v: offer(oracle.layout(s2, e2), "network ruin-recreate"))


def _outcome(layout, value, upper, status, method, seconds, first_layout_s, proof, bounds, baselines, trace, calls):
    bound = max(upper, value)
    return SearchOutcome(layout, value, bound, status, method, seconds, first_layout_s, proof, bounds, baselines,
                         trace, calls)


def _highs(model, time_limit_s, rel_gap, threads, seed, improving=None, warm_start=None):
    from servopt.solvers.highs import solve

    options = {}
    if improving:
        options["mip_max_improving_sols"] = int(improving)
    return solve(model, time_limit_s=max(time_limit_s, 0.1), rel_gap=rel_gap, threads=threads, seed=seed,
                 options=options, warm_start=warm_start)


def _lns_sweep(instance, lp, layout, target, upper, cover_orders, window, budget_s, rel_gap, threads, seed, calls):
    """Large-neighbourhood search around the incumbent with the threshold model at ``target``.

    Two neighbourhoods, alternating: (a) a window of ``window`` layers (half-overlapping windows):
    every arc wholly outside it is fixed to the incumbent's count; (b) a few nodes set free: every
    arc keeps at least the incumbent's count minus the freed nodes' arcs, the freed nodes go
    anywhere (the flow is free in both). The nodes freed first are those the incumbent's max flow
    uses least (flow / T). Returns the layouts found; the first one ends the sweep.
    """
    import random
    from collections import Counter

    t0 = time.perf_counter()
    rng = random.Random(seed + int(target))
    L = instance.num_layers
    window = min(window, L)
    cls_of = {nid: c.key for c in lp.node_classes(instance) for nid in c.node_ids}
    counts = Counter((cls_of[nid], s, e - s) for nid, (s, e) in layout.ranges.items())
    ev = evaluate_layout(instance, layout)
    inflow = ev.node_inflow()
    usage = sorted(instance.nodes, key=lambda n: inflow.get(n.id, 0.0) / n.throughput(layout.ranges[n.id][1] - layout.ranges[n.id][0]))
    starts = list(range(0, max(L - window, 0) + 1, max(window // 2, 1)))
    if starts[-1] + window < L:
        starts.append(L - window)
    moves = [("window", a) for a in starts]
    free_size = max(2, min(len(instance.nodes) // 3, 6))
    idle = [n.id for n in usage[:free_size // 2]]
    others = [n.id for n in instance.nodes if n.id not in idle]
    for _ in range(max(len(starts) // 2, 1)):
        moves.append(("free", idle + rng.sample(others, min(len(others), free_size - len(idle)))))
    per_move = max(budget_s / max(len(moves), 1), 2.0)
    for kind, arg in moves:
        left = budget_s - (time.perf_counter() - t0)
        if left <= 0.2:
            break
        model = lp.build(instance, formulation="boundary", upper_bound=upper, threshold=target, cover_orders=cover_orders)
        if kind == "window":
            a, b = arg, arg + window
            for arc in model.A:
                _c, s, k = arc
                if s + k <= a or s >= b:
                    model.n[arc].fix(counts.get(arc, 0))
        else:
            kept = Counter(counts)
            for nid in arg:
                s, e = layout.ranges[nid]
                kept[(cls_of[nid], s, e - s)] -= 1
            for arc in model.A:
                if kept.get(arc, 0) > 0:
                    model.n[arc].setlb(kept[arc])
        res = _highs(model, min(per_move, left), rel_gap, threads, seed, improving=1)
        calls.append({"lns": kind, "threshold": target, "status": res.status, "objective": res.objective,
                      "seconds": round(res.wall_seconds, 3)})
        if res.has_solution:
            return [lp.extract(model, instance)]
    return []


def _helix_search(instance, start_layout, time_left, rel_gap, formulation, upper, threads, seed, calls):
    from servopt.models import layer_placement as lp

    if time_left <= 0.5:
        return None, None, None, "time_limit"
    model = lp.build(instance, formulation=formulation, upper_bound=upper)
    warm = None
    if start_layout is not None:
        ev = evaluate_layout(instance, start_layout)
        warm = lp.helix_start(model, instance, start_layout, ev.flows)
    res = _highs(model, time_left, rel_gap, threads, seed, warm_start=warm)
    calls.append({"formulation": formulation, "status": res.status, "objective": res.objective, "bound": res.bound,
                  "seconds": round(res.wall_seconds, 3)})
    layout = lp.extract(model, instance) if res.has_solution else None
    return layout, res.objective, res.bound, res.status
