"""Independent checker of a layer-placement result (layout + flows), whoever produced it.

Checks, against the instance alone (no code shared with the solvers):

1. ranges: every node holds [s, e) with 0 <= s < e <= L and e - s <= K_i; no unknown node;
2. arcs: every positive flow runs on a link of the instance that the layout makes usable
   (source -> i needs s_i = 0, i -> sink needs e_i = L, i -> j needs e_i = s_j);
3. capacities: arc flow <= link capacity; a node's inflow <= T_i(e_i - s_i);
4. conservation at every node; flows are finite and >= 0;
5. objective: the reported objective equals the flow leaving the source, and equals the maximum
   flow of the layout, recomputed here with our own Edmonds–Karp (shortest augmenting paths);
6. the reported bound, when present, is not below the objective; routing weights, when present,
   are the flow shares of each sender.

Tolerance: relative 1e-6 on flows and objectives (float max-flow values).
"""
from __future__ import annotations

import math
from collections import deque

from servopt.instances.layer_placement import SINK, SOURCE, LayerPlacementInstance

TOL = 1e-6


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= TOL * max(1.0, abs(a), abs(b))


def edmonds_karp(num_vertices: int, arcs: list[tuple[int, int, float]], s: int, t: int) -> float:
    """Max flow value by shortest augmenting paths on a residual adjacency matrix (dense, small graphs)."""
    cap = [dict() for _ in range(num_vertices)]
    for u, v, c in arcs:
        cap[u][v] = cap[u].get(v, 0.0) + c
        cap[v].setdefault(u, 0.0)
    total = 0.0
    while True:
        parent = [-1] * num_vertices
        parent[s] = s
        queue = deque([s])
        while queue and parent[t] < 0:
            u = queue.popleft()
            for v, c in cap[u].items():
                if c > 1e-12 and parent[v] < 0:
                    parent[v] = u
                    queue.append(v)
        if parent[t] < 0:
            return total
        push = math.inf
        v = t
        while v != s:
            u = parent[v]
            push = min(push, cap[u][v])
            v = u
        v = t
        while v != s:
            u = parent[v]
            cap[u][v] -= push
            cap[v][u] += push
            v = u
        total += push


def layout_max_flow(instance: LayerPlacementInstance, ranges: dict) -> float:
    """Max flow of a layout (ranges assumed valid), by our own Edmonds–Karp."""
    L = instance.num_layers
    index = {SOURCE: 0, SINK: 1}
    for n in instance.nodes:
        index[(n.id, "in")] = len(index)
        index[(n.id, "out")] = len(index)
    arcs = []
    for n in instance.nodes:
        s, e = ranges[n.id]
        arcs.append((index[(n.id, "in")], index[(n.id, "out")], n.throughput_tokens_per_s[e - s - 1]))
    for link in instance.links:
        if link.src == SOURCE:
            if ranges[link.dst][0] == 0:
                arcs.append((0, index[(link.dst, "in")], link.tokens_per_s))
        elif link.dst == SINK:
            if ranges[link.src][1] == L:
                arcs.append((index[(link.src, "out")], 1, link.tokens_per_s))
        elif ranges[link.src][1] == ranges[link.dst][0]:
            arcs.append((index[(link.src, "out")], index[(link.dst, "in")], link.tokens_per_s))
    return edmonds_karp(len(index), arcs, 0, 1)


