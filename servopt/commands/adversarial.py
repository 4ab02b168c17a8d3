"""``servopt adversarial --policy mc-sf --n 8 --out DIR``: search for instances with a large proven ratio.

An evolutionary search (analysis/adversarial.py) over kv_schedule instances of n requests in a space
(``paper``: the support of the paper's synthetic family; ``all_at_zero``; ``free``), scoring each by
the policy's ratio to the optimum proven by the exact branch-and-bound. ``--random K`` also scores K
random instances of the paper's family at the same n, the baseline the search should beat. Writes
``DIR/search.json`` (``servopt plot DIR/search.json`` draws it) and the worst instances as instance
files ``DIR/worst-*.json`` that ``servopt compare FILE --formulation branch-and-bound`` re-solves.
"""
from __future__ import annotations

import sys


def register(subparsers) -> None:
    p = subparsers.add_parser("adversarial", help="search for kv_schedule instances where a policy's proven ratio is large")
    p.add_argument("--policy", default="mc-sf", help="online policy (default mc-sf)")
    p.add_argument("--n", type=int, default=8, help="requests per instance, 2..12 (default 8)")
    p.add_argument("--evaluations", type=int, default=200, help="instances to score in the search (default 200)")
    p.add_argument("--space", default="paper", help="paper, all_at_zero or free (default paper)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--random", type=int, default=0, metavar="K",
                   help="also score K random instances of the paper's family (arrival model --arrivals) as a baseline")
    p.add_argument("--arrivals", default="poisson_fixed_n", help="arrival model of the random baseline (default poisson_fixed_n)")
    p.add_argument("--time-limit", type=float, default=30.0, metavar="S", help="time limit of each exact solve (default 30)")
    p.add_argument("--top", type=int, default=3, help="worst instances to write (default 3)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for search.json and the worst instances")
    p.add_argument("--json", action="store_true", help="print search.json instead of a summary")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from servopt import jsonio
    from servopt.analysis import adversarial as adv
    from servopt.errors import InputError
    from servopt.simulator.kv_rounds import policy_module

    policy_module(args.policy)  # a bad name fails here, in one line
    if not 2 <= args.n <= 12:
        raise InputError("--n", f"must be in 2..12 (optima are proven exactly), got {args.n}")
    if args.space not in adv.SPACES:
        raise InputError("--space", f"must be one of {', '.join(adv.SPACES)}, got '{args.space}'")
    if args.evaluations < 1 or args.random < 0 or args.top < 1:
        raise InputError("--evaluations", "--evaluations and --top must be positive, --random not negative")
    if not args.time_limit > 0:
        raise InputError("--time-limit", "must be positive")
    from servopt.instances.kv_generators import ARRIVAL_MODELS

    if args.arrivals not in ARRIVAL_MODELS or args.arrivals == "poisson":
        raise InputError("--arrivals", "must be all_at_zero or poisson_fixed_n (the baseline fixes n)")
    found = adv.search(args.policy, n=args.n, evaluations=args.evaluations, space=args.space, seed=args.seed,
                       time_limit_s=args.time_limit)
    out = found.to_dict()
    if args.random:
        randoms = adv.random_baseline(args.policy, n=args.n, count=args.random, arrival_model=args.arrivals,
                                      seed=args.seed, time_limit_s=args.time_limit)
        proven = [r.ratio for r in randoms if r.proven]
        out.update(random_count=len(randoms), random_proven=len(proven), random_arrivals=args.arrivals,
                   random_worst=max(proven) if proven else None,
                   random_mean=sum(proven) / len(proven) if proven else None)
    folder = Path(args.out)
    paths = found.save(folder, top=args.top)
    out["saved"] = [p.name for p in paths]
    jsonio.write_json(out, str(folder / "search.json"))
    if args.json:
        sys.stdout.write(jsonio.dumps(out) + "\n")
        return 0
    print(f"{args.policy}, n = {args.n}, space {args.space}: {found.evaluations} instances scored in {found.seconds:.1f} s "
          f"({found.unproven} unproven, skipped); worst proven ratio {found.worst_ratio:.4f}")
    if args.random:
        print(f"random baseline: {out['random_proven']} of {out['random_count']} proven, worst {out['random_worst']:.4f}, "
              f"mean {out['random_mean']:.4f}")
    print(f"wrote {folder / 'search.json'} and {', '.join(out['saved'])}")
    return 0
