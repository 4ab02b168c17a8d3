"""Brute-force oracle for tiny layer-placement instances: every layout, max flow by Edmonds–Karp.

Shared by the layer_placement tests; it uses only the instance data and the checker's own
max-flow (``servopt.analysis.layer_check.layout_max_flow``), never the solvers under test.
"""
from __future__ import annotations

import itertools
import random

from servopt.analysis.layer_check import layout_max_flow
from servopt.instances.layer_placement import instance_from_dict


def tiny_instance(seed: int, *, num_nodes: int = 3, num_layers: int = 4, max_k: int = 3, binding: bool = False,
                  missing: bool = False, integer: bool = True) -> dict:
    """A small random cluster; integer throughputs so that max flows are integers (exact equality)."""
    rng = random.Random(seed)
    nodes = []
    for i in range(num_nodes):
        k = rng.randint(1, max_k)
        thr = [rng.randint(1, 12) if integer else rng.uniform(1, 12) for _ in range(k)]
        nodes.append({"id": f"n{i}", "type": f"t{rng.randint(0, 1)}", "throughput_tokens_per_s": thr})
    links = []
    for n in nodes:
        links.append({"from": "source", "to": n["id"], "tokens_per_s": 100})
        links.append({"from": n["id"], "to": "sink", "tokens_per_s": 100})
    for a in nodes:
        for b in nodes:
            if a is b or (missing and rng.random() < 0.3):
                continue
            cap = rng.randint(1, 6) if binding else 100
            links.append({"from": a["id"], "to": b["id"], "tokens_per_s": cap})
    return {"kind": "layer_placement", "name": f"tiny-{seed}", "num_layers": num_layers, "nodes": nodes, "links": links}


def all_layouts(instance):
    L = instance.num_layers
    options = []
    for n in instance.nodes:
        options.append([(s, s + k) for k in range(1, n.max_layers + 1) for s in range(0, L - k + 1)])
    for combo in itertools.product(*options):
        yield {n.id: rng for n, rng in zip(instance.nodes, combo)}


def brute_force_optimum(data: dict) -> tuple[float, dict]:
    instance = instance_from_dict(data)
    best, arg = -1.0, None
    for ranges in all_layouts(instance):
        value = layout_max_flow(instance, ranges)
        if value > best + 1e-9:
            best, arg = value, ranges
    return best, arg
