"""Routing across replicas: every router's interval [ALG/incumbent, ALG/bound] against the hindsight optimum.

Sections (each row carries its instance, time limit and wall seconds; kind ``routing``):

1. ``exact``: n = 10 requests on 2-3 replicas of different memory (instances.routing.synthetic), the
   default ``servopt solve`` route (exact subset DP x one-replica branch-and-bound; makespan: then the
   MILP), --time-limit 10: proven or not, seconds, the best router's ratio to the optimum.
2. ``trace``: 400 requests on 4 replicas (instances.routing.trace, Azure conversation lengths) and the
   Mooncake conversation sample with its prefix hash ids (instances.routing.mooncake), solved with a
   60 s limit (bounds + search): incumbent, bound, and every router's interval.
3. ``tuning``: llm-d scorer weights (prefix, kv-cache utilisation, queue) on a grid and Dynamo's overlap
   weight, each router's ratio to the best known routing of section 2 (defaults 3/2/2 and 1.0).
4. ``prefix``: the prefix model (routing + caching, Wu, Silwal, Zhang, ICLR 2026) on the shipped Mooncake
   slices (conversation 1,000 and synthetic 500 requests), 4 and 8 replicas of 1,000 blocks: every
   router with LRU caches, its hit rate and makespan against the best known and the pooled-cache bound.

``python benchmarks/routing.py`` writes benchmarks/results/routing.{json,md}; ``--quick`` runs a small
version (for a smoke test). The per-replica policy is mc-sf throughout (the simulator's default).
"""
from __future__ import annotations

import argparse
import itertools
import json
import platform
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _solve(inst, limit):
    from servopt.kinds import routing as kind

    t0 = time.perf_counter()
    res = kind.solve(inst, time_limit_s=limit)
    res["wall_s"] = time.perf_counter() - t0
    return res


def exact_rows(quick: bool) -> list[dict]:
    from servopt.instances import routing as R
    from servopt.kinds import routing as kind

    configs = [((12, 16, 20), 4, 10, 3), ((20, 30), 5, 20, 1), ((20, 30, 40), 5, 25, 10), ((30, 50), 5, 45, 20)]
    seeds = range(2) if quick else range(4)
    rows = []
    for (mems, pmax, omax, horizon), obj in itertools.product(configs, ("total_latency", "makespan")):
        for seed in seeds:
            data = R.synthetic(seed, n=10, memories=mems, prompt_max=pmax, output_max=omax, arrival_horizon=horizon,
                               objective=obj)
            inst = kind.load(data)
            res = _solve(inst, 10.0)
            rows.append({"section": "exact", "memories": list(mems), "objective_name": obj, "seed": seed,
                         "generator": f"synthetic(seed, n=10, memories={mems}, prompt_max={pmax}, output_max={omax}, "
                                      f"arrival_horizon={horizon})",
                         "status": res["status"], "objective": res["objective"], "bound": res["bound"],
                         "seconds": round(res["wall_s"], 2), "best_router": res["best_router"],
                         "best_router_ratio": res["best_router_objective"] / res["objective"]})
            print(rows[-1], flush=True)
    return rows


def trace_instances(quick: bool):
    from servopt.instances import routing as R

    n = 120 if quick else 400
    yield "trace rate 3", R.trace(0, n=n, rate=3.0)
    yield "trace rate 4", R.trace(0, n=n, rate=4.0)
    yield "mooncake rate 3", R.mooncake(0, n=min(n, 200), memories=(128, 128, 96, 96), rate=3.0)


def trace_rows(quick: bool, limit: float) -> tuple[list[dict], dict]:
    from servopt.kinds import routing as kind

    rows, best_known = [], {}
    for label, data in trace_instances(quick):
        inst = kind.load(data)
        res = _solve(inst, limit)
        best_known[label] = (data, res["objective"], res["bound"])
        head = {"section": "trace", "instance": label, "n": inst.n, "replicas": [r.memory_tokens for r in inst.replicas],
                "incumbent": res["objective"], "bound": res["bound"], "gap": res["gap"], "bound_source": res["bound_source"],
                "seconds": round(res["wall_s"], 1), "time_limit_s": limit}
        for name in kind.DEFAULT_POLICIES.split(","):
            sim = kind.simulate(inst, policy=None, router=name)
            rows.append({**head, "router": name, "cost": sim["objective"],
                         "ratio_to_incumbent": sim["objective"] / res["objective"],
                         "ratio_to_bound": sim["objective"] / res["bound"]})
        print(label, res["objective"], res["bound"], flush=True)
    return rows, best_known


