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




def _chosen_parser(parser: argparse.ArgumentParser, argv_args) -> argparse.ArgumentParser:
    """The (sub)parser of the command that was typed, following nested sub-commands (``import helix``)."""
    current = parser
    while True:
        actions = [a for a in current._actions if isinstance(a, argparse._SubParsersAction)]  # noqa: SLF001
        if not actions:
            return current
        chosen = getattr(argv_args, actions[0].dest, None)
        if chosen is None or chosen not in actions[0].choices:
            return current
        current = actions[0].choices[chosen]


def _reject_unknown(parser: argparse.ArgumentParser, args, unknown: list[str]) -> None:
    """One line naming the first unknown flag and, when one is close, the flag meant."""
    import difflib

    from servopt.errors import InputError

    command = _chosen_parser(parser, args)
    flags = [opt for action in command._actions for opt in action.option_strings]  # noqa: SLF001
    word = unknown[0]
    flag = word.split("=", 1)[0]
    if not flag.startswith("-"):
        raise InputError(command.prog, f"unexpected argument '{word}'")
    hint = difflib.get_close_matches(flag, flags, n=1, cutoff=0.6)
    suffix = f" (did you mean '{hint[0]}'?)" if hint else f" (see '{command.prog} --help')"
    raise InputError(flag, f"unknown option for '{command.prog}'{suffix}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        parser = build_parser()
        args, unknown = parser.parse_known_args(argv)
        if unknown:
            _reject_unknown(parser, args, unknown)
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
