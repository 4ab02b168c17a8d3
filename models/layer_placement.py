"""Max-flow layer placement (Helix, ASPLOS'25) as mixed-integer programs: two formulations.

Symbols (instance: ``servopt.instances.layer_placement``): layers 0..L-1, boundaries b = 0..L
(boundary b sits before layer b), nodes i with capacity T_i(k) when holding k <= K_i layers,
links C_uv. U is a valid upper bound on the max flow (``saturation_upper_bound``); capping a
coefficient at U never cuts off a solution, because no arc or node carries more than the total flow.

``formulation="helix"`` — Helix's MILP, the reference (Helix §4.2; ilp_layout.py as described in
research/placement-anchors.md §1.2, no partial inference, remove_redundant = True). Per node i:
s_i ∈ Z ∩ [0, L-1], one-hot b_ik ∈ {0,1}, e_i = s_i + Σ_k k·b_ik; per arc (u,v): f_uv >= 0 and
d_uv ∈ {0,1}::

    max  Σ_i f_si
    Σ_k b_ik = 1                         (_hold_rule)          e_i <= L              (_end_rule)
    Σ_u f_ui = Σ_v f_iv                  (_node_flow_rule)
    Σ_u f_ui <= Σ_k T_i(k)·b_ik          (_node_throughput_rule)
    s_i <= L·(1 - d_si)                  (_source_arc_rule)     L·d_it <= e_i        (_sink_arc_rule)
    L·d_ij <= L + s_j - e_i,  L·d_ij <= L - s_j + e_i            (_node_arc_rule: d_ij = 1 ⇒ e_i = s_j)
    f_uv <= C_uv·d_uv                    (_arc_capacity_rule)

Its LP bound is 50–60x the optimum and its coefficients span 1e9 (notes §1.7). ``helix_capped`` is
the same model with every C_uv replaced by min(C_uv, max_k T_u(k), max_k T_v(k), U) (a valid
coefficient tightening, same integer solutions).

``formulation="boundary"`` — ours: an interval flow on the "layer-boundary line", with nodes
aggregated into classes c of interchangeable nodes (same T list, same access to source and sink),
N_c nodes each. A node holding [s, s+k) is an arc s -> s+k of the line; when every pair of nodes is
linked and no link can bind (C_uv >= min(max T_u, max T_v), checked by ``boundary_is_exact``),
all nodes that end at b feed all nodes that start at b, so boundary b is a single vertex and the
max flow of a layout is the max flow 0 -> L on the line (exact). Otherwise it is a relaxation
(an upper bound). Variables n[c,s,k] ∈ Z>=0 (nodes of class c on [s, s+k)), f[c,s,k] >= 0, F::

    max  F
    Σ_{s,k} n[c,s,k] <= N_c                                   (_class_count_rule)
    f[c,s,k] <= min(T_c(k), U)·n[c,s,k]                       (_class_capacity_rule)
    Σ_{s+k=b} f[c,s,k] = Σ_{s=b} f[c,s,k],  b = 1..L-1       (_boundary_flow_rule)
    F = Σ_k f[c,0,k]                                          (_flow_value_rule)
    Σ_{(c,s,k): s <= l < s+k} f[c,s,k] = F,  l = 0..L-1       (_layer_flow_rule: every path crosses every layer once)
    Σ_{(c,s,k): s <= l < s+k} n[c,s,k] >= 1                   (_layer_cover_rule, valid for F > 0)
    F <= U

With ``threshold`` F_t (only layouts with F >= F_t are sought), per layer l (ours):

    F >= F_t                                                  (threshold)
    Σ_{covering l} min(T_c(k), F_t)·n[c,s,k] >= F_t           (_threshold_knapsack_rule)
    Σ_{covering l} phi_r(min(T_c(k)/F_t, 1))·n[c,s,k] >= r    (_threshold_cover_rule, r in cover_orders)

where phi_r(a) = min(r, 1 + floor((r-1)·a)). Validity: the nodes covering l carry the whole flow F,
each at most min(T, F), so Σ (min(T, F)/F)·n >= 1; min(T, F)/F is non-increasing in F, so the
same holds with F_t in place of F (the knapsack row). phi_r is non-decreasing and subadditive
with phi_r(1) = r (floor(x) + floor(y) >= floor(x + y) - 1), hence Σ phi_r(a)·n >= phi_r(Σ a·n) >= r.
r = 2 reads "one node that carries F alone, or at least two nodes".

Its LP bound is the saturation bound U (research/placement-anchors.md §1.7), where Helix's is the
big-M bound. ``prune_below`` (optional) drops arcs whose capacity cannot help a flow >= that value
alone AND with partners: none are dropped by default. ``mirror_break`` adds the symmetry cut
"layer 0's cover uses no fewer nodes than layer L-1's" — a layout reflected (s -> L - e) has the same
max flow (reverse every arc), so one of each mirror pair may be dropped; applied only when every
class reaches the source iff it reaches the sink (else a reflection may not be a layout).
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from servopt.instances.layer_placement import SINK, SOURCE, LayerPlacementInstance, Layout

FORMULATIONS = ("boundary", "helix", "helix_capped")


@dataclass(frozen=True)
class NodeClass:
    """Interchangeable nodes: same throughput list, same source/sink access."""

    key: int
    node_ids: tuple[str, ...]
    throughput_tokens_per_s: tuple[float, ...]
    from_source: bool
    to_sink: bool

    @property
    def count(self) -> int:
        return len(self.node_ids)

    @property
    def max_layers(self) -> int:
        return len(self.throughput_tokens_per_s)


def node_classes(instance: LayerPlacementInstance) -> list[NodeClass]:
    has_src = {l.dst for l in instance.links if l.src == SOURCE and l.tokens_per_s > 0}
    has_snk = {l.src for l in instance.links if l.dst == SINK and l.tokens_per_s > 0}
    groups: dict[tuple, list[str]] = defaultdict(list)
    for n in instance.nodes:
        groups[(n.throughput_tokens_per_s, n.id in has_src, n.id in has_snk)].append(n.id)
    out = []
    for key, (signature, ids) in enumerate(sorted(groups.items(), key=lambda kv: kv[1][0])):
        thr, fs, ts = signature
        out.append(NodeClass(key, tuple(ids), thr, fs, ts))
    return out


def boundary_is_exact(instance: LayerPlacementInstance) -> bool:
    """True when the boundary formulation's optimum is the instance's optimum.

    Needs: every ordered pair of nodes linked with C_ij >= min(max T_i, max T_j) (no node arc can
    bind), and every source/sink link, where present, >= max T of its node (cannot bind).
    """
    cap = instance.link_capacity()
    max_t = {n.id: max(n.throughput_tokens_per_s) for n in instance.nodes}
    ids = instance.node_ids
    for i in ids:
        for j in ids:
            if i != j and cap.get((i, j), 0.0) < min(max_t[i], max_t[j]):
                return False
    for l in instance.links:
        if l.src == SOURCE and l.tokens_per_s < max_t[l.dst] and l.tokens_per_s > 0:
            return False
        if l.dst == SINK and l.tokens_per_s < max_t[l.src] and l.tokens_per_s > 0:
            return False
    return True


def build(instance: LayerPlacementInstance, *, formulation: str = "boundary", upper_bound: float | None = None,
          threshold: float | None = None, cover_orders: tuple[int, ...] = (2, 3, 4), layer_cover: bool = True,
          mirror_break: bool = False):
    if formulation == "boundary":
        return _build_boundary(instance, upper_bound=upper_bound, threshold=threshold, cover_orders=cover_orders,
                               layer_cover=layer_cover, mirror_break=mirror_break)
    if formulation in ("helix", "helix_capped"):
        return _build_helix(instance, capped=formulation == "helix_capped", upper_bound=upper_bound)
    raise ValueError(f"unknown formulation '{formulation}' (known: {', '.join(FORMULATIONS)})")


# --------------------------------------------------------------------------------------------
# boundary formulation


def _boundary_arcs(instance, classes):
    L = instance.num_layers
    arcs = []
    for c in classes:
        for k in range(1, c.max_layers + 1):
            for s in range(0, L - k + 1):
                if s == 0 and not c.from_source:
                    continue
                if s + k == L and not c.to_sink:
                    continue
                arcs.append((c.key, s, k))
    return arcs


def threshold_weight(throughput: float, threshold: float, order: int) -> int:
    """phi_r(a) = min(r, 1 + floor((r - 1)·a)) at a = min(T / F_t, 1): the threshold cover weight."""
    a = min(throughput / threshold, 1.0)
    return min(order, 1 + int(math.floor((order - 1) * a)))


def _build_boundary(instance, *, upper_bound, threshold, cover_orders, layer_cover, mirror_break):
    import pyomo.environ as pyo

    L = instance.num_layers
    classes = node_classes(instance)
    by_key = {c.key: c for c in classes}
    U = float(upper_bound) if upper_bound is not None else sum(max(c.throughput_tokens_per_s) * c.count for c in classes)
    arcs = _boundary_arcs(instance, classes)

    m = pyo.ConcreteModel(name="layer_placement_boundary")
    m.formulation = "boundary"
    m.classes = classes
    m.num_layers = L
    m.A = pyo.Set(initialize=arcs, dimen=3, ordered=True)
    m.C = pyo.Set(initialize=[c.key for c in classes])
    m.B = pyo.RangeSet(1, L - 1) if L > 1 else pyo.Set(initialize=[])
    m.Lay = pyo.RangeSet(0, L - 1)
    m.cap = {a: min(by_key[a[0]].throughput_tokens_per_s[a[2] - 1], U) for a in arcs}
    m.n = pyo.Var(m.A, domain=pyo.NonNegativeIntegers, bounds=lambda m, c, s, k: (0, by_key[c].count))
    m.f = pyo.Var(m.A, domain=pyo.NonNegativeReals, bounds=lambda m, c, s, k: (0, m.cap[c, s, k] * by_key[c].count))
    m.F = pyo.Var(domain=pyo.NonNegativeReals, bounds=(0, U))

    starts, ends, covers = defaultdict(list), defaultdict(list), defaultdict(list)
    for a in arcs:
        _, s, k = a
        starts[s].append(a)
        ends[s + k].append(a)
        for layer in range(s, s + k):
            covers[layer].append(a)
    by_class = defaultdict(list)
    for a in arcs:
        by_class[a[0]].append(a)

    def _class_count_rule(m, c):
        return sum(m.n[a] for a in by_class[c]) <= by_key[c].count

    def _class_capacity_rule(m, c, s, k):
        return m.f[c, s, k] <= m.cap[c, s, k] * m.n[c, s, k]

    def _boundary_flow_rule(m, b):
        return sum(m.f[a] for a in ends[b]) == sum(m.f[a] for a in starts[b])

    def _flow_value_rule(m):
        return m.F == sum(m.f[a] for a in starts[0])

    def _layer_flow_rule(m, layer):
        return sum(m.f[a] for a in covers[layer]) == m.F

    def _layer_cover_rule(m, layer):
        return sum(m.n[a] for a in covers[layer]) >= 1

    m.class_count = pyo.Constraint(m.C, rule=_class_count_rule)
    m.class_capacity = pyo.Constraint(m.A, rule=_class_capacity_rule)
    m.boundary_flow = pyo.Constraint(m.B, rule=_boundary_flow_rule)
    m.flow_value = pyo.Constraint(rule=_flow_value_rule)
    m.layer_flow = pyo.Constraint(m.Lay, rule=_layer_flow_rule)
    if layer_cover:
        m.layer_cover = pyo.Constraint(m.Lay, rule=_layer_cover_rule)
    if threshold is not None:
        m.threshold = pyo.Constraint(expr=m.F >= float(threshold))
        m.Orders = pyo.Set(initialize=sorted(set(int(r) for r in cover_orders if r >= 2)))

        def _threshold_cover_rule(m, layer, r):
            return sum(
                threshold_weight(by_key[a[0]].throughput_tokens_per_s[a[2] - 1], threshold, r) * m.n[a]
                for a in covers[layer]
            ) >= r

        m.threshold_cover = pyo.Constraint(m.Lay, m.Orders, rule=_threshold_cover_rule)

        def _threshold_knapsack_rule(m, layer):
            return sum(
                min(by_key[a[0]].throughput_tokens_per_s[a[2] - 1], threshold) * m.n[a] for a in covers[layer]
            ) >= threshold

        m.threshold_knapsack = pyo.Constraint(m.Lay, rule=_threshold_knapsack_rule)
    symmetric_access = all(c.from_source == c.to_sink for c in classes)
    if mirror_break and L > 1 and symmetric_access:
        m.mirror = pyo.Constraint(expr=sum(m.n[a] for a in covers[0]) >= sum(m.n[a] for a in covers[L - 1]))
    m.obj = pyo.Objective(expr=m.F, sense=pyo.maximize)
    return m


def boundary_start(model, layout: Layout) -> list:
    """(var, value) pairs giving ``layout`` (and a flow of it on the line) as a MIP start."""
    import networkx as nx

    classes = model.classes
    cls_of = {nid: c.key for c in classes for nid in c.node_ids}
    counts = defaultdict(int)
    for nid, (s, e) in layout.ranges.items():
        counts[(cls_of[nid], s, e - s)] += 1
    g = nx.DiGraph()
    for (c, s, k), cnt in counts.items():
        if (c, s, k) not in model.cap:
            continue
        g.add_edge(("b", s), ("a", c, s, k), capacity=model.cap[c, s, k] * cnt)
        g.add_edge(("a", c, s, k), ("b", s + k))
    pairs = [(model.n[a], counts.get(a, 0)) for a in model.A]
    if g.has_node(("b", 0)) and g.has_node(("b", model.num_layers)):
        value, fd = nx.maximum_flow(g, ("b", 0), ("b", model.num_layers))
    else:
        value, fd = 0.0, {}
    for a in model.A:
        node = ("a",) + tuple(a)
        flow = fd.get(("b", a[1]), {}).get(node, 0.0) if node in g else 0.0
        pairs.append((model.f[a], flow))
    pairs.append((model.F, value))
    return pairs


def extract_boundary(model, instance: LayerPlacementInstance) -> Layout:
    """Give each class's integer arc counts to concrete nodes; spare nodes go to layer 0's cover."""
    import pyomo.environ as pyo

    ranges = {}
    for c in model.classes:
        free = list(c.node_ids)
        for a in model.A:
            if a[0] != c.key:
                continue
            cnt = int(round(pyo.value(model.n[a])))
            for _ in range(cnt):
                if free:
                    ranges[free.pop(0)] = (a[1], a[1] + a[2])
        for nid in free:  # unused nodes: any valid range; extra nodes never lower a max flow
            ranges[nid] = (0, 1) if c.from_source else (instance.num_layers - 1, instance.num_layers)
    return Layout(ranges)


# --------------------------------------------------------------------------------------------
# Helix's formulation (reference)


def _build_helix(instance, *, capped, upper_bound):
    import pyomo.environ as pyo

    L = instance.num_layers
    nodes = {n.id: n for n in instance.nodes}
    ids = list(nodes)
    max_t = {i: max(nodes[i].throughput_tokens_per_s) for i in ids}
    U = float(upper_bound) if upper_bound is not None else float("inf")
    arcs = [(l.src, l.dst) for l in instance.links]
    cap = {}
    for l in instance.links:
        c = l.tokens_per_s
        if capped:
            for end in (l.src, l.dst):
                if end in max_t:
                    c = min(c, max_t[end])
            c = min(c, U)
        cap[(l.src, l.dst)] = c

    m = pyo.ConcreteModel(name="layer_placement_helix")
    m.formulation = "helix_capped" if capped else "helix"
    m.num_layers = L
    m.I = pyo.Set(initialize=ids, ordered=True)
    m.IK = pyo.Set(initialize=[(i, k) for i in ids for k in range(1, nodes[i].max_layers + 1)], dimen=2, ordered=True)
    m.E = pyo.Set(initialize=arcs, dimen=2, ordered=True)
    m.s = pyo.Var(m.I, domain=pyo.Integers, bounds=(0, L - 1))
    m.b = pyo.Var(m.IK, domain=pyo.Binary)
    m.f = pyo.Var(m.E, domain=pyo.NonNegativeReals)
    m.d = pyo.Var(m.E, domain=pyo.Binary)

    def end(m, i):
        return m.s[i] + sum(k * m.b[i, k] for k in range(1, nodes[i].max_layers + 1))

    def _hold_rule(m, i):
        return sum(m.b[i, k] for k in range(1, nodes[i].max_layers + 1)) == 1

    def _end_rule(m, i):
        return end(m, i) <= L

    def _node_flow_rule(m, i):
        return sum(m.f[u, v] for (u, v) in m.E if v == i) == sum(m.f[u, v] for (u, v) in m.E if u == i)

    def _node_throughput_rule(m, i):
        return sum(m.f[u, v] for (u, v) in m.E if v == i) <= sum(
            nodes[i].throughput(k) * m.b[i, k] for k in range(1, nodes[i].max_layers + 1))

    def _arc_capacity_rule(m, u, v):
        return m.f[u, v] <= cap[(u, v)] * m.d[u, v]

    m.hold = pyo.Constraint(m.I, rule=_hold_rule)
    m.end = pyo.Constraint(m.I, rule=_end_rule)
    m.node_flow = pyo.Constraint(m.I, rule=_node_flow_rule)
    m.node_throughput = pyo.Constraint(m.I, rule=_node_throughput_rule)
    m.arc_capacity = pyo.Constraint(m.E, rule=_arc_capacity_rule)
    m.arc_valid = pyo.ConstraintList()
    for (u, v) in arcs:
        if u == SOURCE:
            m.arc_valid.add(m.s[v] <= L * (1 - m.d[u, v]))  # _source_arc_rule
        elif v == SINK:
            m.arc_valid.add(L * m.d[u, v] <= end(m, u))  # _sink_arc_rule
        else:  # _node_arc_rule
            m.arc_valid.add(L * m.d[u, v] <= L + m.s[v] - end(m, u))
            m.arc_valid.add(L * m.d[u, v] <= L - m.s[v] + end(m, u))
    m.obj = pyo.Objective(expr=sum(m.f[u, v] for (u, v) in arcs if u == SOURCE), sense=pyo.maximize)
    return m


def helix_start(model, instance: LayerPlacementInstance, layout: Layout, flows) -> list:
    """(var, value) pairs of a full MIP start for the Helix formulations."""
    L = instance.num_layers
    pairs = []
    for i in model.I:
        s, e = layout.ranges[i]
        pairs.append((model.s[i], s))
        for (j, k) in model.IK:
            if j == i:
                pairs.append((model.b[j, k], 1 if k == e - s else 0))
    flow = {(u, v): f for u, v, f in flows}
    for (u, v) in model.E:
        if u == SOURCE:
            valid = layout.ranges[v][0] == 0
        elif v == SINK:
            valid = layout.ranges[u][1] == L
        else:
            valid = layout.ranges[u][1] == layout.ranges[v][0]
        pairs.append((model.d[u, v], 1 if valid else 0))
        pairs.append((model.f[u, v], flow.get((u, v), 0.0) if valid else 0.0))
    return pairs


def extract_helix(model) -> Layout:
    import pyomo.environ as pyo

    ranges = {}
    for i in model.I:
        s = int(round(pyo.value(model.s[i])))
        k = max((kk for (j, kk) in model.IK if j == i), key=lambda kk: pyo.value(model.b[i, kk]))
        ranges[i] = (s, s + k)
    return Layout(ranges)


def extract(model, instance: LayerPlacementInstance) -> Layout:
    if model.formulation == "boundary":
        return extract_boundary(model, instance)
    return extract_helix(model)
