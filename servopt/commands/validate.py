"""``servopt validate FILE``: check an instance (or result) file and name the first bad field."""
from __future__ import annotations

from servopt.commands._common import read_instance


def register(subparsers) -> None:
    p = subparsers.add_parser("validate", help="check an instance file against its schema and rules")
    p.add_argument("file", help="instance JSON file")
    p.set_defaults(func=run)


def run(args) -> int:
    module, _instance, data = read_instance(args.file)
    print(f"ok: {args.file} is a valid {module.KIND} instance")
    return 0
