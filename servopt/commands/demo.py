"""``servopt demo``: solve a small shipped instance of every kind and print one table."""
from __future__ import annotations

import time

from servopt import kinds
from servopt.commands._common import console


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="solve a small shipped instance of every kind and print a table")
    p.add_argument("--time-limit", type=float, default=20.0, metavar="S", help="per-solve time limit (default 20)")
    p.set_defaults(func=run)


def run(args) -> int:
    from rich.table import Table

    table = Table(title="servopt demo: offline optimum vs online policies on shipped instances")
    for col in ("kind", "instance", "method", "objective", "bound", "gap", "ratio", "status", "seconds"):
        table.add_column(col, justify="right" if col in ("objective", "bound", "gap", "ratio", "seconds") else "left")
    for name in kinds.available():
        module = kinds.get(name)
        t0 = time.perf_counter()
        rows = module.demo(time_limit_s=args.time_limit)
        for row in rows:
            table.add_row(
                name,
                str(row.get("instance", "")),
                str(row.get("method", "")),
                _fmt(row.get("objective")),
                _fmt(row.get("bound")),
                _fmt(row.get("gap"), pct=True),
                _fmt(row.get("ratio")),
                str(row.get("status", "")),
                f"{row.get('seconds', time.perf_counter() - t0):.3f}",
            )
    console().print(table)
    return 0


def _fmt(x, pct: bool = False) -> str:
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    if pct:
        return f"{100 * x:.2f}%"
    return f"{x:,.4g}" if abs(x) < 1e4 else f"{x:,.0f}"
