"""How much better do KV schedules get with solvers/kv_schedule_improve.py at paper scale?

Instances: the synthetic families of Jaillet et al. (arXiv 2502.07115, §6.1; instances/kv_generators.py),
``paper_study(count, arrival_model=family, seed=seed)`` (instance k from ``default_rng([seed, k])``, the
same instances as benchmarks/kv_certify_paper.py): M ~ U{30..50}, one s ~ U{1..5}, n ~ U{40..60},
o ~ U{1..M-s}; ``all_at_zero`` or ``poisson`` arrivals.

Per instance (one process each, single-threaded HiGHS):

* ``baseline``: ``best_heuristic_schedule(instance, heuristic_seconds=2)`` (SGS over SPT / FCFS orders
  + first-improvement local search, the incumbent before this work);
* ``improve(B)``: ``improve_schedule(instance, baseline, seconds=B, seed=0, strategy=...)`` for every
  budget B in ``--budgets`` and every strategy in ``--strategies`` (default ``hybrid``); each run is
  re-verified by the independent checker analysis/kv_check.py;
* MC-SF's cost (``servopt.simulator.kv_rounds.simulate_rounds(instance, "mc-sf")``, as in
  benchmarks/kv_certify_paper.py);
* a lower bound ``LB = max(LP, chain)``: the LP relaxation of ``aggregated-window`` with the windows cut
  off at the best schedule found (``solvers.kv_schedule_certify.lp_bound``; valid, since the windows keep
  every schedule no worse than the cut-off), and the chain bound of solvers/kv_schedule_certify.py.

Reported per family: median and worst (smallest) improvement over the baseline, MC-SF / best (best =
the cheapest schedule of any run on the instance, MC-SF included), and the gap (cost - LB) / cost.

    python benchmarks/kv_improve.py [--instances 20] [--budgets 2,10,30] [--strategies hybrid]
        [--families all_at_zero,poisson] [--workers 2] [--load "..."] [--out benchmarks/results/kv_improve.md]
        [--merge A.json B.json ...]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared part-file helpers, also under python -P
from _runs import read_parts, write_table  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def run_job(job: dict) -> dict:
    from servopt.analysis.kv_check import check_result
    from servopt.instances.kv_generators import paper_study
    from servopt.instances.kv_schedule import KVScheduleInstance
    from servopt.simulator.kv_rounds import simulate_rounds
    from servopt.solvers.kv_schedule_certify import best_heuristic_schedule, chain_lower_bound, lp_bound
    from servopt.solvers.kv_schedule_improve import improve_schedule

    data = paper_study(job["k"] + 1, arrival_model=job["family"], seed=job["seed"])[job["k"]]
    inst = KVScheduleInstance.from_dict(data)
    row = {"family": job["family"], "k": job["k"], "n": inst.n, "M": inst.memory_tokens,
           "s": inst.requests[0].prompt_tokens}
    mcsf = simulate_rounds(inst, "mc-sf")
    row["mcsf"] = mcsf.objective_value(inst)
    t0 = time.perf_counter()
    _, base, cost, _ = best_heuristic_schedule(inst, heuristic_seconds=2.0)
    row["baseline"], row["baseline_s"] = cost, time.perf_counter() - t0
    failures = check_result(inst, {"requests": base.to_dict()["requests"], "objective": cost})
    runs = {}
    best = min(cost, row["mcsf"])
    for strategy in job["strategies"]:
        for budget in job["budgets"]:
            t0, c0 = time.perf_counter(), time.process_time()
            sched, stats = improve_schedule(inst, base, seconds=budget, seed=0, strategy=strategy)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            value = sched.objective_value(inst)
            failures += check_result(inst, {"requests": sched.to_dict()["requests"], "objective": value})
            runs[f"{strategy}@{budget:g}"] = {"cost": value, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
                                              "ils_best": stats.get("ils_best"), "lns_steps": stats["lns_steps"],
                                              "lns_improvements": stats["lns_improvements"],
                                              "evaluations": stats["evaluations"]}
            best = min(best, value)
    row["runs"] = runs
    row["best"] = best
    t0 = time.perf_counter()
    lp, _, _ = lp_bound(inst, formulation="aggregated-window", cutoff=best)
    row["lp"], row["lp_s"] = lp, time.perf_counter() - t0
    row["chain"] = chain_lower_bound(inst)
    row["lower_bound"] = max(x for x in (lp, row["chain"]) if x is not None)
    row["checker_failures"] = failures[:3]
    return row


def _median(xs):
    return statistics.median(xs) if xs else None


def summarise(rows: list[dict]) -> list[dict]:
    out = []
    for fam in sorted({r["family"] for r in rows}):
        sub = [r for r in rows if r["family"] == fam]
        keys = list(sub[0]["runs"])
        entry = {"family": fam, "instances": len(sub), "median_n": _median([r["n"] for r in sub]),
                 "baseline_gap": _median([(r["baseline"] - r["lower_bound"]) / r["baseline"] for r in sub]),
                 "mcsf_over_baseline": _median([r["mcsf"] / r["baseline"] for r in sub]),
                 "mcsf_over_best_median": _median([r["mcsf"] / r["best"] for r in sub]),
                 "mcsf_over_best_mean": statistics.mean(r["mcsf"] / r["best"] for r in sub),
                 "mcsf_over_best_worst": max(r["mcsf"] / r["best"] for r in sub),
                 "mcsf_is_best": sum(1 for r in sub if r["mcsf"] <= r["best"]),
                 "best_over_lb": _median([r["best"] / r["lower_bound"] for r in sub]),
                 "checker_failures": sum(len(r["checker_failures"]) for r in sub), "runs": {}}
        for key in keys:
            gains = [1 - r["runs"][key]["cost"] / r["baseline"] for r in sub]
            entry["runs"][key] = {
                "median_gain": _median(gains), "worst_gain": min(gains), "best_gain": max(gains),
                "improved": sum(1 for g in gains if g > 0),
                "median_gap": _median([(r["runs"][key]["cost"] - r["lower_bound"]) / r["runs"][key]["cost"] for r in sub]),
                "worst_gap": max((r["runs"][key]["cost"] - r["lower_bound"]) / r["runs"][key]["cost"] for r in sub),
                "over_best": _median([r["runs"][key]["cost"] / r["best"] for r in sub]),
                "mcsf_over_it": _median([r["mcsf"] / r["runs"][key]["cost"] for r in sub]),
                "max_wall_s": max(r["runs"][key]["wall_s"] for r in sub),
                "cpu_share": _median([r["runs"][key]["cpu_s"] / r["runs"][key]["wall_s"] for r in sub]),
            }
        out.append(entry)
    return out


def write_tables(rows, meta, path_md: Path, path_json: Path):
    summary = summarise(rows)
    pct = "{:.2%}".format
    lines = ["# Better KV schedules at paper scale: solvers/kv_schedule_improve.py", "",
             f"Command: `{meta['command']}`", "", f"Machine: {meta['machine']}; load: {meta['load']}; load average (1/5/15 min) at start "
             f"{meta.get('loadavg_start')}, at end {meta.get('loadavg_end')}; wall {meta.get('wall_s')} s. "
             "CPU/wall = the run's process CPU time over its wall time (below 1: the run shared its core).", "",
             "Baseline = `best_heuristic_schedule(heuristic_seconds=2)` (SGS over SPT/FCFS + local search). "
             "gain = 1 - cost / baseline (higher is better; 'worst' is the smallest). "
             "LB = max(LP of aggregated-window cut off at the best schedule, chain bound); gap = (cost - LB) / cost. "
             "best = cheapest schedule of any run on the instance (MC-SF included).", "",
             "| arrivals | run | instances | improved | median gain | worst gain | best gain | median gap to LB | worst gap | cost/best (median) | MC-SF/cost (median) | max wall s | CPU/wall (median) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for s in summary:
        lines.append(f"| {s['family']} | baseline | {s['instances']} | - | - | - | - | {pct(s['baseline_gap'])} | - | - | "
                     f"{s['mcsf_over_baseline']:.4f} | - | - |")
        for key, r in s["runs"].items():
            lines.append(f"| {s['family']} | {key} s | {s['instances']} | {r['improved']} | {pct(r['median_gain'])} | "
                         f"{pct(r['worst_gain'])} | {pct(r['best_gain'])} | {pct(r['median_gap'])} | {pct(r['worst_gap'])} | "
                         f"{r['over_best']:.4f} | {r['mcsf_over_it']:.4f} | {r['max_wall_s']:.1f} | {r['cpu_share']:.2f} |")
    lines += ["", "MC-SF against the best schedule we have (the paper's ratio is MC-SF / OPT; best >= OPT, so these "
              "ratios are lower bounds on MC-SF / OPT):", "",
              "| arrivals | instances | median n | MC-SF/best median | mean | worst | MC-SF is best on | best/LB (median) | checker failures |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for s in summary:
        lines.append(f"| {s['family']} | {s['instances']} | {s['median_n']:.0f} | {s['mcsf_over_best_median']:.4f} | "
                     f"{s['mcsf_over_best_mean']:.4f} | {s['mcsf_over_best_worst']:.4f} | {s['mcsf_is_best']} of {s['instances']} | "
                     f"{s['best_over_lb']:.3f} | {s['checker_failures']} |")
    write_table(path_md, path_json, lines, meta=meta, summary=summary, rows=rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", type=int, default=20)
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budgets", default="2,10,30")
    ap.add_argument("--strategies", default="hybrid")
    ap.add_argument("--families", default="all_at_zero,poisson")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--load", default="load not stated")
    ap.add_argument("--out", default=str(RESULTS / "kv_improve.md"))
    ap.add_argument("--merge", nargs="*", default=None, help="rebuild the table from these json files")
    args = ap.parse_args(argv)
    out_md = Path(args.out)
    out_json = out_md.with_suffix(".json")
    if args.merge:
        rows, metas = read_parts(args.merge)
        meta = dict(metas[0], command=" + ".join(m["command"] for m in metas),
                    load=" + ".join(sorted({m["load"] for m in metas})), wall_s=sum(m.get("wall_s") or 0 for m in metas))
        write_tables(rows, meta, out_md, out_json)
        return 0
    budgets = [float(b) for b in args.budgets.split(",") if b]
    strategies = [s for s in args.strategies.split(",") if s]
    jobs = [{"family": fam, "k": k, "seed": args.seed, "budgets": budgets, "strategies": strategies}
            for fam in args.families.split(",") if fam for k in range(args.first, args.first + args.instances)]
    meta = {"command": "python benchmarks/kv_improve.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {args.workers} single-thread runs at a time",
            "load": args.load}
    meta["loadavg_start"] = os.getloadavg()
    t0 = time.perf_counter()
    if args.workers <= 1:
        rows = [run_job(j) for j in jobs]
    else:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(args.workers, maxtasksperchild=1) as pool:
            rows = list(pool.imap_unordered(run_job, jobs))
    meta["wall_s"] = round(time.perf_counter() - t0, 1)
    meta["loadavg_end"] = os.getloadavg()
    rows.sort(key=lambda r: (r["family"], r["k"]))
    write_tables(rows, meta, out_md, out_json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
