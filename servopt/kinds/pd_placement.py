"""Front door of kind ``pd_placement``: prefill/decode placement on heterogeneous GPUs (Melange, DistServe).

``load`` validates the JSON (schema, then field rules), fills GPU prices from the catalog when an
offer omits them and derives the capacities from the GPU cost model when the instance has none
(``servopt.costmodel.capacities``). ``solve`` runs the MILP of ``servopt.models.pd_placement``;
infeasible instances raise ``InfeasibleError`` with the reason (a bucket no configuration serves
under the SLO, named; or availability short of the rate, by how much). ``check`` is the
independent checker ``servopt.analysis.pd_check``.

API::

    from servopt.kinds import pd_placement as pd
    inst = pd.load(json.load(open("instances/data/example_pd_melange.json")))
    result = pd.solve(inst, time_limit_s=10, options={})      # result JSON (dict)
    assert pd.check(inst, result) == []
    pd.best_single_type(inst, time_limit_s=10)                 # {gpu type: $/h or None}
"""
from __future__ import annotations

import math
import time
from dataclasses import replace

from servopt import jsonio
from servopt.errors import InfeasibleError, InputError, SolverError
from servopt.instances import pd_placement as pdi

KIND = "pd_placement"
EXAMPLES = ("example_pd_melange.json", "example_pd_derived.json")


def load(data: dict) -> pdi.PDPlacementInstance:
    jsonio.validate(data, KIND)
    inst = pdi.from_dict(data)
    inst = _fill_prices(inst)
    if not inst.capacities:
        from servopt.costmodel.capacities import capacities_for_instance

        inst = inst.with_capacities(capacities_for_instance(inst), source="cost model")
    if inst.links and inst.kv_bytes_per_token is None:
        from servopt.costmodel.capacities import kv_bytes_per_token

        inst = replace(inst, kv_bytes_per_token=kv_bytes_per_token(inst.llm))
    return inst


def _fill_prices(inst: pdi.PDPlacementInstance) -> pdi.PDPlacementInstance:
    if all(g.usd_per_hour is not None for g in inst.gpus):
        return inst
    from servopt.instances.catalog import get_gpu

    gpus = []
    for i, g in enumerate(inst.gpus):
        if g.usd_per_hour is None:
            try:
                price = get_gpu(g.catalog_name, field=f"gpus[{i}].type").usd_per_hour
            except InputError as exc:
                # the type is at fault: a price is optional for catalog GPUs
                raise InputError(exc.field, f"{exc.message}; a GPU outside the catalog needs its own usd_per_hour") from None
            g = replace(g, usd_per_hour=price)
        gpus.append(g)
    return replace(inst, gpus=tuple(gpus))


# ---- solving ------------------------------------------------------------------------------------


def unservable_buckets(inst: pdi.PDPlacementInstance) -> list[tuple[pdi.Bucket, list[str]]]:
    """Buckets that no configuration can serve under the SLO, with the roles that lack one."""
    table = inst.capacity_table()
    out = []
    for b in inst.buckets:
        has = {role: any(k.role == role and bid == b.id for (k, bid) in table) for role in pdi.ROLES}
        colocated_ok = has["colocated"] and "colocated" in inst.roles
        split_ok = has["prefill"] and has["decode"] and "prefill" in inst.roles
        if b.share > 0 and not (colocated_ok or split_ok):
            missing = [r for r in inst.roles if not has[r]]
            out.append((b, missing))
    return out


