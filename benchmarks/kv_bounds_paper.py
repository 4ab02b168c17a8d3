"""Lower bounds for KV scheduling at paper scale, each as a share of the best known schedule.

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
  analysis/kv_bounds.py, ``sum_k C_k - sum a`` of models/kv_schedule_aggregated.py);
* ``mip-window-big``: the ``aggregated-window`` program with the columns of the *big* types
  (peak ``s + o > M/2``) integer and every other column continuous, HiGHS's dual bound after
  ``--mip-seconds`` (the optimum when it finishes). Valid: it relaxes the integrality of the small
  types only, so every schedule is a feasible point at its own cost. It asks how much of the LP's gap
  is the big requests' chain (their exclusive windows can no longer be smeared); measured in the
  README, "Against proven optima, and how far the exact search reaches".

``--n N`` fixes the number of requests (the generator of benchmarks/kv_certify_paper.py, same
seeds); with ``--exact-seconds S`` each instance is also solved by the compiled branch-and-bound
(solvers/kv_schedule_bnb.py) from the best known schedule, and where it proves the optimum within
``S`` seconds the shares are taken against the optimum itself (column ``reference``): how far each
relaxation sits below the true optimum, as n grows, not only below a schedule.

    python benchmarks/kv_bounds_paper.py [--instances 10] [--families all_at_zero,poisson] [--workers 2]
        [--bounds ...] [--heuristic-seconds 6] [--best-json PATH] [--load "note"]
        [--n N --exact-seconds S] [--mip-seconds 60]

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
              "chain", "volume", "prefix", "mip-window-big")


def make_instance(family: str, k: int, seed: int, n: int | None = None):
    sys.path.insert(0, str(HERE))
    from kv_certify_paper import make_instance as certify_instance  # one definition of the instances

    return certify_instance(family, k, seed, n)


def best_known(inst, heuristic_seconds: float, given: float | None) -> tuple[float, str, object]:
    from servopt.solvers.kv_schedule_certify import best_heuristic_schedule

    warm = {}
    try:
        from servopt.simulator.kv_rounds import simulate_rounds

        warm["mc-sf"] = simulate_rounds(inst, "mc-sf")
    except Exception as exc:  # the benchmark still runs on the certify heuristics alone
        print(f"mc-sf unavailable: {exc}", file=sys.stderr)
    name, schedule, cost, _ = best_heuristic_schedule(inst, warm_starts=warm, heuristic_seconds=heuristic_seconds)
    if given is not None and given < cost:
        return float(given), "best-json", None
    return float(cost), name, schedule


def _mip_big(inst, cutoff: float, seconds: float) -> dict:
    """``mip-window-big`` (module docstring): big types integer, the rest continuous; the dual bound."""
    from servopt.solvers.kv_schedule_direct import build_direct, solve_direct

    dm = build_direct(inst, formulation="aggregated-window", cutoff=cutoff, relax=True)
    g = dm.groups
    big_types = 2 * (g.prompt + g.output) > inst.memory_tokens
    cols = np.flatnonzero(big_types[dm.col_group]).astype(np.int32)
    dm.highs.changeColsIntegrality(len(cols), cols, np.ones(len(cols), dtype=np.uint8))
    res, _ = solve_direct(dm, time_limit_s=seconds, rel_gap=0.0)  # relaxed=True: no schedule is read back
    value = _mip_value(res.bound)
    return {"value": value, "status": res.status if value is not None else "root LP unfinished",
            "big_columns": int(len(cols))}


def _mip_value(bound: float | None) -> float | None:
    """A limit hit before the root LP is solved leaves HiGHS's trivial bound (0: costs are >= 0) or none:
    report "no bound" then, not a share of 0 that would drag the medians down."""
    return bound if bound is not None and bound > 0 else None


def _size(row: dict) -> str:
    return row.get("size", "U{40..60}")  # rows written before --n have no size: the paper's n


def _exact(inst, incumbent, seconds: float) -> dict:
    """The compiled branch-and-bound from the best known schedule: the optimum when it is proven."""
    from servopt.solvers.kv_schedule_bnb import branch_and_bound

    res = branch_and_bound(inst, time_limit_s=seconds, incumbent=incumbent, incumbent_source="best-known")
    return {"status": res.status, "objective": res.objective, "bound": res.bound, "seconds": res.solve_seconds}


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

    inst = make_instance(job["family"], job["k"], job["seed"], job.get("n"))
    t0 = time.perf_counter()
    U, source, schedule = best_known(inst, job["heuristic_seconds"], job.get("given"))
    base = {"family": job["family"], "k": job["k"], "n": inst.n, "M": inst.memory_tokens,
            "s": inst.requests[0].prompt_tokens, "best": U, "best_source": source,
            "heuristic_s": time.perf_counter() - t0, "reference": "best known",
            "size": "U{40..60}" if job.get("n") is None else str(job["n"])}
    if job.get("exact_seconds"):
        exact = _exact(inst, schedule, job["exact_seconds"])
        base.update(exact_status=exact["status"], exact_seconds=exact["seconds"], exact_bound=exact["bound"])
        U = min(U, exact["objective"])  # a schedule the search found, or the optimum
        base.update(best=U, reference="optimum" if exact["status"] == "optimal" else "best known")
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
        elif bound == "mip-window-big":
            extra = _mip_big(inst, U, job["mip_seconds"])
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
    sizes = sorted({_size(r) for r in rows}, key=lambda x: (len(x), x))
    for fam, size in [(f, z) for f in sorted({r["family"] for r in rows}) for z in sizes]:
        for bound in ALL_BOUNDS:
            sub = [r for r in rows if r["family"] == fam and _size(r) == size and r["bound"] == bound]
            if not sub:
                continue
            shares = [r["share"] for r in sub if r["share"] is not None]
            window = {r["k"]: r["share"] for r in rows if r["family"] == fam and _size(r) == size
                      and r["bound"] == "lp-window"}
            lifts = [r["share"] - window[r["k"]] for r in sub if r["share"] is not None and window.get(r["k"]) is not None]
            out.append({
                "family": fam, "size": size, "bound": bound, "instances": len(sub), "with_value": len(shares),
                "median_share": _median(shares), "min_share": min(shares, default=None),
                "max_share": max(shares, default=None),
                "median_lift_over_window": _median(lifts) if bound != "lp-window" else None,
                "max_lift_over_window": max(lifts, default=None) if bound != "lp-window" else None,
                "median_seconds": _median([r.get("seconds") for r in sub]),
                "max_seconds": max((r.get("seconds") or 0 for r in sub), default=None),
                "cuts": sum(r.get("cuts", 0) for r in sub),
                "against_optimum": sum(r.get("reference") == "optimum" for r in sub),
            })
    return out


def _f(x, fmt):
    return "-" if x is None else fmt.format(x)


def write_tables(rows, meta, path_md: Path, path_json: Path):
    summary = summarise(rows)
    lines = ["# Lower bounds for KV scheduling", "",
             f"Command: `{meta['command']}`", "",
             f"Machine: {meta['machine']}; {meta['load']}", "",
             "Share = bound / reference (higher is better; 1.000 would certify); the reference is the proven optimum "
             "where column 'vs optimum' counts it (branch-and-bound within --exact-seconds), else the best known schedule. "
             "Lift = share minus the `lp-window` share on the same instance (percentage points / 100). "
             "'With a value': instances where the bound was computed (an LP or MIP can stop at its limit with none). "
             "Seconds: build + solve (LP rows; MIP rows up to --mip-seconds), one HiGHS thread. "
             "Best known: SGS + local search and MC-SF (see the module docstring).", "",
             "| arrivals | n | bound | instances | with a value | vs optimum | median share | min share | max share | median lift | max lift | median s | max s | clique cuts |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for s in summary:
        lines.append(f"| {s['family']} | {s['size']} | {s['bound']} | {s['instances']} | {s['with_value']} | {s['against_optimum']} | {_f(s['median_share'], '{:.4f}')} | "
                     f"{_f(s['min_share'], '{:.4f}')} | {_f(s['max_share'], '{:.4f}')} | "
                     f"{_f(s['median_lift_over_window'], '{:+.4f}')} | {_f(s['max_lift_over_window'], '{:+.4f}')} | "
                     f"{_f(s['median_seconds'], '{:.2f}')} | {_f(s['max_seconds'], '{:.2f}')} | {s['cuts']} |")
    lines += ["", "Per instance (share of the reference):", "",
              "| arrivals | k | n | M | s | reference | cost | " + " | ".join(meta["bounds"]) + " |",
              "| --- | --- | --- | --- | --- | --- | --- | " + " | ".join("---" for _ in meta["bounds"]) + " |"]
    by_inst: dict = {}
    for r in rows:
        by_inst.setdefault((r["family"], r["n"], r["k"]), {})[r["bound"]] = r
    for (fam, _, k), d in sorted(by_inst.items()):
        any_row = next(iter(d.values()))
        cells = [_f(d[b]["share"], "{:.4f}") if b in d else "-" for b in meta["bounds"]]
        lines.append(f"| {fam} | {k} | {any_row['n']} | {any_row['M']} | {any_row['s']} | "
                     f"{any_row.get('reference', 'best known')} | {any_row['best']:.0f} | "
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
    ap.add_argument("--best-json", default=None, help='known schedule costs {"family/k": cost}, or {"family/nN/k": cost} with --n')
    ap.add_argument("--load", default="", help="a note on the machine's load, copied into the table")
    ap.add_argument("--n", default="", help="fixed numbers of requests, comma-separated (default: the paper's U{40..60})")
    ap.add_argument("--exact-seconds", type=float, default=0.0,
                    help="also solve each instance by branch-and-bound; shares against the optimum where it is proven")
    ap.add_argument("--mip-seconds", type=float, default=60.0, help="time limit of the mip-window-big row")
    ap.add_argument("--out", default=str(RESULTS / "kv_bounds_paper.md"))
    ap.add_argument("--rewrite", default=None, metavar="JSON",
                    help="rebuild the tables from a json this benchmark wrote, applying the current reporting rules")
    args = ap.parse_args(argv)
    if args.rewrite:
        d = json.loads(Path(args.rewrite).read_text())
        for r in d["rows"]:
            if r["bound"] == "mip-window-big" and _mip_value(r.get("value")) is None:
                r.update(value=None, share=None, status="root LP unfinished")
        out = Path(args.out)
        write_tables(d["rows"], d["meta"], out, out.with_suffix(".json"))
        return 0
    bounds = [b for b in args.bounds.split(",") if b]
    for b in bounds:
        if b not in ALL_BOUNDS:
            ap.error(f"--bounds: unknown '{b}' (known: {', '.join(ALL_BOUNDS)})")
    given = json.loads(Path(args.best_json).read_text()) if args.best_json else {}
    sizes = [int(x) for x in args.n.split(",") if x] or [None]
    jobs = [{"family": fam, "k": k, "seed": args.seed, "bounds": bounds, "heuristic_seconds": args.heuristic_seconds,
             "clique_rounds": args.clique_rounds, "given": given.get(f"{fam}/{k}" if n is None else f"{fam}/n{n}/{k}"), "n": n,
             "exact_seconds": args.exact_seconds, "mip_seconds": args.mip_seconds}
            for n in sizes for fam in args.families.split(",") if fam
            for k in range(args.first, args.first + args.instances)]
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
    rows.sort(key=lambda r: (r["family"], r["n"], r["k"], ALL_BOUNDS.index(r["bound"])))
    out = Path(args.out)
    write_tables(rows, meta, out, out.with_suffix(".json"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
