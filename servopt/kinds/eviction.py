"""Front door of kind ``eviction``: prefix-cache eviction, the offline optimum against online policies.

Instance: instances/eviction.py. Exact optimum of the base model (``hit_blocks``): Belady with bypass,
solvers/eviction_belady.py. General model (``saved_prefill_ms``, pinned running requests, several
caches): the keep-interval MILP of models/eviction.py (FOO, Berger et al., SIGMETRICS 2018) with its LP
relaxation as the bound, solved by solvers/eviction_milp.py. Online policies: simulator/evict_*.py replayed by
simulator/eviction_replay.py. Checker: analysis/eviction_check.py.

Formulations for ``servopt solve --formulation``: ``auto`` (Belady for ``hit_blocks``; otherwise the
LP relaxation as the bound, its rounded plan, then the exact branch-and-bound over runs of identical keep
intervals (solvers/eviction_bnb.py) from the best plan while a gap remains; if the savings fall with
depth or a node LP of the search fails, the MILP in HiGHS instead, restricted to the LP's fractional
intervals above ``MILP_MAX_INTERVALS``; if the MILP stops with a gap and time is left, e.g. the share
``options["cover_share"]`` kept back for it, capacity covers tighten the bound and give a second
rounding), ``branch-and-bound`` (the search; an error if the savings fall with depth), ``belady``
(Belady's plan only), ``milp`` (the MILP in HiGHS, never restricted), ``lp`` (bound and rounded plan,
no search).
"""
from __future__ import annotations

import math
import time

from servopt import jsonio
from servopt.errors import InputError

KIND = "eviction"
EXAMPLE = "example_eviction.json"
FORMULATIONS = ("auto", "branch-and-bound", "belady", "milp", "lp")
MILP_MAX_INTERVALS = 30_000  # auto's MILP fallback: above this many keep intervals, restricted to the LP's fractional ones
# the share of the time limit kept back from the MILP for capacity covers, run if it stops open; 0 by
# default (options["cover_share"] to change): kept back, 10 % of 60 s gave a bound no better than the
# MILP's own on the slices where it stops open (docs/eviction.md), and the MILP needs all the time it gets
COVER_SHARE = 0.0
# HiGHS for the MILP: it starts from Belady's or the LP-rounded plan, so its heuristics mostly cost time.
# Measured on five 500-request slices that take 6-34 s (docs/eviction.md): effort 0.01 instead of the
# default 0.05 took 25-54 s down to 14-36 s on three of them (with the covers out of the MILP too), and
# without the sub-MIP heuristics RINS and RENS a further 10-45 % came off every one; the root
# reduced-cost heuristic stays (without it one slice lost its good plan and ran out of time)
MILP_OPTIONS: dict = {"mip_heuristic_effort": 0.01, "mip_heuristic_run_rins": False, "mip_heuristic_run_rens": False}
DEFAULT_POLICIES = "lru,lru_sglang,lfu,fifo,gdsf,tlru,rlt,belady_tree"  # servopt compare's default list


def load(data: dict):
    from servopt.instances.eviction import EvictionInstance

    if isinstance(data, dict) and isinstance(data.get("requests"), list) and len(data["requests"]) > 200:
        # JSON Schema on a whole trace costs seconds; from_dict checks every request's fields itself,
        # so the schema sees the top level and the first 200 requests.
        jsonio.validate({**data, "requests": data["requests"][:200]}, KIND)
    else:
        jsonio.validate(data, KIND)
    return EvictionInstance.from_dict(data)


def _costs(instance):
    from servopt.models.eviction import capacity_after, weights_for

    return capacity_after(instance), weights_for(instance)


def _value(hits, weights) -> float:
    from servopt.models.eviction import plan_value

    return plan_value(hits, weights)


def _tightened(bound, new: float, weights):
    """The smaller of two valid bounds; hit blocks are integral, so a unit-weight bound rounds down."""
    if weights is None:
        new = float(int(new + 1e-6))
    return new if bound is None else min(bound, new)


