"""``servopt cost``: one engine iteration's time, work and bound from the roofline cost model.

``--prefill LEN`` (or ``LEN@CTX``: a chunk of LEN new tokens with CTX tokens of its prompt already
cached) adds one prefill chunk; ``--decode BxCTX`` adds B sequences decoding with CTX tokens of
context. With neither, the command describes the replica (memory, KV capacity) only.
"""
from __future__ import annotations

import math
import re

from servopt.errors import InputError

_PREFILL = re.compile(r"^\s*(-?\d+)\s*(?:@\s*(-?\d+)\s*)?$")
_DECODE = re.compile(r"^\s*(-?\d+)\s*[xX*]\s*(-?\d+)\s*$")


def register(subparsers) -> None:
    p = subparsers.add_parser("cost", help="time of one engine iteration (prefill chunks + decode sequences) on a GPU")
    p.add_argument("--llm", required=True, help="LLM name from the catalog (servopt catalog llms)")
    p.add_argument("--gpu", required=True, help="GPU name from the catalog (servopt catalog gpus)")
    p.add_argument("--tp", default="1", help="tensor-parallel degree (default 1)")
    p.add_argument("--profile", metavar="FILE|NAME", help="efficiency profile JSON or shipped name (default: the GPU's)")
    p.add_argument("--prefill", action="append", default=[], metavar="LEN[@CTX]",
                   help="a prefill chunk of LEN tokens (with CTX cached tokens); repeatable")
    p.add_argument("--decode", action="append", default=[], metavar="BxCTX",
                   help="B sequences decoding with CTX tokens of context; repeatable")
    p.add_argument("--memory-fraction", default="0.9", help="GPU memory share for weights+activations+KV (default 0.9)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def parse_prefill(text: str) -> tuple[int, int]:
    m = _PREFILL.match(text)
    if not m:
        raise InputError("--prefill", f"expected LEN or LEN@CTX (e.g. 512 or 256@1024), got '{text}'")
    length, ctx = int(m.group(1)), int(m.group(2) or 0)
    if length < 1:
        raise InputError("--prefill", f"chunk length must be >= 1, got {length}")
    if ctx < 0:
        raise InputError("--prefill", f"cached context must be >= 0, got {ctx}")
    return length, ctx


def parse_decode(text: str) -> tuple[int, int]:
    m = _DECODE.match(text)
    if not m:
        raise InputError("--decode", f"expected BxCTX (e.g. 32x1024), got '{text}'")
    batch, ctx = int(m.group(1)), int(m.group(2))
    if batch < 1:
        raise InputError("--decode", f"batch size must be >= 1, got {batch}")
    if ctx < 0:
        raise InputError("--decode", f"context must be >= 0, got {ctx}")
    return batch, ctx


def _parse_number(text, option: str, kind):
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise InputError(option, f"expected {'an integer' if kind is int else 'a number'}, got '{text}'") from None
    if kind is float and not math.isfinite(value):
        raise InputError(option, f"expected a finite number, got '{text}'")
    return value


def run(args) -> int:
    import sys

    from servopt import jsonio
    from servopt.costmodel.roofline import make_cost_model, resolve_profile

    args.tp = _parse_number(args.tp, "--tp", int)
    if args.tp < 1:
        raise InputError("--tp", f"must be >= 1, got {args.tp}")
    args.memory_fraction = _parse_number(args.memory_fraction, "--memory-fraction", float)
    if not 0 < args.memory_fraction <= 1:
        raise InputError("--memory-fraction", f"must be in (0, 1], got {args.memory_fraction}")
    prefill = [parse_prefill(t) for t in args.prefill]
    decode_groups = [parse_decode(t) for t in args.decode]
    from servopt.instances.catalog import get_gpu, get_llm

    llm, gpu = get_llm(args.llm, field="--llm"), get_gpu(args.gpu, field="--gpu")
    if llm.num_heads % args.tp:
        raise InputError("--tp", f"{llm.name} has {llm.num_heads} attention heads, not divisible by tp={args.tp}")
    try:
        profile = resolve_profile(args.profile, gpu.name)
    except InputError as exc:
        if exc.field != "profile":
            raise
        raise InputError("--profile", exc.message) from None
    cm = make_cost_model(llm, gpu, tp=args.tp, profile=profile)
    cm.check_fits()
    decode = [ctx for batch, ctx in decode_groups for _ in range(batch)]
    replica = cm.describe()
    replica["kv_capacity_tokens"] = cm.kv_capacity_tokens(args.memory_fraction)
    replica["memory_fraction"] = args.memory_fraction
    if prefill or decode:
        result = cm.iteration(prefill=prefill, decode=decode).to_dict()
        result["replica"] = replica
    else:
        result = {"llm": cm.llm.name, "gpu": cm.gpu.name, "tp": cm.tp, "profile": cm.profile.name, "replica": replica}
    if args.json:
        sys.stdout.write(jsonio.dumps(result) + "\n")
        return 0
    _render(result)
    return 0


def _render(result: dict) -> None:
    from rich.table import Table

    from servopt.commands._common import console

    out = console()
    rep = result["replica"]
    out.print(f"{result['llm']} on {result['tp']} x {result['gpu']} (profile {result['profile']}): "
              f"weights {rep['weight_bytes_per_gpu'] / 2**30:.2f} GiB/GPU, KV {rep['kv_bytes_per_token'] / 1024:g} KiB/token, "
              f"KV capacity {rep['kv_capacity_tokens']:,} tokens at memory fraction {rep['memory_fraction']:g}")
    if "iteration_ms" not in result:
        return
    table = Table(title=f"iteration: {result['iteration_ms']:.3f} ms, {result['bound']}-bound")
    for col in ("operator", "GFLOP", "MB (HBM)", "MB (comm)", "compute ms", "memory ms", "comm ms", "time ms", "bound"):
        table.add_column(col, justify="left" if col in ("operator", "bound") else "right")
    for op in result["operators"]:
        table.add_row(op["name"], f"{op['flops'] / 1e9:,.1f}", f"{op['bytes'] / 1e6:,.1f}", f"{op['comm_bytes'] / 1e6:,.1f}",
                      f"{op['compute_ms']:.3f}", f"{op['memory_ms']:.3f}", f"{op['comm_ms']:.3f}", f"{op['time_ms']:.3f}", op["bound"])
    table.add_row("total (per GPU)", f"{result['flops'] / 1e9:,.1f}", f"{result['bytes'] / 1e6:,.1f}",
                  f"{result['comm_bytes'] / 1e6:,.1f}", "", "", "", f"{result['iteration_ms']:.3f}", result["bound"])
    out.print(table)
