"""Front door of kind ``routing``: routing requests across replicas, each a ``kv_schedule`` round model.

Instance: instances/routing.py; hindsight MILP: models/routing.py; exact method (subset DP over
assignments x the one-replica branch-and-bound): solvers/routing_exact.py; trace-scale bounds and
search: solvers/routing_search.py; online routers: simulator/routing_policies.py; checker:
analysis/routing_check.py. Per-replica model: Jaillet et al., arXiv 2502.07115, §2.

``solve`` formulations: ``auto`` (default: ``exact`` for n <= 12 requests, else ``search``),
``exact``, ``search``, ``time-indexed`` (the Pyomo MILP through HiGHS, warm-started). Every route
first runs every router (with the default per-replica policy) and starts from the best schedule;
the whole run is charged to the time limit.
"""
from __future__ import annotations

import time

from servopt import jsonio
from servopt.errors import InputError

KIND = "routing"
EXAMPLE = "example_routing.json"
ROUTED = True  # ``servopt simulate`` passes --router to ``simulate``
FORMULATIONS = ("auto", "exact", "search", "time-indexed")
DEFAULT_POLICIES = "round_robin,random,jsq,least_tokens,power_of_two,cache_aware,preble_e2,llm_d,dynamo,lmetric"


def load(data: dict):
    from servopt.instances.routing import RoutingInstance

    jsonio.validate(data, KIND)
    return RoutingInstance.from_dict(data)


# tried first when the routers' share of the time limit runs out (least_tokens and llm_d were the best on
# the trace benchmark, benchmarks/results/routing.md)
_ROUTER_ORDER = ("least_tokens", "llm_d", "jsq", "preble_e2", "power_of_two", "lmetric", "cache_aware",
                 "round_robin", "dynamo", "random")


def router_schedules(instance, *, policy: str | None = None, seed: int = 0, seconds: float | None = None) -> dict:
    """Every router's schedule (simulator/routing_policies.py), keyed ``router/policy``; with ``seconds``,
    no new router starts after that long (at least one always runs)."""
    from servopt.simulator.routing_policies import DEFAULT_KV_POLICY, simulate_routing

    policy = policy or DEFAULT_KV_POLICY
    t0 = time.perf_counter()
    out = {}
    for name in _ROUTER_ORDER:
        if out and seconds is not None and time.perf_counter() - t0 > seconds:
            break
        out[f"{name}/{policy}"] = simulate_routing(instance, name, policy=policy, seed=seed)
    return out


def solve(instance, *, time_limit_s: float, options: dict | None = None) -> dict:
    """The hindsight optimum (or incumbent + bound at the time limit) as result JSON."""
    options = dict(options or {})
    formulation = options.get("formulation") or "auto"
    if formulation not in FORMULATIONS:
        raise InputError("--formulation", f"unknown formulation '{formulation}' for routing (known: {', '.join(FORMULATIONS)})")
    solver = options.get("solver") or "highs"
    if solver != "highs":
        raise InputError("--solver", f"routing solves with its own search and highs; got '{solver}'")
    from servopt.solvers.routing_exact import MAX_EXACT_N

    if instance.model == "prefix":
        return _solve_prefix(instance, time_limit_s, formulation, options)
    if formulation == "auto":
        formulation = "exact" if instance.n <= MAX_EXACT_N else "search"
    if options.get("export") and formulation != "time-indexed":
        raise InputError("--export", "only --formulation time-indexed builds a model to export")
    t0 = time.perf_counter()
    # what the process needs around the solve (imports before, writing the result after) comes off the limit
    time_limit_s = max(0.5, time_limit_s - min(3.0, 0.05 * time_limit_s))
    incumbents = router_schedules(instance, seconds=0.15 * time_limit_s)
    left = max(0.1, time_limit_s - (time.perf_counter() - t0))
    extra: dict = {}
    if formulation == "exact":
        from servopt.solvers.routing_exact import solve_exact

        # makespan: the exact method with half the time, then the MILP from its incumbent (measured: each
        # proves n = 10 instances the other does not within 10 s; docs/routing.md)
        portfolio = instance.objective == "makespan" and options.get("formulation") in (None, "auto")
        res = solve_exact(instance, time_limit_s=left / 2 if portfolio else left, incumbents=incumbents)
        status, objective, bound, schedule = res.status, res.objective, res.bound, res.schedule
        extra = {"incumbent_source": res.incumbent_source, "bound_source": "subset-dp",
                 "parts_solved": res.parts_solved, "parts_pruned": res.parts_pruned, "parts_total": res.parts_total}
        solver_name = "servopt-routing-exact"
        if portfolio and status != "optimal":
            # 0.8: model build, hand-over and extraction around HiGHS's own limit (measured to overrun under load)
            left = max(0.1, 0.8 * (time_limit_s - (time.perf_counter() - t0)))
            m_status, m_obj, m_bound, m_sched, _ = _solve_mip(instance, {"routing-exact": schedule}, left, options)
            if m_obj < objective - 1e-9:
                objective, schedule, extra["incumbent_source"] = m_obj, m_sched, "highs"
            if m_bound is not None and m_bound > bound:
                bound, extra["bound_source"] = m_bound, "highs"
            bound = min(bound, objective)
            status = "optimal" if bound >= objective - 1e-9 else "time_limit"
            solver_name = "servopt-routing-exact+highs"
    elif formulation == "search":
        from servopt.solvers.routing_search import solve_search

        res = solve_search(instance, time_limit_s=left, incumbents=incumbents)
        status, objective, bound, schedule = res.status, res.objective, res.bound, res.schedule
        extra = {"incumbent_source": res.incumbent_source, "bound_source": res.bound_source,
                 "bounds": {k: v for k, v in res.bounds.items() if k not in ("best", "best_source")},
                 "search": res.stats}
        solver_name = "servopt-routing-search"
    else:
        status, objective, bound, schedule, extra = _solve_mip(instance, incumbents, left, options)
        solver_name = "highs"
    gap = None if bound is None else (0.0 if objective <= bound + 1e-9 else (objective - bound) / max(abs(objective), 1e-9))
    best_router = min(incumbents, key=lambda k: incumbents[k].objective_value(instance))
    out = {"kind": KIND, "method": formulation, "formulation": formulation, "objective_name": instance.objective,
           "status": status, "objective": objective, "bound": bound, "gap": gap,
           "solve_seconds": round(time.perf_counter() - t0, 4), "solver": solver_name,
           "best_router": best_router, "best_router_objective": incumbents[best_router].objective_value(instance)}
    out.update(extra)
    out["requests"] = schedule.to_dict()["requests"]
    return out


