"""Random layer-placement clusters: geo regions and Helix-style pruning (for tests and benchmarks).

``geo_cluster(seed, ...)`` draws a cluster the way Helix's artifact describes its fake clusters
(Helix, ASPLOS'25, artifact ``FakeClusterGenerator`` headers of ``3cluster24.ini`` and
``cluster42.ini``): nodes of GPU types spread over ``regions``; links inside a region at
1250 +- 125 Mbps and 1 ms, across regions at 12.5 +- 2.5 Mbps and 50 +- 10 ms (the 3cluster24
settings); then, like Helix's ``pruned_cluster.ini`` files, every node keeps only its ``keep``
highest-bandwidth links (a link stays when either end keeps it) and the source and the sink reach
only ``source_degree`` nodes.

Capacities follow Helix's MILP (and ``instances.helix_ini``): a node -> node link carries
bandwidth / activation bytes per token, a source or sink link bandwidth / token bytes, with
Helix's reading of "mbps" (1e6 per Mbps). Throughput tables T(k) per GPU type come from a shipped
Helix instance (LLaMA-2 70B on A100 / L4 / T4, read from ``instances/data``) or are drawn at random
(``random_tables=True``: T(k) ~ c / (k / p + o) with noise, as in ``instances.layer_placement``).
Latencies are kept per link in ``link_latency_ms`` (used by the serving simulator, not by the
max-flow model).
"""
from __future__ import annotations

import json
import random
from importlib import resources

HELIX_TABLE_SOURCE = "helix_3cluster24_llama2_70b.json"
ACTIVATION_BYTES_70B = 16384  # LLaMA-2 70B hidden size 8192 x 2 B (Helix's MILP)
TOKEN_BYTES = 2


def helix_tables(name: str = HELIX_TABLE_SOURCE) -> dict[str, list[float]]:
    """T(k) per GPU type from a shipped Helix instance (all nodes of a type share one list)."""
    data = json.loads(resources.files("servopt.instances").joinpath("data", name).read_text(encoding="utf-8"))
    out: dict[str, list[float]] = {}
    for n in data["nodes"]:
        out.setdefault(n["type"], list(n["throughput_tokens_per_s"]))
    return out


def _random_tables(rng: random.Random, num_types: int, num_layers: int) -> dict[str, list[float]]:
    tables = {}
    for t in range(num_types):
        k_max = rng.randint(3, max(3, min(num_layers, 16)))
        per_layer = rng.uniform(0.5, 4.0)
        overhead = rng.uniform(0.0, 0.6)
        scale = rng.uniform(500, 6000)
        tables[f"G{t}"] = [round(scale / (k / per_layer + overhead) * rng.uniform(0.9, 1.1), 6)
                           for k in range(1, k_max + 1)]
    return tables


def geo_cluster(seed: int, *, num_nodes: int = 24, regions: int = 3, num_layers: int = 80,
                keep: int | None = 12, source_degree: int | None = None, random_tables: bool = False,
                num_types: int = 3, in_region_mbps: tuple[float, float] = (1250.0, 125.0),
                cross_region_mbps: tuple[float, float] = (12.5, 2.5), in_region_ms: float = 1.0,
                cross_region_ms: tuple[float, float] = (50.0, 10.0), source_mbps: float = 1000.0,
                activation_bytes: float = ACTIVATION_BYTES_70B) -> dict:
    """A random geo-distributed (and, with ``keep``, pruned) cluster as a layer_placement instance dict.

    ``keep=None`` keeps every link (a full mesh); ``source_degree=None`` links the source and the
    sink to every node (Helix's pruning: the 12 it keeps). Deterministic in ``seed``.
    """
    rng = random.Random(seed)
    tables = _random_tables(rng, num_types, num_layers) if random_tables else helix_tables()
    types = sorted(tables)
    ids = [f"n{i}" for i in range(num_nodes)]
    region = {nid: (i % regions if i < regions else rng.randrange(regions)) for i, nid in enumerate(ids)}
    gpu = {nid: types[i % len(types)] if i < len(types) else rng.choice(types) for i, nid in enumerate(ids)}
    bw, lat = {}, {}
    for i, a in enumerate(ids):
        for b in ids[i + 1:]:
            if region[a] == region[b]:
                mbps = max(rng.gauss(*in_region_mbps), 1.0)
                ms = in_region_ms
            else:
                mbps = max(rng.uniform(cross_region_mbps[0] - cross_region_mbps[1],
                                       cross_region_mbps[0] + cross_region_mbps[1]), 0.1)
                ms = max(rng.uniform(cross_region_ms[0] - cross_region_ms[1], cross_region_ms[0] + cross_region_ms[1]), 0.1)
            bw[(a, b)] = mbps
            lat[(a, b)] = ms
    kept = set(bw)
    if keep is not None:
        kept = set()
        for a in ids:
            mine = sorted(((m, pair) for pair, m in bw.items() if a in pair), key=lambda item: (-item[0], item[1]))
            kept.update(pair for _, pair in mine[:keep])
    ends = list(ids)
    if source_degree is not None and source_degree < num_nodes:
        src_nodes = sorted(rng.sample(ids, source_degree), key=ids.index)
        snk_nodes = src_nodes  # Helix's pruned files give the source and the sink the same nodes
    else:
        src_nodes = snk_nodes = ends
    links, latency = [], {}
    for nid in src_nodes:
        links.append({"from": "source", "to": nid, "tokens_per_s": source_mbps * 1e6 / TOKEN_BYTES})
    for (a, b) in sorted(kept, key=lambda p: (ids.index(p[0]), ids.index(p[1]))):
        cap = round(bw[(a, b)] * 1e6 / activation_bytes, 6)
        links.append({"from": a, "to": b, "tokens_per_s": cap})
        links.append({"from": b, "to": a, "tokens_per_s": cap})
        latency[f"{a}->{b}"] = latency[f"{b}->{a}"] = round(lat[(a, b)], 4)
    for nid in snk_nodes:
        links.append({"from": nid, "to": "sink", "tokens_per_s": source_mbps * 1e6 / TOKEN_BYTES})
    nodes = [{"id": nid, "type": gpu[nid], "throughput_tokens_per_s": list(tables[gpu[nid]][:num_layers])}
             for nid in ids]
    return {
        "kind": "layer_placement",
        "name": f"geo-{seed}-{num_nodes}n-{regions}r-{num_layers}L" + (f"-keep{keep}" if keep is not None else "")
                + (f"-src{source_degree}" if source_degree is not None else ""),
        "source": f"servopt.instances.layer_generators.geo_cluster(seed={seed}); "
                  + ("random T tables" if random_tables else f"T tables from {HELIX_TABLE_SOURCE}"),
        "num_layers": num_layers,
        "nodes": nodes,
        "links": links,
        "reference": {"regions": {nid: region[nid] for nid in ids}, "link_latency_ms": latency},
    }
