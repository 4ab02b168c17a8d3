"""Prefix-cache eviction on Mooncake traces: policies against the offline optimum, and the saved-ms bound.

    python benchmarks/eviction.py --trace conversation=PATH/conversation_trace.jsonl \
        --trace synthetic=PATH/synthetic_trace.jsonl [--capacities 1000,5000,20000]

Without ``--trace`` it runs on the slices shipped in ``instances/data/`` (1,000 and 500 requests).
Writes ``benchmarks/results/eviction.json`` and ``.md`` (``--out-prefix`` to change).

Part A, per trace x capacity: the exact optimum of the base model (Belady with bypass,
solvers/eviction_belady.py) and every eviction policy replayed under the engines' demand semantics
(simulator/eviction_replay.py): hit blocks, hit ratio, share of the optimum, and the prefill ms those
hits save (llama-3.1-8b on one H100, roofline cost model, models/eviction.saved_ms_per_depth).

Part B, per trace x capacity, objective ``saved_prefill_ms``: the LP relaxation of the keep-interval
program (an upper bound), the best plan found (Belady's, or the LP-rounded plan), and the interval's
width. Part C: the MILP on 500-request slices (proven optimal or not within the time limit).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import time
from importlib import resources
from pathlib import Path

LLM, GPU = "llama-3.1-8b", "h100"
POLICIES = ("lru", "lru_sglang", "lfu", "fifo", "gdsf", "tlru", "rlt", "belady_tree")


def _load(path: Path, capacity: int, objective: str = "hit_blocks", limit=None, offset: int = 0):
    from servopt.instances.eviction import load_mooncake
    from servopt.kinds import eviction

    data = load_mooncake(path, capacity_blocks=capacity, objective=objective, llm=LLM, gpu=GPU,
                         limit=None if limit is None else offset + limit)
    if offset:
        data["requests"] = data["requests"][offset:]
    return eviction.load(data)


def part_a(name, path, capacities, weights_cache):
    from servopt.kinds import eviction as kind
    from servopt.models.eviction import saved_ms_per_depth

    rows = []
    for C in capacities:
        inst = _load(path, C)
        if name not in weights_cache:
            from dataclasses import replace

            weights_cache[name] = saved_ms_per_depth(replace(inst, llm=LLM, gpu=GPU),
                                                     max(len(r.hash_ids) for r in inst.requests))
        w = weights_cache[name]
        opt = kind.solve(inst, time_limit_s=60)
        opt_ms = sum(sum(w[:row["hit_blocks"]]) for row in opt["requests"])
        rows.append({"trace": name, "capacity_blocks": C, "policy": "optimum (belady-bypass)", "hit_blocks": opt["hit_blocks"],
                     "hit_ratio": opt["hit_ratio"], "share_of_optimum": 1.0, "saved_prefill_ms": opt_ms,
                     "seconds": opt["solve_seconds"]})
        for pol in POLICIES:
            res = kind.simulate(inst, policy=pol)
            ms = sum(sum(w[:row["hit_blocks"]]) for row in res["requests"])
            rows.append({"trace": name, "capacity_blocks": C, "policy": pol, "hit_blocks": res["hit_blocks"],
                         "hit_ratio": res["hit_ratio"], "share_of_optimum": res["hit_blocks"] / opt["hit_blocks"],
                         "saved_prefill_ms": ms, "seconds": res["solve_seconds"]})
        print(f"A {name} C={C}: optimum {opt['hit_blocks']} ({opt['hit_ratio']:.3f}) in {opt['solve_seconds']:.2f} s; "
              + ", ".join(f"{r['policy']} {r['share_of_optimum']:.3f}" for r in rows[-len(POLICIES):]), flush=True)
    return rows


def part_b(name, path, capacities, time_limit_s, rel_gap):
    from servopt.kinds import eviction as kind

    rows = []
    for C in capacities:
        inst = _load(path, C, "saved_prefill_ms")
        t0 = time.perf_counter()
        res = kind.solve(inst, time_limit_s=time_limit_s, options={"rel_gap": rel_gap})
        best_policy = max(kind.simulate(inst, policy=p)["objective"] for p in POLICIES if p != "belady_tree")
        width = (res["bound"] - res["objective"]) / res["objective"] if res["bound"] else None
        rows.append({"trace": name, "capacity_blocks": C, "status": res["status"], "best_plan_ms": res["objective"], "best_plan_from": res["incumbent_from"],
                     "lp_bound_ms": res["bound"], "interval_width": width, "best_online_policy_ms": best_policy,
                     "intervals": res["intervals"], "lp_seconds": res["lp_seconds"], "seconds": time.perf_counter() - t0})
        print(f"B {name} C={C}: plan {res['objective']:.0f} ({res['incumbent_from']}), LP bound {res['bound']:.0f}, "
              f"width {100 * width:.2f} %, best online policy {best_policy:.0f}, {rows[-1]['seconds']:.1f} s", flush=True)
    return rows


def part_c(name, path, slices, capacity, time_limit_s):
    from servopt.kinds import eviction as kind

    rows = []
    n_lines = sum(1 for line in Path(path).read_text().splitlines() if line.strip())
    for offset in slices:
        if offset + 500 > n_lines:
            continue
        inst = _load(path, capacity, "saved_prefill_ms", limit=500, offset=offset)
        res = kind.solve(inst, time_limit_s=time_limit_s, options={"rel_gap": 1e-4})
        bel = kind.solve(inst, time_limit_s=time_limit_s, options={"formulation": "belady"})
        rows.append({"trace": name, "first_request": offset, "requests": inst.n, "capacity_blocks": capacity,
                     "status": res["status"], "objective_ms": res["objective"], "bound_ms": res["bound"], "gap": res["gap"],
                     "belady_ms": bel["objective"], "incumbent_from": res["incumbent_from"], "seconds": res["solve_seconds"]})
        print(f"C {name} [{offset}, {offset + 500}) C={capacity}: {res['status']} {res['objective']:.1f} ms "
              f"(bound {res['bound']:.1f}, Belady {bel['objective']:.1f}) in {res['solve_seconds']:.1f} s", flush=True)
    return rows


def isolated_ttft_ms(inst, hits, cm) -> list[float]:
    """Each request's prefill alone (no queue): its uncached tokens as one chunk after its cached prefix."""
    out = []
    B = inst.block_tokens
    for r, h in zip(inst.requests, hits):
        c = min(h * B, r.input_tokens - 1)
        p = r.input_tokens - c
        out.append(float(cm.iteration_ms_totals(prefill_tokens=p, prefill_attention_pairs=p * c + p * (p + 1) / 2,
                                                prefill_context_tokens=c, sampled_seqs=1)))
    return out


