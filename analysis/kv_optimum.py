"""The hindsight optimum of a ``kv_schedule`` instance: online policies give the warm start and
the cut-off, the IP of ``servopt.models.kv_schedule`` gives the optimum (or incumbent and bound).

Steps (research/pyomo-highs.md §2.3 and §6.4: a greedy warm start was the biggest lever on the gap):

1. run the warm-start policies (default MC-SF and FCFS, exact or predicted lengths as the instance
   says) and keep the cheapest schedule ``U``;
2. build the IP with start windows cut by ``U`` and, where the formulation takes it, by the
   volume bound on the other requests (valid: see the model's docstring);
3. solve with HiGHS from that MIP start, within what is left of the time limit: the whole call
   (policies and build included) is charged to it, as in solvers/kv_schedule_certify.py;
4. total and makespan objectives are integers, so the dual bound is rounded up
   (``ceil(bound - 1e-6)``); ``status`` becomes ``optimal`` once the rounded bound meets the
   incumbent;
5. the reported bound is the larger of HiGHS's and the combinatorial volume bound
   (analysis/kv_bounds.py), so a time-out before the root LP does not report a bound of 0;
6. if HiGHS ends without an incumbent (time limit in presolve), the warm-start schedule is
   returned with status ``time_limit`` and whatever bound HiGHS proved: never nothing.
"""
from __future__ import annotations

import inspect
import math
import time
from dataclasses import dataclass, field

from servopt.instances.kv_schedule import KVSchedule, KVScheduleInstance


@dataclass
class OptimumResult:
    schedule: KVSchedule | None
    status: str
    objective: float | None
    bound: float | None
    gap: float | None
    solve_seconds: float
    solver: str
    solver_seconds: float | None = None
    nodes: int | None = None
    horizon: int | None = None
    horizon_is_proven: bool = True
    warm_start: dict = field(default_factory=dict)
    model_size: dict = field(default_factory=dict)
    build_seconds: float = 0.0
    lp_relaxation: bool = False
    formulation: str = "time-indexed"
    bound_source: str | None = None  # "solver" (HiGHS dual bound) or "volume" (analysis/kv_bounds.py)
    method: str | None = None  # set when ``auto`` chose the method: "auto:<method>"
    notes: list = field(default_factory=list)  # what was left out or fallen back on, and why

    def to_dict(self, instance: KVScheduleInstance) -> dict:
        derived = self.formulation if self.formulation in ("branch-and-bound", "policies+bounds") else (
            ("ip" if not self.lp_relaxation else "lp_relaxation") + (
                f"[{self.formulation}]" if self.formulation != "time-indexed" else ""))
        out = {
            "kind": "kv_schedule",
            "method": self.method or derived,
            "objective_name": instance.objective,
            "status": self.status,
            "objective": self.objective,
            "bound": self.bound,
            "bound_source": self.bound_source,
            "gap": self.gap,
            "solve_seconds": round(self.solve_seconds, 4),
            "solver": self.solver,
            "solver_seconds": None if self.solver_seconds is None else round(self.solver_seconds, 4),
            "nodes": self.nodes,
            "horizon": self.horizon,
            "horizon_is_proven": self.horizon_is_proven,
            "build_seconds": round(self.build_seconds, 4),
            "warm_start": self.warm_start,
            "model_size": self.model_size,
            "notes": list(self.notes),
        }
        out["requests"] = self.schedule.to_dict()["requests"] if self.schedule is not None else []
        return out

    def to_dataframe(self):
        import pandas as pd

        return self.schedule.to_dataframe() if self.schedule is not None else pd.DataFrame()


def _integral(instance: KVScheduleInstance) -> bool:
    return instance.objective in ("total_latency", "makespan") or all(
        float(r.weight).is_integer() for r in instance.requests)


def best_policy_schedule(instance: KVScheduleInstance, policies=("mc-sf", "fcfs"), *, deadline: float | None = None):
    """The cheapest schedule among ``policies`` (name, schedule, cost); lengths as the instance says.

    ``deadline`` (a ``time.perf_counter()`` value): a policy still running then is dropped; if none
    finished, the serial schedule (one request at a time in arrival order, always feasible since
    every request fits alone) stands in, named ``serial``."""
    from servopt.simulator.kv_rounds import PolicyTimeUp, simulate_rounds

    best = None
    for name in policies:
        try:
            sched = simulate_rounds(instance, name, deadline=deadline)
        except PolicyTimeUp:
            continue
        cost = sched.objective_value(instance)
        if best is None or cost < best[2]:
            best = (name, sched, cost)
    if best is None:
        sched = serial_schedule(instance)
        best = ("serial", sched, sched.objective_value(instance))
    return best


