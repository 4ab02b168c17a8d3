"""Front door of kind ``batching``: iteration-level batching (chunked prefill, decodes, SLO goodput).

Instance and semantics: instances/batching.py; MILP: models/batching.py (solved through
solvers/batching_milp.py); exact search for tiny instances: solvers/batching_search.py; online
policies and the replay executor: simulator/batching_policies.py; checker: analysis/batching_check.py.

``solve`` pipeline (one deadline for everything, building included):
1. every policy runs, and the chunked ones at B/2, B/4, B/8 too (milliseconds): the best schedule is
   the incumbent, the search's first cut-off and the MILP's warm start and cut-off;
2. the combinatorial bound (solvers/batching_milp.py), valid at any size;
3. ``auto`` (default), where ``n * K <= MILP_MAX_CELLS`` (K the proven horizon): the exact search
   with 80 % of the limit (status ``optimal`` when it finishes; when stopped it hands back its best
   schedule), then the MILP with the rest; larger instances keep the policies + bound (status
   ``feasible``). ``search``: the search alone. ``time-indexed``: the MILP alone, skipped (and said
   so in ``milp_skipped``) where building it would overrun the limit. A MILP bound counts only at
   the proven horizon.
"""
from __future__ import annotations

import time

from servopt import jsonio
from servopt.errors import InputError

KIND = "batching"
EXAMPLE = "example_batching.json"
DEFAULT_POLICIES = "vllm,sarathi,orca,static,sjf,srpt"
MILP_MAX_CELLS = 1500  # n * K up to which auto tries the search and the MILP (beyond: neither can finish)
MILP_CELLS_PER_SECOND = 175  # a quarter of the build rate measured on a loaded 2-core machine (~700 n*K cells/s)
SEARCH_MAX_NODES = 50_000_000  # the deadline is what binds


def load(data: dict):
    from servopt.instances.batching import BatchingInstance

    jsonio.validate(data, KIND)
    return BatchingInstance.from_dict(data)


def _key(inst, sched):
    v = sched.objective_value(inst)
    return (-v, sched.total_latency_ms(inst)) if inst.objective == "goodput" else (v,)


def _result(inst, sched, *, method, status, bound, seconds, extra=None) -> dict:
    obj = sched.objective_value(inst)
    if bound is not None and inst.objective != "goodput":
        bound = min(bound, obj)  # a bound above the incumbent can only be round-off
    gap = None
    if bound is not None:
        gap = max(0.0, (bound - obj) if inst.objective == "goodput" else (obj - bound)) / max(abs(obj), 1e-9)
    out = {"kind": KIND, "method": method, "objective_name": inst.objective, "status": status,
           "objective": obj, "bound": bound, "gap": gap, "solve_seconds": round(seconds, 4),
           "total_latency_ms": sched.total_latency_ms(inst),
           "makespan_ms": max(t.finish_ms for t in sched.requests),
           "goodput": sum(1 for t in sched.requests if inst.meets_slo(t.ttft_ms, t.tpot_ms))}
    out.update(extra or {})
    out.update(sched.to_dict(inst))
    if inst.fit is not None:
        out["fit"] = inst.fit
    return out