def _result(instance, plan, *, method, status, objective, bound, seconds, solver, weights, extra=None) -> dict:
    from servopt.solvers.highs import relative_gap

    lookups = sum(len(r.hash_ids) for r in instance.requests)
    hits = plan.hit_blocks
    out = {
        "kind": KIND,
        "method": method,
        "objective_name": instance.objective,
        "status": status,
        "objective": objective,
        "bound": bound,
        "gap": relative_gap(objective, bound, "max") if bound is not None else None,
        "solve_seconds": round(seconds, 4),
        "solver": solver,
        "capacity_blocks": instance.capacity_blocks,
        "hit_blocks": hits,
        "lookup_blocks": lookups,
        "hit_ratio": hits / lookups if lookups else 0.0,
    }
    if weights is not None:
        out["saved_prefill_ms"] = _value(plan.hits, weights)
    out.update(extra or {})
    out["requests"] = [{"id": r.id, "hit_blocks": h, "admit": list(a), "evict": list(e)}
                       for r, h, a, e in zip(instance.requests, plan.hits, plan.admit, plan.evict)]
    return out


def solve(instance, *, time_limit_s: float, options: dict | None = None) -> dict:
    """The offline optimum (or the MILP's incumbent and bound at the time limit) as result JSON."""
    from servopt.solvers.eviction_belady import solve_instance

    options = dict(options or {})
    formulation = options.get("formulation") or "auto"
    if formulation not in FORMULATIONS:
        raise InputError("--formulation", f"eviction offers {', '.join(FORMULATIONS)}; got '{formulation}'")
    if (options.get("solver") or "highs") != "highs":
        raise InputError("--solver", "eviction solves with Belady's rule or HiGHS")
    t0 = time.perf_counter()
    caps, weights = _costs(instance)
    if formulation == "branch-and-bound":
        from servopt.solvers.eviction_bnb import non_decreasing

        if not non_decreasing(weights):
            raise InputError("--formulation", "branch-and-bound needs savings that do not decrease with depth; "
                                              "use milp")
    belady = solve_instance(instance, caps)
    b_value = _value(belady.hits, weights)
    if formulation == "belady" or (formulation == "auto" and weights is None):
        if weights is not None:
            # Belady maximises hit blocks; under depth-dependent savings it is a feasible plan, no optimum.
            return _result(instance, belady, method="belady", status="feasible", objective=b_value, bound=None,
                           seconds=time.perf_counter() - t0, solver=None, weights=weights)
        return _result(instance, belady, method="belady", status="optimal", objective=b_value, bound=b_value,
                       seconds=time.perf_counter() - t0, solver="belady-bypass (exact)", weights=weights)
    from servopt.models.eviction import hits_from_x, plan_from_x
    from servopt.solvers.eviction_milp import fill_plan, round_lp, solve_direct, strengthen_lp

    if options.get("export"):
        from servopt.models.eviction import build
        from servopt.solvers.highs import write_model

        write_model(build(instance, caps=caps, weights=weights), options["export"])
    rel_gap = float(options.get("rel_gap", 1e-4))
    # 1. the LP relaxation: the bound, and fractional values that guide a rounded plan
    left = max(0.1, time_limit_s - (time.perf_counter() - t0))
    lp_res, prog, lp_x = solve_direct(instance, caps=caps, weights=weights, time_limit_s=left, relax=True)
    lp_bound = -lp_res.objective if lp_res.status == "optimal" else None
    plan, value, how = belady, b_value, "belady"
    restricted = prog.K > MILP_MAX_INTERVALS and formulation != "milp"
    if lp_x is not None:
        xr = fill_plan(prog, round_lp(prog, lp_x, caps, instance), caps, instance, lp_x)
        r_value = _value(hits_from_x(prog, xr), weights)
        if r_value > value + 1e-9:
            plan, value, how = plan_from_x(prog, xr, instance, "lp-rounding"), r_value, "lp-rounding"
    extra = {"intervals": prog.K, "lp_bound": lp_bound, "lp_seconds": round(lp_res.wall_seconds, 4), "incumbent_from": how,
             "cover_bound": None, "cover_cuts": 0, "cover_seconds": 0.0}
    bound = None if lp_bound is None else _tightened(None, lp_bound, weights)
    status, method = "feasible", "milp"
    # the capacity covers (step 3) get what the MILP leaves of COVER_SHARE of the limit, if it leaves a gap
    covers_apply = lp_bound is not None and formulation != "lp" and not restricted and weights is not None
    reserve = float(options.get("cover_share", COVER_SHARE)) * time_limit_s if covers_apply else 0.0
    if bound is not None and value >= bound - _tolerance(bound, rel_gap):
        status, method = "optimal", "lp-bound"  # the LP's bound proves Belady's or the rounded plan
    elif formulation != "lp":
        # 2. the exact search over runs of identical keep intervals (solvers/eviction_bnb.py), from the
        # best plan so far with what is left of the time limit. Measured on 500-request slices
        # (benchmarks/eviction.py, parts C and E; docs/eviction.md): it proves all 78 of a sweep of both
        # Mooncake traces at C = 250/500/1,000 within 60 s (slowest 49 s); HiGHS's MILP leaves 5 of 21 open.
        searched = False
        if formulation in ("auto", "branch-and-bound"):
            from servopt.solvers import eviction_bnb
            from servopt.models.eviction import x_from_hits

            if eviction_bnb.non_decreasing(weights):
                left = time_limit_s - (time.perf_counter() - t0)
                found = eviction_bnb.search(prog, instance, caps, time_limit_s=max(0.1, left - 0.2),
                                            rel_gap=rel_gap, incumbent_hits=plan.hits,
                                            node_limit=options.get("node_limit"))
                searched = found.status != "lp_error"
                if searched:
                    method = "branch-and-bound"
                extra.update({"search_status": found.status, "nodes": found.nodes, "runs": found.runs,
                              "search_seconds": round(found.seconds, 4)})
                if found.notes:
                    extra["search_notes"] = found.notes
                f_value = _value(found.hits, weights)
                if f_value > value + 1e-9:
                    plan = plan_from_x(prog, x_from_hits(prog, found.hits), instance, "branch-and-bound")
                    value, how = f_value, "branch-and-bound"
                    extra["incumbent_from"] = how
                if math.isfinite(found.bound):
                    bound = _tightened(bound, found.bound, weights)
                if found.proven or (bound is not None and value >= bound - _tolerance(bound, rel_gap)):
                    status = "optimal"
                elif found.status in ("time_limit", "node_limit"):
                    status = "time_limit"
        if not searched:
            # 2. the MILP from the best plan so far, with what is left of the time limit. Above
            # MILP_MAX_INTERVALS its root alone outruns any sensible limit (the full conversation trace:
            # 105,710 intervals, not through the root in 280 s on a shared 2-core machine): there the MILP is
            # restricted to the intervals the LP left fractional (the rest fixed at the LP's 0/1), whose plans
            # are feasible but whose bound is not a bound of the whole program; the bound stays the LP's.
            left = time_limit_s - (time.perf_counter() - t0) - reserve
            if left > 1.0 and (lp_x is not None or not restricted):
                res, prog, x = solve_direct(instance, caps=caps, weights=weights, time_limit_s=max(0.5, left - 1.0),
                                            rel_gap=rel_gap, warm_hits=plan.hits, prog=prog,
                                            fix_from=lp_x if restricted else None,
                                            # restricted, the MILP is a primal heuristic: HiGHS's own ones stay on
                                            highs_options=None if restricted else MILP_OPTIONS)
                extra.update({"milp_status": res.status, "nodes": res.nodes, "milp_restricted": restricted})
                if x is not None:
                    m_value = _value(hits_from_x(prog, x), weights)
                    if m_value > value + 1e-9:
                        plan, value, how = plan_from_x(prog, x, instance, "milp"), m_value, "milp"
                        extra["incumbent_from"] = how + (" (restricted)" if restricted else "")
                if res.bound is not None and not restricted:
                    bound = _tightened(bound, -res.bound, weights)
                if (res.status == "optimal" and not restricted) or (bound is not None and value >= bound - _tolerance(bound, rel_gap)):
                    status = "optimal"
                elif res.status == "time_limit":
                    status = "time_limit"
        if status != "optimal" and covers_apply and not searched:
            # 3. capacity covers (models/eviction.py) on the LP: a bound the MILP's own cuts did not reach on
            # the slices where it stops, and a second rounding. Measured (docs/eviction.md): handed to the
            # MILP as rows they slowed its nodes more than they helped, so they come last, for the bound.
            t_cut = time.perf_counter()
            budget = time_limit_s - (t_cut - t0) - 0.2
            if budget > 0.2:
                c_bound, c_x, cuts, _, rounds = strengthen_lp(prog, instance, caps, time_limit_s=budget)
                extra.update({"cover_bound": c_bound, "cover_cuts": len(cuts), "cover_rounds": rounds})
                if c_bound is not None:
                    bound = c_bound if bound is None else min(bound, c_bound)
                    xr = fill_plan(prog, round_lp(prog, c_x, caps, instance), caps, instance, c_x)
                    r_value = _value(hits_from_x(prog, xr), weights)
                    if r_value > value + 1e-9:
                        plan, value = plan_from_x(prog, xr, instance, "lp-rounding"), r_value
                        extra["incumbent_from"] = "lp-rounding (covers)"
                    if value >= bound - _tolerance(bound, rel_gap):
                        status = "optimal"
            extra["cover_seconds"] = round(time.perf_counter() - t_cut, 4)
    objective = value if weights is not None else int(round(value))
    if formulation == "lp":
        method = "lp-bound"
    return _result(instance, plan, method=method, status=status, objective=objective, bound=bound,
                   seconds=time.perf_counter() - t0, solver="highs", weights=weights, extra=extra)


