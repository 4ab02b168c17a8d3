"""Helpers shared by the subcommands: reading instances, printing and writing results."""
from __future__ import annotations

import sys
from typing import Any

from servopt import jsonio, kinds


def console():
    from rich.console import Console

    probe = Console()
    # Pipes and CI logs report 80 columns; tables of plans need more to stay readable.
    return Console(soft_wrap=False, width=probe.width if probe.is_terminal and probe.width >= 120 else 160)


def read_instance(path: str):
    """Parse, validate and load an instance file; returns (kind module, instance, raw dict)."""
    data = jsonio.read_json(path)
    module, instance = kinds.load_instance(data)
    return module, instance, data


def emit(result: dict[str, Any], module, args) -> None:
    """Write ``--out``, then print JSON (``--json``) or the kind's table."""
    if getattr(args, "out", None):
        jsonio.write_json(result, args.out)
    if getattr(args, "json", False):
        sys.stdout.write(jsonio.dumps(result) + "\n")
    else:
        module.render(result, console())
        if getattr(args, "out", None):
            print(f"wrote {args.out}")


def add_solver_options(parser) -> None:
    """--time-limit, --rel-gap and --formulation, shared by every command that solves."""
    parser.add_argument("--time-limit", type=float, default=60.0, metavar="S", help="solver time limit in seconds (default 60)")
    parser.add_argument("--rel-gap", type=float, default=1e-4, help="relative gap at which the solver stops (default 1e-4)")
    parser.add_argument("--formulation", default=None, help="formulation of the program, where a kind offers several")


def check_solver_options(args) -> None:
    from servopt.errors import InputError

    if not args.time_limit > 0:
        raise InputError("--time-limit", "must be positive")
    if not 0 <= args.rel_gap < 1:
        raise InputError("--rel-gap", "must be in [0, 1)")


def add_output_options(parser) -> None:
    parser.add_argument("--out", metavar="RESULT.json", help="write the result JSON to this file")
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
