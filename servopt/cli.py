"""The ``servopt`` command line: thin over the API, JSON in and JSON out.

Subcommands are modules in ``servopt/commands/``; each defines ``register(subparsers)`` and sets
``func(args) -> int`` on its parser. Adding a command means adding one file.

Errors caused by the input (``servopt.errors.ServoptError``) print one line, ``error: ...``, and
exit 2; anything else is an internal error (exit 1). ``--debug`` shows the traceback.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from servopt import __version__
from servopt.errors import ServoptError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="servopt",
        description="Mathematical optimization for LLM serving: offline optima, a GPU cost model, "
        "a serving simulator and online policies.",
    )
    parser.add_argument("--version", action="version", version=f"servopt {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    import servopt.commands as commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        importlib.import_module(f"servopt.commands.{info.name}").register(subparsers)
    return parser




def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except ServoptError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 - the one place that turns bugs into exit code 1
        if debug:
            raise
        print(f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
