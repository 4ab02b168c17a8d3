"""``servopt profile``: time an LLM's iterations on this machine's CUDA GPU and write a profile JSON.

Needs PyTorch (``pip install 'servopt[profile]'``) and a CUDA GPU; it is imported only in ``run``.
The profile holds the raw measurements (``servopt.costmodel.profiling``), the GPU's measured
matmul and copy ceilings and, unless ``--no-fit``, the fitted cost-model parameters
(``servopt.costmodel.calibration``). Nothing is written unless every requested run finished.

Also runnable without the ``servopt`` entry point: ``python -m servopt.commands.profile ...``.
"""
from __future__ import annotations

import sys


def _csv_ints(text: str, option: str) -> list[int]:
    from servopt.errors import InputError

    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(option, f"expected comma-separated integers, got '{text}'") from None
    if not values or any(v < 1 for v in values):
        raise InputError(option, f"expected positive integers, got '{text}'")
    return values


def register(subparsers) -> None:
    p = subparsers.add_parser("profile", help="time an LLM's prefill/decode/mixed iterations on a CUDA GPU (needs torch)")
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(p) -> None:
    p.add_argument("--llm", required=True, metavar="NAME[,NAME...]", help="catalog LLM name(s) (servopt catalog llms)")
    p.add_argument("--tp", default="1", metavar="T[,T...]",
                   help="tensor-parallel degree(s): the per-GPU shard of TP-T is timed on this one GPU (default 1)")
    p.add_argument("--gpu", default=None, help="catalog GPU the profile is for (default: recognised from the device name)")
    p.add_argument("--out", metavar="PROFILE.json", help="where to write the profile (default profile-<gpu>.json)")
    p.add_argument("--grid", default="full", help="shapes to time: full (default), quick, splitwise")
    p.add_argument("--regimes", default=None, metavar="R[,R...]",
                   help="time only these regimes of the grid: prefill, decode, mixed (default all)")
    p.add_argument("--layers", type=int, default=None,
                   help="decoder layers to build (default: all that fit; times are scaled to the full depth)")
    p.add_argument("--scaling-check", type=int, default=0, metavar="N",
                   help="also time every 4th shape with N layers to validate the per-layer scaling")
    p.add_argument("--repeats", type=int, default=15, help="most timed replays per shape (default 15, least 5)")
    p.add_argument("--warmup", type=int, default=2, help="untimed graph replays before timing (default 2)")
    p.add_argument("--no-ceilings", action="store_true", help="skip the matmul and copy ceiling measurements")
    p.add_argument("--attention", default="auto", metavar="IMPL",
                   help="attention kernel: auto (default: FlashAttention, GQA decode packed), flash-packed-gqa, "
                        "flash (decode reads the KV cache once per query head), sdpa-repeat-kv")
    p.add_argument("--no-fit", action="store_true", help="write the measurements only; fit later with servopt costmodel fit")


GPU_NAMES = (("H100 PCIe", "h100-pcie"), ("H100 NVL", "h100-nvl"), ("H100", "h100-sxm"), ("H200", "h200"), ("A100-SXM4-80GB", "a100-80g"), ("A100 80GB", "a100-80g"),
             ("A100", "a100-40g"), ("L40S", "l40s"), ("L4", "l4"), ("A10G", "a10g"))


def gpu_from_device(name: str) -> str:
    """Catalog name for a CUDA device name ('NVIDIA H100 80GB HBM3' -> 'h100-sxm')."""
    for needle, catalog_name in GPU_NAMES:
        if needle.lower() in name.lower():
            return catalog_name
    return name.lower().replace("nvidia ", "").replace(" ", "-")


def run(args) -> int:
    from servopt.costmodel import profiling
    from servopt.errors import InputError
    from servopt.instances.catalog import get_gpu, get_llm

    llms = [get_llm(name.strip(), "--llm") for name in args.llm.split(",") if name.strip()]
    if not llms:
        raise InputError("--llm", "expected at least one LLM name")
    tps = _csv_ints(args.tp, "--tp")
    profiling.require_attention_name(args.attention)
    grid = profiling.get_grid(args.grid)
    if args.regimes:
        wanted = {r.strip() for r in args.regimes.split(",") if r.strip()}
        unknown = sorted(wanted - {"prefill", "decode", "mixed"})
        if unknown or not wanted:
            raise InputError("--regimes", f"expected prefill, decode or mixed, got {args.regimes!r}")
        grid = profiling.ProfileGrid(f"{grid.name}[{','.join(sorted(wanted))}]",
                                     tuple(s for s in grid.shapes if s.regime in wanted))
    if args.repeats < 5:
        raise InputError("--repeats", f"must be >= 5, got {args.repeats}")
    if args.warmup < 0:
        raise InputError("--warmup", f"must be >= 0, got {args.warmup}")
    if args.scaling_check < 0:
        raise InputError("--scaling-check", f"must be >= 0, got {args.scaling_check}")
    if args.gpu is not None:
        get_gpu(args.gpu, "--gpu")
    for llm in llms:
        if args.layers is not None and not 1 <= args.layers <= llm.num_layers:
            raise InputError("--layers", f"must be between 1 and {llm.num_layers} for {llm.name}, got {args.layers}")
        for tp in tps:
            profiling.shard(llm, tp)
    torch = profiling.require_cuda()
    if args.gpu is None:
        device = torch.cuda.get_device_name(0)
        try:
            gpu = get_gpu(gpu_from_device(device), "--gpu").name
        except InputError:
            raise InputError("--gpu", f"device '{device}' is not a catalog GPU; name the closest with --gpu") from None
    else:
        gpu = get_gpu(args.gpu, "--gpu").name
    out = args.out or f"profile-{gpu}.json"
    fit = None
    if not args.no_fit:
        from servopt.costmodel import calibration

        def fit(profile: dict) -> dict:
            return calibration.fit_profile_dict(profile).to_dict()
    command = "servopt profile " + " ".join(sys.argv[2:] if sys.argv[1:2] == ["profile"] else sys.argv[1:])
    profile = profiling.run_profile(llms, tps, gpu=gpu, grid=grid, layers=args.layers, out=out,
                                    warmup=args.warmup, max_repeats=args.repeats,
                                    scaling_check_layers=args.scaling_check, ceilings=not args.no_ceilings,
                                    command=command, fit=fit, attention=args.attention)
    n = sum(len(r["points"]) for r in profile["runs"])
    print(f"wrote {out}: {n} timed shapes over {len(profile['runs'])} run(s) in {profile['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    import argparse

    from servopt.errors import ServoptError

    parser = argparse.ArgumentParser(prog="python -m servopt.commands.profile")
    add_arguments(parser)
    try:
        sys.exit(run(parser.parse_args()))
    except ServoptError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
