"""``servopt solve FILE``: the offline optimum of any instance kind, with bound and gap."""
from __future__ import annotations

from servopt.commands._common import (add_output_options, add_solver_options, check_solver_options, emit, progress,
                                      read_instance)


def register(subparsers) -> None:
    p = subparsers.add_parser("solve", help="solve an instance to (proven) optimality within a time limit")
    p.add_argument("file", help="instance JSON file (any kind)")
    add_solver_options(p)
    p.add_argument("--solver", default="highs", help="Pyomo solver name (default highs)")
    p.add_argument("--export", metavar="MODEL.lp|.mps", help="also write the Pyomo model as LP or MPS")
    p.add_argument("--improve-seconds", type=float, default=0.0, metavar="S",
                   help="kv_schedule with branch-and-bound or an aggregated* formulation: seconds of ILS + MIP-LNS "
                        "on the incumbent (solvers/kv_schedule_improve.py), charged to the time limit (default 0)")
    add_output_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    check_solver_options(args)
    module, instance, _ = read_instance(args.file)
    options = {"rel_gap": args.rel_gap, "solver": args.solver, "formulation": args.formulation, "export": args.export,
               "explain": True}  # pd_placement: per-bucket view, binding constraints, alternatives
    if args.improve_seconds:
        from servopt.errors import InputError

        if not 0 < args.improve_seconds < args.time_limit:
            raise InputError("--improve-seconds", "must be positive and below --time-limit")
        if getattr(module, "KIND", None) != "kv_schedule":
            raise InputError("--improve-seconds", f"only kv_schedule instances have an improvement heuristic, not {module.KIND}")
        options["improve_seconds"] = args.improve_seconds
    with progress(f"solving {args.file} ({module.KIND})", args.time_limit, quiet=args.quiet):
        result = module.solve(instance, time_limit_s=args.time_limit, options=options)
    emit(result, module, args)
    return 0