def _tolerance(bound: float, rel_gap: float) -> float:
    return max(1e-6, rel_gap * max(1.0, abs(bound)))


def simulate(instance, *, policy: str, options: dict | None = None) -> dict:
    """Replay an online eviction policy (simulator/evict_*.py) and return its plan as result JSON."""
    from servopt.simulator import registry
    from servopt.simulator.eviction_replay import replay
    from servopt.solvers.eviction_belady import merge_replica_plans, replica_indices

    params = dict(options or {})
    mod = registry.get("eviction", policy, "--eviction")
    t0 = time.perf_counter()
    caps, weights = _costs(instance)
    hl = instance.hash_lists()
    parts = []
    for idx in replica_indices(instance):
        if idx:
            pol = registry.make("eviction", mod.NAME, params, "--param")
            parts.append((idx, replay([hl[i] for i in idx], [caps[i] for i in idx], pol, name=mod.NAME)))
    plan = merge_replica_plans(instance.n, parts, mod.NAME)
    value = _value(plan.hits, weights)
    return _result(instance, plan, method=mod.NAME, status="feasible", objective=value, bound=None,
                   seconds=time.perf_counter() - t0, solver=None, weights=weights,
                   extra={"policy": mod.NAME, "params": params})


def check(instance, result: dict) -> list[str]:
    from servopt.analysis.eviction_check import check_result

    return check_result(instance, result)


