"""Time and memory limits of ``servopt solve``, per kind and size: wall time against the time limit
and peak resident memory, each solve in a fresh process as a user would run it.

    python benchmarks/limits.py [--time-limit 5] [--kinds kv_schedule,pd_placement,...] [--quick]

The promise under test (docs/architecture.md, "Limits"): every solve answers within
``time_limit x 1.1 + 2 s`` besides process start-up, under 2 GB resident, with the best solution
found and a valid bound. Start-up (Python, Pyomo, numba, HiGHS imports) is measured separately as
the wall time of ``servopt validate`` on the same file and reported beside it.

Instances (all generated, nothing downloaded):
* ``kv_schedule``: the paper family with Poisson arrivals (Jaillet et al., arXiv 2502.07115, §6.1;
  ``instances/kv_generators.synthetic``, arrival model ``poisson_fixed_n``) at n = 60 ... 5,000;
* ``pd_placement``: benchmarks/pd_scale.py's 50-bucket hybrid instance with 10 and 100 GPU offers
  (each catalog type offered again at 10 prices);
* ``layer_placement``: random geo-distributed, Helix-style pruned clusters
  (``instances/layer_generators.geo_cluster``) of 24 ... 200 nodes;
* ``routing``: trace-scale instances on 4 replicas (``instances/routing.trace``, Azure lengths);
* ``batching``: random instances with prompts 50-900 and outputs 5-120 tokens, B = 512
  (``instances/batching.random_instance``);
* ``eviction``: the first 200 and 1,000 requests of the shipped Mooncake conversation slice, C = 1,000;
* the shipped example of any other kind.

Writes benchmarks/results/limits.md and .json. Run it on a quiet machine: the wall column is the
machine's, the limit column is the promise.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def kv_instances(sizes):
    from servopt.instances.kv_generators import synthetic

    for n in sizes:
        yield f"n={n}", synthetic(n, arrival_model="poisson_fixed_n", n=n)


def pd_instances(offer_counts):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from pd_scale import make_instance

    for count in offer_counts:
        data = make_instance(0)
        base = [g for g in data["gpus"] if "hardware" not in g]
        offers = []
        for k in range(max(1, count // len(base))):
            for g in base:
                offers.append({"type": f"{g['type']}-offer{k}", "hardware": g["type"],
                               "usd_per_hour": None, **({"available": g["available"]} if "available" in g else {})})
        from servopt.instances.catalog import get_gpu

        for o in offers:
            o["usd_per_hour"] = round(get_gpu(o["hardware"]).usd_per_hour * (0.7 + 0.06 * int(o["type"].rsplit("offer", 1)[1])), 4)
        data["gpus"] = offers[:count]
        yield f"{len(data['gpus'])} GPU offers", data


def layer_instances(node_counts):
    from servopt.instances.layer_generators import geo_cluster

    for nodes in node_counts:
        yield f"{nodes} nodes", geo_cluster(nodes, num_nodes=nodes, regions=3 if nodes < 100 else 5)


def routing_instances(sizes):
    from servopt.instances.routing import trace

    for n in sizes:
        yield f"{n} requests x 4", trace(0, n=n)


def batching_instances(sizes):
    from servopt.instances.batching import random_instance

    for n in sizes:
        yield f"n={n}", random_instance(n, seed=0).to_dict()


def eviction_instances(limits):
    from servopt.instances.eviction import load_mooncake

    ref = resources.files("servopt.instances").joinpath("data", "eviction_mooncake_conversation_1000.jsonl")
    with resources.as_file(ref) as path:
        for limit in limits:
            yield f"{limit} requests", load_mooncake(path, capacity_blocks=1000, limit=limit)


def example_instances(kinds):
    for kind in kinds:
        ref = resources.files("servopt.instances").joinpath("data", f"example_{kind}.json")
        if ref.is_file():
            yield "example", json.loads(ref.read_text(encoding="utf-8"))


def measure(args: list[str]) -> tuple[float, float, int, str]:
    """(wall s, peak RSS MB, exit code, stdout) of one command in a fresh process."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(args, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        text = out.read().decode() or err.read().decode()
    return wall, usage.ru_maxrss / 1024, proc.returncode, text