def _precheck(inst: pdi.PDPlacementInstance) -> None:
    if inst.objective != "min_cost":
        return
    bad = unservable_buckets(inst)
    if bad:
        b, missing = bad[0]
        slo = f" (ttft_ms={inst.slo.ttft_ms:g}, tpot_ms={inst.slo.tpot_ms:g})" if inst.slo and inst.slo.ttft_ms and inst.slo.tpot_ms else ""
        idx = [x.id for x in inst.buckets].index(b.id)
        more = f"; {len(bad) - 1} more bucket(s) likewise" if len(bad) > 1 else ""
        raise InfeasibleError(
            f"buckets[{idx}]: bucket '{b.id}' (prompt {b.prompt_tokens}, output {b.output_tokens} tokens) cannot be served "
            f"under the SLO{slo} by any GPU configuration: no {' / '.join(missing)} capacity{more}"
        )


def _solve_model(inst, *, time_limit_s, rel_gap, formulation, min_served_rps=None, export=None, solver="highs"):
    from servopt.models import pd_placement as model_mod
    from servopt.solvers.highs import solve as highs_solve, write_model

    t0 = time.perf_counter()
    m = model_mod.build(inst, formulation=formulation, min_served_rps=min_served_rps)
    build_s = time.perf_counter() - t0
    if export:
        write_model(m, export)
    res = highs_solve(m, time_limit_s=time_limit_s, rel_gap=rel_gap, solver=solver)
    plan = model_mod.extract(m) if res.has_solution else None
    return res, plan, build_s


def _diagnose_infeasible(inst, *, time_limit_s, formulation) -> str:
    """Why a min-cost instance is infeasible: the most rate the available fleet can serve."""
    relaxed = replace(inst, objective="max_goodput", budget_usd_per_hour=None)
    res, plan, _ = _solve_model(relaxed, time_limit_s=time_limit_s, rel_gap=0.0, formulation=formulation)
    if res.status != "optimal" or plan is None:
        return "the instance is infeasible (proven by highs)"
    short = inst.rate_rps - plan.served_rate_rps
    avail = ", ".join(f"{g.type}: {g.available}" for g in inst.gpus if g.available is not None)
    why = "availability and links" if inst.links else "availability"
    return (
        f"gpus[].available: {why} too small for the rate: the available GPUs ({avail}) serve at most "
        f"{plan.served_rate_rps:.6g} of {inst.rate_rps:g} rps under the SLO (short by {short:.6g} rps, "
        f"{100 * short / inst.rate_rps:.3g}%; slices of {inst.slices} per bucket)"
    )


