"""Front door of kind ``kv_schedule``: KV-memory-constrained scheduling in rounds.

Instance: instances/kv_schedule.py; hindsight IP: models/kv_schedule.py (solved through
analysis/kv_optimum.py); online policies: simulator/kv_rounds.py and simulator/kv_policy_*.py;
checker: analysis/kv_check.py. Model and semantics: Jaillet et al., arXiv 2502.07115.
"""
from __future__ import annotations

import time

from servopt import jsonio
from servopt.errors import InputError

KIND = "kv_schedule"
EXAMPLE = "example_kv_schedule.json"


def load(data: dict):
    from servopt.instances.kv_schedule import KVScheduleInstance

    jsonio.validate(data, KIND)
    return KVScheduleInstance.from_dict(data)


def solve(instance, *, time_limit_s: float, options: dict | None = None) -> dict:
    """The hindsight optimum (or incumbent + bound at the time limit) as result JSON."""
    from servopt.analysis.kv_optimum import solve_optimum

    options = dict(options or {})
    formulation = options.get("formulation") or "auto"
    solver = options.get("solver") or "highs"
    if solver != "highs":
        raise InputError("--solver", f"kv_schedule solves with highs (warm start and bound); got '{solver}'")
    horizon = options.get("horizon")
    improve_seconds = float(options.get("improve_seconds") or 0.0)
    if horizon is not None and (not isinstance(horizon, int) or horizon < 1):
        raise InputError("--horizon", f"must be a positive integer, got {horizon!r}")
    from servopt.analysis.kv_optimum import formulation_module, mip_unaffordable

    model_mod = formulation_module(formulation)  # a bad name fails here, before any work
    if options.get("export"):
        # auto and the combinatorial methods have no model of their own: export the reference IP
        export_name = formulation if hasattr(model_mod, "build") else "time-indexed"
        if formulation not in ("auto", "policies+bounds") and not hasattr(model_mod, "build"):
            raise InputError("--export", f"formulation '{formulation}' is a combinatorial search with no model to export")
        too_large = mip_unaffordable(instance, export_name, float("inf"))
        if too_large:
            raise InputError("--export", f"the {export_name} model of {instance.n} requests is too large to write "
                                         f"({too_large})")
        from servopt.solvers.highs import write_model

        export_mod = formulation_module(export_name)
        write_model(export_mod.build(instance, formulation=export_name, horizon=horizon), options["export"])
    fallback = mip_unaffordable(instance, formulation, time_limit_s) if not options.get("relax") and horizon is None else None
    if fallback:
        from servopt.analysis.kv_optimum import solve_auto

        opt = solve_auto(instance, time_limit_s=time_limit_s, improve_seconds=improve_seconds)
        opt.notes.insert(0, f"formulation '{formulation}' not built: {fallback}; fell back to auto")
        return opt.to_dict(instance)
    if formulation in getattr(model_mod, "DIRECT_PIPELINE", ()) and horizon is None and not options.get("relax"):
        # the certify pipeline: direct highspy build + heuristics + chain bound (solvers/kv_schedule_certify.py)
        from servopt.analysis.kv_optimum import best_policy_schedule
        from servopt.solvers.kv_schedule_certify import certify

        name, sched, _ = best_policy_schedule(instance)
        return certify(instance, formulation=formulation, time_limit_s=time_limit_s,
                       rel_gap=float(options.get("rel_gap", 1e-4)), warm_starts={name: sched},
                       improve_seconds=improve_seconds).to_dict(instance)
    if improve_seconds and formulation not in ("branch-and-bound", "auto"):
        raise InputError("--improve-seconds", f"applies to auto, branch-and-bound and the aggregated* formulations, not '{formulation}'")
    opt = solve_optimum(instance, time_limit_s=time_limit_s, rel_gap=float(options.get("rel_gap", 1e-4)),
                        horizon=horizon, relax=bool(options.get("relax", False)), formulation=formulation,
                        improve_seconds=improve_seconds)
    result = opt.to_dict(instance)
    if result["status"] == "infeasible":
        from servopt.errors import InfeasibleError

        raise InfeasibleError(f"no schedule fits within the horizon {opt.horizon} (a user-given horizon is too short)")
    return result


def simulate(instance, *, policy: str, options: dict | None = None) -> dict:
    """Run an online policy (simulator/kv_rounds.py) and return its schedule as result JSON."""
    from servopt.simulator.kv_rounds import simulate_rounds

    params = dict(options or {})
    t0 = time.perf_counter()
    sched = simulate_rounds(instance, policy, **params)
    seconds = time.perf_counter() - t0
    return {
        "kind": KIND,
        "method": sched.method,
        "objective_name": instance.objective,
        "status": "feasible",
        "objective": sched.objective_value(instance),
        "bound": None,
        "gap": None,
        "solve_seconds": round(seconds, 4),
        "solver": None,
        "policy": policy,
        "params": sched.meta.get("params", {}),
        "preemptions": sched.preemptions,
        "requests": sched.to_dict()["requests"],
    }


