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


def _row(name, data, time_limit_s):
    inst = kind.load(data)
    result = kind.solve(inst, time_limit_s=time_limit_s, options={})
    assert kind.check(inst, result) == [], name
    b = result["baselines"]
    return {
        "instance": name, "nodes": len(inst.nodes), "layers": inst.num_layers,
        "helix": result["reference_objective"],
        "first_layout_s": result["time_to_first_layout_s"], "match_helix_s": result["time_to_reference_s"],
        "objective": result["objective"], "bound": result["bound"], "gap": result["gap"],
        "status": result["status"], "seconds": result["solve_seconds"], "method": result["method"],
        "petals": b["petals"]["objective"], "swarm": b["swarm"]["objective"],
        "separate": b["separate_pipelines"]["objective"], "uniform": b["uniform_partition"]["objective"],
        "milp_calls": len(result["milp_calls"]), "proof": result["proof"],
    }


def _fmt(x, nd=2):
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    return f"{x:,.{nd}f}"


def _table(rows, with_helix=True):
    head = ["instance", "nodes", "L"] + (["Helix"] if with_helix else []) + [
        "first layout s", "match Helix s", "objective", "bound", "gap", "status", "s", "Petals", "Swarm", "SP", "uniform"]
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
                  _fmt(r["uniform"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time-limit", type=float, default=120.0)
    ap.add_argument("--random", type=int, default=0, help="also solve this many random clusters")
    ap.add_argument("--random-time-limit", type=float, default=60.0)
    ap.add_argument("--skip-shipped", action="store_true")
    ap.add_argument("--tag", default="", help="suffix of the output files")
    args = ap.parse_args(argv)
    load = os.getloadavg()
    header = (f"HiGHS 1 thread; host {platform.node()} ({os.cpu_count()} cores), load average at start "
              f"{load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(header)
    shipped = []
    if not args.skip_shipped:
        for name in kind.SHIPPED:
            row = _row(name, _load(name), args.time_limit)
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
    md = [f"# Layer placement (issue 6) benchmark\n", header + "\n"]
    if shipped:
        md += [f"## Helix's instances ({args.time_limit:g} s limit each)\n", _table(shipped), ""]
        md += ["Proofs:", *[f"- {r['instance']}: {r['proof'] or '-'}" for r in shipped], ""]
    if rand:
        md += [f"## Random heterogeneous clusters ({args.random_time_limit:g} s limit each; "
               "`random_cluster(seed)` with seed-derived sizes)\n", _table(rand, with_helix=False), ""]
    OUT.mkdir(exist_ok=True)
    suffix = f"_{args.tag}" if args.tag else ""
    (OUT / f"layer_placement{suffix}.md").write_text("\n".join(md) + "\n")
    (OUT / f"layer_placement{suffix}.json").write_text(json.dumps({"header": header, "shipped": shipped, "random": rand}, indent=1))
    print(f"wrote {OUT / f'layer_placement{suffix}.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
