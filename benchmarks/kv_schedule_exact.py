"""Solve-time table of the hindsight IP (models/kv_schedule.py): n vs seconds vs gap.

Instances: the paper's synthetic family (Jaillet et al., arXiv 2502.07115, §6.1; instances/
kv_generators.py) with n fixed to 4, 6, ..., 12 requests (M ~ U{30..50}, s ~ U{1..5},
o ~ U{1..M-s}), several seeds per n, both arrival models (all at round 0; Poisson online
arrivals with n fixed, ``poisson_fixed_n``). Each instance is solved with rel_gap = 0, threads = 1,
an MC-SF/FCFS warm start and cut-off windows (analysis/kv_optimum.py), within ``--time-limit``, by
each formulation in ``--formulations`` (the reference ``time-indexed`` of models/kv_schedule.py,
or a stronger one such as the certification work's ``aggregated-card``, or the exact combinatorial
``branch-and-bound`` of solvers/kv_schedule_bnb.py).

    python benchmarks/kv_schedule_exact.py [--sizes 4,6,8,10,12] [--seeds 5] [--time-limit 60]

Prints a table and writes benchmarks/results/kv_schedule_exact.md and .json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from servopt.analysis.kv_optimum import solve_optimum
from servopt.instances.kv_generators import synthetic
from servopt.instances.kv_schedule import KVScheduleInstance

RESULTS = Path(__file__).resolve().parent / "results"


def _solve_one(job) -> dict:
    model, n, k, form, time_limit, improve_seconds = job
    inst = KVScheduleInstance.from_dict(synthetic(np.random.default_rng([2026, n, k]), arrival_model=model, n=n))
    policy, options = None, {}
    if form.startswith("branch-and-bound["):  # branch-and-bound[POLICY;OPTION;...], see --bnb-lp-policies
        policy, *extra = form[len("branch-and-bound["):-1].split(";")
        for token in extra:
            if token in ("longest-first", "shortest-first"):
                options["candidate_order"] = token
            elif token == "no-justify":
                options["justify_deferrals"] = False
            else:
                raise SystemExit(f"unknown branch-and-bound option '{token}' in {form}")
    t0 = time.perf_counter()
    res = solve_optimum(inst, time_limit_s=time_limit, rel_gap=0.0,
                        formulation="branch-and-bound" if policy else form, bnb_lp_policy=policy, bnb_options=options,
                        improve_seconds=improve_seconds)
    return {"model": model, "formulation": form, "n": n, "seed": k, "M": inst.memory_tokens, "status": res.status,
            "objective": res.objective, "bound": res.bound, "bound_source": res.bound_source,
            "gap": res.gap, "seconds": time.perf_counter() - t0, "warm": res.warm_start,
            "columns": res.model_size.get("columns")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="4,6,8,10,12")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--models", default="all_at_zero,poisson_fixed_n")
    ap.add_argument("--formulations", default="time-indexed",
                    help="comma-separated formulations (any a models/kv_schedule*.py module lists), e.g. time-indexed,aggregated-card")
    ap.add_argument("--bnb-lp-policies", default="",
                    help="with branch-and-bound: comma-separated LP policies of solvers/kv_schedule_bnb.py (none,root,decision,shallow,always), "
                         "each a row 'branch-and-bound[policy]'; append ';shortest-first' (candidate order, default longest-first) "
                         "or ';no-justify' (no justified-deferral rule) to a policy to change the search, e.g. root;shortest-first;no-justify")
    ap.add_argument("--workers", type=int, default=1, help="instances solved in parallel (one process each)")
    ap.add_argument("--improve-seconds", type=float, default=0.0,
                    help="branch-and-bound: seconds of the limit spent improving the incumbent when a 1 s search does not finish")
    ap.add_argument("--out", default=str(RESULTS / "kv_schedule_exact"))
    args = ap.parse_args(argv)
    sizes = [int(x) for x in args.sizes.split(",")]
    rows = []
    forms = []
    for form in args.formulations.split(","):
        if form == "branch-and-bound" and args.bnb_lp_policies:
            forms += [f"branch-and-bound[{p}]" for p in args.bnb_lp_policies.split(",")]
        else:
            forms.append(form)
    jobs = [(model, n, k, form, args.time_limit, args.improve_seconds) for model in args.models.split(",") for n in sizes
            for k in range(args.seeds) for form in forms]
    if args.workers > 1:
        from multiprocessing import Pool

        with Pool(args.workers) as pool:
            for row in pool.imap_unordered(_solve_one, jobs):
                rows.append(row)
                print(json.dumps(row), flush=True)
    else:
        for job in jobs:
            rows.append(_solve_one(job))
            print(json.dumps(rows[-1]), flush=True)
    lines = ["# Hindsight IP solve times vs n (analysis/kv_optimum.py; formulations as listed)", "",
             f"Command: `python benchmarks/kv_schedule_exact.py --sizes {args.sizes} --seeds {args.seeds} "
             f"--time-limit {args.time_limit:g} --models {args.models} --formulations {args.formulations}"
             + (f" --bnb-lp-policies {args.bnb_lp_policies}" if args.bnb_lp_policies else "")
             + (f" --improve-seconds {args.improve_seconds:g}" if args.improve_seconds else "")
             + (f" --workers {args.workers}" if args.workers > 1 else "") + "`", "",
             f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {args.workers} instance(s) at a time "
             f"(load average at the end {os.getloadavg()[0]:.1f}); "
             "HiGHS threads = 1, rel_gap = 0, warm start + cut-off windows from MC-SF/FCFS.", "",
             "| arrivals | formulation | n | instances | proven optimal | median s | max s | mean gap | max gap | mean columns |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for model in args.models.split(","):
        for form, n in [(f, n) for n in sizes for f in forms]:
            sub = [r for r in rows if r["model"] == model and r["n"] == n and r["formulation"] == form]
            secs = [r["seconds"] for r in sub]
            gaps = [r["gap"] if r["gap"] is not None else float("nan") for r in sub]
            proven = sum(r["status"] == "optimal" and r["gap"] == 0 for r in sub)
            lines.append(f"| {model} | {form} | {n} | {len(sub)} | {proven} | {statistics.median(secs):.2f} | {max(secs):.2f} | "
                         f"{100 * statistics.fmean(gaps):.2f}% | {100 * max(gaps):.2f}% | {_mean_columns(sub)} |")
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out + ".md").write_text(text)
    Path(args.out + ".json").write_text(json.dumps(rows, indent=1, default=str))
    return 0


def _mean_columns(sub) -> str:
    cols = [r["columns"] for r in sub if r["columns"] is not None]
    return f"{statistics.fmean(cols):.0f}" if cols else "-"  # branch-and-bound builds no model


if __name__ == "__main__":
    raise SystemExit(main())
