"""The paper's synthetic study through ``servopt sweep``: MC-SF (and the other policies) against the best
schedule and the proven bound, with the published figures beside (Jaillet et al., arXiv 2502.07115, §6.1).

Runs shipped sweep configs (instances/data/sweeps/), each cached under ``--work`` so a stopped run
resumes, and writes one table: per config, arrival model, size and policy, the instances, how many
optima are proven, ALG/OPT over the proven ones (mean, worst, how often the policy is optimal), the
interval [ALG/incumbent, ALG/bound] over all (mean and worst of each end), and the paper's figures.

* ``paper_n10_random``: 1,000 instances at n = 10 (500 per arrival model), MC-SF: the random baseline
  of the adversarial search (servopt adversarial);
* ``paper_n11_12``: 1,000 instances at n = 11, 12, three policies, every optimum proven or not;
* ``paper_study``: the paper's size (n ~ U{40..60}), 200 instances per arrival model; no optimum is
  proven at that size, so only intervals (``--paper-instances`` and ``--paper-time-limit`` shrink it).

    python benchmarks/sweep_paper.py [--configs paper_n10_random,paper_n11_12] [--workers 2] [--ray]

Writes benchmarks/results/sweep_paper.md and .json.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
PUBLISHED = {"all_at_zero": {"mean": 1.005, "worst": 1.074, "optimal": "114 of 200"},
             "poisson": {"mean": 1.047, "worst": 1.227, "optimal": "-"},
             "poisson_fixed_n": {"mean": 1.047, "worst": 1.227, "optimal": "-"}}


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def main(argv=None) -> int:
    from servopt.analysis.sweep import read_config, run_sweep

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default="paper_n10_random,paper_n11_12,paper_study")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--ray", action="store_true", help="run the cells on a local Ray with --workers CPUs")
    ap.add_argument("--work", default="out/sweeps", help="folder of the sweeps' caches (default out/sweeps)")
    ap.add_argument("--paper-instances", type=int, default=200, help="paper_study: instances per arrival model")
    ap.add_argument("--paper-time-limit", type=float, default=None, help="paper_study: seconds per instance")
    ap.add_argument("--note", action="append", default=[], help="a line for the notes under the table (repeatable)")
    ap.add_argument("--out", default=str(RESULTS / "sweep_paper"))
    args = ap.parse_args(argv)
    runs = []
    previous = {}
    if Path(args.out + ".json").is_file():  # keep the rows of configs not run this time
        previous = {r["config"]: r for r in json.loads(Path(args.out + ".json").read_text()).get("runs", [])}
    for name in args.configs.split(","):
        config = read_config(name)
        if name == "paper_study":
            changes = {"seeds": tuple(range(args.paper_instances))}
            if args.paper_time_limit:
                changes["time_limit_s"] = args.paper_time_limit
            config = dataclasses.replace(config, **changes)
        load0, t0 = _load(), time.perf_counter()
        result = run_sweep(config, Path(args.work) / name, workers=args.workers, ray=args.ray)
        summary = result.summary()
        runs.append({"config": name, "cells": summary["cells"], "instances": summary["instances"],
                     "proven": summary["instances_proven"], "cells_run": summary["cells_run"],
                     "cells_cached": summary["cells_cached"], "failed": summary["cells_failed"],
                     "wall_seconds": round(time.perf_counter() - t0, 1), "workers": args.workers,
                     "runner": summary["runner"], "load_before": round(load0, 2), "load_after": round(_load(), 2),
                     "time_limit_s": config.time_limit_s, "cpu_seconds": summary.get("cpu_seconds"),
                     "cpu_cells": summary.get("cpu_cells", 0), "violations": summary["violations"],
                     "ratios": summary["ratios"]})
        if summary["cells_run"] == 0 and name in previous:  # all cached: keep the timing of the run that computed them
            for key in ("wall_seconds", "workers", "runner", "load_before", "load_after", "cells_run", "cells_cached"):
                runs[-1][key] = previous[name][key]
        previous.pop(name, None)
        print(f"{name}: {summary['instances_proven']} of {summary['instances']} proven, "
              f"{runs[-1]['wall_seconds']} s, {len(summary['violations'])} violations", flush=True)
    runs = list(previous.values()) + runs
    notes = []
    if Path(args.out + ".json").is_file():
        notes = json.loads(Path(args.out + ".json").read_text()).get("notes", [])
    write(runs, args, notes + args.note)
    return 0


def write(runs, args, notes=()) -> None:
    f = lambda x: "-" if x is None else f"{x:.4f}"  # noqa: E731
    lines = ["# The paper's synthetic study through `servopt sweep` (Jaillet et al., arXiv 2502.07115, §6.1)", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores shared with other sessions; exact "
             "branch-and-bound (solvers/kv_schedule_bnb.py) from the best of MC-SF and FCFS, one core per cell.", "",
             "ALG/OPT is exact on proven instances only; elsewhere it lies in [ALG/incumbent, ALG/bound]. "
             "The published figures are MC-SF against the authors' Gurobi \"OPT\" (200 instances per arrival "
             "model at n ~ U{40..60}; their code returns a time-limited incumbent with no bound).", "",
             "| config | arrivals | n | policy | instances | proven | ALG/OPT mean (proven) | worst (proven) | "
             "policy optimal | interval mean [lo, hi] | interval worst [lo, hi] | published mean / worst / optimal |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for run in runs:
        for r in run["ratios"]:
            pub = PUBLISHED.get(r.get("arrival_model"), {}) if r.get("policy") == "mc-sf" else {}
            lines.append(
                f"| {run['config']} | {r.get('arrival_model')} | {'paper' if r.get('n') is None else r.get('n')} | {r.get('policy')} | {r['instances']} | "
                f"{r['proven']} | {f(r['proven_mean'])} | {f(r['proven_worst'])} | {r['policy_optimal']} of {r['proven']} | "
                f"[{f(r['mean_lo'])}, {f(r['mean_hi'])}] | [{f(r['worst_lo'])}, {f(r['worst_hi'])}] | "
                + (f"{pub['mean']} / {pub['worst']} / {pub['optimal']} |" if pub else "- |"))
    lines += ["", "| config | instances | proven | cells run (cached) | failed | workers | runner | wall s | "
                  "CPU s of the cells (cells timed) | load before / after | time limit s | violations of proven bounds |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for run in runs:
        lines.append(f"| {run['config']} | {run['instances']} | {run['proven']} | {run['cells_run']} ({run['cells_cached']}) | "
                     f"{run['failed']} | {run['workers']} | {run['runner']} | {run['wall_seconds']} | "
                     f"{run.get('cpu_seconds')} ({run.get('cpu_cells', 0)}) | "
                     f"{run['load_before']} / {run['load_after']} | {run['time_limit_s']:g} | {len(run['violations'])} |")
    lines += ["", "Wall seconds count only the cells run in that invocation (cached cells cost nothing); "
                  "`load` is the 1-minute load average of the shared 2-core machine; CPU seconds are the cells' own "
                  "process time (a worker's first cell includes loading or compiling the numba search)."]
    if notes:
        lines += ["", "Notes:", ""] + [f"* {n}" for n in notes]
    text = "\n".join(lines) + "\n"
    Path(args.out + ".md").write_text(text)
    Path(args.out + ".json").write_text(json.dumps({"runs": runs, "notes": list(notes)}, indent=1))
    print(text)


if __name__ == "__main__":
    raise SystemExit(main())