def _relax_and_fix(inst, *, time_limit_s, rel_gap, formulation, export=None, solver="highs"):
    """Min-cost solve in up to three HiGHS calls on one model (module docstring of models.pd_placement).

    1. slices continuous, counts y integer: its dual bound is a valid lower bound of the MILP
       (at most 60 % of the time limit);
    2. y fixed at phase 1's counts, slices integer: a feasibility MILP; a solution costs exactly
       phase 1's value, so if phase 1 was proven optimal the plan is optimal (at most 20 %);
    3. otherwise the full MILP with the phase-1 bound as a cut (the rest of the time).
    Returns (common fields, plan, stages).
    """
    from servopt.models import pd_placement as mp
    from servopt.solvers.highs import relative_gap, solve as highs_solve, write_model

    wall0 = time.perf_counter()
    t0 = time.perf_counter()
    m = mp.build(inst, formulation=formulation)
    build_s = time.perf_counter() - t0
    if export:
        write_model(m, export)
    stages = []

    # The build is charged to the limit, and 5 % is kept for extracting the plan (99 offers x 50 buckets:
    # 1.8 s of build and 7.1 s in all for a 5 s limit before this accounting).
    budget = 0.95 * time_limit_s - build_s

    def left(share: float = 1.0):
        # Phases 1 and 2 get at most 60 % and 20 % of the budget so that phase 3 always has time.
        remaining = 0.95 * time_limit_s - (time.perf_counter() - wall0)
        return max(0.05, min(remaining, share * budget))  # HiGHS needs a positive limit

    def record(name, res, extra_s=0.0):
        stages.append({"stage": name, "status": res.status, "objective": res.objective, "bound": res.bound,
                       "build_seconds": round(extra_s, 4), "solve_seconds": round(res.wall_seconds, 4), "nodes": res.nodes})

    mp.relax_slices(m)
    r1 = highs_solve(m, time_limit_s=left(0.6), rel_gap=0.0, solver=solver)
    record("relaxation: slices continuous, counts integer", r1, build_s)
    if r1.status == "infeasible":
        return {"status": "infeasible"}, None, stages
    bound = r1.bound
    plan = None
    final = None
    if r1.has_solution:
        y1 = mp.counts(m)
        mp.restore_slices(m)
        mp.fix_counts(m, y1)
        r2 = highs_solve(m, time_limit_s=left(0.2), rel_gap=0.0, solver=solver)
        record("slices integer, counts fixed at the relaxation's", r2)
        mp.unfix_counts(m)
        if r2.has_solution:
            plan = mp.extract(m)
            final = r2
    else:
        mp.restore_slices(m)
    gap = relative_gap(plan.cost_usd_per_hour if plan else None, bound, "min")
    if plan is None or gap is None or gap > max(rel_gap, 1e-9):  # 1e-9: round-off of summed prices
        import pyomo.environ as pyo

        if bound is not None:
            m.bound_cut = pyo.Constraint(expr=m.cost >= bound - 1e-9 * max(1.0, abs(bound)))
        r3 = highs_solve(m, time_limit_s=left(), rel_gap=rel_gap, solver=solver)
        record("full MILP with the relaxation bound", r3)
        if r3.status == "infeasible":
            return {"status": "infeasible"}, None, stages
        if r3.has_solution and (plan is None or r3.objective < plan.cost_usd_per_hour - 1e-9):
            plan = mp.extract(m)
        if r3.bound is not None:
            bound = max(bound, r3.bound) if bound is not None else r3.bound
        final = r3
    objective = plan.cost_usd_per_hour if plan else None
    gap = relative_gap(objective, bound, "min")
    if plan is None:
        status = final.status if final is not None else r1.status
    elif gap is not None and gap <= max(rel_gap, 1e-9):
        status = "optimal"
    else:
        stopped = any(st["status"] == "time_limit" for st in stages)
        status = "time_limit" if stopped or (time.perf_counter() - wall0) >= 0.95 * time_limit_s else "feasible"
    common = {
        "status": status, "objective": objective, "bound": bound, "gap": gap,
        "solve_seconds": round(time.perf_counter() - wall0, 4), "solver": solver,
        "solver_seconds": round(sum(st["solve_seconds"] for st in stages), 4),
        "nodes": sum(st["nodes"] or 0 for st in stages),
    }
    return common, plan, stages


