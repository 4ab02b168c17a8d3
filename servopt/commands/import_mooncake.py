"""``servopt import mooncake TRACE.jsonl --capacity-blocks C [--limit N] --out FILE``: an eviction instance.

Registers the ``import`` command (or joins it, when another module already made it) with the
sub-command ``mooncake``. The reader is ``servopt.instances.eviction.load_mooncake``.
"""
from __future__ import annotations


def register(subparsers) -> None:
    from servopt.commands._common import import_subparsers

    sub = import_subparsers(subparsers)
    p = sub.add_parser("mooncake", help="a Mooncake trace (JSONL with hash_ids) -> eviction instance JSON")
    p.add_argument("trace", help="Mooncake JSONL: timestamp (ms), input_length, output_length, hash_ids")
    p.add_argument("--capacity-blocks", type=int, required=True, metavar="C", help="blocks one cache holds")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="keep the first N requests")
    p.add_argument("--block-tokens", type=int, default=512, help="tokens per hash id (Mooncake: 512)")
    p.add_argument("--objective", choices=("hit_blocks", "saved_prefill_ms"), default="hit_blocks")
    p.add_argument("--llm", default=None, help="catalog LLM (needed for saved_prefill_ms)")
    p.add_argument("--gpu", default=None, help="catalog GPU (needed for saved_prefill_ms)")
    p.add_argument("--tp", type=int, default=1, help="tensor-parallel degree (default 1)")
    p.add_argument("--out", required=True, metavar="FILE", help="instance JSON to write")
    p.set_defaults(func=run)


def run(args) -> int:
    from servopt import jsonio
    from servopt.instances.eviction import load_mooncake
    from servopt.kinds import eviction

    data = load_mooncake(args.trace, capacity_blocks=args.capacity_blocks, limit=args.limit,
                         block_tokens=args.block_tokens, objective=args.objective, llm=args.llm, gpu=args.gpu,
                         tp=args.tp)
    inst = eviction.load(data)  # the same checks as any instance file
    jsonio.write_json(data, args.out)
    lookups = sum(len(r.hash_ids) for r in inst.requests)
    print(f"wrote {args.out}: {inst.n} requests, {lookups} block lookups, capacity {inst.capacity_blocks} blocks")
    return 0