def serial_schedule(instance: KVScheduleInstance) -> KVSchedule:
    """Requests one at a time in (arrival, position) order: feasible because each fits alone."""
    from servopt.instances.kv_schedule import ScheduledRequest

    reqs = instance.requests
    start = [0] * len(reqs)
    free_at = 0
    for i in sorted(range(len(reqs)), key=lambda i: (reqs[i].arrival, i)):
        start[i] = max(int(reqs[i].arrival), free_at)
        free_at = start[i] + reqs[i].output_tokens
    rows = tuple(ScheduledRequest(r.id, int(r.arrival), p, p + r.output_tokens) for r, p in zip(reqs, start))
    return KVSchedule(rows, objective_name=instance.objective, method="serial")


# ``auto`` (the default method of ``servopt solve`` and ``compare``): the exact branch-and-bound up to
# this many requests, where it proves paper-size instances (n = 40-60) in seconds to minutes and its
# heuristics and root LP stay within the limit (the LP is built only when affordable, see
# solvers/kv_schedule_bnb.node_lp_affordable); above it, the online policies and the combinatorial
# bounds, which take O(n log n) per round and a few MB: n = 5,000 in about a second
# (benchmarks/limits.py prints the measured table).
AUTO_BNB_MAX_REQUESTS = 200


# A MIP formulation is built only when its size, estimated before building (the time-indexed count of
# nonzeros within the best policy's cut-off windows), fits the memory ceiling and half the time limit.
# Measured on the dev machine: Pyomo builds ~1e-5 s and ~300 bytes per nonzero (n = 200: 67 s and 3.2 GB
# for a 5 s limit before this rule), the direct highspy build ~1.4e-6 s.
MIP_MAX_NONZEROS = 3_000_000
MIP_SECONDS_PER_NONZERO = {"time-indexed": 1e-5}
DIRECT_SECONDS_PER_NONZERO = 2e-6


def mip_unaffordable(instance: KVScheduleInstance, formulation: str, time_limit_s: float,
                     policy_cost: float | None = None) -> str | None:
    """Why ``formulation`` cannot be built within the limits, or None when it can (or is no MIP).
    ``policy_cost``: the best policy's objective when the caller has it (it sets the cut-off windows)."""
    if formulation in ("auto", "branch-and-bound", "policies+bounds"):
        return None
    from servopt.solvers.kv_schedule_bnb import estimated_nonzeros

    if instance.n > 2000:
        return f"{instance.n} requests: the model would exceed the memory ceiling"
    if policy_cost is None:
        _, _, policy_cost = best_policy_schedule(instance)
    nonzeros = estimated_nonzeros(instance, policy_cost)
    if nonzeros > MIP_MAX_NONZEROS:
        return f"~{nonzeros:,} nonzeros exceed the memory ceiling of {MIP_MAX_NONZEROS:,}"
    seconds = nonzeros * MIP_SECONDS_PER_NONZERO.get(formulation, DIRECT_SECONDS_PER_NONZERO)
    if seconds > 0.5 * time_limit_s:
        return f"~{nonzeros:,} nonzeros would take ~{seconds:.0f} s to build, over half of the time limit"
    return None


# Share of the limit the branch-and-bound gets inside ``auto`` when the time-indexed MIP can also be
# built in the rest. The search proves most small instances in well under a second (paper family,
# n = 11-12: median 0.24 s, 999 of 1,000 within 40 s); the few it cannot close have a weak combinatorial
# bound that the MIP's LP closes (n = 12, Poisson seed 112: the search ends at [400, 424] after 120 s,
# the time-indexed MIP alone proves 424 in 48 s, and 60 s after 60 s of search), so the MIP gets the
# larger part.
AUTO_BNB_SHARE = 1 / 3


