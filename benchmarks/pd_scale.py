"""Scale benchmark for pd_placement: 10 GPU types x 50 buckets x 8 slices x 3 roles
solved to proven optimality in < 5 s.

Instance: llama-3.1-8b, the nine catalog GPUs plus a spot offer of the H100 (``hardware`` field,
half price, at most 4), TP 1/2/4/8 where the weights fit, 50 buckets (10 prompt lengths x 5 output
lengths, Dirichlet shares from a fixed seed), 8 slices per bucket, mode ``hybrid`` (every slice may
be colocated or split into prefill + decode: all 3 roles), capacities derived from the cost model
under mean TTFT 1000 ms / TPOT 50 ms, availability limits on the scarce types. The table reports
the time to derive capacities, to build the Pyomo model, HiGHS's own time, the total wall time
of ``solve`` (build + transfer + HiGHS + extract), size, status and gap, for both formulations
(``aggregated``: slice counts per bucket; ``per_slice``: Mélange's binaries), and for the
colocated / disaggregated / hybrid modes, plus a variant with KV-transfer links. rel_gap = 0.

    python benchmarks/pd_scale.py [--seeds 3] [--time-limit 60] [--variants aggregated:relax-and-fix,...]

Writes benchmarks/results/pd_scale.md and .json. HiGHS runs single-threaded (threads=1).
``--variants`` FORMULATION:STRATEGY; strategies ``relax-and-fix`` (default of ``servopt solve`` for min_cost: slice relaxation,
then counts fixed, then the full MILP only if needed) and ``direct`` (one MILP solve).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

PROMPTS = (64, 128, 256, 512, 1024, 1536, 2048, 3072, 4096, 6144)
OUTPUTS = (16, 64, 128, 256, 512)


def make_instance(seed: int, mode: str = "hybrid", links: bool = False, rate_rps: float = 200.0) -> dict:
    from servopt.instances.catalog import gpus

    rng = np.random.default_rng(seed)
    shares = rng.dirichlet(np.full(len(PROMPTS) * len(OUTPUTS), 0.7))
    shares = np.round(shares, 6)
    shares[-1] = round(1.0 - float(shares[:-1].sum()), 6)
    buckets = []
    i = 0
    for p in PROMPTS:
        for o in OUTPUTS:
            buckets.append({"id": f"p{p}_o{o}", "share": float(shares[i]), "prompt_tokens": p, "output_tokens": o})
            i += 1
    scarce = {"h100-sxm": 8, "h200": 4, "a100-80g": 16, "l40s": 12}
    offers = [{"type": g.name, **({"available": scarce[g.name]} if g.name in scarce else {})} for g in gpus()]
    h100 = next(g for g in gpus() if g.name == "h100-sxm")
    offers.append({"type": "h100-spot", "hardware": "h100-sxm", "usd_per_hour": round(h100.usd_per_hour / 2, 3), "available": 4})
    data = {"kind": "pd_placement", "name": f"scale-seed{seed}-{mode}", "mode": mode, "rate_rps": rate_rps, "slices": 8,
            "llm": "llama-3.1-8b", "slo": {"ttft_ms": 1000, "tpot_ms": 50}, "buckets": buckets, "gpus": offers}
    if links:
        # Slow cross-type links between the big and the small GPUs (100 Gb/s = 12.5 GB/s); same-type pairs free.
        big, small = ("h100-sxm", "h200", "a100-80g", "h100-spot"), ("l4", "a10g", "t4", "v100")
        data["links"] = [{"from": b, "to": s, "gb_per_s": 12.5} for b in big for s in small] + \
                        [{"from": s, "to": b, "gb_per_s": 12.5} for b in big for s in small]
    return data


def run_one(data: dict, formulation: str, strategy: str, time_limit_s: float) -> dict:
    from servopt.errors import ServoptError
    from servopt.kinds import pd_placement as pd

    t0 = time.perf_counter()
    inst = pd.load(data)
    load_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    cpu1 = time.process_time()
    try:
        result = pd.solve(inst, time_limit_s=time_limit_s, options={"formulation": formulation, "rel_gap": 0.0, "strategy": strategy})
    except ServoptError as exc:  # e.g. no plan within the time limit: a row, not a crash
        result = {"status": f"no plan ({exc})", "objective": None, "bound": None, "gap": None, "nodes": None,
                  "solver_seconds": None, "stages": [{"build_seconds": None}]}
    total_s = time.perf_counter() - t1
    cpu_s = time.process_time() - cpu1
    violations = pd.check(inst, result) if result["objective"] is not None else []
    stage = result["stages"][0]
    n_types = len(inst.gpus)
    configs = inst.configs()
    from servopt.models.pd_placement import dominated_configs

    kept = len(configs) - len(dominated_configs(inst))
    return {
        "instance": data["name"], "mode": inst.mode, "links": bool(inst.links), "formulation": formulation, "strategy": strategy,
        "gpu_types": n_types, "buckets": len(inst.buckets), "slices": inst.slices, "configs": len(configs), "kept": kept,
        "roles": len(inst.roles), "capacities_s": round(load_s, 3), "build_s": stage["build_seconds"],
        "highs_s": result.get("solver_seconds"), "solve_total_s": round(total_s, 3), "cpu_s": round(cpu_s, 3), "status": result["status"],
        "objective": result["objective"], "bound": result["bound"], "gap": result["gap"], "nodes": result.get("nodes"),
        "checker": "ok" if not violations else f"{len(violations)} violations",
    }


def _summary(rows: list[dict]) -> str:
    """Per (mode, links, formulation, strategy): optimal count, median and max solve_total_s, count under 5 s."""
    import statistics

    out = ["| mode | links | formulation | strategy | runs | proven optimal | median wall s | max wall s | median CPU s | max CPU s | optimal in < 5 s wall | optimal in < 5 s CPU |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    keys = []
    for r in rows:
        k = (r["mode"], r["links"], r["formulation"], r["strategy"])
        if k not in keys:
            keys.append(k)
    for k in keys:
        rs = [r for r in rows if (r["mode"], r["links"], r["formulation"], r["strategy"]) == k]
        ts = [r["solve_total_s"] for r in rs]
        opt = [r for r in rs if r["status"] == "optimal"]
        cs = [r["cpu_s"] for r in rs]
        fast = [r for r in opt if r["solve_total_s"] < 5]
        fast_cpu = [r for r in opt if r["cpu_s"] < 5]
        out.append(f"| {k[0]} | {k[1]} | {k[2]} | {k[3]} | {len(rs)} | {len(opt)} | {statistics.median(ts):.2f} | {max(ts):.2f} | "
                   f"{statistics.median(cs):.2f} | {max(cs):.2f} | {len(fast)} | {len(fast_cpu)} |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--variants", default="aggregated:relax-and-fix,aggregated:direct,per_slice:direct",
                    help="FORMULATION:STRATEGY list (per_slice is Mélange's per-slice binaries)")
    ap.add_argument("--modes", default="colocated,disaggregated,hybrid")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "pd_scale"))
    args = ap.parse_args(argv)
    rows = []
    for seed in range(args.seeds):
        for mode in args.modes.split(","):
            variants = [False, True] if mode != "colocated" else [False]
            for links in variants:
                data = make_instance(seed, mode, links)
                for variant in args.variants.split(","):
                    formulation, strategy = variant.split(":")
                    row = run_one(data, formulation, strategy, args.time_limit)
                    rows.append(row)
                    print(" | ".join(str(row[k]) for k in ("instance", "links", "formulation", "strategy", "configs", "capacities_s", "build_s",
                                                             "highs_s", "solve_total_s", "cpu_s", "status", "objective", "gap", "checker")), flush=True)
    cols = ["instance", "mode", "links", "formulation", "strategy", "gpu_types", "buckets", "slices", "configs", "kept", "capacities_s", "build_s",
            "highs_s", "solve_total_s", "cpu_s", "status", "objective", "gap", "nodes", "checker"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join("-" if r[c] is None else (f"{r[c]:.4f}" if isinstance(r[c], float) and c == "objective" else str(r[c])) for c in cols) + " |")
    table = "\n".join(lines)
    summary = _summary(rows)
    table = table + "\n\n" + summary
    print()
    print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    header = ("# pd_placement scale benchmark\n\n`python benchmarks/pd_scale.py " + " ".join(argv or []) +
              "`\n\nTimes in seconds (wall; shared 2-core machine, HiGHS threads=1, rel_gap=0). "
              "capacities_s = load + deriving every capacity from the cost model; build_s = Pyomo build; "
              "highs_s = HiGHS run time; solve_total_s = build + transfer + HiGHS + extraction (all phases); "
              "cpu_s = CPU time of this process over the same span (the machine is shared: wall times are inflated by "
              "the other processes' load, CPU time is not; HiGHS's time limit is on wall time).\n\n")
    out.with_suffix(".md").write_text(header + table + "\n")
    out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
