"""Layer placement over a heterogeneous GPU cluster (Helix, ASPLOS'25): instance and result data.

The problem (Helix, arXiv 2406.01566, §4; our notes: research/placement-anchors.md §1.1–1.2): a model
of ``num_layers`` = L transformer layers is served by compute nodes i, each holding one contiguous
range of layers [s_i, e_i) with ``1 <= e_i - s_i <= K_i``, where K_i = len(throughput_tokens_per_s).
A node holding k layers processes at most ``T_i(k) = throughput_tokens_per_s[k-1]`` tokens/s.
Directed links carry at most ``tokens_per_s``; the arc source->i is usable only if s_i = 0,
i->sink only if e_i = L, i->j only if e_i = s_j (no partial inference). The objective is the
maximum flow from source to sink (tokens/s).

Instance JSON (``servopt/schemas/layer_placement.schema.json``)::

    {"kind": "layer_placement", "num_layers": L,
     "nodes": [{"id": "n0", "type": "A100", "throughput_tokens_per_s": [T(1), ..., T(K)]}, ...],
     "links": [{"from": "source" | "<node>", "to": "<node>" | "sink", "tokens_per_s": C}, ...]}

Optional fields: ``name``, ``source`` (where the numbers come from), ``reference`` (published
layouts and objectives, kept verbatim). ``SOURCE`` and ``SINK`` are reserved ids.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from servopt.errors import InputError
from servopt.instances import fields

SOURCE = "source"
SINK = "sink"


@dataclass(frozen=True)
class ComputeNode:
    """One machine. ``throughput_tokens_per_s[k-1]`` is T(k), its capacity when it holds k layers."""

    id: str
    type: str
    throughput_tokens_per_s: tuple[float, ...]

    @property
    def max_layers(self) -> int:
        return len(self.throughput_tokens_per_s)

    def throughput(self, num_layers: int) -> float:
        return self.throughput_tokens_per_s[num_layers - 1]

    def to_dict(self) -> dict:
        return {"id": self.id, "type": self.type, "throughput_tokens_per_s": list(self.throughput_tokens_per_s)}


@dataclass(frozen=True)
class Link:
    """A directed network link; ``src`` may be ``SOURCE``, ``dst`` may be ``SINK``."""

    src: str
    dst: str
    tokens_per_s: float

    def to_dict(self) -> dict:
        return {"from": self.src, "to": self.dst, "tokens_per_s": self.tokens_per_s}


@dataclass(frozen=True)
class LayerPlacementInstance:
    num_layers: int
    nodes: tuple[ComputeNode, ...]
    links: tuple[Link, ...]
    name: str = ""
    source: str = ""
    reference: dict = field(default_factory=dict, compare=False, hash=False)
    max_pipeline_depth: int | None = None  # latency bound: flow paths of at most this many nodes

    def __post_init__(self):
        # Nodes may list more throughputs than there are layers; a node never holds more than L.
        if any(n.max_layers > self.num_layers for n in self.nodes):
            clipped = tuple(
                ComputeNode(n.id, n.type, n.throughput_tokens_per_s[: self.num_layers]) for n in self.nodes
            )
            object.__setattr__(self, "nodes", clipped)

    @property
    def node_ids(self) -> tuple[str, ...]:
        return tuple(n.id for n in self.nodes)

    def node(self, node_id: str) -> ComputeNode:
        return self._node_index()[node_id]

    def _node_index(self) -> dict[str, ComputeNode]:
        return {n.id: n for n in self.nodes}

    def link_capacity(self) -> dict[tuple[str, str], float]:
        return {(l.src, l.dst): l.tokens_per_s for l in self.links}

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"kind": "layer_placement"}
        if self.name:
            out["name"] = self.name
        if self.source:
            out["source"] = self.source
        out["num_layers"] = self.num_layers
        if self.max_pipeline_depth is not None:
            out["max_pipeline_depth"] = self.max_pipeline_depth
        out["nodes"] = [n.to_dict() for n in self.nodes]
        out["links"] = [l.to_dict() for l in self.links]
        if self.reference:
            out["reference"] = self.reference
        return out


@dataclass(frozen=True)
class Layout:
    """Which layers each node holds: ``ranges[node_id] = (start, end_exclusive)``."""

    ranges: dict

    def to_dict(self) -> dict:
        return {k: [int(s), int(e)] for k, (s, e) in self.ranges.items()}


@dataclass
class LayerPlacementResult:
    """A layout, the max flow it admits, and the routing weights taken from that flow.

    ``flows`` are arc flows (tokens/s) of one maximum flow of the layout, as (from, to, value);
    ``routing_weights`` are, per sender (``source`` or a node), the fraction of its outflow sent to
    each next hop — the weights of Helix's interleaved weighted round-robin (Helix §5).
    ``common`` holds the fields every servopt result carries (status, objective, bound, gap, ...).
    """

    common: dict
    layout: Layout
    flows: list
    routing_weights: dict
    details: dict = field(default_factory=dict)  # formulation, method, proof, bounds, baselines, trace, ...

    def to_dict(self) -> dict:
        out = {"kind": "layer_placement", **self.common, **self.details}
        out["layers"] = self.layout.to_dict()
        out["flows"] = [{"from": u, "to": v, "tokens_per_s": f} for u, v, f in self.flows]
        out["routing_weights"] = self.routing_weights
        return out

    def to_dataframe(self):
        """One row per node: its range, the flow through it and its share of its throughput."""
        import pandas as pd

        inflow: dict[str, float] = {}
        for _u, v, f in self.flows:
            inflow[v] = inflow.get(v, 0.0) + f
        rows = [{"node": nid, "start": s, "end": e, "num_layers": e - s, "flow_tokens_per_s": inflow.get(nid, 0.0)}
                for nid, (s, e) in sorted(self.layout.ranges.items(), key=lambda kv: (kv[1], kv[0]))]
        return pd.DataFrame(rows)


def _finite_positive(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(where, f"expected a finite number, got {value!r}")
    if value <= 0:
        raise InputError(where, f"must be > 0, got {value!r}")
    return float(value)


def instance_from_dict(data: dict) -> LayerPlacementInstance:
    """Semantic checks beyond the JSON Schema; every error names its field."""
    if not isinstance(data, dict):
        raise InputError("(top level)", "an instance must be a JSON object")
    num_layers = fields.integer(data, "num_layers", "", minimum=1)
    raw_nodes = fields.array(data, "nodes", "")
    nodes = []
    for i, raw in enumerate(raw_nodes):
        path = f"nodes[{i}]"
        if not isinstance(raw, dict):
            raise InputError(path, "expected an object")
        nid = fields.string(raw, "id", path)
        if nid in (SOURCE, SINK):
            raise InputError(f"{path}.id", f"'{nid}' is reserved for the flow's end points")
        ntype = fields.string(raw, "type", path, default="unknown")
        thr = fields.array(raw, "throughput_tokens_per_s", path)
        values = tuple(_finite_positive(v, f"{path}.throughput_tokens_per_s[{k}]") for k, v in enumerate(thr))
        nodes.append(ComputeNode(nid, ntype, values))
    fields.unique_ids(nodes, "nodes")
    ids = {n.id for n in nodes}
    raw_links = fields.array(data, "links", "")
    links = []
    seen: dict[tuple[str, str], int] = {}
    for i, raw in enumerate(raw_links):
        path = f"links[{i}]"
        if not isinstance(raw, dict):
            raise InputError(path, "expected an object")
        src = fields.string(raw, "from", path)
        dst = fields.string(raw, "to", path)
        if src != SOURCE and src not in ids:
            raise InputError(f"{path}.from", f"unknown node '{src}' (expected 'source' or a node id)")
        if dst != SINK and dst not in ids:
            raise InputError(f"{path}.to", f"unknown node '{dst}' (expected 'sink' or a node id)")
        if src == dst:
            raise InputError(f"{path}.to", f"a link from '{src}' to itself")
        if src == SOURCE and dst == SINK:
            raise InputError(f"{path}.to", "a link from source straight to sink skips every layer")
        cap = fields.number(raw, "tokens_per_s", path, minimum=0)
        if (src, dst) in seen:
            raise InputError(path, f"duplicate link {src} -> {dst} (first at links[{seen[(src, dst)]}])")
        seen[(src, dst)] = i
        links.append(Link(src, dst, cap))
    if not any(l.src == SOURCE for l in links):
        raise InputError("links", "no link leaves 'source': no flow is possible")
    if not any(l.dst == SINK for l in links):
        raise InputError("links", "no link enters 'sink': no flow is possible")
    reference = data.get("reference", {})
    if not isinstance(reference, dict):
        raise InputError("reference", "expected an object")
    depth = None
    if data.get("max_pipeline_depth") is not None:
        depth = fields.integer(data, "max_pipeline_depth", "", minimum=1)
    return LayerPlacementInstance(
        num_layers=num_layers,
        nodes=tuple(nodes),
        links=tuple(links),
        name=str(data.get("name", "")),
        source=str(data.get("source", "")),
        reference=reference,
        max_pipeline_depth=depth,
    )


DEPTH_EPSILON_TOKENS_PER_S = 1e-12


def depth_bounded(instance: LayerPlacementInstance, max_depth: int | None) -> LayerPlacementInstance:
    """The instance in which flow paths visit at most ``max_depth`` nodes (ours).

    A node that holds k < m = ceil(L / max_depth) layers gets throughput 1e-12 tokens/s (the JSON
    format needs T > 0; nothing measurable passes), so every path that carries flow is made of
    nodes holding >= m layers each, hence has at most floor(L / m) <= max_depth nodes. Conversely
    every layout whose flow paths all hold >= m layers per node keeps its flow. This is a
    sufficient condition for the depth bound (a path of few long stages may also pass through a
    short one); it keeps the problem a max-flow layout problem, so every solver applies unchanged.
    """
    if not max_depth:
        return instance
    return with_min_stage(instance, math.ceil(instance.num_layers / max_depth), max_depth)


def with_min_stage(instance: LayerPlacementInstance, min_layers: int, max_depth: int | None = None):
    """The instance in which only nodes holding >= ``min_layers`` layers carry flow (see ``depth_bounded``)."""
    m = min_layers
    if m <= 1:
        return instance
    nodes = tuple(ComputeNode(n.id, n.type, tuple(DEPTH_EPSILON_TOKENS_PER_S if k < m else t
                                                  for k, t in enumerate(n.throughput_tokens_per_s, 1)))
                  for n in instance.nodes)
    return LayerPlacementInstance(instance.num_layers, nodes, instance.links, instance.name, instance.source,
                                  instance.reference, max_pipeline_depth=max_depth)


def layout_from_dict(instance: LayerPlacementInstance, raw, path: str = "layers") -> Layout:
    """Read ``{"node": [start, end], ...}`` and check it against the instance; errors name the field."""
    if not isinstance(raw, dict):
        raise InputError(path, "expected an object mapping node id to [start, end]")
    ranges = {}
    known = set(instance.node_ids)
    for nid, rng in raw.items():
        where = f"{path}.{nid}"
        if nid not in known:
            raise InputError(where, "unknown node id")
        if (not isinstance(rng, (list, tuple)) or len(rng) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in rng)):
            raise InputError(where, f"expected [start, end] integers, got {rng!r}")
        ranges[nid] = (int(rng[0]), int(rng[1]))
    return Layout(ranges)


def layout_violations(instance: LayerPlacementInstance, layout: Layout) -> list[str]:
    """Range rules alone: every node present, 0 <= s < e <= L, e - s <= K_i."""
    out = []
    L = instance.num_layers
    for n in instance.nodes:
        if n.id not in layout.ranges:
            out.append(f"node {n.id} holds no layer range")
            continue
        s, e = layout.ranges[n.id]
        if not (0 <= s < e <= L):
            out.append(f"node {n.id}: range [{s}, {e}) is not within [0, {L}) or is empty")
        elif e - s > n.max_layers:
            out.append(f"node {n.id}: holds {e - s} layers, at most {n.max_layers} allowed")
    for nid in layout.ranges:
        if nid not in set(instance.node_ids):
            out.append(f"unknown node {nid} in the layout")
    return out


def random_cluster(seed: int, *, num_nodes: int = 12, num_types: int = 3, num_layers: int = 40,
                   regions: int = 1, link_tokens_per_s: float = 61035.15625,
                   cross_region_tokens_per_s: float = 763.0) -> dict:
    """A random heterogeneous cluster as an instance dict (local RNG, no Pyomo).

    Throughput shape follows Helix's tables (research/placement-anchors.md §1.1): T(k) falls
    roughly like 1/k (per-layer cost plus a fixed per-node overhead), with +-12% noise so that T is
    not monotone and k·T(k) is not concave, as in Helix's T4/30B row. K per type is 2..min(L, 20).
    With ``regions`` > 1, nodes are spread over regions and links between regions carry
    ``cross_region_tokens_per_s`` (Helix's 12.5 Mbps cross-region links give 763 tok/s for 70B),
    so links can bind. Source and sink links: 5e8 tok/s in region 0, the cross-region value elsewhere.
    """
    import random

    rng = random.Random(seed)
    types = []
    for t in range(num_types):
        k_max = rng.randint(2, min(num_layers, 20))
        per_layer = rng.uniform(0.5, 4.0)  # relative speed of one layer
        overhead = rng.uniform(0.0, 0.6)
        scale = rng.uniform(500, 6000)
        table = []
        for k in range(1, k_max + 1):
            base = scale / (k / per_layer + overhead)
            table.append(round(base * rng.uniform(0.88, 1.12), 6))
        types.append((f"G{t}", table))
    nodes = []
    region_of = {}
    for i in range(num_nodes):
        name, table = types[i % num_types] if i < num_types else rng.choice(types)
        nid = f"n{i}"
        nodes.append({"id": nid, "type": name, "throughput_tokens_per_s": table})
        region_of[nid] = rng.randrange(regions) if regions > 1 else 0
    links = []
    for n in nodes:
        cap = 5e8 if region_of[n["id"]] == 0 else cross_region_tokens_per_s
        links.append({"from": "source", "to": n["id"], "tokens_per_s": cap})
    for a in nodes:
        for b in nodes:
            if a["id"] != b["id"]:
                same = region_of[a["id"]] == region_of[b["id"]]
                cap = link_tokens_per_s if same else cross_region_tokens_per_s * rng.uniform(0.8, 1.2)
                links.append({"from": a["id"], "to": b["id"], "tokens_per_s": round(cap, 6)})
    for n in nodes:
        cap = 5e8 if region_of[n["id"]] == 0 else cross_region_tokens_per_s
        links.append({"from": n["id"], "to": "sink", "tokens_per_s": cap})
    return {"kind": "layer_placement", "name": f"random-{seed}-{num_nodes}n-{num_types}t-{num_layers}L-{regions}r",
            "source": f"servopt.instances.layer_placement.random_cluster(seed={seed})",
            "num_layers": num_layers, "nodes": nodes, "links": links}
