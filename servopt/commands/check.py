"""``servopt check INSTANCE RESULT``: re-verify a schedule or plan independently of who made it."""
from __future__ import annotations

from servopt import jsonio
from servopt.commands._common import read_instance
from servopt.errors import InputError


def register(subparsers) -> None:
    p = subparsers.add_parser("check", help="re-verify a result (schedule or plan) against its instance")
    p.add_argument("instance", help="instance JSON file")
    p.add_argument("result", help="result JSON file produced by solve/simulate (or any tool)")
    p.set_defaults(func=run)


def run(args) -> int:
    module, instance, _ = read_instance(args.instance)
    result = jsonio.read_json(args.result)
    if not isinstance(result, dict):
        raise InputError(args.result, "a result must be a JSON object")
    if result.get("kind", module.KIND) != module.KIND:
        raise InputError("kind", f"result is for '{result.get('kind')}', instance is '{module.KIND}'")
    violations = module.check(instance, result)
    if violations:
        for v in violations[:20]:
            print(f"violation: {v}")
        if len(violations) > 20:
            print(f"... and {len(violations) - 20} more")
        print(f"error: result is not valid for the instance ({len(violations)} violation(s))")
        return 2
    print(f"ok: the {module.KIND} result is feasible and its objective is recomputed as reported")
    return 0
