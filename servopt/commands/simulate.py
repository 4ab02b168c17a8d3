"""``servopt simulate FILE --policy NAME [--param KEY=VALUE ...]``: run an online policy on an instance.

Dispatches to the kind module's ``simulate(instance, policy=NAME, options=params)`` (see
servopt/kinds/__init__.py). Minimal version written for kind ``kv_schedule``; the serving
simulator (issue 8) may extend it.
"""
from __future__ import annotations

from servopt.commands._common import add_output_options, emit, read_instance
from servopt.errors import InputError


def register(subparsers) -> None:
    p = subparsers.add_parser("simulate", help="run an online policy on an instance and print its schedule")
    p.add_argument("file", help="instance JSON file")
    p.add_argument("--policy", required=True, help="policy name (kv_schedule: fcfs, vllm, alpha-threshold, sjf, mc-sf, a-min)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="policy parameter, repeatable (e.g. --param alpha=0.25); values are read as JSON when they parse")
    add_output_options(p)
    p.set_defaults(func=run)


def _parse_params(items: list[str]) -> dict:
    import json

    params = {}
    for item in items:
        if "=" not in item:
            raise InputError("--param", f"expected KEY=VALUE, got '{item}'")
        key, raw = item.split("=", 1)
        try:
            params[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            params[key.strip()] = raw
    return params


def run(args) -> int:
    module, instance, _ = read_instance(args.file)
    if not callable(getattr(module, "simulate", None)):
        raise InputError("kind", f"'{module.KIND}' instances have no online policies to simulate")
    result = module.simulate(instance, policy=args.policy, options=_parse_params(args.param))
    emit(result, module, args)
    return 0