def compare(instance, *, policies: list[str], time_limit_s: float, options: dict | None = None) -> dict:
    """Each policy's objective and share of the optimum (and of the bound)."""
    options = dict(options or {})
    opt = solve(instance, time_limit_s=time_limit_s, options={"rel_gap": options.get("rel_gap", 1e-4),
                                                               "formulation": options.get("formulation")})
    rows = []
    for name in policies:
        res = simulate(instance, policy=name, options=(options.get("policy_params") or {}).get(name))
        share = res["objective"] / opt["objective"] if opt["objective"] else None
        share_bound = res["objective"] / opt["bound"] if opt["bound"] else None
        rows.append({"policy": res["policy"], "objective": res["objective"], "hit_blocks": res["hit_blocks"],
                     "hit_ratio": res["hit_ratio"], "share_of_optimum": share, "share_of_bound": share_bound,
                     "saved_prefill_ms": res.get("saved_prefill_ms"), "seconds": res["solve_seconds"]})
    return {"kind": KIND, "objective_name": instance.objective, "capacity_blocks": instance.capacity_blocks,
            "optimum_method": opt["method"], "optimum_status": opt["status"], "incumbent": opt["objective"],
            "bound": opt["bound"], "gap": opt["gap"], "optimum_hit_blocks": opt["hit_blocks"],
            "optimum_hit_ratio": opt["hit_ratio"], "solve_seconds": opt["solve_seconds"], "rows": rows}


