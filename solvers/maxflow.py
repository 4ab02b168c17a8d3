"""Max flow of a given layer layout (networkx), and the routing weights it induces.

Graph (Helix §4.1 and its simulator's per-placement flow network; research/placement-anchors.md §1.4):
every compute node i is split into ``(i, "in") -> (i, "out")`` with capacity T_i(e_i - s_i); a link
u -> v with capacity C_uv becomes the arc ``(u, "out") -> (v, "in")`` only where the layout makes it
usable: u = source needs s_v = 0, v = sink needs e_u = L, otherwise e_u = s_v (no partial
inference). The value of ``networkx.maximum_flow(source, sink)`` is the layout's throughput
(tokens/s); on Helix's cluster24 layout it reproduces Helix's MILP objective 1289.5557702751735.

Routing weights (Helix §5, interleaved weighted round-robin): for every sender (source or a node),
the share of its outflow that goes to each next hop in this maximum flow.
"""
from __future__ import annotations

from dataclasses import dataclass

from servopt.instances.layer_placement import SINK, SOURCE, LayerPlacementInstance, Layout

_FLOW_EPS = 1e-9


@dataclass(frozen=True)
class FlowEvaluation:
    value: float
    flows: tuple  # ((from, to, tokens_per_s), ...) positive arc flows, node ids / source / sink
    routing_weights: dict  # sender -> {next hop: share}

    def node_inflow(self) -> dict:
        out: dict[str, float] = {}
        for u, v, f in self.flows:
            out[v] = out.get(v, 0.0) + f
        return out


def usable_arcs(instance: LayerPlacementInstance, layout: Layout):
    """The links the layout makes usable, as (from, to, capacity)."""
    L = instance.num_layers
    ranges = layout.ranges
    for link in instance.links:
        if link.src == SOURCE:
            ok = link.dst in ranges and ranges[link.dst][0] == 0
        elif link.dst == SINK:
            ok = link.src in ranges and ranges[link.src][1] == L
        else:
            ok = link.src in ranges and link.dst in ranges and ranges[link.src][1] == ranges[link.dst][0]
        if ok and link.tokens_per_s > 0:
            yield link.src, link.dst, link.tokens_per_s


def evaluate_layout(instance: LayerPlacementInstance, layout: Layout) -> FlowEvaluation:
    """Maximum flow of ``layout`` on ``instance`` (ranges must be valid: see layout_violations)."""
    import networkx as nx

    g = nx.DiGraph()
    src, snk = (SOURCE, "out"), (SINK, "in")
    g.add_node(src)
    g.add_node(snk)
    for node in instance.nodes:
        s, e = layout.ranges[node.id]
        g.add_edge((node.id, "in"), (node.id, "out"), capacity=node.throughput(e - s))
    for u, v, cap in usable_arcs(instance, layout):
        g.add_edge((u, "out"), (v, "in"), capacity=cap)
    # keep only vertices on some source -> sink path: networkx's preflow-push can fail with an
    # IndexError on graphs with dead ends (seen with networkx 3.6), and dead ends carry no flow
    live = nx.descendants(g, src) & nx.ancestors(g, snk)
    if not live:
        return FlowEvaluation(0.0, (), {})
    g = g.subgraph(live | {src, snk}).copy()
    value, flow_dict = nx.maximum_flow(g, src, snk)
    flows = []
    for a, succ in flow_dict.items():
        if a[1] != "out":
            continue
        for b, f in succ.items():
            if f > _FLOW_EPS:
                flows.append((a[0], b[0], float(f)))
    flows.sort()
    return FlowEvaluation(float(value), tuple(flows), routing_weights(flows))


def routing_weights(flows) -> dict:
    out_total: dict[str, float] = {}
    for u, _v, f in flows:
        out_total[u] = out_total.get(u, 0.0) + f
    weights: dict[str, dict[str, float]] = {}
    for u, v, f in flows:
        weights.setdefault(u, {})[v] = f / out_total[u]
    return weights


def layout_value(instance: LayerPlacementInstance, layout: Layout) -> float:
    return evaluate_layout(instance, layout).value
