"""Helpers shared by the subcommands: reading instances, printing and writing results."""
from __future__ import annotations

import sys
from typing import Any

from servopt import jsonio, kinds


def console():
    from rich.console import Console

    probe = Console()
    # A terminal's own width (tables shrink or drop columns to fit it); pipes, files and CI logs get 100
    # columns, enough for every table without the terminal to measure.
    return Console(soft_wrap=False, width=probe.width if probe.is_terminal else 100)


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


def import_subparsers(subparsers):
    """The sub-command table of ``servopt import`` (one module per format joins it): made by the first
    module that registers, found by the others."""
    if "import" in subparsers.choices:
        return subparsers.choices["import"].servopt_subcommands
    parent = subparsers.add_parser("import", help="convert other tools' files into servopt instances")
    sub = parent.add_subparsers(dest="import_format", metavar="FORMAT")
    parent.servopt_subcommands = sub
    parent.set_defaults(func=lambda args: (parent.print_help(), 2)[1])
    return sub


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
    parser.add_argument("--quiet", action="store_true", help="no progress line on stderr")
    parser.add_argument("--out", metavar="RESULT.json", help="write the result JSON to this file")
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")


class progress:
    """While a long command runs, show its elapsed time against its limit on stderr, when stderr is a
    terminal and ``--quiet`` is off (never in pipes, files or CI logs, so JSON output stays clean)."""

    def __init__(self, what: str, time_limit_s: float | None, *, quiet: bool = False):
        self.what, self.limit, self.quiet = what, time_limit_s, quiet
        self._status = None

    def __enter__(self):
        if self.quiet or not sys.stderr.isatty():
            return self
        import threading
        import time

        from rich.console import Console

        start = time.perf_counter()
        self._stop = threading.Event()
        self._status = Console(stderr=True).status(self.what)
        self._status.__enter__()

        def tick():
            while not self._stop.wait(0.5):
                elapsed = time.perf_counter() - start
                limit = f" of {self.limit:g} s limit" if self.limit else ""
                self._status.update(f"{self.what}: {elapsed:.1f} s{limit}")

        self._thread = threading.Thread(target=tick, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        if self._status is not None:
            self._stop.set()
            self._thread.join()
            self._status.__exit__(*exc)
        return False