def solve(instance: pdi.PDPlacementInstance, *, time_limit_s: float, options: dict | None = None) -> dict:
    """Solve to proven optimality within ``rel_gap`` (or the time limit); see the module docstring.

    options: ``formulation`` (aggregated | per_slice, optionally ``FORMULATION:STRATEGY`` as the CLI's
    ``--formulation aggregated:direct``), ``strategy`` (``relax-and-fix``, the default for min_cost, or
    ``direct``: one MILP solve), ``rel_gap`` (default 1e-4), ``solver`` (default highs), ``export``.
    """
    options = options or {}
    formulation = options.get("formulation") or "auto"
    chosen_by_auto = formulation == "auto" or formulation.startswith("auto:")
    if chosen_by_auto:  # the aggregated model is the stronger one at every measured size (docs/pd_placement.md)
        formulation = "aggregated" + formulation[len("auto"):]
    strategy = options.get("strategy")
    if ":" in formulation:  # the CLI's --formulation FORMULATION:STRATEGY
        formulation, strategy = formulation.split(":", 1)
    rel_gap = float(options.get("rel_gap", 1e-4) if options.get("rel_gap") is not None else 1e-4)
    solver = options.get("solver") or "highs"
    strategy = strategy or ("relax-and-fix" if instance.objective == "min_cost" else "direct")
    if strategy not in ("relax-and-fix", "direct"):
        raise InputError("--formulation" if ":" in (options.get("formulation") or "") else "strategy", f"unknown strategy '{strategy}' (known: relax-and-fix, direct)")
    if strategy == "relax-and-fix" and instance.objective != "min_cost":
        raise InputError("strategy", "relax-and-fix applies to min_cost instances; use direct for max_goodput")
    _precheck(instance)
    wall0 = time.perf_counter()
    if strategy == "relax-and-fix":
        common, plan, stages = _relax_and_fix(instance, time_limit_s=time_limit_s, rel_gap=rel_gap, formulation=formulation,
                                              export=options.get("export"), solver=solver)
        if common["status"] == "infeasible":
            raise InfeasibleError(_diagnose_infeasible(instance, time_limit_s=time_limit_s, formulation=formulation))
        if plan is None:
            raise SolverError(f"no plan found for the pd_placement instance within {time_limit_s:g} s (status {common['status']})")
    else:
        res, plan, build_s = _solve_model(instance, time_limit_s=time_limit_s, rel_gap=rel_gap, formulation=formulation,
                                          export=options.get("export"), solver=solver)
        if res.status == "infeasible":
            if instance.objective == "min_cost":
                raise InfeasibleError(_diagnose_infeasible(instance, time_limit_s=time_limit_s, formulation=formulation))
            raise InfeasibleError("the instance is infeasible (proven by highs)")
        res.require_solution("the pd_placement instance")
        common = res.common_fields()
        stages = [{"stage": "main", "status": res.status, "objective": res.objective, "bound": res.bound,
                   "build_seconds": round(build_s, 4), "solve_seconds": round(res.wall_seconds, 4), "nodes": res.nodes}]
        if instance.objective == "max_goodput" and res.status == "optimal" and plan is not None:
            # Lexicographic second stage: the cheapest fleet reaching the optimal goodput.
            target = res.objective - 1e-9 * max(1.0, abs(res.objective))
            left = max(1.0, time_limit_s - (time.perf_counter() - wall0))
            res2, plan2, build2 = _solve_model(instance, time_limit_s=left, rel_gap=rel_gap, formulation=formulation,
                                               min_served_rps=target, solver=solver)
            stages.append({"stage": "min cost at that goodput", "status": res2.status, "objective": res2.objective,
                           "bound": res2.bound, "build_seconds": round(build2, 4), "solve_seconds": round(res2.wall_seconds, 4),
                           "nodes": res2.nodes})
            if plan2 is not None and plan2.served_rate_rps >= plan.served_rate_rps - 1e-9:
                plan = plan2
        common["solve_seconds"] = round(time.perf_counter() - wall0, 4)
        if plan is not None and instance.objective == "max_goodput":
            common["objective"] = plan.served_rate_rps  # the stage-2 plan has the same goodput, maybe at lower cost
    out = {"kind": KIND, **common}
    out.update({
        "mode": instance.mode,
        "objective_name": "cost_usd_per_hour" if instance.objective == "min_cost" else "served_rate_rps",
        "formulation": formulation,
        "strategy": strategy,
        "method": ("auto:" if chosen_by_auto else "") + f"{formulation}:{strategy}",
        "capacities_source": instance.capacities_source,
        "rate_rps": instance.rate_rps,
        "stages": stages,
    })
    if plan is not None:
        out.update(plan.to_dict())
        if options.get("explain"):
            # per bucket, binding constraints and the alternatives beside the optimum (analysis/explain.py); the
            # comparison solves share what is left of 1.05 x the limit, at most max(2 s, 20 % of it)
            from servopt.analysis.explain import pd_explanation

            deadline = min(wall0 + 1.05 * time_limit_s, time.perf_counter() + max(2.0, 0.2 * time_limit_s))
            out["explanation"] = pd_explanation(instance, out, deadline=deadline)
    return out


