"""``servopt compare INSTANCE --policies a,b --time-limit S``: online policies vs the hindsight optimum.

Prints, per policy, its cost, the ratio to the solver's incumbent and the ratio to its dual bound:
the interval [ALG/incumbent, ALG/bound] that contains ALG/OPT (equal ends once OPT is proven).
"""
from __future__ import annotations

import sys

from servopt.commands._common import add_solver_options, check_solver_options, console, progress, read_instance
from servopt.errors import InputError

DEFAULT_KV_POLICIES = "fcfs,mc-sf,vllm,sjf,alpha-threshold,a-min"


def register(subparsers) -> None:
    p = subparsers.add_parser("compare", help="online policies vs the offline optimum, with the bound interval")
    p.add_argument("instance", help="instance JSON file (kind kv_schedule)")
    p.add_argument("--policies", default=None,
                   help="comma-separated policy names (default: all of the kind's policies; routing: routers, "
                        "ROUTER or ROUTER/KV_POLICY)")
    add_solver_options(p)
    p.add_argument("--out", metavar="COMPARE.json", help="write the comparison JSON to this file")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--quiet", action="store_true", help="no progress line on stderr")
    p.set_defaults(func=run)


def run(args) -> int:
    from servopt import jsonio

    check_solver_options(args)
    module, instance, _ = read_instance(args.instance)
    names = args.policies if args.policies is not None else getattr(module, "DEFAULT_POLICIES", DEFAULT_KV_POLICIES)
    policies = [p.strip() for p in names.split(",") if p.strip()]
    if not policies:
        raise InputError("--policies", "name at least one policy")
    if not hasattr(module, "compare"):
        raise InputError("kind", f"'{module.KIND}' instances have no online policies to compare")
    with progress(f"comparing {len(policies)} policies with the optimum of {args.instance}", args.time_limit,
                  quiet=args.quiet):
        try:
            result = module.compare(instance, policies=policies, time_limit_s=args.time_limit,
                                    options={"rel_gap": args.rel_gap, "formulation": args.formulation})
        except InputError as exc:
            # the kinds name their own flags (simulate's --policy, --router, --eviction): say the one typed here
            if exc.field in ("--policy", "--scheduler", "--router", "--eviction", "policy", "scheduler", "router", "eviction"):
                raise InputError("--policies", exc.message) from None
            raise
    if args.out:
        jsonio.write_json(result, args.out)
    if args.json:
        sys.stdout.write(jsonio.dumps(result) + "\n")
    else:
        module.render_comparison(result, console())
        if args.out:
            print(f"wrote {args.out}")
    return 0