def solve_auto(instance: KVScheduleInstance, *, time_limit_s: float, improve_seconds: float = 0.0) -> OptimumResult:
    """The strongest method for the instance's size, chosen before anything is built.

    Up to ``AUTO_BNB_MAX_REQUESTS`` requests: the exact branch-and-bound; when its share of the limit
    ends without a proof and the time-indexed MIP fits the rest (``mip_unaffordable``), the MIP starts
    from the search's incumbent, and the result keeps the better schedule and the larger bound (both
    bounds are valid, so their maximum is). Beyond: the online policies with the combinatorial bounds."""
    if instance.n <= AUTO_BNB_MAX_REQUESTS:
        t0 = time.perf_counter()
        warm = best_policy_schedule(instance)
        mip_fits = mip_unaffordable(instance, "time-indexed", (1.0 - AUTO_BNB_SHARE) * time_limit_s, warm[2]) is None
        res = _solve_branch_and_bound(instance, time_limit_s=(AUTO_BNB_SHARE if mip_fits else 1.0) * time_limit_s,
                                      warm_start_policies=("mc-sf", "fcfs"), improve_seconds=improve_seconds,
                                      warm=warm)
        res.method = "auto:branch-and-bound"
        left = time_limit_s - (time.perf_counter() - t0)
        if res.status == "optimal" or not mip_fits or res.schedule is None or left < 1.0:
            return res
        mip = solve_optimum(instance, time_limit_s=left, formulation="time-indexed",
                            warm_schedule=("branch-and-bound", res.schedule))
        return _combine(instance, res, mip, time.perf_counter() - t0)
    res = solve_policies_and_bounds(instance, time_limit_s=time_limit_s)
    res.method = "auto:policies+bounds"
    res.notes.insert(0, f"{instance.n} requests > {AUTO_BNB_MAX_REQUESTS}: the exact search and the MIP would not fit "
                        "the time and memory limits, so the best online policy's schedule is reported with the "
                        "combinatorial lower bounds")
    return res


def _combine(instance: KVScheduleInstance, search: OptimumResult, mip: OptimumResult, seconds: float) -> OptimumResult:
    """The branch-and-bound's result, improved by the MIP that ran after it: the cheaper schedule and
    the larger of the two valid lower bounds; proven once they meet."""
    from servopt.solvers.highs import relative_gap

    best = mip if (mip.objective is not None and mip.objective < search.objective - 1e-9) else search
    bounds = [(b, src) for b, src in ((search.bound, search.bound_source), (mip.bound, mip.bound_source))
              if b is not None]
    bound, source = max(bounds, key=lambda t: t[0]) if bounds else (None, None)
    if bound is not None:
        bound = min(bound, best.objective)
    status = "optimal" if bound is not None and bound >= best.objective - 1e-9 else "time_limit"
    notes = list(search.notes) + [
        f"branch-and-bound stopped at [{search.bound}, {search.objective}]; the time-indexed MIP ran next from its "
        f"incumbent and ended {mip.status} at [{mip.bound}, {mip.objective}]"]
    return OptimumResult(best.schedule, status, best.objective, bound, relative_gap(best.objective, bound, "min"),
                         seconds, "servopt-bnb+" + mip.solver, mip.solver_seconds, (search.nodes or 0) + (mip.nodes or 0),
                         search.horizon, True, search.warm_start, mip.model_size, mip.build_seconds,
                         formulation="branch-and-bound", bound_source=source, method="auto:branch-and-bound+time-indexed", notes=notes)


def solve_policies_and_bounds(instance: KVScheduleInstance, *, time_limit_s: float,
                              policies=("mc-sf", "fcfs")) -> OptimumResult:
    """The best of ``policies`` (each dropped if it passes 80 % of the limit) and the larger of the
    volume bound (analysis/kv_bounds.py) and, for total latency, the chain bound
    (solvers/kv_schedule_certify.py). Proven optimal only when the bound meets the schedule."""
    from servopt.analysis.kv_bounds import volume_lower_bound
    from servopt.models.kv_schedule import proven_horizon
    from servopt.solvers.kv_schedule_certify import chain_lower_bound

    t0 = time.perf_counter()
    name, sched, cost = best_policy_schedule(instance, policies, deadline=t0 + 0.8 * time_limit_s)
    bound, source = float(volume_lower_bound(instance)), "volume"
    chain = chain_lower_bound(instance)
    if chain is not None and chain > bound:
        bound, source = float(chain), "chain"
    if _integral(instance):
        bound = float(math.ceil(bound - 1e-6))
    bound = min(bound, cost)
    status = "optimal" if bound >= cost - 1e-9 else "time_limit"
    from servopt.solvers.highs import relative_gap

    notes = [] if name != "serial" else ["no policy finished within the limit: the serial schedule stands in"]
    return OptimumResult(sched, status, cost, bound, relative_gap(cost, bound, "min"), time.perf_counter() - t0,
                         "servopt-policies", None, None, proven_horizon(instance), True,
                         {"policy": name, "objective": cost, "accepted": True, "used_as_cutoff": False}, {}, 0.0,
                         formulation="policies+bounds", bound_source=source, notes=notes)


