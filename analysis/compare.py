"""Online policies against the hindsight optimum, with the honest interval for ALG / OPT.

For a ``kv_schedule`` instance: solve the hindsight IP (analysis/kv_optimum.py) within a time
limit, giving an incumbent ``U >= OPT`` and a dual bound ``L <= OPT``; run each policy
(simulator/kv_rounds.py) and re-check its schedule with analysis/kv_check.py. Then

    ALG / U  <=  ALG / OPT  <=  ALG / L

so ``ratio_to_incumbent`` and ``ratio_to_bound`` bracket the true competitive ratio on the
instance; both are equal when the optimum is proven (``L = U``). A policy that cannot finish
(e.g. clearing forever) is reported with status ``livelock`` and no cost.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

from servopt.instances.kv_schedule import KVScheduleInstance


@dataclass
class PolicyRow:
    policy: str
    status: str  # "ok" | "livelock" | "invalid" (checker violation, or a cost below the proven bound)
    cost: float | None
    ratio_to_incumbent: float | None
    ratio_to_bound: float | None
    preemptions: int | None
    seconds: float
    violations: list[str] = field(default_factory=list)


@dataclass
class Comparison:
    instance_name: str
    objective_name: str
    optimum_status: str
    incumbent: float | None
    bound: float | None
    gap: float | None
    solve_seconds: float
    warm_start: dict
    rows: list[PolicyRow]
    bound_source: str | None = None
    formulation: str = "auto"
    method: str | None = None  # the method that produced the optimum side (e.g. "auto:branch-and-bound")
    optimum_requests: list = field(default_factory=list)  # the optimum's schedule rows (servopt explain reads them)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["kind"] = "kv_schedule_comparison"
        return out

    def to_dataframe(self):
        import pandas as pd

        return pd.DataFrame([asdict(r) for r in self.rows]).drop(columns=["violations"])


def _ratio(num, den):
    if num is None or den is None or den <= 0:
        return None
    return float(num) / float(den)


def compare_kv_schedule(instance: KVScheduleInstance, policies: list[str], *, time_limit_s: float,
                        rel_gap: float = 1e-4, policy_params: dict | None = None,
                        formulation: str = "auto") -> Comparison:
    from servopt.analysis.kv_check import check_result
    from servopt.analysis.kv_optimum import formulation_module, solve_optimum
    from servopt.simulator.kv_rounds import PolicyLivelock, PolicyTimeUp, make_policy, policy_module, simulate_rounds

    policy_params = policy_params or {}
    for name in policies:  # fail on a bad name before the (long) solve
        make_policy(name, **policy_params.get(name, {}))
    # rows carry the canonical spelling (an alias such as mcsf is reported as mc-sf)
    policy_params = {policy_module(k).NAME: v for k, v in policy_params.items()}
    policies = [policy_module(name).NAME for name in policies]
    formulation_module(formulation)
    started = time.perf_counter()
    # the optimum gets 70 % of the limit and the policies the rest, so the whole comparison keeps it
    opt = solve_optimum(instance, time_limit_s=0.7 * time_limit_s, rel_gap=rel_gap, formulation=formulation)
    deadline = started + time_limit_s
    rows = []
    for name in policies:
        t0 = time.perf_counter()
        try:
            sched = simulate_rounds(instance, name, deadline=deadline, **policy_params.get(name, {}))
        except PolicyLivelock:
            rows.append(PolicyRow(name, "livelock", None, None, None, None, time.perf_counter() - t0))
            continue
        except PolicyTimeUp:
            rows.append(PolicyRow(name, "time_limit", None, None, None, None, time.perf_counter() - t0))
            continue
        seconds = time.perf_counter() - t0
        cost = sched.objective_value(instance)
        violations = check_result(instance, {"objective": cost, **sched.to_dict()})
        if opt.bound is not None and cost < opt.bound - 1e-6 * max(1.0, abs(cost)):
            violations.append(f"cost {cost:g} is below the lower bound {opt.bound:g}: a bug in the bound or the policy")
        rows.append(PolicyRow(name, "ok" if not violations else "invalid", cost, _ratio(cost, opt.objective),
                              _ratio(cost, opt.bound), sched.preemptions, seconds, violations))
    warm = {k: v for k, v in opt.warm_start.items()}
    return Comparison(instance.name, instance.objective, opt.status, opt.objective, opt.bound, opt.gap,
                      opt.solve_seconds, warm, rows, opt.bound_source, formulation,
                      method=opt.to_dict(instance).get("method"),
                      optimum_requests=opt.schedule.to_dict()["requests"] if opt.schedule is not None else [])