def _prefix_rows(instance, replica_of, hits) -> list[dict]:
    from servopt.solvers.routing_prefix import cost_of

    return [{"id": r.id, "replica": instance.replicas[k].id, "hit_blocks": int(h), "cost": cost_of(instance, j, h)}
            for j, (r, k, h) in enumerate(zip(instance.requests, replica_of, hits))]


def _solve_prefix(instance, time_limit_s, formulation, options) -> dict:
    """The prefix model (solvers/routing_prefix.py): exact subset DP for n <= 12, else bound + search."""
    from servopt.simulator.routing_policies import ROUTERS, simulate_prefix_routing
    from servopt.solvers import routing_prefix as P
    from servopt.solvers.routing_exact import MAX_EXACT_N

    if formulation not in ("auto", "exact", "search"):
        raise InputError("--formulation", f"the prefix model offers auto, exact and search, not '{formulation}'")
    if options.get("export"):
        raise InputError("--export", "the prefix model has no MILP to export")
    t0 = time.perf_counter()
    time_limit_s = max(0.5, time_limit_s - min(3.0, 0.05 * time_limit_s))
    starts, best_router, best_value = {}, None, None
    for name in ROUTERS:
        sim = simulate_prefix_routing(instance, name)
        starts[name] = sim["replica_of"]
        if best_value is None or sim["objective"] < best_value:
            best_router, best_value = name, sim["objective"]
    if formulation == "exact" or (formulation == "auto" and instance.n <= MAX_EXACT_N):
        res = P.solve_exact(instance, time_limit_s=time_limit_s)
    else:
        left = max(0.1, time_limit_s - (time.perf_counter() - t0))
        res = P.solve_search(instance, time_limit_s=left, starts=starts)
    return {"kind": KIND, "model": "prefix", "method": res.method, "formulation": res.method,
            "objective_name": instance.objective, "status": res.status, "objective": res.objective, "bound": res.bound,
            "gap": res.gap, "solve_seconds": round(time.perf_counter() - t0, 4), "solver": "servopt-routing-prefix",
            "bound_source": "subset-dp" if res.method == "prefix-exact" else "pooled-cache",
            "best_router": f"{best_router}/lru", "best_router_objective": best_value,
            "hit_rate": sum(res.hits) / max(1, sum(len(r.prefix_block_ids) for r in instance.requests)),
            "search": res.stats, "requests": _prefix_rows(instance, res.replica_of, res.hits)}