def best_single_type(instance: pdi.PDPlacementInstance, *, time_limit_s: float = 30.0) -> dict[str, float | None]:
    """Min $/hour when the fleet may use one GPU type only (Mélange's baseline); None if it cannot serve."""
    out: dict[str, float | None] = {}
    for g in instance.gpus:
        caps = [c for c in instance.capacities if c.gpu == g.type]
        sub = replace(instance, gpus=(g,), capacities=tuple(caps), links=tuple(l for l in instance.links if l.src == g.type and l.dst == g.type))
        if not caps or unservable_buckets(sub):
            out[g.type] = None
            continue
        res, plan, _ = _solve_model(sub, time_limit_s=time_limit_s, rel_gap=0.0, formulation="aggregated")
        out[g.type] = plan.cost_usd_per_hour if (plan is not None and res.status == "optimal") else None
    return out


def check(instance: pdi.PDPlacementInstance, result: dict) -> list[str]:
    from servopt.analysis.pd_check import check as pd_check

    return pd_check(instance, result)


# ---- presentation ---------------------------------------------------------------------------------


def render(result: dict, console) -> None:
    from rich.table import Table

    obj = result.get("objective")
    unit = "$/h" if result.get("objective_name") == "cost_usd_per_hour" else "rps"
    gap = result.get("gap")
    console.print(
        f"pd_placement ({result.get('mode')}): status {result.get('status')}, objective "
        f"{'-' if obj is None else f'{obj:,.4f}'} {unit}, bound {result.get('bound')}, "
        f"gap {'-' if gap is None else f'{100 * gap:.3g}%'}, {result.get('solve_seconds')} s"
    )
    table = Table(title="fleet")
    for col in ("gpu", "tp", "role", "instances", "GPUs", "$/hour", "utilisation"):
        table.add_column(col, justify="left" if col in ("gpu", "role") else "right")
    for c in result.get("configs", []):
        table.add_row(c["gpu"], str(c["tp"]), c["role"], str(c["count"]), str(c["gpus"]), f"{c['usd_per_hour']:.2f}",
                      f"{100 * c['utilisation']:.1f}%")
    console.print(table)
    served = result.get("served_rate_rps")
    if served is not None:
        console.print(f"served {served:.6g} of {result.get('rate_rps')} rps; cost {result.get('cost_usd_per_hour', 0):.4f} $/h "
                      f"({len(result.get('assignment', []))} assignment rows, {len(result.get('unserved', []))} unserved slices)")
    if result.get("explanation"):
        from servopt.analysis.explain import render_pd

        render_pd(result["explanation"], result, console)


def _example(name: str) -> dict:
    return jsonio.read_shipped(name)


def demo(*, time_limit_s: float) -> list[dict]:
    rows = []
    for name in EXAMPLES:
        inst = load(_example(name))
        result = solve(inst, time_limit_s=time_limit_s, options={})
        singles = best_single_type(inst, time_limit_s=time_limit_s)
        best = min((v for v in singles.values() if v is not None), default=None)
        rows.append({"instance": name, "method": "MILP (optimal mix)", "objective": result["objective"],
                     "bound": result["bound"], "gap": result["gap"], "status": result["status"], "ratio": 1.0,
                     "unit": "$/h", "seconds": result["solve_seconds"]})
        if best is not None:
            rows.append({"instance": name, "method": "best single GPU type", "objective": best, "bound": None, "gap": None,
                         "unit": "$/h",
                         "ratio": best / result["objective"] if result["objective"] else None, "status": "optimal"})
        else:  # say so rather than leave the row out: no single type has the GPUs (or the SLO) for the traffic
            rows.append({"instance": name, "method": "best single GPU type: none can serve it alone", "objective": None,
                         "bound": None, "gap": None, "unit": "$/h", "ratio": None, "status": "infeasible"})
    return rows