def check(instance: LayerPlacementInstance, result: dict) -> list[str]:
    """Violations of ``result`` for ``instance``; [] means valid and the objective recomputes."""
    out: list[str] = []
    L = instance.num_layers
    nodes = {n.id: n for n in instance.nodes}
    raw = result.get("layers")
    if not isinstance(raw, dict):
        return ["layers: missing or not an object"]
    ranges = {}
    for nid, rng in raw.items():
        if nid not in nodes:
            out.append(f"layers.{nid}: unknown node")
            continue
        if (not isinstance(rng, (list, tuple)) or len(rng) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in rng)):
            out.append(f"layers.{nid}: expected [start, end] integers, got {rng!r}")
            continue
        s, e = rng
        if not (0 <= s < e <= L):
            out.append(f"layers.{nid}: range [{s}, {e}) not inside [0, {L}) or empty")
        elif e - s > nodes[nid].max_layers:
            out.append(f"layers.{nid}: {e - s} layers, more than K = {nodes[nid].max_layers}")
        else:
            ranges[nid] = (s, e)
    for nid in nodes:
        if nid not in raw:
            out.append(f"layers.{nid}: node holds no layers (every node must hold a range)")
    if out:
        return out

    caps = {(l.src, l.dst): l.tokens_per_s for l in instance.links}
    inflow = {nid: 0.0 for nid in nodes}
    outflow = {nid: 0.0 for nid in nodes}
    source_out = 0.0
    sink_in = 0.0
    flows = result.get("flows", [])
    if not isinstance(flows, list):
        return ["flows: expected an array"]
    for k, arc in enumerate(flows):
        where = f"flows[{k}]"
        if not isinstance(arc, dict) or not {"from", "to", "tokens_per_s"} <= set(arc):
            out.append(f"{where}: expected {{from, to, tokens_per_s}}")
            continue
        u, v, f = arc["from"], arc["to"], arc["tokens_per_s"]
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not math.isfinite(f) or f < -TOL:
            out.append(f"{where}: flow {f!r} is not a finite number >= 0")
            continue
        if (u, v) not in caps:
            out.append(f"{where}: no link {u} -> {v} in the instance")
            continue
        if f > caps[(u, v)] * (1 + TOL) + TOL:
            out.append(f"{where}: flow {f:.6g} exceeds the link capacity {caps[(u, v)]:.6g}")
        if f > TOL:
            if u == SOURCE and ranges[v][0] != 0:
                out.append(f"{where}: source -> {v} but {v} starts at layer {ranges[v][0]}, not 0")
            elif v == SINK and ranges[u][1] != L:
                out.append(f"{where}: {u} -> sink but {u} ends at {ranges[u][1]}, not {L}")
            elif u != SOURCE and v != SINK and ranges[u][1] != ranges[v][0]:
                out.append(f"{where}: {u} ends at {ranges[u][1]} but {v} starts at {ranges[v][0]}")
        if u == SOURCE:
            source_out += f
        else:
            outflow[u] += f
        if v == SINK:
            sink_in += f
        else:
            inflow[v] += f
    for nid, n in nodes.items():
        s, e = ranges[nid]
        t = n.throughput_tokens_per_s[e - s - 1]
        if inflow[nid] > t * (1 + TOL) + TOL:
            out.append(f"node {nid}: inflow {inflow[nid]:.6g} exceeds its throughput T({e - s}) = {t:.6g}")
        if not _close(inflow[nid], outflow[nid]):
            out.append(f"node {nid}: inflow {inflow[nid]:.6g} != outflow {outflow[nid]:.6g}")
    if not _close(source_out, sink_in):
        out.append(f"flow leaving source {source_out:.6g} != flow entering sink {sink_in:.6g}")
    objective = result.get("objective")
    if objective is None:
        out.append("objective: missing")
        return out
    if not _close(float(objective), source_out):
        out.append(f"objective {objective:.9g} != flow leaving the source {source_out:.9g}")
    best = layout_max_flow(instance, ranges)
    if not _close(float(objective), best):
        out.append(f"objective {objective:.9g} is not the max flow of this layout ({best:.9g}, recomputed)")
    bound = result.get("bound")
    if bound is not None and float(bound) < float(objective) * (1 - TOL) - TOL:
        out.append(f"bound {bound:.9g} is below the objective {objective:.9g}")
    weights = result.get("routing_weights")
    if isinstance(weights, dict):
        sent: dict[str, dict[str, float]] = {}
        for arc in flows:
            if isinstance(arc, dict) and arc.get("tokens_per_s", 0) > TOL:
                sent.setdefault(arc["from"], {})[arc["to"]] = arc["tokens_per_s"]
        for u, hops in sent.items():
            total = sum(hops.values())
            given = weights.get(u, {})
            for v, f in hops.items():
                if not _close(given.get(v, 0.0), f / total):
                    out.append(f"routing_weights.{u}.{v}: {given.get(v, 0.0):.6g} != flow share {f / total:.6g}")
                    break
    return out
