"""``servopt demo``: solve a small shipped instance of every kind and print one table.

Each kind's rows come from its ``demo()``: the optimum first, then policies or baselines. Every
objective carries its unit (a row's ``unit``, else the kind's); ``ratio`` is always the row's
objective divided by the optimum's on the same instance; a row whose objective is 0 says
why in a footnote (the row's ``note``). The table fits the console: on narrow terminals the bound
and seconds columns go.
"""
from __future__ import annotations

import time

from servopt import kinds
from servopt.commands._common import console

# the unit of each kind's demo objective (a row's own "unit" wins)
UNITS = {
    "kv_schedule": "rounds",      # total latency in rounds of the round model
    "routing": "rounds",
    "pd_placement": "$/h",
    "layer_placement": "tok/s",
    "eviction": "hit blocks",
    "batching": "ms",
}


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="solve a small shipped instance of every kind and print a table")
    p.add_argument("--time-limit", type=float, default=20.0, metavar="S", help="per-solve time limit (default 20)")
    p.set_defaults(func=run)


def run(args) -> int:
    sections = []
    for name in kinds.available():
        module = kinds.get(name)
        t0 = time.perf_counter()
        rows = module.demo(time_limit_s=args.time_limit)
        for row in rows:
            row.setdefault("seconds", time.perf_counter() - t0)
        sections.append((name, rows))
    con = console()
    table, notes = demo_table(sections, width=con.width)
    con.print(table)
    for i, note in enumerate(notes, 1):
        con.print(f"[{i}] {note}")
    return 0


def demo_table(sections, *, width: int):
    """The rich Table and its footnotes for ``[(kind, rows), ...]``, fitted to ``width`` columns."""
    from rich.table import Table

    narrow = width < 90
    table = Table(title="servopt demo: the optimum vs online policies and baselines on shipped instances",
                  caption="ratio = objective / the optimum's on the same instance: above 1 is worse for "
                          "rounds, ms and $/h, below 1 is worse for tok/s and hit blocks",
                  caption_justify="left")
    table.add_column("method", overflow="fold")
    table.add_column("objective", justify="right")
    if not narrow:
        table.add_column("bound", justify="right")
    table.add_column("gap", justify="right")
    table.add_column("ratio", justify="right")
    table.add_column("status")
    if not narrow:
        table.add_column("s", justify="right")
    notes: list[str] = []
    for name, rows in sections:
        if not rows:
            continue
        table.add_section()
        instances = []
        for r in rows:
            if str(r.get("instance", "")) not in instances:
                instances.append(str(r.get("instance", "")))
        shorts = [_short(i) for i in instances if i and _short(i) != name]
        header = name + (f" ({', '.join(shorts)})" if shorts else "")
        table.add_row(f"[bold]{header}[/bold]", *([""] * (len(table.columns) - 1)))
        for row in rows:
            unit = row.get("unit") or UNITS.get(name, "")
            method = str(row.get("method", ""))
            if len(instances) > 1 and row.get("instance"):
                method = f"{method} ({_short(str(row['instance']))})"
            obj = row.get("objective")
            if obj is not None and not isinstance(obj, str) and obj == 0:
                notes.append(f"{name} {row.get('method')}: 0 {unit}: {row.get('note') or 'no reason recorded'}")
                method = f"{method} [{len(notes)}]"
            cells = [method, _with_unit(obj, unit)]
            if not narrow:
                cells.append(_with_unit(row.get("bound"), unit))
            cells += [_fmt(row.get("gap"), pct=True), _fmt_ratio(row.get("ratio")), _status(row.get("status"), narrow)]
            if not narrow:
                cells.append(f"{row.get('seconds', 0.0):.2f}")
            table.add_row(*cells)
    return table, notes


def _short(name: str) -> str:
    return name.removesuffix(".json").removeprefix("example_")


def _status(s, narrow: bool) -> str:
    s = str(s or "")
    return {"time_limit": "time limit", "feasible": "feasible", "optimal": "optimal"}.get(s, s)[:10 if narrow else 14]


def _with_unit(x, unit: str) -> str:
    if x is None:
        return "-"
    return f"{_fmt(x)} {unit}".strip()


def _fmt_ratio(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def _fmt(x, pct: bool = False) -> str:
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    if pct:
        return f"{100 * x:.2f}%"
    return f"{x:,.4g}" if abs(x) < 1e4 else f"{x:,.0f}"
