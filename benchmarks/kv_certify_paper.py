"""Can HiGHS certify the KV-scheduling optimum at paper scale? One row per (family, formulation).

Instances: the synthetic families of Jaillet et al. (arXiv 2502.07115, §6.1; instances/kv_generators.py):
M ~ U{30..50}, one s ~ U{1..5}, n ~ U{40..60} (``--n`` overrides with a fixed n), o ~ U{1..M-s};
``all_at_zero`` or ``poisson`` arrivals; instance k from ``default_rng([seed, k])`` as in
benchmarks/kv_schedule_paper.py, so both benchmarks see the same instances.

Formulations (every run in its own process, HiGHS threads = 1, ``--time-limit`` for the whole run
including heuristics and build, rel_gap 1e-4):

* ``naive``: the reference pipeline ``analysis.kv_optimum.solve_optimum`` (Pyomo time-indexed IP of
  models/kv_schedule.py, MC-SF/FCFS warm start, cut-off windows, volume bound);
* ``time-indexed``, ``aggregated``, ``aggregated-card``, ``aggregated-window``, ``aggregated-count``:
  ``solvers.kv_schedule_certify.certify``
  (direct highspy build, SGS + local-search incumbent, proven windows, chain bound); and
  ``branch-and-bound``, the exact search of solvers/kv_schedule_bnb.py (compiled, LP policy root)
  from the best online policy's schedule.

Per instance (not timed against the limit): the LP relaxation of the time-indexed program with the
same windows as ``certify`` (aggregated build: same LP value, proof in
models/kv_schedule_aggregated.py), the chain bound, the volume bound (analysis/kv_bounds.py),
MC-SF's cost.

    python benchmarks/kv_certify_paper.py [--instances 20] [--time-limit 60] [--workers 2]
        [--families all_at_zero,poisson] [--formulations naive,time-indexed,aggregated,aggregated-card,aggregated-window,aggregated-count,branch-and-bound]
        [--n N] [--out-json PATH] [--merge A.json B.json ...]

The LP bounds of the candidate relaxations, one by one, are measured by benchmarks/kv_bounds_paper.py.

Writes benchmarks/results/kv_certify.md and .json (``--merge`` rebuilds the table from several json
files, for runs split over machines or calls).
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

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared part-file helpers, also under python -P
from _runs import read_parts  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
ALL_FORMULATIONS = ("naive", "time-indexed", "aggregated", "aggregated-card", "aggregated-window", "aggregated-count",
                    "branch-and-bound")


def make_instance(family: str, k: int, seed: int, n: int | None):
    from servopt.instances.kv_generators import synthetic
    from servopt.instances.kv_schedule import KVScheduleInstance

    rng = np.random.default_rng([seed, k])
    if n is None:
        data = synthetic(rng, arrival_model=family)
    elif family == "poisson":  # keep the first n arrivals of the paper's Poisson draw
        data = synthetic(rng, arrival_model=family)
        data["requests"] = data["requests"][:n]
    else:
        data = synthetic(rng, arrival_model=family, n=n)
    return KVScheduleInstance.from_dict(data)


def run_job(job: dict) -> dict:
    """One (instance, formulation) run, or the per-instance reference numbers (formulation 'info')."""
    from servopt.analysis.kv_check import check_result

    inst = make_instance(job["family"], job["k"], job["seed"], job["n"])
    row = {"family": job["family"], "k": job["k"], "n": inst.n, "M": inst.memory_tokens,
           "s": inst.requests[0].prompt_tokens, "formulation": job["formulation"]}
    t0 = time.perf_counter()
    if job["formulation"] == "info":
        from servopt.analysis.kv_bounds import volume_lower_bound
        from servopt.simulator.kv_rounds import simulate_rounds
        from servopt.solvers.kv_schedule_certify import best_heuristic_schedule, chain_lower_bound, lp_bound

        mcsf = simulate_rounds(inst, "mc-sf").objective_value(inst)
        _, _, heur, _ = best_heuristic_schedule(inst, heuristic_seconds=min(10.0, 0.15 * job["time_limit"]))
        lp, build_s, lp_s = lp_bound(inst, formulation="aggregated", cutoff=min(mcsf, heur))
        row.update({"mcsf": mcsf, "heuristic": heur, "lp": lp, "lp_build_s": build_s, "lp_s": lp_s,
                    "chain": chain_lower_bound(inst), "volume": volume_lower_bound(inst)})
        return row
    if job["formulation"] == "naive":
        from servopt.analysis.kv_optimum import solve_optimum

        res = solve_optimum(inst, time_limit_s=job["time_limit"], rel_gap=1e-4)
        result = res.to_dict(inst)
        row.update({"status": res.status, "objective": res.objective, "bound": res.bound, "gap": res.gap,
                    "build_s": res.build_seconds, "bound_source": result.get("bound_source"),
                    "columns": res.model_size.get("columns")})
    elif job["formulation"] == "branch-and-bound":
        from servopt.analysis.kv_optimum import best_policy_schedule
        from servopt.solvers.kv_schedule_bnb import branch_and_bound

        name, sched, _ = best_policy_schedule(inst)
        res = branch_and_bound(inst, time_limit_s=job["time_limit"], incumbent=sched, incumbent_source=name)
        result = res.to_dict(inst)
        row.update({"status": res.status, "objective": res.objective, "bound": res.bound, "gap": res.gap,
                    "build_s": 0.0, "bound_source": "branch-and-bound", "incumbent_source": res.incumbent_source,
                    "nodes": res.nodes})
    else:
        from servopt.analysis.kv_optimum import best_policy_schedule
        from servopt.solvers.kv_schedule_certify import certify

        name, sched, _ = best_policy_schedule(inst)
        res = certify(inst, formulation=job["formulation"], time_limit_s=job["time_limit"], rel_gap=1e-4,
                      warm_starts={name: sched})
        result = res.to_dict(inst)
        row.update({"status": res.status, "objective": res.objective, "bound": res.bound, "gap": res.gap,
                    "build_s": res.build_seconds, "bound_source": res.bound_source,
                    "incumbent_source": res.incumbent_source, "columns": res.model_size.get("columns"),
                    "nonzeros": res.model_size.get("nonzeros")})
    row["seconds"] = time.perf_counter() - t0
    row["checker"] = "ok" if not check_result(inst, result) else "; ".join(check_result(inst, result))[:200]
    return row


def _median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarise(rows: list[dict], limit: float) -> list[dict]:
    info = {(r["family"], r["k"]): r for r in rows if r["formulation"] == "info"}
    out = []
    families = sorted({r["family"] for r in rows})
    for fam in families:
        for form in ALL_FORMULATIONS:
            sub = [r for r in rows if r["family"] == fam and r["formulation"] == form]
            if not sub:
                continue
            cert = [r for r in sub if r["status"] == "optimal"]
            best_inc = {}
            for r in rows:
                if r["family"] == fam and r.get("objective") is not None:
                    key = r["k"]
                    best_inc[key] = min(best_inc.get(key, float("inf")), r["objective"])
            lp_quality = [best_inc[r["k"]] / info[(fam, r["k"])]["lp"] for r in sub
                          if (fam, r["k"]) in info and info[(fam, r["k"])].get("lp")]
            out.append({
                "family": fam, "formulation": form, "instances": len(sub), "certified": len(cert),
                "median_certify_s": _median([r["seconds"] for r in cert]),
                "worst_certify_s": max((r["seconds"] for r in cert), default=None),
                "median_gap": _median([r["gap"] if r["gap"] is not None else 1.0 for r in sub]),
                "worst_gap": max((r["gap"] if r["gap"] is not None else 1.0 for r in sub), default=None),
                "median_incumbent_over_best": _median([r["objective"] / best_inc[r["k"]] for r in sub if r["objective"]]),
                "best_incumbent_over_lp": _median(lp_quality),
                "median_build_s": _median([r.get("build_s") for r in sub]),
                "bound_sources": dict(sorted({src: sum(1 for r in sub if r.get("bound_source") == src)
                                              for src in {r.get("bound_source") for r in sub}}.items(), key=str)),
                "checker_failures": sum(1 for r in sub if r.get("checker") != "ok"),
            })
    return out


def info_summary(rows):
    out = []
    for fam in sorted({r["family"] for r in rows}):
        sub = [r for r in rows if r["family"] == fam and r["formulation"] == "info"]
        if not sub:
            continue
        best = {}
        for r in rows:
            if r["family"] == fam and r.get("objective") is not None:
                best[r["k"]] = min(best.get(r["k"], float("inf")), r["objective"])
        for r in sub:
            best[r["k"]] = min(best.get(r["k"], float("inf")), r["heuristic"], r["mcsf"])
        out.append({
            "family": fam, "instances": len(sub),
            "median_n": _median([r["n"] for r in sub]),
            "mcsf_over_best": _median([r["mcsf"] / best[r["k"]] for r in sub]),
            "worst_mcsf_over_best": max(r["mcsf"] / best[r["k"]] for r in sub),
            "best_over_lp": _median([best[r["k"]] / r["lp"] for r in sub if r["lp"]]),
            "best_over_chain": _median([best[r["k"]] / r["chain"] for r in sub if r["chain"]]),
            "best_over_volume": _median([best[r["k"]] / r["volume"] for r in sub if r["volume"]]),
            "chain_above_lp": sum(1 for r in sub if r["lp"] and r["chain"] and r["chain"] > r["lp"]),
            "median_lp_s": _median([r["lp_s"] for r in sub]),
            "median_lp_build_s": _median([r["lp_build_s"] for r in sub]),
        })
    return out


def _f(x, fmt="{:.3f}"):
    return "-" if x is None else fmt.format(x)


def write_tables(rows, meta, path_md: Path, path_json: Path):
    summary = summarise(rows, meta["time_limit"])
    info = info_summary(rows)
    lines = ["# Certifying the KV-scheduling optimum with HiGHS", "",
             f"Command: `{meta['command']}`", "",
             f"Machine: {meta['machine']}; {meta['load']}", "",
             f"Instances: paper family (Jaillet et al. §6.1){'' if meta.get('n') is None else f', n fixed to {meta[chr(110)]}'}; "
             f"time limit {meta['time_limit']:g} s per run, HiGHS 1 thread, rel_gap 1e-4. "
             "'certified' = status optimal (rounded bound meets the incumbent). "
             "Gap = (incumbent - bound)/incumbent with each formulation's own incumbent and bound. "
             "'incumbent/best' compares with the best incumbent any formulation or heuristic found on the instance. "
             "'best/LP' = best incumbent over the LP relaxation of the time-indexed program with the same windows.", "",
             "| arrivals | formulation | instances | certified | median s (certified) | worst s (certified) | median gap | worst gap | incumbent/best (median) | best/LP (median) | build s (median) | bound from | checker failures |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for s in summary:
        lines.append(f"| {s['family']} | {s['formulation']} | {s['instances']} | {s['certified']} | "
                     f"{_f(s['median_certify_s'], '{:.1f}')} | {_f(s['worst_certify_s'], '{:.1f}')} | "
                     f"{_f(s['median_gap'], '{:.2%}')} | {_f(s['worst_gap'], '{:.2%}')} | "
                     f"{_f(s['median_incumbent_over_best'], '{:.4f}')} | {_f(s['best_incumbent_over_lp'])} | "
                     f"{_f(s['median_build_s'], '{:.2f}')} | {s['bound_sources']} | {s['checker_failures']} |")
    if info:
        lines += ["", "Per instance, outside the time limit:", "",
                  "| arrivals | instances | median n | MC-SF/best (median) | MC-SF/best (worst) | best/LP | best/chain | best/volume | chain > LP on | LP solve s (median) | LP build s (median) |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for s in info:
            lines.append(f"| {s['family']} | {s['instances']} | {_f(s['median_n'], '{:.0f}')} | {_f(s['mcsf_over_best'], '{:.4f}')} | "
                         f"{_f(s['worst_mcsf_over_best'], '{:.4f}')} | {_f(s['best_over_lp'])} | {_f(s['best_over_chain'])} | "
                         f"{_f(s['best_over_volume'])} | {s['chain_above_lp']} of {s['instances']} | "
                         f"{_f(s['median_lp_s'], '{:.2f}')} | {_f(s['median_lp_build_s'], '{:.2f}')} |")
    path_md.parent.mkdir(parents=True, exist_ok=True)
    path_md.write_text("\n".join(lines) + "\n")
    path_json.write_text(json.dumps({"meta": meta, "summary": summary, "instances": info, "rows": rows}, indent=1))
    print("\n".join(lines))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", type=int, default=20)
    ap.add_argument("--first", type=int, default=0, help="index of the first instance (to split runs)")
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n", type=int, default=None, help="fixed number of requests instead of the paper's U{40..60}")
    ap.add_argument("--families", default="all_at_zero,poisson")
    ap.add_argument("--formulations", default=",".join(ALL_FORMULATIONS))
    ap.add_argument("--no-info", action="store_true", help="skip the per-instance LP/chain/MC-SF numbers")
    ap.add_argument("--load", default="", help="a note on the machine's load, copied into the table")
    ap.add_argument("--out", default=str(RESULTS / "kv_certify.md"))
    ap.add_argument("--out-json", default=None)
    ap.add_argument("--merge", nargs="*", default=None, help="rebuild the table from these json files")
    args = ap.parse_args(argv)
    out_md = Path(args.out)
    out_json = Path(args.out_json) if args.out_json else out_md.with_suffix(".json")
    if args.merge:
        rows, metas = read_parts(args.merge)
        meta = dict(metas[0])
        meta["command"] = " + ".join(m["command"] for m in metas)
        meta["machine"] = " + ".join(sorted({m["machine"] for m in metas}))
        meta["load"] = " + ".join(sorted({m["load"] for m in metas}))
        write_tables(rows, meta, out_md, out_json)
        return 0
    families = [f for f in args.families.split(",") if f]
    forms = [f for f in args.formulations.split(",") if f]
    for f in forms:
        if f not in ALL_FORMULATIONS:
            ap.error(f"--formulations: unknown '{f}' (known: {', '.join(ALL_FORMULATIONS)})")
    jobs = []
    for fam in families:
        for k in range(args.first, args.first + args.instances):
            base = {"family": fam, "k": k, "seed": args.seed, "n": args.n, "time_limit": args.time_limit}
            jobs += [dict(base, formulation=f) for f in forms + ([] if args.no_info else ["info"])]
    meta = {"command": "python benchmarks/kv_certify_paper.py " + " ".join(argv if argv is not None else __import__("sys").argv[1:]),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {args.workers} single-thread runs at a time",
            "load": args.load or "load not stated", "time_limit": args.time_limit, "n": args.n}
    t0 = time.perf_counter()
    rows = []
    if args.workers <= 1:
        for job in jobs:
            rows.append(run_job(job))
    else:
        import multiprocessing as mp

        # a fresh process per run: HiGHS fixes its thread pool per process, and runs must not share memory
        with mp.get_context("spawn").Pool(args.workers, maxtasksperchild=1) as pool:
            for row in pool.imap_unordered(run_job, jobs):
                rows.append(row)
    meta["wall_s"] = round(time.perf_counter() - t0, 1)
    rows.sort(key=lambda r: (r["family"], r["k"], r["formulation"]))
    write_tables(rows, meta, out_md, out_json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