def prefix_rows(quick: bool, limit: float) -> list[dict]:
    """The prefix model on Mooncake slices: each router (LRU caches) against the best known and the bound."""
    from servopt.instances import routing as R
    from servopt.kinds import routing as kind

    rows = []
    slices = [("conversation", 1000), ("synthetic", 500)]
    for (source, n), reps in itertools.product(slices, (4, 8)):
        if quick:
            n = 150
        inst = kind.load(R.mooncake_prefix(source=source, n=n, replicas=reps, cache_blocks=1000))
        res = _solve(inst, limit)
        head = {"section": "prefix", "instance": f"mooncake {source} {n}, {reps} replicas x 1000 blocks",
                "incumbent": res["objective"], "bound": res["bound"], "gap": res["gap"], "hit_rate_best": res["hit_rate"],
                "seconds": round(res["wall_s"], 1), "time_limit_s": limit}
        for name in kind.DEFAULT_POLICIES.split(","):
            sim = kind.simulate(inst, policy="lru", router=name)
            rows.append({**head, "router": name, "cost": sim["objective"], "hit_rate": sim["hit_rate"],
                         "ratio_to_incumbent": sim["objective"] / res["objective"],
                         "ratio_to_bound": sim["objective"] / res["bound"]})
        print(head["instance"], res["objective"], res["bound"], flush=True)
        if reps == 4:
            rows += _prefix_tuning(inst, head["instance"], res["objective"], res["bound"], quick)
    return rows


def _prefix_tuning(inst, label, best, bound, quick) -> list[dict]:
    """llm-d weights and Dynamo's overlap weight in the prefix model, where prefix scores matter."""
    from servopt.simulator.routing_policies import simulate_prefix_routing

    grid = [0.0, 1.0, 3.0] if quick else [0.0, 1.0, 2.0, 3.0, 5.0]
    trials = []
    for wp, wk, wq in itertools.product(grid, grid, grid):
        if wp == wk == wq == 0.0:
            continue
        opts = {"prefix_weight": wp, "kv_weight": wk, "queue_weight": wq}
        trials.append((simulate_prefix_routing(inst, "llm_d", router_options=opts)["objective"], opts))
    default = simulate_prefix_routing(inst, "llm_d")["objective"]
    cost, opts = min(trials, key=lambda t: t[0])
    out = [{"section": "tuning", "instance": f"prefix: {label}", "router": "llm_d", "default": "3/2/2",
            "default_ratio": default / best, "tuned": f"{opts['prefix_weight']:g}/{opts['kv_weight']:g}/{opts['queue_weight']:g}",
            "tuned_ratio": cost / best, "tuned_ratio_to_bound": cost / bound, "trials": len(trials)}]
    d_trials = [(simulate_prefix_routing(inst, "dynamo", router_options={"overlap_weight": w})["objective"], w)
                for w in (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)]
    default = [c for c, w in d_trials if w == 1.0][0]
    cost, w = min(d_trials)
    out.append({"section": "tuning", "instance": f"prefix: {label}", "router": "dynamo", "default": "1",
                "default_ratio": default / best, "tuned": f"{w:g}", "tuned_ratio": cost / best,
                "tuned_ratio_to_bound": cost / bound, "trials": len(d_trials)})
    print(out, flush=True)
    return out


def tuning_rows(best_known: dict) -> list[dict]:
    from servopt.kinds import routing as kind
    from servopt.simulator.routing_policies import simulate_routing

    rows = []
    grid = [0.0, 1.0, 2.0, 3.0, 5.0]
    for label, (data, best, bound) in best_known.items():
        inst = kind.load(data)
        trials = []
        for wp, wk, wq in itertools.product(grid, grid, grid):
            if wp == wk == wq == 0.0:
                continue
            opts = {"prefix_weight": wp, "kv_weight": wk, "queue_weight": wq}
            cost = simulate_routing(inst, "llm_d", router_options=opts).objective_value(inst)
            trials.append((cost, opts))
        default = simulate_routing(inst, "llm_d").objective_value(inst)
        cost, opts = min(trials, key=lambda t: t[0])
        rows.append({"section": "tuning", "instance": label, "router": "llm_d", "default": "3/2/2",
                     "default_ratio": default / best, "tuned": f"{opts['prefix_weight']:g}/{opts['kv_weight']:g}/{opts['queue_weight']:g}",
                     "tuned_ratio": cost / best, "tuned_ratio_to_bound": cost / bound, "trials": len(trials)})
        d_trials = []
        for w in (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0):
            d_trials.append((simulate_routing(inst, "dynamo", router_options={"overlap_weight": w}).objective_value(inst), w))
        default = [c for c, w in d_trials if w == 1.0][0]
        cost, w = min(d_trials)
        rows.append({"section": "tuning", "instance": label, "router": "dynamo", "default": "1", "default_ratio": default / best,
                     "tuned": f"{w:g}", "tuned_ratio": cost / best, "tuned_ratio_to_bound": cost / bound,
                     "trials": len(d_trials)})
        print(rows[-2:], flush=True)
    return rows