def formulations() -> dict[str, str]:
    """Formulation name -> module, found in ``servopt.models.kv_schedule*`` modules' ``FORMULATIONS``."""
    import importlib
    import pkgutil

    import servopt.models as pkg

    out = {}
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if info.name == "kv_schedule" or info.name.startswith("kv_schedule_"):
            module = importlib.import_module(f"servopt.models.{info.name}")
            for name in getattr(module, "FORMULATIONS", ()):
                out.setdefault(name, module.__name__)
    # methods without a Pyomo model: the exact combinatorial search (solvers/kv_schedule_bnb.py), the
    # policies with combinatorial bounds, and auto, which picks one of them by size (solve_auto)
    out.setdefault("branch-and-bound", "servopt.solvers.kv_schedule_bnb")
    out.setdefault("policies+bounds", "servopt.analysis.kv_optimum")
    out.setdefault("auto", "servopt.analysis.kv_optimum")
    return out


def formulation_module(name: str):
    import difflib
    import importlib

    from servopt.errors import InputError

    known = formulations()
    if name not in known:
        hint = difflib.get_close_matches(str(name), list(known), n=1)
        suffix = f" (did you mean '{hint[0]}'?)" if hint else ""
        raise InputError("--formulation", f"unknown kv_schedule formulation '{name}'{suffix}; known: {', '.join(known)}")
    return importlib.import_module(known[name])


def solve_optimum(instance: KVScheduleInstance, *, time_limit_s: float, rel_gap: float = 1e-4,
                  warm_start_policies=("mc-sf", "fcfs"), horizon: int | None = None, use_cutoff: bool = True,
                  relax: bool = False, threads: int = 1, solver_options: dict | None = None,
                  formulation: str = "time-indexed", bnb_lp_policy: str | None = None,
                  improve_seconds: float = 0.0, bnb_options: dict | None = None,
                  warm_schedule: tuple[str, KVSchedule] | None = None) -> OptimumResult:
    """Steps of the module docstring; ``formulation`` picks any Pyomo model module with
    ``build(instance, *, formulation, horizon, relax, cutoff)``, ``extract`` and ``warm_start``.
    ``bnb_options``: further keyword arguments of ``solvers.kv_schedule_bnb.branch_and_bound``
    (``candidate_order``, ``justify_deferrals``) for the branch-and-bound formulation.
    ``warm_schedule``: (name, schedule) to start a MIP from instead of running ``warm_start_policies``."""
    from servopt.models import kv_schedule as reference
    from servopt.solvers.highs import relative_gap, solve

    if formulation == "policies+bounds":
        return solve_policies_and_bounds(instance, time_limit_s=time_limit_s)
    if formulation == "auto":
        if relax or horizon is not None:
            from servopt.errors import InputError

            raise InputError("--formulation", "auto picks an exact method; name a formulation for --relax or --horizon")
        return solve_auto(instance, time_limit_s=time_limit_s, improve_seconds=improve_seconds)
    model_mod = formulation_module(formulation)
    if formulation == "branch-and-bound":
        if relax or horizon is not None:
            from servopt.errors import InputError

            raise InputError("--formulation", "branch-and-bound has no LP relaxation and always uses the proven horizon")
        return _solve_branch_and_bound(instance, time_limit_s=time_limit_s, warm_start_policies=warm_start_policies,
                                       lp_policy=bnb_lp_policy, improve_seconds=improve_seconds,
                                       options=bnb_options)

    t0 = time.perf_counter()
    warm = None
    if warm_schedule is not None:
        warm = {"policy": warm_schedule[0], "objective": warm_schedule[1].objective_value(instance),
                "schedule": warm_schedule[1]}
    elif warm_start_policies:
        name, sched, cost = best_policy_schedule(instance, warm_start_policies)
        warm = {"policy": name, "objective": cost, "schedule": sched}
    cutoff = warm["objective"] if (warm and use_cutoff and horizon is None) else None
    extra = {}
    if cutoff is not None and "others_lower_bound" in inspect.signature(model_mod.build).parameters:
        from servopt.analysis.kv_bounds import volume_lower_bounds_without_each

        extra["others_lower_bound"] = volume_lower_bounds_without_each(instance)
    model = model_mod.build(instance, formulation=formulation, horizon=horizon, relax=relax, cutoff=cutoff, **extra)
    build_s = time.perf_counter() - t0
    start = model_mod.warm_start(model, warm["schedule"]) if (warm and not relax) else None
    left = max(time_limit_s - (time.perf_counter() - t0), 0.5)  # HiGHS needs a positive limit
    res = solve(model, time_limit_s=left, rel_gap=rel_gap, threads=threads, warm_start=start, options=solver_options)
    warm_info = {}
    if warm:
        warm_info = {"policy": warm["policy"], "objective": warm["objective"],
                     "accepted": res.extra.get("warm_start_accepted"), "used_as_cutoff": cutoff is not None}
    size = reference.model_size(model)
    data = model._kv
    bound = res.bound
    if relax:
        return OptimumResult(None, res.status, res.objective, res.objective, 0.0 if res.objective is not None else None,
                             res.wall_seconds, res.solver, res.solver_seconds, res.nodes, data.horizon,
                             data.horizon_is_proven, warm_info, size, build_s, lp_relaxation=True,
                             formulation=formulation)
    if res.status == "infeasible":
        return OptimumResult(None, "infeasible", None, None, None, res.wall_seconds, res.solver, res.solver_seconds,
                                 res.nodes, data.horizon, data.horizon_is_proven, warm_info, size, build_s,
                             formulation=formulation)
    schedule = model_mod.extract(model) if res.has_solution else None
    objective = res.objective
    if schedule is not None:
        objective = schedule.objective_value(instance)  # exact, free of solver round-off
    if warm and (schedule is None or warm["objective"] < objective - 1e-9):
        schedule, objective = warm["schedule"], warm["objective"]
        schedule = KVSchedule(tuple(r.__class__(r.id, r.arrival, r.start, r.finish) for r in schedule.requests),
                              objective_name=instance.objective, method=f"ip(incumbent from {warm['policy']})")
    if bound is not None and _integral(instance):
        bound = float(math.ceil(bound - 1e-6))
    from servopt.analysis.kv_bounds import volume_lower_bound

    combinatorial = volume_lower_bound(instance)
    bound_source = "solver"
    if data.horizon_is_proven and (bound is None or combinatorial > bound):
        bound, bound_source = combinatorial, "volume"
    if bound is not None and objective is not None:
        bound = min(bound, objective)
    status = res.status
    if objective is not None and bound is not None and bound >= objective - 1e-9:
        status = "optimal"  # the rounded bound meets the incumbent: proven, even after a time limit
    if not data.horizon_is_proven:
        bound = None  # a horizon below the proven one proves nothing about the true optimum
        if status == "optimal":
            status = "feasible"
    gap = relative_gap(objective, bound, "min")
    return OptimumResult(schedule, status, objective, bound, gap, time.perf_counter() - t0, res.solver,
                         res.solver_seconds, res.nodes, data.horizon, data.horizon_is_proven, warm_info, size, build_s,
                         formulation=formulation, bound_source=bound_source if bound is not None else None)