def run_case(kind: str, label: str, data: dict, time_limit: float, workdir: Path) -> dict:
    path = workdir / f"{kind}-{label.replace(' ', '_').replace('=', '')}.json"
    path.write_text(json.dumps(data))
    exe = [sys.executable, "-m", "servopt.cli"]
    startup, _, _, _ = measure(exe + ["validate", str(path)])
    wall, rss, code, text = measure(exe + ["solve", str(path), "--time-limit", str(time_limit), "--json"])
    row = {"kind": kind, "size": label, "time_limit_s": time_limit, "wall_s": round(wall, 2),
           "startup_s": round(startup, 2), "promise_s": round(time_limit * 1.1 + 2, 2),
           "within": wall - startup <= time_limit * 1.1 + 2, "peak_rss_mb": round(rss), "exit": code}
    if code == 0:
        result = json.loads(text)
        row.update(status=result.get("status"), method=result.get("method"), objective=result.get("objective"),
                   bound=result.get("bound"), gap=result.get("gap"))
    else:
        row.update(status="error", method=None, objective=None, bound=None, gap=None, error=text.strip()[:200])
    return row


def to_markdown(rows: list[dict]) -> str:
    head = ("| kind | size | limit s | wall s | start-up s | within limit x 1.1 + 2 | peak RSS MB | status | method | gap |\n"
            "| --- | --- | ---: | ---: | ---: | --- | ---: | --- | --- | ---: |\n")
    lines = []
    for r in rows:
        gap = "-" if r["gap"] is None else f"{100 * r['gap']:.1f} %"
        lines.append(f"| {r['kind']} | {r['size']} | {r['time_limit_s']:g} | {r['wall_s']:.2f} | {r['startup_s']:.2f} | "
                     f"{'yes' if r['within'] else 'NO'} | {r['peak_rss_mb']} | {r['status']} | {r['method'] or '-'} | {gap} |")
    return head + "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-limit", type=float, default=5.0)
    parser.add_argument("--kinds", default="kv_schedule,pd_placement,layer_placement,eviction,routing,batching")
    parser.add_argument("--quick", action="store_true", help="the smallest size of each kind only")
    parser.add_argument("--out", default=str(RESULTS / "limits"), help="results path without suffix")
    args = parser.parse_args(argv)
    kinds = args.kinds.split(",")
    makers = {
        "kv_schedule": lambda: kv_instances([60] if args.quick else [60, 200, 1000, 5000]),
        "pd_placement": lambda: pd_instances([10] if args.quick else [10, 100]),
        "layer_placement": lambda: layer_instances([24] if args.quick else [24, 42, 100, 200]),
        "routing": lambda: routing_instances([40] if args.quick else [40, 400]),
        "batching": lambda: batching_instances([10] if args.quick else [10, 40]),
        "eviction": lambda: eviction_instances([200] if args.quick else [200, 1000]),
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            cases = makers[kind]() if kind in makers else example_instances([kind])
            for label, data in cases:
                row = run_case(kind, label, data, args.time_limit, Path(tmp))
                rows.append(row)
                print(f"{kind:16s} {label:16s} wall {row['wall_s']:7.2f} s (start-up {row['startup_s']:.2f} s) "
                      f"RSS {row['peak_rss_mb']:6d} MB  {row['status']}  {row['method'] or ''}", flush=True)
    table = to_markdown(rows)
    print(table)
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    out.with_suffix(".md").write_text("# Time and memory limits of `servopt solve`\n\n"
                                      f"`python benchmarks/limits.py --time-limit {args.time_limit:g}`\n\n" + table)
    return 0 if all(r["within"] and r["peak_rss_mb"] <= 2048 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