def render(result: dict, console) -> None:
    from rich.table import Table

    summary = (f"{result.get('objective_name', 'objective')} = {_fmt(result.get('objective'))}, "
               f"bound {_fmt(result.get('bound'))}, gap {_pct(result.get('gap'))}, status {result.get('status')}, "
               f"hit ratio {_pct(result.get('hit_ratio'))}, {_fmt(result.get('solve_seconds'))} s")
    table = Table(title=f"eviction {result.get('method', '')}: C = {result.get('capacity_blocks')} blocks", caption=summary)
    for col in ("id", "hit blocks", "admitted", "evicted"):
        table.add_column(col, justify="left" if col == "id" else "right")
    rows = result.get("requests", [])
    for row in rows[:20]:
        table.add_row(str(row["id"]), str(row["hit_blocks"]), str(len(row["admit"])), str(len(row["evict"])))
    if len(rows) > 20:
        table.add_row(f"... {len(rows) - 20} more", "", "", "")
    console.print(table)


def render_comparison(result: dict, console) -> None:
    from rich.table import Table

    summary = (f"optimum ({result['optimum_method']}): {_fmt(result['incumbent'])}, bound {_fmt(result['bound'])}, "
               f"status {result['optimum_status']}, hit ratio {_pct(result['optimum_hit_ratio'])}, "
               f"{_fmt(result['solve_seconds'])} s")
    table = Table(title=f"eviction: policies vs the offline optimum ({result['objective_name']}, "
                        f"C = {result['capacity_blocks']} blocks)", caption=summary)
    for col in ("policy", "objective", "hit blocks", "hit ratio", "share of optimum", "seconds"):
        table.add_column(col, justify="left" if col == "policy" else "right")
    for row in result["rows"]:
        table.add_row(row["policy"], _fmt(row["objective"]), _fmt(row["hit_blocks"]), _pct(row["hit_ratio"]),
                      _pct(row["share_of_optimum"]), f"{row['seconds']:.3f}")
    console.print(table)


def example_instance():
    return load(jsonio.read_shipped(EXAMPLE))


def demo(*, time_limit_s: float) -> list[dict]:
    """The optimum of the shipped Mooncake slice and three policies (well under a second)."""
    inst = example_instance()
    rows = []
    opt = solve(inst, time_limit_s=time_limit_s, options={})
    rows.append({"instance": EXAMPLE, "method": "belady (optimum)", "objective": opt["objective"], "bound": opt["bound"],
                 "gap": opt["gap"], "ratio": 1.0, "status": opt["status"], "seconds": opt["solve_seconds"]})
    for name in ("lru", "lru_sglang", "belady_tree"):
        res = simulate(inst, policy=name)
        ratio = res["objective"] / opt["objective"] if opt["objective"] else None
        rows.append({"instance": EXAMPLE, "method": name, "objective": res["objective"], "bound": None, "gap": None,
                     "ratio": ratio, "status": res["status"], "seconds": res["solve_seconds"]})
    return rows


def _fmt(x):
    if x is None:
        return "-"
    return f"{x:,.6g}" if isinstance(x, (int, float)) else str(x)


def _pct(x):
    return "-" if x is None else f"{100 * x:.2f}%"
