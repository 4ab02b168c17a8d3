"""``servopt solve FILE``: the offline optimum of any instance kind, with bound and gap."""
from __future__ import annotations

from servopt.commands._common import add_output_options, emit, read_instance
from servopt.errors import InputError


def register(subparsers) -> None:
    p = subparsers.add_parser("solve", help="solve an instance to (proven) optimality within a time limit")
    p.add_argument("file", help="instance JSON file (any kind)")
    p.add_argument("--time-limit", type=float, default=60.0, metavar="S", help="solver time limit in seconds (default 60)")
    p.add_argument("--rel-gap", type=float, default=1e-4, help="relative gap at which to stop (default 1e-4)")
    p.add_argument("--solver", default="highs", help="Pyomo solver name (default highs)")
    p.add_argument("--formulation", default=None, help="formulation name, where a kind offers several")
    p.add_argument("--export", metavar="MODEL.lp|.mps", help="also write the Pyomo model as LP or MPS")
    add_output_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    if not args.time_limit > 0:
        raise InputError("--time-limit", "must be positive")
    if not 0 <= args.rel_gap < 1:
        raise InputError("--rel-gap", "must be in [0, 1)")
    module, instance, _ = read_instance(args.file)
    options = {"rel_gap": args.rel_gap, "solver": args.solver, "formulation": args.formulation, "export": args.export}
    result = module.solve(instance, time_limit_s=args.time_limit, options=options)
    emit(result, module, args)
    return 0