def check(instance, result: dict) -> list[str]:
    from servopt.analysis.kv_check import check_result

    return check_result(instance, result)


def render(result: dict, console) -> None:
    from rich.table import Table

    summary = (f"{result.get('objective_name', 'objective')} = {_fmt(result.get('objective'))}, "
               f"bound {_fmt(result.get('bound'))}, gap {_pct(result.get('gap'))}, status {result.get('status')}, "
               f"{_fmt(result.get('solve_seconds'))} s")
    table = Table(title=f"kv_schedule {result.get('method', '')}", caption=summary)
    for col in ("id", "arrival", "start", "finish", "latency", "preempted attempts"):
        table.add_column(col, justify="left" if col == "id" else "right")
    rows = result.get("requests", [])
    for row in rows[:40]:
        attempts = ", ".join(f"{a['start']}->{a['preempted_at']}" for a in row.get("attempts", []) or [])
        table.add_row(str(row["id"]), str(row.get("arrival", "-")), str(row["start"]), str(row["finish"]),
                      str(row.get("latency", "-")), attempts or "-")
    if len(rows) > 40:
        table.add_row(f"... {len(rows) - 40} more", "", "", "", "", "")
    console.print(table)


def example_instance():
    return load(jsonio.read_shipped(EXAMPLE))


def demo(*, time_limit_s: float) -> list[dict]:
    """Solve the shipped example and run three policies on it (a few seconds)."""
    inst = example_instance()
    rows = []
    t0 = time.perf_counter()
    opt = solve(inst, time_limit_s=time_limit_s, options={"rel_gap": 0.0})
    rows.append({"instance": EXAMPLE, "method": f"optimum ({opt.get('method')})", "objective": opt["objective"], "bound": opt["bound"],
                 "gap": opt["gap"], "ratio": 1.0, "status": opt["status"], "seconds": time.perf_counter() - t0})
    for name in ("mc-sf", "fcfs", "vllm"):
        t1 = time.perf_counter()
        res = simulate(inst, policy=name)
        ratio = res["objective"] / opt["objective"] if opt["objective"] else None
        rows.append({"instance": EXAMPLE, "method": name, "objective": res["objective"], "bound": None, "gap": None,
                     "ratio": ratio, "status": res["status"], "seconds": time.perf_counter() - t1})
    return rows


def _fmt(x):
    if x is None:
        return "-"
    return f"{x:,.6g}" if isinstance(x, (int, float)) else str(x)


def _pct(x):
    return "-" if x is None else f"{100 * x:.2f}%"


def compare(instance, *, policies: list[str], time_limit_s: float, options: dict | None = None) -> dict:
    """Policies vs the hindsight optimum (analysis/compare.py) as JSON."""
    from servopt.analysis.compare import compare_kv_schedule

    options = dict(options or {})
    return compare_kv_schedule(instance, policies, time_limit_s=time_limit_s,
                               rel_gap=float(options.get("rel_gap", 1e-4)),
                               policy_params=options.get("policy_params"),
                               formulation=options.get("formulation") or "auto").to_dict()


def render_comparison(result: dict, console) -> None:
    from rich.table import Table

    # caption the optimum side by the method that produced it (branch-and-bound, an IP, policies+bounds)
    method = result.get("method") or result.get("formulation") or "optimum"
    summary = (f"{method}: incumbent {_fmt(result['incumbent'])}, bound {_fmt(result['bound'])}, "
               f"gap {_pct(result['gap'])}, status {result['optimum_status']}, {_fmt(result['solve_seconds'])} s")
    table = Table(title=f"kv_schedule: policies vs hindsight optimum ({result['objective_name']})", caption=summary)
    for col in ("policy", "cost", "ALG/incumbent", "ALG/bound", "preemptions", "seconds", "status"):
        table.add_column(col, justify="left" if col in ("policy", "status") else "right")
    for row in result["rows"]:
        table.add_row(row["policy"], _fmt(row["cost"]), _ratio(row["ratio_to_incumbent"]), _ratio(row["ratio_to_bound"]),
                      _fmt(row["preemptions"]), f"{row['seconds']:.3f}", row["status"])
    console.print(table)
    console.print("ALG/OPT lies in [ALG/incumbent, ALG/bound]; the two ends are equal once the optimum is proven.")


def _ratio(x):
    return "-" if x is None else f"{x:.4f}"
