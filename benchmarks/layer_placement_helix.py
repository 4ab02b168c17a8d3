"""Benchmark: max-flow layer placement on Helix's shipped instances and on random clusters.

Per instance: time to the first layout, time to match Helix's published objective, final
objective, proven bound, gap, status, and the baselines (Petals, Swarm, separate pipelines, uniform
partition, best single chain, stages). HiGHS, 1 thread, ``--time-limit`` seconds per instance
(the issue's budget is 120 s). Writes ``benchmarks/results/layer_placement.md`` and ``.json``.

    python benchmarks/layer_placement_helix.py                 # shipped instances, 120 s each
    python benchmarks/layer_placement_helix.py --random 12 --random-time-limit 60
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time
from importlib import resources
from pathlib import Path

from servopt.kinds import layer_placement as kind

OUT = Path(__file__).resolve().parent / "results"


def _load(name):
    return json.loads(resources.files("servopt.instances").joinpath("data", name).read_text(encoding="utf-8"))


SIM_WORKLOAD = {"num_requests": 400, "prompt_tokens": 256, "output_tokens": 64, "seed": 0}


def _simulated(inst, layers, weights=None):
    """Decode throughput of a layout in the serving simulator (simulator/layer_pipeline.py)."""
    from servopt.instances.layer_placement import layout_from_dict

    try:
        out = kind.simulate_layout_result(inst, layout_from_dict(inst, layers), weights, SIM_WORKLOAD)
    except Exception as exc:  # a layout without flow has nothing to simulate
        return {"decode_tokens_per_s": None, "ttft_ms": None, "tpot_ms": None, "note": str(exc)}
    sim = out["simulation"]
    return {"decode_tokens_per_s": sim["decode_throughput_tokens_per_s"], "ttft_ms": sim["ttft_ms"]["mean"],
            "tpot_ms": sim["tpot_ms"]["mean"], "depth": out["pipeline_depth"]}


def _row(name, data, time_limit_s, simulate=True):
    inst = kind.load(data)
    t0 = time.perf_counter()
    result = kind.solve(inst, time_limit_s=time_limit_s, options={})
    wall = time.perf_counter() - t0
    assert kind.check(inst, result) == [], name
    b = result["baselines"]
    sim = _simulated(inst, result["layers"], result["routing_weights"]) if simulate else {}
    ref = inst.reference or {}
    ref_layout = ref.get("helix_layout")
    if ref.get("helix_best_objective", 0) > ref.get("helix_milp_objective", 0):
        ref_layout = ref["helix_pruned_layout"]  # Helix's better layout for this cluster
    helix_sim = _simulated(inst, ref_layout) if simulate and ref_layout else {}
    return {
        "wall_s": round(wall, 2), "sim_decode_tokens_per_s": sim.get("decode_tokens_per_s"),
        "sim_ttft_ms": sim.get("ttft_ms"), "sim_tpot_ms": sim.get("tpot_ms"),
        "helix_sim_decode_tokens_per_s": helix_sim.get("decode_tokens_per_s"),
        "helix_sim_ttft_ms": helix_sim.get("ttft_ms"), "helix_sim_tpot_ms": helix_sim.get("tpot_ms"),
        "instance": name, "nodes": len(inst.nodes), "layers": inst.num_layers,
        "helix": result["reference_objective"],
        "first_layout_s": result["time_to_first_layout_s"], "match_helix_s": result["time_to_reference_s"],
        "objective": result["objective"], "bound": result["bound"], "gap": result["gap"],
        "status": result["status"], "seconds": result["solve_seconds"], "method": result["method"],
        "petals": b["petals"]["objective"], "swarm": b["swarm"]["objective"],
        "separate": b["separate_pipelines"]["objective"], "uniform": b["uniform_partition"]["objective"],
        "milp_calls": len(result["milp_calls"]), "proof": result["proof"],
    }


def _frontier(time_limit_s):
    """Max flow under a pipeline-depth bound on cluster24, each layout served in the simulator."""
    data = _load("helix_cluster24_llama2_70b.json")
    inst = kind.load(data)
    rows = []
    helix = _simulated(inst, data["reference"]["helix_layout"])
    rows.append({"layout": "Helix (published)", "max_depth": None, "max_flow": data["reference"]["helix_milp_objective"],
                 **helix, "depth": helix.get("depth")})
    from servopt.errors import InputError

    for depth in (None, 24, 20, 18, 16, 14, 12, 10):
        try:
            result = kind.solve(inst, time_limit_s=time_limit_s, options={"max_depth": depth})
        except InputError as exc:  # the depth bound leaves too few layers: no layout
            rows.append({"layout": f"none: {exc.message[:50]}", "max_depth": depth, "max_flow": 0.0, "depth": "-",
                         "decode_tokens_per_s": None, "ttft_ms": None, "tpot_ms": None})
            continue
        sim = _simulated(kind.load(result["instance"]), result["layers"], result["routing_weights"])
        rows.append({"layout": "servopt", "max_depth": depth, "max_flow": result["objective"], **sim,
                     "depth": result["pipeline_depth"]})
        print(rows[-1], flush=True)
    return rows


def _fmt(x, nd=2):
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    return f"{x:,.{nd}f}"


def _table(rows, with_helix=True):
    head = ["instance", "nodes", "L"] + (["Helix"] if with_helix else []) + [
        "first layout s", "match Helix s", "objective", "bound", "gap", "status", "s", "Petals", "Swarm", "SP", "uniform",
        "sim tok/s"] + (["Helix sim tok/s"] if with_helix else [])
    if not with_helix:
        head.remove("match Helix s")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["instance"], str(r["nodes"]), str(r["layers"])]
        if with_helix:
            cells.append(_fmt(r["helix"]))
        cells.append(_fmt(r["first_layout_s"], 3))
        if with_helix:
            cells.append(_fmt(r["match_helix_s"], 3))
        cells += [_fmt(r["objective"]), _fmt(r["bound"]), "-" if r["gap"] is None else f"{100 * r['gap']:.4f}%",
                  r["status"], _fmt(r["seconds"], 1), _fmt(r["petals"]), _fmt(r["swarm"]), _fmt(r["separate"]),
                  _fmt(r["uniform"]), _fmt(r.get("sim_decode_tokens_per_s"), 1)]
        if with_helix:
            cells.append(_fmt(r.get("helix_sim_decode_tokens_per_s"), 1))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time-limit", type=float, default=120.0)
    ap.add_argument("--random", type=int, default=0, help="also solve this many random clusters")
    ap.add_argument("--random-time-limit", type=float, default=60.0)
    ap.add_argument("--skip-shipped", action="store_true")
    ap.add_argument("--only", default="", help="comma-separated shipped instance names (default: all)")
    ap.add_argument("--geo", type=int, default=0, help="also solve this many random sparse geo clusters (geo_cluster)")
    ap.add_argument("--geo-time-limit", type=float, default=10.0)
    ap.add_argument("--frontier", action="store_true", help="throughput/latency frontier on cluster24 (max_depth sweep)")
    ap.add_argument("--frontier-time-limit", type=float, default=30.0)
    ap.add_argument("--no-sim", action="store_true", help="skip the serving simulation columns")
    ap.add_argument("--tag", default="", help="suffix of the output files")
    args = ap.parse_args(argv)
    load = os.getloadavg()
    header = (f"HiGHS 1 thread; host {platform.node()} ({os.cpu_count()} cores), load average at start "
              f"{load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(header)
    shipped = []
    if not args.skip_shipped:
        names = [n for n in kind.SHIPPED if not args.only or n in args.only.split(",")]
        for name in names:
            row = _row(name, _load(name), args.time_limit, simulate=not args.no_sim)
            shipped.append(row)
            print(_table([row]).splitlines()[-1], flush=True)
    rand = []
    from servopt.instances.layer_placement import random_cluster

    for seed in range(args.random):
        rng = random.Random(1000 + seed)
        kw = dict(num_nodes=rng.randint(4, 30), num_types=rng.randint(2, 6), num_layers=rng.choice([24, 32, 40, 60, 80]))
        data = random_cluster(seed, **kw)
        row = _row(data["name"], data, args.random_time_limit)
        rand.append(row)
        print(_table([row], with_helix=False).splitlines()[-1], flush=True)
    geo = []
    from servopt.instances.layer_generators import geo_cluster

    for seed in range(args.geo):
        rng = random.Random(2000 + seed)
        kw = dict(num_nodes=rng.choice([12, 24, 42]), regions=rng.choice([2, 3, 4]), keep=rng.choice([3, 4, 6, 12]),
                  source_degree=rng.choice([2, 4, 12]), random_tables=rng.random() < 0.5)
        data = geo_cluster(seed, **kw)
        try:
            row = _row(data["name"], data, args.geo_time_limit, simulate=False)
        except Exception as exc:  # an instance without any positive-flow layout: exit 2 in the CLI
            row = {"instance": data["name"], "nodes": kw["num_nodes"], "layers": data["num_layers"], "helix": None,
                   "first_layout_s": None, "match_helix_s": None, "objective": None, "bound": None, "gap": None,
                   "status": f"no layout: {exc}"[:60], "seconds": None, "petals": None, "swarm": None,
                   "separate": None, "uniform": None}
        geo.append(row)
        print(_table([row], with_helix=False).splitlines()[-1], flush=True)
    frontier = _frontier(args.frontier_time_limit) if args.frontier else []
    md = [f"# Layer placement benchmark (Helix's clusters, geo clusters, serving simulation)\n", header + "\n",
          f"Simulation workload: {SIM_WORKLOAD} (offline batch; roofline cost model, LLaMA-2 70B).\n"]
    if shipped:
        md += [f"## Helix's instances ({args.time_limit:g} s limit each)\n", _table(shipped), ""]
        md += ["Proofs:", *[f"- {r['instance']}: {r['proof'] or '-'}" for r in shipped], ""]
    if rand:
        md += [f"## Random heterogeneous clusters ({args.random_time_limit:g} s limit each; "
               "`random_cluster(seed)` with seed-derived sizes)\n", _table(rand, with_helix=False), ""]
    if geo:
        md += [f"## Random sparse geo clusters ({args.geo_time_limit:g} s limit each; `geo_cluster(seed)`)\n",
               _table(geo, with_helix=False), ""]
    if frontier:
        md += [f"## Throughput / latency frontier on cluster24 ({args.frontier_time_limit:g} s per depth bound)\n",
               "| layout | max depth | max flow tok/s | deepest path | sim decode tok/s | TTFT ms | TPOT ms |",
               "|---|---|---|---|---|---|---|"]
        for r in frontier:
            md.append(f"| {r['layout']} | {r['max_depth'] or '-'} | {_fmt(r['max_flow'])} | {r['depth']} | "
                      f"{_fmt(r['decode_tokens_per_s'], 1)} | {_fmt(r['ttft_ms'], 0)} | {_fmt(r['tpot_ms'], 0)} |")
        md.append("")
    OUT.mkdir(exist_ok=True)
    suffix = f"_{args.tag}" if args.tag else ""
    (OUT / f"layer_placement{suffix}.md").write_text("\n".join(md) + "\n")
    (OUT / f"layer_placement{suffix}.json").write_text(json.dumps({"header": header, "shipped": shipped, "random": rand, "geo": geo,
                                                                         "frontier": frontier}, indent=1))
    print(f"wrote {OUT / f'layer_placement{suffix}.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
