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
width. Part C: the exact optimum on 500-request slices, the run branch-and-bound (the default solve)
beside HiGHS on the MILP. Part E (``--sweep``): every 500-request slice of a trace at several capacities,
the default solve alone. Part D: TTFT in the serving simulator per KV memory size and policy,
the optimum's replay (``--eviction optimum_replay``) included. ``--skip`` parts and ``--update`` to keep
the skipped parts' rows of the existing results file.
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
    from servopt.models.eviction import plan_value, saved_ms_per_depth

    rows = []
    for C in capacities:
        inst = _load(path, C)
        if name not in weights_cache:
            from dataclasses import replace

            weights_cache[name] = saved_ms_per_depth(replace(inst, llm=LLM, gpu=GPU),
                                                     max(len(r.hash_ids) for r in inst.requests))
        w = weights_cache[name]
        opt = kind.solve(inst, time_limit_s=60)
        opt_ms = plan_value([row["hit_blocks"] for row in opt["requests"]], w)
        rows.append({"trace": name, "capacity_blocks": C, "policy": "optimum (belady-bypass)", "hit_blocks": opt["hit_blocks"],
                     "hit_ratio": opt["hit_ratio"], "share_of_optimum": 1.0, "saved_prefill_ms": opt_ms,
                     "seconds": opt["solve_seconds"]})
        for pol in POLICIES:
            res = kind.simulate(inst, policy=pol)
            ms = plan_value([row["hit_blocks"] for row in res["requests"]], w)
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
        rows.append({"trace": name, "capacity_blocks": C, "status": res["status"], "method": res["method"],
                     "best_plan_ms": res["objective"], "best_plan_from": res["incumbent_from"],
                     "bound_ms": res["bound"], "lp_bound_ms": res.get("lp_bound"), "interval_width": width,
                     "best_online_policy_ms": best_policy, "intervals": res["intervals"], "runs": res.get("runs"),
                     "nodes": res.get("nodes"), "lp_seconds": res["lp_seconds"], "seconds": time.perf_counter() - t0})
        print(f"B {name} C={C}: plan {res['objective']:.0f} ({res['incumbent_from']}), bound {res['bound']:.0f}, "
              f"width {100 * width:.2f} %, best online policy {best_policy:.0f}, {rows[-1]['seconds']:.1f} s", flush=True)
    return rows


def part_c(name, path, slices, capacity, time_limit_s, milp_too: bool = True):
    """The exact optimum on 500-request slices: the default solve (the run branch-and-bound,
    solvers/eviction_bnb.py) and, beside it, HiGHS on the keep-interval MILP (``--formulation milp``,
    capacity covers when it stops open); ``slices``: first requests, or (first request, capacity) pairs."""
    from servopt.kinds import eviction as kind
    from servopt.solvers.highs import relative_gap

    rows = []
    n_lines = sum(1 for line in Path(path).read_text().splitlines() if line.strip())
    for item in slices:
        offset, cap = item if isinstance(item, tuple) else (item, capacity)
        if offset + 500 > n_lines:
            continue
        inst = _load(path, cap, "saved_prefill_ms", limit=500, offset=offset)
        res = kind.solve(inst, time_limit_s=time_limit_s, options={"rel_gap": 1e-4})
        bel = kind.solve(inst, time_limit_s=time_limit_s, options={"formulation": "belady"})
        lp = kind.solve(inst, time_limit_s=time_limit_s, options={"formulation": "lp"})  # the plain LP's bound
        row = {"trace": name, "first_request": offset, "requests": inst.n, "capacity_blocks": cap,
               "status": res["status"], "method": res["method"], "objective_ms": res["objective"], "bound_ms": res["bound"],
               "gap": res["gap"], "lp_bound_ms": lp["bound"], "lp_gap": relative_gap(res["objective"], lp["bound"], "max"),
               "intervals": res.get("intervals"), "runs": res.get("runs"), "nodes": res.get("nodes"),
               "belady_ms": bel["objective"], "incumbent_from": res["incumbent_from"], "seconds": res["solve_seconds"]}
        if milp_too:
            milp = kind.solve(inst, time_limit_s=time_limit_s, options={"rel_gap": 1e-4, "formulation": "milp"})
            row.update({"milp_status": milp["status"], "milp_objective_ms": milp["objective"], "milp_bound_ms": milp["bound"],
                        "milp_gap": milp["gap"], "milp_nodes": milp.get("nodes"), "milp_seconds": milp["solve_seconds"],
                        "cover_bound_ms": milp.get("cover_bound"), "cover_cuts": milp.get("cover_cuts", 0)})
        rows.append(row)
        print(f"C {name} [{offset}, {offset + 500}) C={cap}: {res['status']} {res['objective']:.1f} ms "
              f"(bound {res['bound']:.1f}, {res.get('nodes')} nodes, {res['solve_seconds']:.1f} s)"
              + (f"; HiGHS MILP {row['milp_status']} gap {_pct(row['milp_gap'])} in {row['milp_seconds']:.1f} s" if milp_too else ""),
              flush=True)
    return rows


