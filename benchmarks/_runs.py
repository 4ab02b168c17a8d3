"""Shared by the KV benchmarks that run in parts (``--first``/``--merge``): read part files, write a table.

A part file is the JSON a benchmark writes beside its markdown table: ``{"meta": {...}, "summary":
..., "rows": [...]}``. Run a benchmark in several parts (on several machines, or in several device
calls), then rebuild one table from all of them with ``--merge A.json B.json``.
"""
from __future__ import annotations

import json
from pathlib import Path


def read_parts(paths) -> tuple[list[dict], list[dict]]:
    """All rows and every part's meta, in the order given."""
    rows, metas = [], []
    for p in paths:
        d = json.loads(Path(p).read_text())
        rows += d["rows"]
        metas.append(d["meta"])
    return rows, metas


def write_table(path_md: Path, path_json: Path, lines: list[str], *, meta: dict, summary, rows: list[dict]) -> None:
    """The markdown table, and the part file that ``--merge`` reads back; prints the table."""
    path_md.parent.mkdir(parents=True, exist_ok=True)
    path_md.write_text("\n".join(lines) + "\n")
    path_json.write_text(json.dumps({"meta": meta, "summary": summary, "rows": rows}, indent=1))
    print("\n".join(lines))
