"""Issue 7: lower bounds for KV scheduling at paper scale, each as a share of the best known schedule.

Instances: the synthetic families of Jaillet et al. (arXiv 2502.07115, §6.1; instances/kv_generators.py),
instance k from ``default_rng([seed, k])`` exactly as in benchmarks/kv_certify_paper.py (same instances):
M ~ U{30..50}, one s ~ U{1..5}, n ~ U{40..60}, o ~ U{1..M-s}, all at round 0 or Poisson arrivals.

Best known schedule ``U``: the certify pipeline's heuristics (SGS + local search,
solvers/kv_schedule_certify.py, ``--heuristic-seconds``) and MC-SF, or the costs in ``--best-json``
(``{"all_at_zero/0": cost, ...}``, e.g. from a longer primal run) when those are lower. Every LP uses
the cut-off windows from ``U`` (valid: models/kv_schedule.py).

Bounds (rows of the table; every one proven in the module named):

* ``lp-aggregated``: LP of ``aggregated`` (= the time-indexed LP; models/kv_schedule_aggregated.py);
* ``lp-window``: LP of ``aggregated-window`` (exclusive-window rows, levels 1, 2);
* ``lp-window-q1-4``: the same with levels 1..4 (``build_direct(window_levels=...)``);
* ``lp-window+cliques``: ``lp-window`` plus the exact separation of conflict cliques
  (solvers/kv_schedule_direct.py ``conflict_clique_cuts``), up to ``--clique-rounds`` re-solves;
* ``lp-count``: LP of ``aggregated-count`` (window rows + completion-count rows);
* ``chain``, ``volume``, ``prefix``: the combinatorial bounds (solvers/kv_schedule_certify.py,
  analysis/kv_bounds.py, ``sum_k C_k - sum a`` of models/kv_schedule_aggregated.py).

    python benchmarks/kv_bounds_paper.py [--instances 10] [--families all_at_zero,poisson] [--workers 2]
        [--bounds ...] [--heuristic-seconds 6] [--best-json PATH] [--load "note"]

Writes benchmarks/results/kv_bounds_paper.md and .json. LP times are build + solve seconds of one
HiGHS thread (simplex; ``lp-window+cliques`` includes every separation round).
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
from _runs import write_table  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
ALL_BOUNDS = ("lp-aggregated", "lp-window", "lp-window-q1-4", "lp-window+cliques", "lp-count",
              "chain", "volume", "prefix")


def make_instance(family: str, k: int, seed: int):
    sys.path.insert(0, str(HERE))
    from kv_certify_paper import make_instance as certify_instance  # one definition of the instances

    return certify_instance(family, k, seed, None)


def best_known(inst, heuristic_seconds: float, given: float | None) -> tuple[float, str]:
    from servopt.solvers.kv_schedule_certify import best_heuristic_schedule

    warm = {}
    try:
        from servopt.simulator.kv_rounds import simulate_rounds

        warm["mc-sf"] = simulate_rounds(inst, "mc-sf")
    except Exception as exc:  # the benchmark still runs on the certify heuristics alone
        print(f"mc-sf unavailable: {exc}", file=sys.stderr)
    name, _, cost, _ = best_heuristic_schedule(inst, warm_starts=warm, heuristic_seconds=heuristic_seconds)
    if given is not None and given < cost:
        return float(given), "best-json"
    return float(cost), name


def _lp(inst, formulation: str, cutoff: float, *, window_levels=None, clique_rounds: int = 0) -> dict:
    from servopt.solvers.kv_schedule_direct import build_direct, conflict_clique_cuts, solve_direct

    t0 = time.perf_counter()
    dm = build_direct(inst, formulation=formulation, cutoff=cutoff, relax=True, window_levels=window_levels)
    res, _ = solve_direct(dm, time_limit_s=600, rel_gap=0)
    value = res.objective if res.status == "optimal" else None
    cuts = rounds = 0
    for _ in range(clique_rounds):
        found = conflict_clique_cuts(dm, dm.highs.getSolution().col_value)
        if not found:
            break
        for _, cols in found:
            dm.highs.addRow(-np.inf, 1.0, len(cols), np.array(cols, dtype=np.int32), np.ones(len(cols)))
        cuts += len(found)
        rounds += 1
        res, _ = solve_direct(dm, time_limit_s=600, rel_gap=0)
        value = res.objective if res.status == "optimal" else None
    return {"value": value, "seconds": time.perf_counter() - t0, "rows": dm.size.get("rows"),
            "nonzeros": dm.size.get("nonzeros"), "cuts": cuts, "rounds": rounds}


def run_job(job: dict) -> list[dict]:
    from servopt.analysis.kv_bounds import volume_lower_bound
    from servopt.models.kv_schedule_aggregated import prefix_finish_lower_bounds
    from servopt.solvers.kv_schedule_certify import chain_lower_bound

    inst = make_instance(job["family"], job["k"], job["seed"])
    t0 = time.perf_counter()
    U, source = best_known(inst, job["heuristic_seconds"], job.get("given"))
    base = {"family": job["family"], "k": job["k"], "n": inst.n, "M": inst.memory_tokens,
            "s": inst.requests[0].prompt_tokens, "best": U, "best_source": source,
            "heuristic_s": time.perf_counter() - t0}
    rows = []
    for bound in job["bounds"]:
        t0 = time.perf_counter()
        extra: dict = {}
        if bound == "lp-aggregated":
            extra = _lp(inst, "aggregated", U)
        elif bound == "lp-window":
            extra = _lp(inst, "aggregated-window", U)
        elif bound == "lp-window-q1-4":
            extra = _lp(inst, "aggregated-window", U, window_levels=(1, 2, 3, 4))
        elif bound == "lp-window+cliques":
            extra = _lp(inst, "aggregated-window", U, clique_rounds=job["clique_rounds"])
        elif bound == "lp-count":
            extra = _lp(inst, "aggregated-count", U)
        elif bound == "chain":
            extra = {"value": chain_lower_bound(inst)}
        elif bound == "volume":
            extra = {"value": volume_lower_bound(inst)}
        elif bound == "prefix":
            extra = {"value": float(sum(prefix_finish_lower_bounds(inst)) - sum(r.arrival for r in inst.requests))}
        extra.setdefault("seconds", time.perf_counter() - t0)
        value = extra.get("value")
        if value is not None and value > U + 1e-6:
            raise AssertionError(f"{bound} = {value} above a feasible schedule's cost {U}: invalid bound")
        rows.append(dict(base, bound=bound, share=None if value is None else value / U, **extra))
    return rows


def _median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarise(rows: list[dict]) -> list[dict]:
    out = []
    for fam in sorted({r["family"] for r in rows}):
        for bound in ALL_BOUNDS:
            sub = [r for r in rows if r["family"] == fam and r["bound"] == bound]
            if not sub:
                continue
            shares = [r["share"] for r in sub if r["share"] is not None]
            window = {r["k"]: r["share"] for r in rows if r["family"] == fam and r["bound"] == "lp-window"}
            lifts = [r["share"] - window[r["k"]] for r in sub if r["share"] is not None and window.get(r["k"]) is not None]
            out.append({
                "family": fam, "bound": bound, "instances": len(sub),
                "median_share": _median(shares), "min_share": min(shares, default=None),
                "max_share": max(shares, default=None),
                "median_lift_over_window": _median(lifts) if bound != "lp-window" else None,
                "max_lift_over_window": max(lifts, default=None) if bound != "lp-window" else None,
                "median_seconds": _median([r.get("seconds") for r in sub]),
                "max_seconds": max((r.get("seconds") or 0 for r in sub), default=None),
                "cuts": sum(r.get("cuts", 0) for r in sub),
            })
    return out


def _f(x, fmt):
    return "-" if x is None else fmt.format(x)


def write_tables(rows, meta, path_md: Path, path_json: Path):
    summary = summarise(rows)
    lines = ["# Lower bounds for KV scheduling at paper scale (issue 7)", "",
             f"Command: `{meta['command']}`", "",
             f"Machine: {meta['machine']}; {meta['load']}", "",
             "Share = bound / best known schedule (higher is better; 1.000 would certify). "
             "Lift = share minus the `lp-window` share on the same instance (percentage points / 100). "
             "Seconds: build + solve (LP rows), one HiGHS thread; shared machine, so timings are noisy. "
             "Best known: SGS + local search and MC-SF (see the module docstring).", "",
             "| arrivals | bound | instances | median share | min share | max share | median lift | max lift | median s | max s | clique cuts |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for s in summary:
        lines.append(f"| {s['family']} | {s['bound']} | {s['instances']} | {_f(s['median_share'], '{:.4f}')} | "
                     f"{_f(s['min_share'], '{:.4f}')} | {_f(s['max_share'], '{:.4f}')} | "
                     f"{_f(s['median_lift_over_window'], '{:+.4f}')} | {_f(s['max_lift_over_window'], '{:+.4f}')} | "
                     f"{_f(s['median_seconds'], '{:.2f}')} | {_f(s['max_seconds'], '{:.2f}')} | {s['cuts']} |")
    lines += ["", "Per instance (share of the best known schedule):", "",
              "| arrivals | k | n | M | s | best | " + " | ".join(meta["bounds"]) + " |",
              "| --- | --- | --- | --- | --- | --- | " + " | ".join("---" for _ in meta["bounds"]) + " |"]
    by_inst: dict = {}
    for r in rows:
        by_inst.setdefault((r["family"], r["k"]), {})[r["bound"]] = r
    for (fam, k), d in sorted(by_inst.items()):
        any_row = next(iter(d.values()))
        cells = [_f(d[b]["share"], "{:.4f}") if b in d else "-" for b in meta["bounds"]]
        lines.append(f"| {fam} | {k} | {any_row['n']} | {any_row['M']} | {any_row['s']} | {any_row['best']:.0f} | "
                     + " | ".join(cells) + " |")
    write_table(path_md, path_json, lines, meta=meta, summary=summary, rows=rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", type=int, default=10)
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--families", default="all_at_zero,poisson")
    ap.add_argument("--bounds", default=",".join(ALL_BOUNDS))
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--heuristic-seconds", type=float, default=6.0)
    ap.add_argument("--clique-rounds", type=int, default=10)
    ap.add_argument("--best-json", default=None, help='known schedule costs {"family/k": cost}')
    ap.add_argument("--load", default="", help="a note on the machine's load, copied into the table")
    ap.add_argument("--out", default=str(RESULTS / "kv_bounds_paper.md"))
    args = ap.parse_args(argv)
    bounds = [b for b in args.bounds.split(",") if b]
    for b in bounds:
        if b not in ALL_BOUNDS:
            ap.error(f"--bounds: unknown '{b}' (known: {', '.join(ALL_BOUNDS)})")
    given = json.loads(Path(args.best_json).read_text()) if args.best_json else {}
    jobs = [{"family": fam, "k": k, "seed": args.seed, "bounds": bounds, "heuristic_seconds": args.heuristic_seconds,
             "clique_rounds": args.clique_rounds, "given": given.get(f"{fam}/{k}")}
            for fam in args.families.split(",") if fam for k in range(args.first, args.first + args.instances)]
    meta = {"command": "python benchmarks/kv_bounds_paper.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {args.workers} single-thread runs at a time",
            "load": args.load or "load not stated", "bounds": bounds}
    t0 = time.perf_counter()
    rows: list[dict] = []
    if args.workers <= 1:
        for job in jobs:
            rows += run_job(job)
    else:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(args.workers, maxtasksperchild=1) as pool:
            for part in pool.imap_unordered(run_job, jobs):
                rows += part
    meta["wall_s"] = round(time.perf_counter() - t0, 1)
    rows.sort(key=lambda r: (r["family"], r["k"], ALL_BOUNDS.index(r["bound"])))
    out = Path(args.out)
    write_tables(rows, meta, out, out.with_suffix(".json"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