def part_e(name, path, step: int, capacities, time_limit_s):
    """Every 500-request slice starting at a multiple of ``step``, at each capacity: the default solve
    only (how often it proves the optimum within the limit, and how long it takes)."""
    n_lines = sum(1 for line in Path(path).read_text().splitlines() if line.strip())
    slices = [(first, cap) for cap in capacities for first in range(0, n_lines - 499, step)]
    rows = part_c(name, path, slices, None, time_limit_s, milp_too=False)
    for r in rows:
        r["sweep_step"] = step
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


SIM_POLICIES = (None, "lru", "lru_sglang", "lfu", "fifo", "gdsf", "tlru", "rlt", "belady_tree", "optimum_replay")


def part_d(path: Path, rate: float, limit: int, kv_tokens_list):
    """TTFT in the serving simulator (one H100's timing, Poisson arrivals at ``rate``, sarathi scheduler),
    per KV memory size and eviction policy, the optimum's replay (simulator/evict_optimum_replay.py)
    included; hit ratio = hit blocks / prompt blocks (the base model's); beside it the base model's
    optimum at the same number of prefix blocks, requests one at a time (no TTFT: not a simulation)."""
    from servopt.analysis.sim_metrics import summarize
    from servopt.costmodel.roofline import make_cost_model
    from servopt.instances import traces
    from servopt.simulator.engine import SimConfig, simulate
    from servopt.solvers.eviction_belady import belady_hits

    cm = make_cost_model(LLM, GPU, 1)
    reqs = list(traces.iter_trace(str(path), arrivals="poisson", rate=rate, seed=0, limit=limit))
    lookups = sum(len(r.prefix_block_ids) for r in reqs)
    rows = []
    for kv_tokens in kv_tokens_list:
        C = kv_tokens // 512
        opt = sum(belady_hits([list(r.prefix_block_ids[: r.prompt_tokens // 512]) for r in reqs], C))
        rows.append({"kv_tokens": kv_tokens, "capacity_blocks": C, "policy": "optimum (base model, one at a time)",
                     "where": "base model", "hit_ratio": opt / lookups, "ttft_mean_s": None, "ttft_p50_s": None,
                     "ttft_p90_s": None, "rate_per_s": rate})
        for pol in SIM_POLICIES:
            config = SimConfig(kv_tokens=kv_tokens, eviction=pol, prefix_block_tokens=512, seed=0)
            t0 = time.perf_counter()
            res = simulate(reqs, cm, config)
            s = summarize(res)
            hits = int(sum(int(c) // 512 for c in res.columns["cached_tokens"]))
            rows.append({"kv_tokens": kv_tokens, "capacity_blocks": C, "policy": pol or "no prefix cache",
                         "where": "serving simulator", "hit_ratio": hits / lookups, "rate_per_s": rate,
                         "ttft_mean_s": s["ttft_s"]["mean"], "ttft_p50_s": s["ttft_s"]["p50"], "ttft_p90_s": s["ttft_s"]["p90"],
                         "evictions": (s.get("prefix_cache") or {}).get("evictions"), "seconds": time.perf_counter() - t0})
            print(f"D kv={kv_tokens} {rows[-1]['policy']}: hit ratio {rows[-1]['hit_ratio']:.3f}, TTFT mean "
                  f"{rows[-1]['ttft_mean_s']:.3f} s, p50 {rows[-1]['ttft_p50_s']:.3f} s, p90 {rows[-1]['ttft_p90_s']:.3f} s", flush=True)
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
    ap.add_argument("--extra-slices", default="", help="more MILP slices, NAME:FIRST:CAPACITY[,...] (NAME a --trace)")
    ap.add_argument("--sweep", default="", metavar="NAME:STEP:C[+C...]",
                    help="part E: every 500-request slice of trace NAME starting at a multiple of STEP, at capacities C (comma-separated list of such)")
    ap.add_argument("--update", action="store_true", help="keep the parts not run from the existing results file")
    ap.add_argument("--rate", type=float, default=0.25, help="Poisson arrivals (req/s) for the TTFT runs")
    ap.add_argument("--ttft-limit", type=int, default=2000, help="requests of the first trace in the TTFT runs")
    ap.add_argument("--ttft-kv-tokens", default="460000,920000,2560000",
                    help="KV memory sizes (tokens) of the TTFT runs: one H100 at 0.9 of its memory, twice, 5,000 blocks")
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
           "capacities": caps, "policies": list(POLICIES), "A": [], "B": [], "C": [], "D": [], "E": []}
    for name, path in traces.items():
        if "A" not in skip:
            out["A"] += part_a(name, path, caps, weights_cache)
            _write(out, args.out_prefix)
    for name, path in traces.items():
        if "B" not in skip:
            out["B"] += part_b(name, path, caps, args.lp_time_limit, args.b_rel_gap)
            _write(out, args.out_prefix)
    if args.update and Path(args.out_prefix + ".json").exists():
        old = json.loads(Path(args.out_prefix + ".json").read_text())
        for part in ("A", "B", "C", "D", "E"):
            if part in skip:
                out[part] = old.get(part, [])
        for key in ("D_trace", "D_setup"):
            if "D" in skip and key in old:
                out[key] = old[key]
        out["traces"] = {**old.get("traces", {}), **out["traces"]}
    slices = [int(s) for s in args.slices.split(",") if s]
    extra: dict = {}
    for item in args.extra_slices.split(","):
        if item:
            name, first, cap = item.split(":")
            extra.setdefault(name, []).append((int(first), int(cap)))
    for name, path in traces.items():
        if "C" not in skip:
            out["C"] += part_c(name, path, slices + extra.get(name, []), args.slice_capacity, args.milp_time_limit)
            _write(out, args.out_prefix)
    for item in args.sweep.split(","):
        if item and "E" not in skip:
            name, step, caps_e = item.split(":")
            out["E"] += part_e(name, traces[name], int(step), [int(c) for c in caps_e.split("+")], args.milp_time_limit)
            _write(out, args.out_prefix)
    if "D" not in skip:
        name, path = next(iter(traces.items()))
        out["D"] = part_d(path, args.rate, args.ttft_limit, [int(k) for k in args.ttft_kv_tokens.split(",")])
        out["D_trace"] = name
        out["D_setup"] = {"requests": args.ttft_limit, "rate_per_s": args.rate, "arrivals": "poisson", "seed": 0,
                          "scheduler": "sarathi", "llm": LLM, "gpu": GPU}
    _write(out, args.out_prefix)
    print(f"wrote {args.out_prefix}.json and .md")
    return 0


def _write(out: dict, prefix: str) -> None:
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    Path(str(prefix) + ".json").write_text(json.dumps(out, indent=1) + "\n")
    Path(str(prefix) + ".md").write_text(render_md(out))


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.2f} %"


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
        lines += ["## B. Saved prefill ms: [best plan, bound] at trace scale", "",
                  "Bound: the smaller of the LP relaxation's and the search's (or the restricted MILP's plan under the "
                  "LP bound, in results written before the search). Width: (bound - plan) / plan.", "",
                  "| trace | C | method | best plan (ms) | from | bound (ms) | width | LP bound (ms) | best online policy (ms) | "
                  "intervals | runs | nodes | LP s | total s |",
                  "|---|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in out["B"]:
            bound = r.get("bound_ms", r.get("lp_bound_ms"))
            lp_bound = r.get("lp_bound_ms")
            lines.append(f"| {r['trace']} | {r['capacity_blocks']:,} | {r.get('method', 'milp')} | {r['best_plan_ms']:,.0f} | "
                         f"{r['best_plan_from']} | {bound:,.0f} | {100 * r['interval_width']:.2f} % | "
                         f"{'-' if lp_bound is None else f'{lp_bound:,.0f}'} | {r['best_online_policy_ms']:,.0f} | "
                         f"{r['intervals']:,} | {r.get('runs') or '-'} | {'-' if r.get('nodes') is None else r['nodes']} | "
                         f"{r['lp_seconds']:.1f} | {r['seconds']:.1f} |")
        lines.append("")
    if out["C"]:
        lines += ["## C. The exact optimum on 500-request slices (saved prefill ms)", "",
                  "Default solve: the run branch-and-bound (solvers/eviction_bnb.py). Beside it, HiGHS on the "
                  "keep-interval MILP with the same limit and relative gap 1e-4. LP gap: best plan against the plain "
                  "LP relaxation (the search's root).", "",
                  "| trace | requests | C | status | best plan (ms) | bound (ms) | gap | LP gap | intervals | runs | nodes | "
                  "seconds | HiGHS MILP | its gap | its seconds | Belady's plan (ms) |",
                  "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
        for r in out["C"]:
            lines.append(f"| {r['trace']} | {r['first_request']}-{r['first_request'] + r['requests'] - 1} | "
                         f"{r['capacity_blocks']} | {r['status']} | {r['objective_ms']:,.1f} | {r['bound_ms']:,.1f} | "
                         f"{_pct(r.get('gap'))} | {_pct(r.get('lp_gap'))} | {r.get('intervals') or '-'} | {r.get('runs') or '-'} | "
                         f"{'-' if r.get('nodes') is None else r['nodes']} | {r['seconds']:.1f} | {r.get('milp_status', '-')} | "
                         f"{_pct(r.get('milp_gap'))} | {r.get('milp_seconds', float('nan')):.1f} | {r['belady_ms']:,.1f} |")
        lines.append("")
    if out.get("E"):
        lines += ["## E. Every 500-request slice: how often the default solve proves the optimum", "",
                  "| trace | C | slices | proven | largest gap | median s | 90th pct s | max s | max nodes |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        groups: dict = {}
        for r in out["E"]:
            groups.setdefault((r["trace"], r["capacity_blocks"]), []).append(r)
        for (trace, cap), rs in groups.items():
            secs = sorted(r["seconds"] for r in rs)
            lines.append(f"| {trace} | {cap} | {len(rs)} | {sum(r['status'] == 'optimal' for r in rs)} | "
                         f"{_pct(max((r.get('gap') or 0.0) for r in rs))} | {secs[len(secs) // 2]:.1f} | "
                         f"{secs[min(len(secs) - 1, int(0.9 * len(secs)))]:.1f} | {secs[-1]:.1f} | "
                         f"{max((r.get('nodes') or 0) for r in rs):,} |")
        open_rows = [r for r in out["E"] if r["status"] != "optimal"]
        if open_rows:
            lines += ["", "Not proven within the limit: " + "; ".join(
                f"{r['trace']} {r['first_request']}-{r['first_request'] + r['requests'] - 1} at C = {r['capacity_blocks']} "
                f"(gap {_pct(r.get('gap'))})" for r in open_rows)]
        lines.append("")
    if out.get("D"):
        st = out.get("D_setup") or {}
        lines += [f"## D. TTFT effect in the serving simulator ({out.get('D_trace')}, first {st.get('requests')} requests, "
                  f"Poisson {st.get('rate_per_s')} req/s; {out['llm']} on one {out['gpu']})", "",
                  "Hit ratio: hit blocks / prompt blocks. The base-model row is the offline optimum with requests one "
                  "at a time at the same number of prefix blocks (the reference the replay aims at; no TTFT).", "",
                  "| KV tokens | C (blocks) | policy | hit ratio | TTFT mean (s) | p50 (s) | p90 (s) |",
                  "|---:|---:|---|---:|---:|---:|---:|"]
        for r in out["D"]:
            f = (lambda v: "-" if v is None else f"{v:.3f}")
            lines.append(f"| {r.get('kv_tokens', 0):,} | {r.get('capacity_blocks', 0):,} | {r['policy']} | {r['hit_ratio']:.3f} | "
                         f"{f(r['ttft_mean_s'])} | {f(r['ttft_p50_s'])} | {f(r['ttft_p90_s'])} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
