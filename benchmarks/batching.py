"""Batching benchmark: the exact optimum (or incumbent + valid bound) against the policies, n = 4..50.

Two instance families (``servopt.instances.batching.random_instance``):

* ``tiny``: prompts 1-4 tokens, outputs 1-3, B = 4, S = 4, Poisson arrivals at 300/s, iteration
  2 ms + 0.5 ms per prefill token + 0.5 ms per decode + 0.05 ms per context token: small enough
  for the exhaustive search (solvers/batching_search.py) to prove the optimum, n = 4..10 (n = 10 is
  past its reach in 60 s);
* ``realistic``: prompts 50-900, outputs 5-120, B = 512, S = 64, M = 30,000 tokens, Poisson at
  20/s, the default A100-Llama-2-7B-shaped iteration: n = 10..50, where the pipeline returns the
  best policy schedule and the combinatorial bound (solvers/batching_milp.py).

Every result is re-checked by analysis/batching_check.py. Columns: seconds of the whole ``solve``
(policies, bound, search/MILP), status, gap, and per policy ALG / incumbent (the best policy's and
Sarathi's). ``--figure PNG`` also draws the optimum and Sarathi on the shipped example
(instances/data/example_batching.json) for docs/batching.md.

    python benchmarks/batching.py                 # full table, writes benchmarks/results/batching.{json,md}
    python benchmarks/batching.py --quick         # n = 4..6 and 10, 20 only
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from servopt.analysis.batching_check import check_result
from servopt.instances.batching import IterationTime, random_instance
from servopt.kinds import batching as kind
from servopt.simulator.batching_policies import POLICIES, simulate

RESULTS = Path(__file__).resolve().parent / "results"


def family(name: str, n: int, seed: int):
    if name == "tiny":
        return random_instance(n, seed=seed, prompt_range=(1, 4), output_range=(1, 3), token_budget=4, max_batch=4,
                               rate_per_s=300.0, iteration=IterationTime(2.0, 0.5, 0.5, 0.05))
    return random_instance(n, seed=seed, prompt_range=(50, 900), output_range=(5, 120), token_budget=512, max_batch=64,
                           memory_tokens=30000, rate_per_s=20.0)


def run_row(fam: str, n: int, seed: int, time_limit_s: float) -> dict:
    inst = family(fam, n, seed)
    t0 = time.perf_counter()
    res = kind.solve(inst, time_limit_s=time_limit_s, options={"rel_gap": 1e-6})
    seconds = time.perf_counter() - t0
    assert check_result(inst, res) == [], "solve result failed the checker"
    costs = {}
    for p in POLICIES:
        sched = simulate(inst, p)
        costs[p] = sched.objective_value(inst)
    best_policy = min(costs, key=costs.get)
    obj, bound = res["objective"], res["bound"]
    return {"family": fam, "n": n, "seed": seed, "seconds": round(seconds, 2), "status": res["status"],
            "method": res["method"], "objective": obj, "bound": bound, "gap": res["gap"],
            "best_policy": best_policy, "best_policy_ratio": costs[best_policy] / obj,
            "best_policy_ratio_to_bound": costs[best_policy] / bound if bound else None,
            "sarathi_ratio": costs["sarathi"] / obj, "vllm_ratio": costs["vllm"] / obj,
            "policy_costs": costs, "time_limit_s": time_limit_s}


def to_markdown(rows: list[dict], meta: dict) -> str:
    lines = ["# Batching: optimum vs policies (total latency)", "",
             f"Measured {meta['date']} on {meta['machine']}; `python benchmarks/batching.py` "
             f"(time limit {meta['time_limit_s']} s per instance, one thread).", "",
             "| family | n | seed | seconds | status | method | gap | best policy | best/incumbent | best/bound | sarathi/incumbent | vllm/incumbent |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        gap = "-" if r["gap"] is None else f"{100 * r['gap']:.1f} %"
        rb = "-" if r["best_policy_ratio_to_bound"] is None else f"{r['best_policy_ratio_to_bound']:.3f}"
        lines.append(f"| {r['family']} | {r['n']} | {r['seed']} | {r['seconds']:.1f} | {r['status']} | {r['method']} | {gap} | "
                     f"{r['best_policy']} | {r['best_policy_ratio']:.3f} | {rb} | {r['sarathi_ratio']:.3f} | {r['vllm_ratio']:.3f} |")
    lines += ["", "best/incumbent = best policy's total latency over the solver's incumbent (1.000 where a policy is the "
              "incumbent); best/bound = over the valid lower bound (an upper end for ALG/OPT). tiny: exhaustive search "
              "with the policy incumbent and order-statistic bounds; realistic: policies + combinatorial bound (the MILP "
              "horizon sum(P_i + o_i - 1) is too large to build)."]
    return "\n".join(lines) + "\n"


def figure(path: str) -> None:
    """The optimum and Sarathi on the shipped example, one Gantt chart each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    inst = kind.example_instance()
    opt = kind.solve(inst, time_limit_s=60, options={"rel_gap": 0.0})
    sar = kind.simulate(inst, policy="sarathi")
    ids = [r.id for r in inst.requests]
    colors = dict(zip(ids, ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860"]))
    fig, axes = plt.subplots(2, 1, figsize=(10, 5.2), sharex=True)
    for ax, res, title in ((axes[0], sar, "Sarathi (chunked, FCFS, token budget 8)"), (axes[1], opt, "optimum")):
        for k, itr in enumerate(res["iterations"]):
            s, e = itr["start_ms"], itr["end_ms"]
            ax.axvline(s, color="#cccccc", lw=0.6, zorder=0)
            for item in itr["batch"]:
                row = ids.index(item["id"])
                if "prefill_tokens" in item:
                    ax.barh(row, e - s, left=s, color=colors[item["id"]], edgecolor="black", height=0.7)
                    ax.text((s + e) / 2, row, f"P{item['prefill_tokens']}", ha="center", va="center", fontsize=8, color="white")
                else:
                    ax.barh(row, e - s, left=s, color=colors[item["id"]], alpha=0.35, edgecolor="black", height=0.7)
                    ax.text((s + e) / 2, row, "D", ha="center", va="center", fontsize=8)
        for r in inst.requests:
            ax.plot([r.arrival_ms], [ids.index(r.id)], marker="v", color="black", ms=6)
        ax.set_yticks(range(len(ids)), ids)
        ax.invert_yaxis()
        ax.set_title(f"{title}: total latency {res['objective']:.2f} ms")
    axes[1].set_xlabel("time (ms); P<c> = prefill chunk of c tokens, D = decode, triangle = arrival")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seeds", type=int, default=2, help="seeds per tiny n (default 2)")
    ap.add_argument("--figure", metavar="PNG", help="also draw the optimum vs Sarathi on the shipped example")
    ap.add_argument("--no-write", action="store_true", help="print only; do not write benchmarks/results")
    args = ap.parse_args(argv)
    if args.figure:
        figure(args.figure)
    tiny_n = (4, 5, 6) if args.quick else (4, 5, 6, 7, 8, 9, 10)
    real_n = (10, 20) if args.quick else (10, 20, 30, 40, 50)
    rows = []
    plan = [("tiny", n, s) for n in tiny_n for s in range(args.seeds)] + [("realistic", n, 0) for n in real_n]
    for fam, n, seed in plan:
        row = run_row(fam, n, seed, args.time_limit)
        rows.append(row)
        gap = "-" if row["gap"] is None else f"{100 * row['gap']:.1f}%"
        print(f"{fam:9s} n={n:3d} seed={seed} {row['seconds']:6.1f}s {row['status']:10s} gap {gap:>7s} "
              f"best {row['best_policy']:7s} {row['best_policy_ratio']:.3f}  sarathi {row['sarathi_ratio']:.3f}", flush=True)
    import platform

    meta = {"date": time.strftime("%Y-%m-%d", time.gmtime()), "machine": f"{platform.machine()}, {platform.python_version()}",
            "time_limit_s": args.time_limit, "command": "python benchmarks/batching.py " + " ".join(sys.argv[1:] if argv is None else argv)}
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "batching.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
        (RESULTS / "batching.md").write_text(to_markdown(rows, meta))
        print(f"wrote {RESULTS / 'batching.json'} and .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