def table(rows: list[dict]) -> list[str]:
    lines = ["# Routing: routers against the hindsight optimum", "",
             "Kind `routing` (each replica the kv_schedule round model of Jaillet et al., arXiv 2502.07115); "
             "per-replica policy mc-sf; produced by `python benchmarks/routing.py`.", "",
             "## Exact optimum, n = 10 (default `servopt solve`, --time-limit 10)", "",
             "| memories | objective | seed | status | OPT | seconds | best router | best router / OPT |",
             "|---|---|---|---|---|---|---|---|"]
    for r in (r for r in rows if r["section"] == "exact"):
        lines.append(f"| {r['memories']} | {r['objective_name']} | {r['seed']} | {r['status']} | {r['objective']:g} | "
                     f"{r['seconds']:.2f} | {r['best_router']} | {r['best_router_ratio']:.3f} |")
    ex = [r for r in rows if r["section"] == "exact"]
    if ex:
        proven = sum(r["status"] == "optimal" for r in ex)
        lines += ["", f"Proven: {proven} of {len(ex)}; slowest {max(r['seconds'] for r in ex):.1f} s."]
    tr = [r for r in rows if r["section"] == "trace"]
    for label in dict.fromkeys(r["instance"] for r in tr):
        sub = [r for r in tr if r["instance"] == label]
        h = sub[0]
        lines += ["", f"## {label}: n = {h['n']}, replicas {h['replicas']}, limit {h['time_limit_s']:g} s",
                  "", f"Incumbent {h['incumbent']:g}, bound {h['bound']:g} ({h['bound_source']}), gap {100 * h['gap']:.1f} %, "
                      f"{h['seconds']:.1f} s wall.", "",
                  "| router | cost | ALG/incumbent | ALG/bound | interval width |", "|---|---|---|---|---|"]
        for r in sorted(sub, key=lambda r: r["cost"]):
            lines.append(f"| {r['router']} | {r['cost']:g} | {r['ratio_to_incumbent']:.4f} | {r['ratio_to_bound']:.4f} | "
                         f"{100 * (r['ratio_to_bound'] - r['ratio_to_incumbent']):.1f} % |")
    pr = [r for r in rows if r["section"] == "prefix"]
    for label in dict.fromkeys(r["instance"] for r in pr):
        sub = [r for r in pr if r["instance"] == label]
        h = sub[0]
        lines += ["", f"## Prefix model: {label}, makespan, limit {h['time_limit_s']:g} s",
                  "", f"Best known {h['incumbent']:,.0f} (its Belady caches hit {100 * h['hit_rate_best']:.1f} % of prompt "
                      f"blocks), bound {h['bound']:,.0f} (pooled cache), gap {100 * h['gap']:.2f} %, {h['seconds']:.1f} s wall.", "",
                  "| router (LRU caches) | makespan | hit rate | ALG/best known | ALG/bound |", "|---|---|---|---|---|"]
        for r in sorted(sub, key=lambda r: r["cost"]):
            lines.append(f"| {r['router']} | {r['cost']:,.0f} | {100 * r['hit_rate']:.1f} % | {r['ratio_to_incumbent']:.4f} | "
                         f"{r['ratio_to_bound']:.4f} |")
    tu = [r for r in rows if r["section"] == "tuning"]
    if tu:
        lines += ["", "## Weight tuning against the best known routing", "",
                  "llm-d weights prefix/kv-utilisation/queue on {0,1,2,3,5}^3; Dynamo overlap weight in "
                  "{0, 0.25, 0.5, 1, 2, 4, 8}. Ratios are to the best known routing (section above).", "",
                  "| instance | router | default | default / best | tuned | tuned / best | tuned / bound |",
                  "|---|---|---|---|---|---|---|"]
        for r in tu:
            lines.append(f"| {r['instance']} | {r['router']} | {r['default']} | {r['default_ratio']:.4f} | {r['tuned']} | "
                         f"{r['tuned_ratio']:.4f} | {r['tuned_ratio_to_bound']:.4f} |")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a small version (smoke test)")
    ap.add_argument("--time-limit", type=float, default=60.0, help="limit of the trace-scale solves (default 60)")
    ap.add_argument("--out", default=str(RESULTS / "routing"), help="results path without suffix")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    rows = exact_rows(args.quick)
    trows, best_known = trace_rows(args.quick, args.time_limit)
    rows += trows
    rows += tuning_rows(best_known)
    rows += prefix_rows(args.quick, args.time_limit)
    lines = table(rows)
    meta = {"machine": platform.node(), "python": platform.python_version(), "wall_s": round(time.perf_counter() - t0, 1),
            "quick": args.quick, "time_limit_s": args.time_limit}
    lines += ["", f"Machine: {platform.machine()} ({platform.processor() or 'cpu'}), Python {meta['python']}; "
                  f"whole benchmark {meta['wall_s']} s."]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
