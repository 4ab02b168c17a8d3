"""``servopt sweep CONFIG.json --out DIR``: a grid of instances x methods x policies, cached per cell.

Writes ``DIR/results.csv`` (one row per cell and policy; ``results.parquet`` too where pyarrow is
installed), ``DIR/summary.json`` (the ratio intervals per family, size and policy, the proven
constants of the literature beside them, and any measured ratio that contradicts one) and one file
per finished cell under ``DIR/cells/``: run the same command again after an interruption and only
the missing cells run. ``--workers N`` runs cells in a local process pool; ``--ray [ADDRESS]`` runs
them as Ray tasks (a local Ray with N CPUs when no address is given). CONFIG may also name a
shipped sweep (``servopt sweep smoke --out DIR``). See analysis/sweep.py and docs/analysis.md.
"""
from __future__ import annotations

import sys


def register(subparsers) -> None:
    p = subparsers.add_parser("sweep", help="run a grid of instances, methods and policies (cached, resumable; local pool or Ray)")
    p.add_argument("config", help="sweep config JSON, or the name of a shipped sweep (smoke, paper_n11_12, ...)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (results.csv, summary.json, cells/)")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="cells at a time: local processes, or Ray CPUs (default 1)")
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="run the cells as Ray tasks; without ADDRESS a local Ray is started with --workers CPUs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--json", action="store_true", help="print the summary as JSON instead of a table")
    p.set_defaults(func=run)


def run(args) -> int:
    from servopt import jsonio
    from servopt.analysis.sweep import read_config, run_sweep
    from servopt.errors import InputError

    if args.workers < 1:
        raise InputError("--workers", f"must be at least 1, got {args.workers}")
    config = read_config(args.config)
    try:
        result = run_sweep(config, args.out, workers=args.workers, ray=args.ray is not None,
                           ray_address=args.ray or None, progress=not args.no_progress)
    except KeyboardInterrupt:
        print(f"\nsweep stopped: finished cells are kept in {args.out}/cells; run the same command again to resume",
              file=sys.stderr)
        raise
    summary = result.summary()
    if args.json:
        sys.stdout.write(jsonio.dumps(summary) + "\n")
    else:
        _render(summary)
    return 1 if summary["violations"] else 0


def _render(summary: dict) -> None:
    from rich.table import Table

    from servopt.commands._common import console

    con = console()
    table = Table(title=f"sweep {summary['name']}: ALG/OPT in [ALG/incumbent, ALG/bound]",
                  caption=f"{summary['instances']} instances, {summary['instances_proven']} optima proven; "
                          f"{summary['cells_run']} cells run, {summary['cells_cached']} from the cache, "
                          f"{summary['cells_failed']} failed; {summary['runner']}, {summary['wall_seconds']:.1f} s"
                          + (f"; cells' CPU {summary['cpu_seconds']:.0f} s" if summary.get("cpu_seconds") else ""))
    cols = ("family", "n", "policy", "instances", "proven", "mean [lo, hi]", "proven mean", "proven worst",
            "worst [lo, hi]", "policy optimal", "proven constant")
    for c in cols:
        table.add_column(c, justify="left" if c in ("family", "policy") else "right")
    f = lambda x: "-" if x is None else f"{x:.4f}"  # noqa: E731
    for r in summary["ratios"]:
        const = r.get("proven_constant")
        if const is not None and r.get("constant_setting_instances") is not None:
            const = f"{const:g} (setting: {int(r['constant_setting_instances'])} inst.)"
        table.add_row(str(r.get("family", "")) + (f"/{r['arrival_model']}" if r.get("arrival_model") else ""),
                      "family's" if r.get("n") is None else str(r["n"]), str(r.get("policy", "")), str(r["instances"]), str(r["proven"]),
                      f"[{f(r['mean_lo'])}, {f(r['mean_hi'])}]", f(r["proven_mean"]), f(r["proven_worst"]),
                      f"[{f(r['worst_lo'])}, {f(r['worst_hi'])}]", str(r["policy_optimal"]), str(const if const is not None else "-"))
    con.print(table)
    for e in summary["errors"][:10]:
        con.print(f"[red]cell {e['key']} failed[/red]: {e['error']}")
    if summary["violations"]:
        con.print(f"[red]{len(summary['violations'])} measured ratio(s) contradict a proven bound (a bug):[/red]")
        for v in summary["violations"][:20]:
            con.print(f"  {v}")
    print(f"wrote {summary['out_dir']}/results.csv and summary.json")