def _simulate_prefix(instance, router, eviction, options) -> dict:
    from servopt.simulator.routing_policies import simulate_prefix_routing

    router_opts, extra, seed = _split_params(dict(options or {}))
    if extra:
        raise InputError(f"--param {sorted(extra)[0]}", "the prefix model takes router.NAME and seed parameters only")
    t0 = time.perf_counter()
    sim = simulate_prefix_routing(instance, router, eviction=eviction or "lru", seed=seed, router_options=router_opts)
    return {"kind": KIND, "model": "prefix", "method": f"router:{sim['router']}/{sim['eviction']}",
            "objective_name": instance.objective, "status": "feasible", "objective": sim["objective"], "bound": None,
            "gap": None, "solve_seconds": round(time.perf_counter() - t0, 4), "solver": None, "router": sim["router"],
            "policy": sim["eviction"], "router_options": router_opts, "seed": seed, "preemptions": 0,
            "hit_rate": sum(sim["hits"]) / max(1, sum(len(r.prefix_block_ids) for r in instance.requests)),
            "requests": _prefix_rows(instance, sim["replica_of"], sim["hits"])}


def _solve_mip(instance, incumbents, time_limit_s, options):
    from servopt.models import routing as model_mod
    from servopt.solvers.highs import solve as highs_solve

    t0 = time.perf_counter()
    name, start = min(incumbents.items(), key=lambda kv: kv[1].objective_value(instance))
    U = start.objective_value(instance)
    m = model_mod.build(instance, cutoff=U)
    if options.get("export"):
        from servopt.solvers.highs import write_model

        write_model(m, options["export"])
    left = max(0.1, time_limit_s - (time.perf_counter() - t0))
    res = highs_solve(m, time_limit_s=left, rel_gap=float(options.get("rel_gap", 1e-4)),
                      warm_start=model_mod.warm_start(m, start))
    schedule, objective = start, U
    if res.has_solution:
        sched = model_mod.extract(m)
        c = sched.objective_value(instance)
        if c < objective - 1e-9:
            schedule, objective = sched, c
    bound = res.bound
    if bound is not None:
        import math

        bound = min(float(math.ceil(bound - 1e-6)), objective)
    status = "optimal" if bound is not None and bound >= objective - 1e-9 else (res.status if res.status != "optimal" else "feasible")
    if status not in ("optimal", "feasible", "time_limit"):
        status = "time_limit"
    return status, objective, bound, schedule, {"incumbent_source": name if objective >= U - 1e-9 else "highs",
                                                "bound_source": "highs"}


def _split_params(params: dict) -> tuple[dict, dict, int]:
    """``--param`` KEY=VALUE: ``router.NAME`` goes to the router, ``seed`` seeds it, the rest to the per-replica policy."""
    router_opts, policy_params, seed = {}, {}, 0
    for key, value in params.items():
        if key.startswith("router."):
            router_opts[key[len("router."):]] = value
        elif key == "seed":
            if not isinstance(value, int) or isinstance(value, bool):
                raise InputError("--param seed", f"expected an integer, got {value!r}")
            seed = value
        else:
            policy_params[key] = value
    return router_opts, policy_params, seed


def simulate(instance, *, policy: str | None, options: dict | None = None, router: str = "round_robin") -> dict:
    """Run ``router`` with ``policy`` on every replica (simulator/routing_policies.py) as result JSON."""
    from servopt.simulator.routing_policies import DEFAULT_KV_POLICY, canonical_router, simulate_routing

    if instance.model == "prefix":  # --policy names the per-replica eviction policy there (default lru)
        return _simulate_prefix(instance, router, policy, options)
    router_opts, policy_params, seed = _split_params(dict(options or {}))
    policy = policy or DEFAULT_KV_POLICY
    t0 = time.perf_counter()
    sched = simulate_routing(instance, router, policy=policy, seed=seed, router_options=router_opts,
                             policy_params=policy_params)
    return {
        "kind": KIND, "method": sched.method, "objective_name": instance.objective, "status": "feasible",
        "objective": sched.objective_value(instance), "bound": None, "gap": None,
        "solve_seconds": round(time.perf_counter() - t0, 4), "solver": None,
        "router": canonical_router(router), "policy": policy, "params": sched.meta.get("params", {}),
        "router_options": router_opts, "seed": seed, "preemptions": sched.preemptions,
        "requests": sched.to_dict()["requests"],
    }


def check(instance, result: dict) -> list[str]:
    from servopt.analysis.routing_check import check_result

    return check_result(instance, result)


