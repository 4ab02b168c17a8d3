"""``servopt simulate TRACE --llm NAME --gpu NAME [...]``: run a request trace through the serving simulator.

TRACE is a trace file (Azure CSV, Mooncake JSONL, a length table with ``--rate``, a plain
``arrival_s,prompt_tokens,output_tokens[,id]`` CSV, Vidur's trace CSV or our JSON; see
``instances/traces.py``) or an instance of a kind with online policies (``kv_schedule``), which is
handed to that kind's ``simulate(instance, policy=..., options=...)`` with ``--policy`` and
``--param``. ``--policy`` and ``--scheduler`` are one option.

Costs: the roofline GPU cost model for ``--llm/--gpu/--tp`` with its default (or ``--profile``)
efficiency profile; ``--vidur-profiles DIR`` uses Vidur's operator CSVs instead (files named
``*mlp*.csv``, ``*attention*.csv``, ``*all_reduce*.csv`` in DIR); ``--cost unit`` makes every
iteration one time unit. ``--kv-tokens`` overrides the KV capacity per replica (default: the cost
model's at ``--memory-fraction``).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from servopt.commands._common import add_output_options
from servopt.errors import InputError


def register(subparsers) -> None:
    p = subparsers.add_parser("simulate", help="simulate serving a request trace (or run an online policy on an instance)")
    p.add_argument("file", metavar="TRACE", nargs="?", help="trace file, or an instance JSON of a kind with online policies")
    p.add_argument("--llm", help="LLM name from the catalog")
    p.add_argument("--gpu", help="GPU name from the catalog")
    p.add_argument("--tp", type=int, default=1, help="tensor-parallel degree per replica (default 1)")
    p.add_argument("--replicas", type=int, default=1, help="number of replicas (default 1)")
    p.add_argument("--router", default="round_robin", help="router policy (default round_robin)")
    p.add_argument("--scheduler", "--policy", dest="scheduler", default=None,
                   help="replica scheduler (traces, default sarathi) or policy (kv_schedule instances)")
    p.add_argument("--token-budget", type=int, default=None, help="tokens per iteration (Sarathi chunk size; default 512)")
    p.add_argument("--max-batch", type=int, default=None, help="sequences per batch (default 128)")
    p.add_argument("--kv-tokens", type=int, default=None, help="KV capacity per replica in tokens (overrides the cost model)")
    p.add_argument("--block-size", type=int, default=16, help="KV block size in tokens (default 16)")
    p.add_argument("--memory-fraction", type=float, default=0.9, help="GPU memory share for weights+KV (default 0.9)")
    p.add_argument("--profile", metavar="FILE|NAME", help="cost-model efficiency profile (default: the GPU's)")
    p.add_argument("--vidur-profiles", metavar="DIR", help="use Vidur operator CSVs in DIR as the cost model")
    p.add_argument("--cost", choices=("roofline", "vidur", "unit"), default=None, help="cost model kind (default roofline)")
    p.add_argument("--preempt", choices=("recompute", "swap", "restart"), default=None, help="preemption mode (default recompute)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="extra scheduler option (repeatable)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="policy parameter (kv_schedule instances)")
    p.add_argument("--router-weights", metavar="W1,W2,...", help="weights for the weighted_rr router")
    p.add_argument("--eviction", default=None, help="turn the prefix cache on with this eviction policy (--list-policies; optimum_replay and belady_tree read the whole trace)")
    p.add_argument("--prefix-block-tokens", type=int, default=512, help="tokens per prefix hash id (Mooncake: 512)")
    p.add_argument("--pd", metavar="P:D", help="prefill/decode disaggregation: P prefill and D decode replicas")
    p.add_argument("--link-gb-per-s", type=float, default=25.0, help="KV transfer bandwidth per prefill replica (default 25 GB/s)")
    p.add_argument("--decode-router", default="jsq", help="router into the decode pool under --pd (default jsq)")
    p.add_argument("--trace-format", default=None, help="force the trace format (azure, mooncake, lengths, csv, vidur, json)")
    p.add_argument("--arrivals", default=None, help="trace (default when the file has times), poisson or gamma")
    p.add_argument("--rate", type=float, default=None, help="arrival rate in requests/s for poisson/gamma arrivals")
    p.add_argument("--cv", type=float, default=1.0, help="coefficient of variation of gamma inter-arrivals (default 1)")
    p.add_argument("--limit", type=int, default=None, help="simulate only the first N requests")
    p.add_argument("--repeat", action="store_true", help="cycle the trace's lengths until --limit requests")
    p.add_argument("--seed", type=int, default=0, help="seed for synthetic arrivals and random routers (default 0)")
    p.add_argument("--slo-ttft-ms", type=float, default=None, help="TTFT target for goodput")
    p.add_argument("--slo-tpot-ms", type=float, default=None, help="TPOT target for goodput")
    p.add_argument("--requests-out", metavar="FILE.csv", help="write the per-request metrics as CSV")
    p.add_argument("--drop-unservable", action="store_true", help="report requests that cannot fit an empty replica instead of failing")
    p.add_argument("--check", action="store_true", help="log iterations and re-check the run independently (slower)")
    p.add_argument("--list-policies", action="store_true", help="list schedulers, routers and eviction policies and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_output_options(p)
    p.set_defaults(func=run)


def _kv(items: list[str], flag: str) -> dict:
    out = {}
    for item in items:
        if "=" not in item:
            raise InputError(flag, f"expected KEY=VALUE, got '{item}'")
        key, raw = item.split("=", 1)
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def _positive(value, flag, minimum=1):
    if value is not None and value < minimum:
        raise InputError(flag, f"must be >= {minimum}, got {value}")


def _list_policies() -> int:
    from servopt.simulator import registry

    for kind in ("scheduler", "router", "eviction"):
        print(f"{kind}s:")
        for name, doc in registry.describe(kind):
            print(f"  {name:16s} {doc}")
    # the round-model policies of kv_schedule instances (servopt simulate INSTANCE --policy, servopt compare
    # --policies) share the schedulers' spellings: mc-sf, a-min (aliases accepted)
    import importlib

    from servopt.simulator.kv_rounds import available_policies

    print("kv_schedule policies (round model):")
    for name in available_policies():
        mod = importlib.import_module("servopt.simulator.kv_policy_" + name.replace("-", "_"))
        doc = (mod.__doc__ or "").strip().splitlines()[0] if mod.__doc__ else ""
        aliases = f" (also: {', '.join(mod.ALIASES)})" if getattr(mod, "ALIASES", ()) else ""
        print(f"  {name:16s} {doc}{aliases}")
    from servopt.simulator.batching_policies import POLICIES as BATCHING_POLICIES

    print("batching policies (iteration model; --param token_budget= for sarathi, sjf, srpt):")
    print("  " + ", ".join(BATCHING_POLICIES))
    return 0


def _instance_kind(path: str):
    """The kind module if ``path`` is an instance JSON with a ``kind``; None for traces."""
    if not path.lower().endswith(".json"):
        return None
    from servopt import jsonio

    data = jsonio.read_json(path)
    if isinstance(data, dict) and "kind" in data:
        return data
    return None


def _run_instance(args, data) -> int:
    from servopt import kinds
    from servopt.commands._common import emit

    module = kinds.get(data.get("kind"))
    if "layers" in data and callable(getattr(module, "simulate_result", None)):  # a result: simulate its plan
        result = module.simulate_result(data, options=_kv(args.param, "--param"))
        emit(result, module, args)
        return 0
    module, instance = kinds.load_instance(data)
    if not callable(getattr(module, "simulate", None)):
        raise InputError("kind", f"'{module.KIND}' instances have no online policies to simulate")
    routed = getattr(module, "ROUTED", False)  # kinds whose simulate also takes --router (routing)
    policy = args.scheduler or args.eviction  # eviction instances may name their policy with --eviction
    if not policy and not routed:
        raise InputError("--policy", f"required for {module.KIND} instances")
    extra = {"router": args.router} if routed else {}
    result = module.simulate(instance, policy=policy, options=_kv(args.param, "--param"), **extra)
    emit(result, module, args)
    return 0


def _vidur_cost(directory: str, llm, tp: int):
    from servopt.costmodel.vidur_import import load_vidur_profiles

    d = Path(directory)
    if not d.is_dir():
        raise InputError("--vidur-profiles", f"not a directory: {directory}")

    def one(pattern, required=True):
        found = sorted(d.glob(pattern))
        if not found and required:
            raise InputError("--vidur-profiles", f"no file matching '{pattern}' in {directory}")
        return str(found[0]) if found else None

    return load_vidur_profiles(one("*mlp*.csv"), one("*attention*.csv"), one("*all_reduce*.csv", required=False),
                               num_layers=llm.num_layers, hidden_size=llm.hidden_size, tp=tp,
                               num_kv_heads=llm.num_kv_heads, head_dim=llm.head_dim, dtype_bytes=llm.dtype_bytes)


def run(args) -> int:
    if args.list_policies:
        return _list_policies()
    if not args.file:
        raise InputError("TRACE", "a trace file (or instance) is required")
    if not Path(args.file).exists():
        raise InputError(args.file, "file not found")
    data = _instance_kind(args.file)
    if data is not None:
        return _run_instance(args, data)

    from servopt.analysis.sim_check import check_run
    from servopt.analysis.sim_metrics import summarize
    from servopt.instances import traces
    from servopt.simulator import registry
    from servopt.simulator.engine import SimConfig, simulate
    from servopt.simulator.timing import UnitTimer

    for flag, value in (("--tp", args.tp), ("--replicas", args.replicas), ("--token-budget", args.token_budget),
                        ("--max-batch", args.max_batch), ("--kv-tokens", args.kv_tokens), ("--block-size", args.block_size),
                        ("--limit", args.limit), ("--prefix-block-tokens", args.prefix_block_tokens)):
        _positive(value, flag)
    if not 0 < args.memory_fraction <= 1:
        raise InputError("--memory-fraction", f"must be in (0, 1], got {args.memory_fraction}")
    scheduler = args.scheduler or "sarathi"
    registry.get("scheduler", scheduler, "--scheduler")
    registry.get("router", args.router, "--router")
    if args.eviction:
        registry.get("eviction", args.eviction, "--eviction")
    pd = None
    if args.pd:
        try:
            p_, d_ = (int(x) for x in args.pd.split(":"))
        except ValueError:
            raise InputError("--pd", f"expected P:D (two integers), got '{args.pd}'") from None
        pd = (p_, d_)
        registry.get("router", args.decode_router, "--decode-router")

    cost_kind = args.cost or ("vidur" if args.vidur_profiles else "roofline")
    kv_bytes = 0.0
    kv_tokens = args.kv_tokens
    if cost_kind == "unit":
        cost = UnitTimer(prefill_cost=True)
        if kv_tokens is None:
            raise InputError("--kv-tokens", "required with --cost unit")
    else:
        if not args.llm or not args.gpu:
            raise InputError("--llm" if not args.llm else "--gpu", "required (or use --cost unit)")
        from servopt.costmodel.roofline import make_cost_model

        cm = make_cost_model(args.llm, args.gpu, args.tp, args.profile)
        kv_bytes = float(cm.kv_bytes_per_token())
        if kv_tokens is None:
            kv_tokens = int(cm.kv_capacity_tokens(args.memory_fraction))
            if kv_tokens < args.block_size:
                raise InputError("--tp", f"{args.llm} on {args.tp} x {args.gpu} leaves no memory for KV; raise --tp or pass --kv-tokens")
        if cost_kind == "vidur":
            if not args.vidur_profiles:
                raise InputError("--vidur-profiles", "required with --cost vidur")
            cost = _vidur_cost(args.vidur_profiles, cm.llm, args.tp)
        else:
            cost = cm

    sched_opts = _kv(args.option, "--option")
    if args.token_budget is not None:
        sched_opts["token_budget"] = args.token_budget
    if args.max_batch is not None:
        sched_opts["max_batch"] = args.max_batch
    if args.preempt is not None:
        sched_opts["preempt_mode"] = args.preempt
    router_opts = {}
    if args.router_weights:
        try:
            router_opts["weights"] = [float(x) for x in args.router_weights.split(",")]
        except ValueError:
            raise InputError("--router-weights", f"expected comma-separated numbers, got '{args.router_weights}'") from None
    config = SimConfig(kv_tokens=kv_tokens, replicas=args.replicas, scheduler=scheduler, scheduler_options=sched_opts,
                       router=args.router, router_options=router_opts, block_size=args.block_size, eviction=args.eviction,
                       prefix_block_tokens=args.prefix_block_tokens, kv_bytes_per_token=kv_bytes, pd=pd,
                       link_gb_per_s=args.link_gb_per_s, decode_router=args.decode_router, seed=args.seed,
                       unservable="drop" if args.drop_unservable else "error", log_iterations=args.check)
    trace_opts = dict(fmt=args.trace_format, arrivals=args.arrivals, rate=args.rate, cv=args.cv, seed=args.seed,
                      limit=args.limit, repeat=args.repeat)
    if args.repeat and args.limit is None:
        raise InputError("--repeat", "needs --limit (how many requests to draw)")
    requests = traces.iter_trace(args.file, **trace_opts)
    keep = list(requests) if args.check else None
    stream = keep if keep is not None else requests

    progress = None
    bar = None
    if not args.no_progress and not args.json and sys.stderr.isatty():
        from rich.progress import Progress

        bar = Progress(transient=True)
        task = bar.add_task("simulating", total=args.limit)
        bar.start()

        def progress(done):
            bar.update(task, completed=done)
    try:
        result = simulate(stream, cost, config, progress=progress)
    finally:
        if bar is not None:
            bar.stop()
    summary = summarize(result, slo_ttft_s=args.slo_ttft_ms / 1000 if args.slo_ttft_ms else None,
                        slo_tpot_s=args.slo_tpot_ms / 1000 if args.slo_tpot_ms else None)
    summary.update({"kind": "simulation", "trace": str(args.file), "llm": args.llm, "gpu": args.gpu, "tp": args.tp,
                    "scheduler": scheduler, "router": args.router, "cost_model": cost_kind, "kv_tokens": kv_tokens,
                    "block_size": args.block_size})
    if args.check:
        violations = check_run(result, keep)
        summary["check"] = {"violations": violations}
    if args.out:
        from servopt import jsonio

        full = dict(summary)
        df = result.to_dataframe()
        full["requests_table"] = json.loads(df.to_json(orient="records"))
        if result.unserved:
            full["unserved_ids"] = [str(x) for x in result.unserved]
        jsonio.write_json(full, args.out)
    if args.requests_out:
        result.to_dataframe().to_csv(args.requests_out, index=False)
    if args.json:
        from servopt import jsonio

        sys.stdout.write(jsonio.dumps(summary) + "\n")
    else:
        _render(summary)
    if args.check and summary["check"]["violations"]:
        for v in summary["check"]["violations"][:10]:
            print(f"violation: {v}", file=sys.stderr)
        return 1
    return 0


def _render(s: dict) -> None:
    from rich.table import Table

    from servopt.commands._common import console

    t = Table(title=f"simulate {s['trace']}: {s['scheduler']} / {s['router']}, {len(s['replicas'])} replica(s), {s['cost_model']} costs")
    for col in ("metric", "p50", "p90", "p99", "mean"):
        t.add_column(col, justify="right" if col != "metric" else "left")
    for key in ("ttft_s", "tpot_s", "e2e_s"):
        v = s[key]
        t.add_row(key, *[("-" if v[q] is None else f"{v[q]:.4g}") for q in ("p50", "p90", "p99", "mean")])
    c = console()
    c.print(t)
    thr = s["throughput"]
    lines = [f"requests {s['requests']} (unserved {s['unserved']}), makespan {s['makespan_s']:.4g} s, preemptions {s['preemptions']}",
             f"throughput {thr['requests_per_s'] or 0:.4g} req/s, {thr['output_tokens_per_s'] or 0:.4g} output tok/s; "
             f"KV utilisation mean {s['kv_utilization']['mean'] or 0:.1%}, peak {s['kv_utilization']['peak'] or 0:.1%}",
             f"simulated in {s['wall_s']:.3f} s wall"]
    if "goodput_requests_per_s" in s:
        lines.append(f"goodput {s['goodput_requests_per_s'] or 0:.4g} req/s, SLO attainment {s['slo_attainment']:.1%}")
    if "prefix_cache" in s:
        lines.append(f"prefix cache hit ratio {s['prefix_cache']['hit_ratio']:.1%}, evictions {s['prefix_cache']['evictions']}")
    if "check" in s:
        lines.append("check: " + ("ok" if not s["check"]["violations"] else f"{len(s['check']['violations'])} violation(s)"))
    for line in lines:
        c.print(line)
