"""``servopt capacities``: requests/s per (GPU, TP, role, request size) under TTFT/TPOT SLOs.

    servopt capacities --llm llama-3.1-8b --ttft-ms 1000 --tpot-ms 50 \\
        [--gpus a10g,l4,a100-80g] [--buckets 250x100,1000x250] [--roles colocated,prefill,decode] \\
        [--tp 1,2,4,8] [--memory-fraction 0.9] [--profile FILE] [--json]

The model (M/D/1 prefill, Little's-law decode, colocated interference) is in
``servopt.costmodel.capacities``; these are the numbers ``pd_placement`` uses when an instance
gives no capacities.
"""
from __future__ import annotations

import sys

DEFAULT_BUCKETS = "250x100,1000x250,4000x500"
ROLES = ("colocated", "prefill", "decode")


def register(subparsers) -> None:
    p = subparsers.add_parser("capacities", help="requests/s per GPU configuration and request size under TTFT/TPOT SLOs")
    p.add_argument("--llm", required=True, help="catalog LLM name (servopt catalog llms)")
    p.add_argument("--ttft-ms", type=float, required=True, metavar="MS", help="mean time-to-first-token bound")
    p.add_argument("--tpot-ms", type=float, required=True, metavar="MS", help="mean time-per-output-token bound")
    p.add_argument("--gpus", default=None, help="comma-separated catalog GPU names (default: every catalog GPU)")
    p.add_argument("--buckets", default=DEFAULT_BUCKETS, metavar="PxO,...",
                   help=f"request sizes, prompt x output tokens (default {DEFAULT_BUCKETS})")
    p.add_argument("--roles", default=",".join(ROLES), help="comma-separated roles (default all three)")
    p.add_argument("--tp", default="1,2,4,8", help="TP degrees to consider where the weights fit (default 1,2,4,8)")
    p.add_argument("--memory-fraction", type=float, default=0.9, help="share of GPU memory for weights + KV (default 0.9)")
    p.add_argument("--profile", default=None, help="cost-model profile (path or shipped name; default per GPU)")
    p.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    p.set_defaults(func=run)


def _csv(text: str, option: str) -> list[str]:
    from servopt.errors import InputError

    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise InputError(option, "expected a comma-separated list")
    return items


def parse_buckets(text: str) -> list[tuple[int, int]]:
    from servopt.errors import InputError

    out = []
    for item in _csv(text, "--buckets"):
        parts = item.lower().split("x")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise InputError("--buckets", f"'{item}': expected PROMPTxOUTPUT with positive integers, e.g. 250x100")
        p, o = int(parts[0]), int(parts[1])
        if p < 1 or o < 1:
            raise InputError("--buckets", f"'{item}': prompt and output tokens must be >= 1")
        out.append((p, o))
    return out


def run(args) -> int:
    from servopt import jsonio
    from servopt.costmodel.capacities import CapacityAssumptions, capacity_table, tp_options_for
    from servopt.errors import InputError
    from servopt.instances.catalog import get_gpu, get_llm, gpus

    for name in ("ttft_ms", "tpot_ms"):
        value = getattr(args, name)
        if not value > 0:
            raise InputError(f"--{name.replace('_', '-')}", f"must be positive, got {value:g}")
    if not 0 < args.memory_fraction <= 1:
        raise InputError("--memory-fraction", f"must be in (0, 1], got {args.memory_fraction:g}")
    llm = get_llm(args.llm, field="--llm").name
    gpu_names = [get_gpu(g, field="--gpus").name for g in _csv(args.gpus, "--gpus")] if args.gpus else [g.name for g in gpus()]
    buckets = parse_buckets(args.buckets)
    roles = _csv(args.roles, "--roles")
    for r in roles:
        if r not in ROLES:
            raise InputError("--roles", f"unknown role '{r}' (known: {', '.join(ROLES)})")
    try:
        tps = tuple(int(t) for t in _csv(args.tp, "--tp"))
    except ValueError:
        raise InputError("--tp", f"expected comma-separated integers, got '{args.tp}'") from None
    if any(t < 1 for t in tps):
        raise InputError("--tp", "TP degrees must be >= 1")
    assumptions = CapacityAssumptions(memory_fraction=args.memory_fraction, tp_options=tps, profile=args.profile)
    fitting = [g for g in gpu_names if tp_options_for(llm, g, assumptions)]
    if not fitting:
        raise InputError("--gpus", f"{llm} weights fit on none of {', '.join(gpu_names)} at TP {', '.join(map(str, tps))}")
    rows = capacity_table(llm, fitting, buckets, ttft_ms=args.ttft_ms, tpot_ms=args.tpot_ms, roles=roles, assumptions=assumptions)
    prices = {g: get_gpu(g).usd_per_hour for g in fitting}
    if args.json:
        out = {"llm": llm, "slo": {"ttft_ms": args.ttft_ms, "tpot_ms": args.tpot_ms}, "memory_fraction": args.memory_fraction,
               "skipped_gpus": [g for g in gpu_names if g not in fitting],
               "rows": [{**r.to_dict(), "usd_per_hour": prices[r.gpu] * r.tp,
                         "requests_per_usd": (r.rps * 3600 / (prices[r.gpu] * r.tp)) if r.rps > 0 else 0.0} for r in rows]}
        sys.stdout.write(jsonio.dumps(out) + "\n")
        return 0
    from rich.table import Table

    from servopt.commands._common import console

    table = Table(title=f"{llm}: requests/s per instance under mean TTFT <= {args.ttft_ms:g} ms, TPOT <= {args.tpot_ms:g} ms "
                        f"(batch at capacity; '-' = SLO not met)")
    for col in ("gpu", "tp", "role", "$/h"):
        table.add_column(col, justify="left" if col in ("gpu", "role") else "right")
    for p, o in buckets:
        table.add_column(f"{p}x{o}", justify="right")
    by_cfg: dict[tuple, dict] = {}
    for r in rows:
        by_cfg.setdefault((r.gpu, r.tp, r.role), {})[(r.prompt_tokens, r.output_tokens)] = r
    for (g, tp, role), cells in by_cfg.items():
        vals = []
        for b in buckets:
            r = cells[b]
            vals.append("-" if r.rps <= 0 else (f"{r.rps:.3g}" + (f" (B={r.batch})" if r.batch else "")))
        table.add_row(g, str(tp), role, f"{prices[g] * tp:.2f}", *vals)
    console().print(table)
    skipped = [g for g in gpu_names if g not in fitting]
    if skipped:
        print(f"skipped (weights do not fit at any TP in {list(tps)}): {', '.join(skipped)}")
    return 0