def compare(instance, *, policies: list[str], time_limit_s: float, options: dict | None = None) -> dict:
    """Routers (``router`` or ``router/kv_policy``) against the hindsight optimum: [ALG/incumbent, ALG/bound]."""
    from servopt.simulator.routing_policies import DEFAULT_KV_POLICY

    t0 = time.perf_counter()
    rows = []
    for name in policies:
        router, _, policy = name.partition("/")
        t1 = time.perf_counter()
        default = "lru" if instance.model == "prefix" else DEFAULT_KV_POLICY
        res = simulate(instance, policy=policy or default, router=router)
        rows.append({"policy": f"{res['router']}/{res['policy']}", "cost": res["objective"], "hit_rate": res.get("hit_rate"),
                     "preemptions": res["preemptions"], "seconds": time.perf_counter() - t1, "status": res["status"]})
    left = max(0.5, time_limit_s - (time.perf_counter() - t0))
    opt = solve(instance, time_limit_s=left, options={"formulation": (options or {}).get("formulation"),
                                                      "rel_gap": (options or {}).get("rel_gap", 1e-4)})
    for row in rows:
        row["ratio_to_incumbent"] = row["cost"] / opt["objective"] if opt["objective"] else None
        row["ratio_to_bound"] = row["cost"] / opt["bound"] if opt["bound"] else None
    return {"kind": "routing_comparison", "objective_name": instance.objective, "incumbent": opt["objective"],
            "bound": opt["bound"], "gap": opt["gap"], "optimum_status": opt["status"], "formulation": opt["formulation"],
            "solve_seconds": opt["solve_seconds"], "rows": rows}


def render(result: dict, console) -> None:
    from rich.table import Table

    summary = (f"{result.get('objective_name', 'objective')} = {_fmt(result.get('objective'))}, "
               f"bound {_fmt(result.get('bound'))}, gap {_pct(result.get('gap'))}, status {result.get('status')}, "
               f"{_fmt(result.get('solve_seconds'))} s")
    table = Table(title=f"routing {result.get('method', '')}", caption=summary)
    if result.get("model") == "prefix":
        for col in ("id", "replica", "hit blocks", "cost"):
            table.add_column(col, justify="left" if col in ("id", "replica") else "right")
        rows = result.get("requests", [])
        for row in rows[:40]:
            table.add_row(str(row["id"]), str(row["replica"]), str(row["hit_blocks"]), _fmt(row["cost"]))
        if len(rows) > 40:
            table.add_row(f"... {len(rows) - 40} more", "", "", "")
        console.print(table)
        return
    for col in ("id", "replica", "start", "finish", "preempted attempts"):
        table.add_column(col, justify="left" if col in ("id", "replica") else "right")
    rows = result.get("requests", [])
    for row in rows[:40]:
        attempts = ", ".join(f"{a['start']}->{a['preempted_at']}" for a in row.get("attempts", []) or [])
        table.add_row(str(row["id"]), str(row["replica"]), str(row["start"]), str(row["finish"]), attempts or "-")
    if len(rows) > 40:
        table.add_row(f"... {len(rows) - 40} more", "", "", "", "")
    console.print(table)


def render_comparison(result: dict, console) -> None:
    from rich.table import Table

    summary = (f"hindsight optimum ({result['formulation']}): incumbent {_fmt(result['incumbent'])}, bound {_fmt(result['bound'])}, "
               f"gap {_pct(result['gap'])}, status {result['optimum_status']}, {_fmt(result['solve_seconds'])} s")
    table = Table(title=f"routing: routers vs hindsight optimum ({result['objective_name']})", caption=summary)
    for col in ("router/policy", "cost", "ALG/incumbent", "ALG/bound", "preemptions", "seconds"):
        table.add_column(col, justify="left" if col == "router/policy" else "right")
    for row in result["rows"]:
        table.add_row(row["policy"], _fmt(row["cost"]), _ratio(row["ratio_to_incumbent"]), _ratio(row["ratio_to_bound"]),
                      _fmt(row["preemptions"]), f"{row['seconds']:.3f}")
    console.print(table)
    console.print("ALG/OPT lies in [ALG/incumbent, ALG/bound]; the two ends are equal once the optimum is proven.")


def example_instance():
    return load(jsonio.read_shipped(EXAMPLE))


def demo(*, time_limit_s: float) -> list[dict]:
    """Solve the shipped example exactly and run four routers on it (a few seconds)."""
    inst = example_instance()
    rows = []
    t0 = time.perf_counter()
    opt = solve(inst, time_limit_s=time_limit_s)
    rows.append({"instance": EXAMPLE, "method": "hindsight optimum", "objective": opt["objective"], "bound": opt["bound"],
                 "gap": opt["gap"], "ratio": 1.0, "status": opt["status"], "seconds": time.perf_counter() - t0})
    for name in ("round_robin", "jsq", "cache_aware", "llm_d"):
        t1 = time.perf_counter()
        res = simulate(inst, policy=None, router=name)
        rows.append({"instance": EXAMPLE, "method": name, "objective": res["objective"], "bound": None, "gap": None,
                     "ratio": res["objective"] / opt["objective"] if opt["objective"] else None, "status": res["status"],
                     "seconds": time.perf_counter() - t1})
    return rows


def _fmt(x):
    if x is None:
        return "-"
    return f"{x:,.6g}" if isinstance(x, (int, float)) else str(x)


def _pct(x):
    return "-" if x is None else f"{100 * x:.2f}%"


def _ratio(x):
    return "-" if x is None else f"{x:.4f}"