def part_d(path: Path, rate: float, limit: int):
    """TTFT: the serving simulator with each online policy (Poisson arrivals at ``rate``), and the
    isolated prefill time of every request under each plan, the optimum's included."""
    import numpy as np

    from servopt.analysis.sim_metrics import summarize
    from servopt.costmodel.roofline import make_cost_model
    from servopt.instances import traces
    from servopt.kinds import eviction as kind
    from servopt.simulator.engine import SimConfig, simulate

    cm = make_cost_model(LLM, GPU, 1)
    kv_tokens = int(cm.kv_capacity_tokens(0.9))
    C = kv_tokens // 512
    rows = []
    for pol in (None,) + tuple(p for p in POLICIES if p != "belady_tree"):
        config = SimConfig(kv_tokens=kv_tokens, eviction=pol, prefix_block_tokens=512, seed=0)
        reqs = traces.iter_trace(str(path), arrivals="poisson", rate=rate, seed=0, limit=limit)
        s = summarize(simulate(reqs, cm, config))
        rows.append({"policy": pol or "no prefix cache", "where": "serving simulator", "rate_per_s": rate,
                     "ttft_mean_s": s["ttft_s"]["mean"], "ttft_p50_s": s["ttft_s"]["p50"], "ttft_p90_s": s["ttft_s"]["p90"],
                     "hit_ratio": (s.get("prefix_cache") or {}).get("hit_ratio", 0.0)})
        print(f"D sim {rows[-1]['policy']}: TTFT mean {rows[-1]['ttft_mean_s']:.2f} s, p90 {rows[-1]['ttft_p90_s']:.2f} s, "
              f"hit ratio {rows[-1]['hit_ratio']:.3f}", flush=True)
    inst = _load(path, C, limit=limit)
    plans = {"optimum (belady-bypass)": kind.solve(inst, time_limit_s=60)}
    plans.update({p: kind.simulate(inst, policy=p) for p in POLICIES})
    for name, res in plans.items():
        t = np.array(isolated_ttft_ms(inst, [row["hit_blocks"] for row in res["requests"]], cm)) / 1000
        rows.append({"policy": name, "where": f"isolated prefill, C = {C}", "rate_per_s": None, "ttft_mean_s": float(t.mean()),
                     "ttft_p50_s": float(np.percentile(t, 50)), "ttft_p90_s": float(np.percentile(t, 90)),
                     "hit_ratio": res["hit_ratio"]})
        print(f"D isolated {name}: mean {t.mean():.3f} s, p90 {np.percentile(t, 90):.3f} s", flush=True)
    return rows


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trace", action="append", default=[], metavar="NAME=PATH", help="Mooncake JSONL trace (repeatable)")
    ap.add_argument("--capacities", default="1000,5000,20000")
    ap.add_argument("--lp-time-limit", type=float, default=300.0, help="part B: solve time limit (LP, rounding, restricted MILP)")
    ap.add_argument("--b-rel-gap", type=float, default=0.005, help="part B: stop once [plan, LP bound] is this narrow")
    ap.add_argument("--milp-time-limit", type=float, default=60.0)
    ap.add_argument("--slices", default="0,1500,3000", help="first request of each 500-request MILP slice")
    ap.add_argument("--slice-capacity", type=int, default=500)
    ap.add_argument("--rate", type=float, default=0.5, help="Poisson arrivals (req/s) for the TTFT runs")
    ap.add_argument("--ttft-limit", type=int, default=1000, help="requests of the first trace in the TTFT runs")
    ap.add_argument("--skip", default="", help="parts to skip, e.g. B,C")
    ap.add_argument("--out-prefix", default=str(Path(__file__).resolve().parent / "results" / "eviction"))
    args = ap.parse_args(argv)
    traces = {}
    for item in args.trace:
        name, _, p = item.partition("=")
        traces[name] = Path(p)
    if not traces:
        data = resources.files("servopt.instances").joinpath("data")
        traces = {"conversation-1000": Path(str(data.joinpath("eviction_mooncake_conversation_1000.jsonl"))),
                  "synthetic-500": Path(str(data.joinpath("eviction_mooncake_synthetic_500.jsonl")))}
    caps = [int(c) for c in args.capacities.split(",")]
    skip = set(args.skip.upper().split(",")) - {""}
    weights_cache: dict = {}
    out = {"llm": LLM, "gpu": GPU, "traces": {n: {"file": p.name, "sha256": _sha(p)} for n, p in traces.items()},
           "capacities": caps, "policies": list(POLICIES), "A": [], "B": [], "C": [], "D": []}
    for name, path in traces.items():
        if "A" not in skip:
            out["A"] += part_a(name, path, caps, weights_cache)
            _write(out, args.out_prefix)
    for name, path in traces.items():
        if "B" not in skip:
            out["B"] += part_b(name, path, caps, args.lp_time_limit, args.b_rel_gap)
            _write(out, args.out_prefix)
    slices = [int(s) for s in args.slices.split(",") if s]
    for name, path in traces.items():
        if "C" not in skip:
            out["C"] += part_c(name, path, slices, args.slice_capacity, args.milp_time_limit)
            _write(out, args.out_prefix)
    if "D" not in skip:
        name, path = next(iter(traces.items()))
        out["D"] = part_d(path, args.rate, args.ttft_limit)
        out["D_trace"] = name
    _write(out, args.out_prefix)
    print(f"wrote {args.out_prefix}.json and .md")
    return 0


