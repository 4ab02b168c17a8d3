"""``servopt explain RESULT.json``: what a result does and why, for any kind.

pd_placement: per bucket the serving configurations with predicted TTFT/TPOT against the SLO, the
binding constraints, the alternatives beside the optimum (single GPU types, other serving modes)
and, for max_goodput, the unserved buckets and their cost. layer_placement: pipelines, depth,
bottleneck nodes and links. kv_schedule (a solve or a compare result, with ``--instance``): where
the online policies lose against the optimum, request by request. Other kinds: a summary.
"""
from __future__ import annotations

import sys

from servopt.commands._common import console


def register(subparsers) -> None:
    p = subparsers.add_parser("explain", help="explain a result: what the plan does and why, where policies lose")
    p.add_argument("result", help="result JSON written by servopt solve / compare (--out)")
    p.add_argument("--instance", metavar="INSTANCE.json",
                   help="the instance the result was solved on (needed for kv_schedule results, and for pd_placement "
                        "results that carry no explanation)")
    p.add_argument("--policies", default=None, help="kv_schedule: comma-separated online policies to explain "
                                                   "(default: the comparison's, or mc-sf,fcfs,vllm)")
    p.add_argument("--time-limit", type=float, default=10.0, metavar="S",
                   help="seconds for the comparison solves a pd_placement explanation runs (default 10)")
    p.add_argument("--json", action="store_true", help="print the explanation as JSON instead of tables")
    p.set_defaults(func=run)


def run(args) -> int:
    from servopt import jsonio, kinds
    from servopt.analysis.explain import explain, render
    from servopt.errors import InputError

    if not args.time_limit > 0:
        raise InputError("--time-limit", "must be positive")
    result = jsonio.read_json(args.result)
    if not isinstance(result, dict) or "kind" not in result:
        raise InputError(args.result, "not a servopt result (a JSON object with a 'kind')")
    instance = None
    if args.instance:
        module, instance = kinds.load_instance(jsonio.read_json(args.instance))
        base = str(result["kind"]).removesuffix("_comparison")
        if module.KIND != base:
            raise InputError("--instance", f"a {module.KIND} instance cannot explain a {result['kind']} result")
    policies = [p.strip() for p in args.policies.split(",") if p.strip()] if args.policies else None
    expl = explain(result, instance, time_limit_s=args.time_limit, policies=policies)
    if args.json:
        sys.stdout.write(jsonio.dumps(expl) + "\n")
    else:
        render(expl, result, console())
    return 0