def _solve_branch_and_bound(instance: KVScheduleInstance, *, time_limit_s: float, warm_start_policies,
                            lp_policy: str | None = None, improve_seconds: float = 0.0,
                            options: dict | None = None, warm: tuple | None = None) -> OptimumResult:
    """The exact search of solvers/kv_schedule_bnb.py from the best online-policy schedule, as an OptimumResult.
    ``warm``: that schedule as ``best_policy_schedule`` returns it, when the caller has it already."""
    from servopt.solvers.kv_schedule_bnb import branch_and_bound

    t0 = time.perf_counter()
    warm_info, incumbent, source = {}, None, "none"
    if warm_start_policies:
        name, sched, cost = warm or best_policy_schedule(instance, warm_start_policies)
        incumbent, source = sched, f"policy:{name}"
        warm_info = {"policy": name, "objective": cost, "accepted": True, "used_as_cutoff": True}
    left = max(0.0, time_limit_s - (time.perf_counter() - t0))
    res = branch_and_bound(instance, time_limit_s=left, incumbent=incumbent, incumbent_source=source,
                           heuristic_seconds=min(0.5, 0.1 * left), improve_seconds=improve_seconds,
                           **({"lp_policy": lp_policy} if lp_policy else {}), **(options or {}))
    return OptimumResult(res.schedule, res.status, res.objective, res.bound, res.gap, time.perf_counter() - t0,
                         "servopt-bnb", res.search_seconds, res.nodes, res.horizon, True, warm_info, {},
                         0.0, formulation="branch-and-bound", bound_source="branch-and-bound", notes=list(res.notes))