def _write(out: dict, prefix: str) -> None:
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    Path(str(prefix) + ".json").write_text(json.dumps(out, indent=1) + "\n")
    Path(str(prefix) + ".md").write_text(render_md(out))


def render_md(out: dict) -> str:
    lines = [f"# Eviction benchmark ({out['llm']} on one {out['gpu']} for saved prefill ms)", ""]
    lines += ["Traces: " + ", ".join(f"{n} = {t['file']} (sha256 {t['sha256'][:12]}...)" for n, t in out["traces"].items()), ""]
    if out["A"]:
        lines += ["## A. Hit blocks: policies vs the exact optimum (Belady with bypass)", "",
                  "| trace | C (blocks) | policy | hit blocks | hit ratio | share of optimum | saved prefill ms |",
                  "|---|---:|---|---:|---:|---:|---:|"]
        for r in out["A"]:
            lines.append(f"| {r['trace']} | {r['capacity_blocks']:,} | {r['policy']} | {r['hit_blocks']:,} | "
                         f"{r['hit_ratio']:.3f} | {100 * r['share_of_optimum']:.1f} % | {r['saved_prefill_ms']:,.0f} |")
        lines.append("")
    if out["B"]:
        lines += ["## B. Saved prefill ms: [best plan, LP bound] at trace scale", "",
                  "| trace | C | best plan (ms) | from | LP bound (ms) | width | best online policy (ms) | intervals | LP s | total s |",
                  "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
        for r in out["B"]:
            lines.append(f"| {r['trace']} | {r['capacity_blocks']:,} | {r['best_plan_ms']:,.0f} | {r['best_plan_from']} | "
                         f"{r['lp_bound_ms']:,.0f} | {100 * r['interval_width']:.2f} % | {r['best_online_policy_ms']:,.0f} | "
                         f"{r['intervals']:,} | {r['lp_seconds']:.1f} | {r['seconds']:.1f} |")
        lines.append("")
    if out["C"]:
        lines += ["## C. The MILP on 500-request slices (saved prefill ms)", "",
                  "| trace | requests | C | status | best plan (ms) | bound (ms) | Belady's plan (ms) | seconds |",
                  "|---|---|---:|---|---:|---:|---:|---:|"]
        for r in out["C"]:
            lines.append(f"| {r['trace']} | {r['first_request']}-{r['first_request'] + r['requests'] - 1} | "
                         f"{r['capacity_blocks']} | {r['status']} | {r['objective_ms']:,.1f} | {r['bound_ms']:,.1f} | "
                         f"{r['belady_ms']:,.1f} | {r['seconds']:.1f} |")
        lines.append("")
    if out.get("D"):
        lines += [f"## D. TTFT effect ({out.get('D_trace')}, first requests; llama-3.1-8b on one H100)", "",
                  "| policy | where | hit ratio | TTFT mean (s) | p50 (s) | p90 (s) |", "|---|---|---:|---:|---:|---:|"]
        for r in out["D"]:
            lines.append(f"| {r['policy']} | {r['where']} | {r['hit_ratio']:.3f} | {r['ttft_mean_s']:.3f} | "
                         f"{r['ttft_p50_s']:.3f} | {r['ttft_p90_s']:.3f} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