def solve(instance, *, time_limit_s: float, options: dict | None = None) -> dict:
    """The optimum (or incumbent + valid bound at the deadline) as result JSON."""
    from servopt.models.batching import FORMULATIONS, safe_horizon
    from servopt.simulator.batching_policies import POLICIES, simulate as run_policy
    from servopt.solvers.batching_milp import combinatorial_bound, solve_milp

    t0 = time.perf_counter()
    options = dict(options or {})
    inst = instance
    formulation = options.get("formulation") or "auto"
    if formulation not in ("auto", "search") + FORMULATIONS:
        raise InputError("--formulation", f"batching: auto, search or {', '.join(FORMULATIONS)}; got '{formulation}'")
    solver = options.get("solver") or "highs"
    if solver != "highs":
        raise InputError("--solver", f"batching solves with highs; got '{solver}'")
    horizon = options.get("horizon")
    if horizon is not None and (isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1):
        raise InputError("--horizon", f"must be a positive integer, got {horizon!r}")
    rel_gap = float(options.get("rel_gap", 1e-4))
    safe = safe_horizon(inst)

    best_name, best = None, None
    # every policy, and the chunked ones at smaller token budgets too (smaller chunks let short
    # requests through sooner): milliseconds each, the incumbent and warm start
    candidates = [(name, {}) for name in POLICIES]
    for tb in sorted({inst.token_budget // d for d in (2, 4, 8)} - {0, inst.token_budget}, reverse=True):
        candidates += [(name, {"token_budget": tb}) for name in ("sarathi", "sjf", "srpt")]
    for name, params in candidates:
        s = run_policy(inst, name, **params)
        if best is None or _key(inst, s) < _key(inst, best):
            best_name, best = name + "".join(f" {k}={v}" for k, v in params.items()), s
    bound = combinatorial_bound(inst)
    bound_source = "combinatorial"
    method = f"policy {best_name}"
    extra = {"warm_start": best_name, "horizon": None, "horizon_proven": None}
    status = "feasible"  # policies + combinatorial bound; the MILP, where it runs, says more

    K = safe if horizon is None else min(horizon, safe)
    small = inst.n * K <= MILP_MAX_CELLS
    searched = False
    if formulation == "search" or (formulation == "auto" and small and horizon is None):
        from servopt.solvers.batching_search import SearchTooLarge, exhaustive

        # auto: the exact search gets up to 80 % of the time; the MILP takes over if it runs out
        share = 1.0 if formulation == "search" else 0.8
        deadline = t0 + share * time_limit_s
        try:
            res = exhaustive(inst, max_nodes=int(options.get("max_nodes", SEARCH_MAX_NODES)), deadline=deadline,
                             incumbent=best)
            searched = True
        except SearchTooLarge as exc:
            if exc.best is not None:  # what the search found before the deadline can still beat the policies
                from servopt.instances.batching import best_timing

                found = best_timing(inst, exc.best, method="search (stopped)")
                if _key(inst, found) < _key(inst, best):
                    best, method = found, "exhaustive search (stopped at the deadline)"
            extra["search_stopped"] = str(exc)
            if formulation == "search":
                status = "time_limit"
        if searched:
            best, method, status, bound, bound_source = res.schedule, "exhaustive search", "optimal", res.objective, "search"
            extra["nodes"] = res.nodes
    wants_milp = not searched and (formulation == "time-indexed" or (formulation == "auto" and small and horizon is None)
                                   or (formulation == "auto" and horizon is not None))
    if wants_milp and inst.n * K > MILP_CELLS_PER_SECOND * time_limit_s:
        # building alone would overrun the limit (the whole command keeps to it): stay with the policies
        wants_milp = False
        extra["milp_skipped"] = (f"n * K = {inst.n * K} slot cells would take longer than a quarter of the "
                                 f"{time_limit_s:g} s limit to build")
    if wants_milp:
        left = time_limit_s - (time.perf_counter() - t0)
        warm = list(best.batches) if len(best.batches) <= K else None
        out = solve_milp(inst, time_limit_s=max(left, 0.1), rel_gap=rel_gap, horizon=K, warm=warm,
                         cutoff=best.objective_value(inst), lower_bound=bound if inst.objective != "goodput" else None)
        extra.update({"horizon": out.horizon, "horizon_proven": out.horizon_proven, "stages": out.stages,
                      "nodes": out.nodes})
        if out.schedule is not None and _key(inst, out.schedule) <= _key(inst, best):
            best, method = out.schedule, "milp time-indexed"
        if out.horizon_proven and out.bound is not None:
            better = out.bound < bound if inst.objective == "goodput" else out.bound > bound
            if better:
                bound, bound_source = out.bound, "milp"
        status = ("optimal" if out.status in ("optimal", "cutoff_optimal") and out.horizon_proven
                  else "time_limit" if out.status == "time_limit" else "feasible")
    if not searched:
        obj = best.objective_value(inst)
        if status != "optimal":
            if inst.objective == "goodput":
                status = "optimal" if bound is not None and obj >= bound else status
            elif bound is not None and obj - bound <= rel_gap * max(abs(obj), 1e-9):
                status = "optimal"
    extra["bound_source"] = bound_source
    extra["solver"] = "highs" if "milp" in method or bound_source == "milp" else None
    return _result(inst, best, method=method, status=status, bound=bound, seconds=time.perf_counter() - t0, extra=extra)


def simulate(instance, *, policy: str, options: dict | None = None) -> dict:
    from servopt.simulator.batching_policies import simulate as run_policy

    t0 = time.perf_counter()
    sched = run_policy(instance, policy, **dict(options or {}))
    return _result(instance, sched, method=policy, status="feasible", bound=None, seconds=time.perf_counter() - t0,
                   extra={"policy": policy, "params": sched.meta.get("params", {}), "solver": None})


def check(instance, result: dict) -> list[str]:
    from servopt.analysis.batching_check import check_result

    return check_result(instance, result)


def render(result: dict, console) -> None:
    from rich.table import Table

    summary = (f"{result.get('objective_name')} = {_fmt(result.get('objective'))}, bound {_fmt(result.get('bound'))}, "
               f"gap {_pct(result.get('gap'))}, status {result.get('status')}, {_fmt(result.get('solve_seconds'))} s; "
               f"{len(result.get('iterations', []))} iterations, total latency {_fmt(result.get('total_latency_ms'))} ms, "
               f"makespan {_fmt(result.get('makespan_ms'))} ms, goodput {result.get('goodput')}")
    table = Table(title=f"batching {result.get('method', '')}", caption=summary)
    for col in ("id", "first token ms", "finish ms", "TTFT ms", "TPOT ms"):
        table.add_column(col, justify="left" if col == "id" else "right")
    rows = result.get("requests", [])
    for row in rows[:40]:
        table.add_row(str(row["id"]), _fmt(row["first_token_ms"]), _fmt(row["finish_ms"]), _fmt(row["ttft_ms"]),
                      _fmt(row["tpot_ms"]))
    if len(rows) > 40:
        table.add_row(f"... {len(rows) - 40} more", "", "", "", "")
    console.print(table)
    if result.get("fit"):
        f = result["fit"]
        console.print(f"iteration time fitted to {f['llm']} on {f['tp']} x {f['gpu']}: max error {f['max_abs_error_ms']:.3g} ms "
                      f"({100 * f['max_rel_error']:.1f} %) over {f['points']} points")


def compare(instance, *, policies: list[str], time_limit_s: float, options: dict | None = None) -> dict:
    """Policies vs the offline optimum: per policy ALG/incumbent and ALG/bound (ALG/OPT lies between)."""
    from servopt.simulator.batching_policies import POLICIES

    for p in policies:
        if p not in POLICIES:
            raise InputError("--policies", f"unknown batching policy '{p}' (known: {', '.join(POLICIES)})")
    opt = solve(instance, time_limit_s=time_limit_s, options=options)
    rows = []
    for p in policies:
        t0 = time.perf_counter()
        res = simulate(instance, policy=p)
        cost = res["objective"]
        rows.append({"policy": p, "cost": cost, "total_latency_ms": res["total_latency_ms"],
                     "ratio_to_incumbent": _ratio(cost, opt["objective"]), "ratio_to_bound": _ratio(cost, opt["bound"]),
                     "seconds": time.perf_counter() - t0, "status": res["status"]})
    return {"kind": KIND, "objective_name": instance.objective, "incumbent": opt["objective"], "bound": opt["bound"],
            "gap": opt["gap"], "optimum_status": opt["status"], "optimum_method": opt["method"],
            "solve_seconds": opt["solve_seconds"], "rows": rows}


def render_comparison(result: dict, console) -> None:
    from rich.table import Table

    summary = (f"optimum: incumbent {_fmt(result['incumbent'])}, bound {_fmt(result['bound'])}, gap {_pct(result['gap'])}, "
               f"status {result['optimum_status']} ({result['optimum_method']}), {_fmt(result['solve_seconds'])} s")
    table = Table(title=f"batching: policies vs the optimum ({result['objective_name']})", caption=summary)
    for col in ("policy", "cost", "ALG/incumbent", "ALG/bound", "seconds"):
        table.add_column(col, justify="left" if col == "policy" else "right")
    for row in result["rows"]:
        table.add_row(row["policy"], _fmt(row["cost"]), _r(row["ratio_to_incumbent"]), _r(row["ratio_to_bound"]),
                      f"{row['seconds']:.3f}")
    console.print(table)
    if result["objective_name"] == "goodput":
        console.print("goodput is maximised: ALG/OPT lies in [ALG/bound, ALG/incumbent].")
    else:
        console.print("ALG/OPT lies in [ALG/incumbent, ALG/bound]; the two ends are equal once the optimum is proven.")


def example_instance():
    return load(jsonio.read_shipped(EXAMPLE))


def demo(*, time_limit_s: float) -> list[dict]:
    inst = example_instance()
    rows = []
    t0 = time.perf_counter()
    opt = solve(inst, time_limit_s=time_limit_s, options={"rel_gap": 0.0})
    rows.append({"instance": EXAMPLE, "method": opt["method"], "objective": opt["objective"], "bound": opt["bound"],
                 "gap": opt["gap"], "ratio": 1.0, "status": opt["status"], "seconds": time.perf_counter() - t0})
    for name in ("sarathi", "vllm", "orca"):
        t1 = time.perf_counter()
        res = simulate(inst, policy=name)
        rows.append({"instance": EXAMPLE, "method": name, "objective": res["objective"], "bound": None, "gap": None,
                     "ratio": _ratio(res["objective"], opt["objective"]), "status": res["status"],
                     "seconds": time.perf_counter() - t1})
    return rows


def _ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def _fmt(x):
    if x is None:
        return "-"
    return f"{x:,.6g}" if isinstance(x, (int, float)) else str(x)


def _pct(x):
    return "-" if x is None else f"{100 * x:.2f}%"


def _r(x):
    return "-" if x is None else f"{x:.4f}"
