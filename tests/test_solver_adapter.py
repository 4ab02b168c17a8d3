"""The HiGHS adapter: interface in use, status mapping, gap definition, bound after a time limit."""
from __future__ import annotations

import itertools

import pyomo.environ as pyo
import pytest

from servopt.errors import SolverError
from servopt.solvers.highs import relative_gap, solve


def _knapsack(values, weights, capacity):
    m = pyo.ConcreteModel()
    items = range(len(values))
    m.x = pyo.Var(items, domain=pyo.Binary)
    m.cap = pyo.Constraint(expr=sum(weights[i] * m.x[i] for i in items) <= capacity)
    m.obj = pyo.Objective(expr=sum(values[i] * m.x[i] for i in items), sense=pyo.maximize)
    return m


def _brute_force_knapsack(values, weights, capacity):
    best = 0
    for pick in itertools.product([0, 1], repeat=len(values)):
        if sum(w * p for w, p in zip(weights, pick)) <= capacity:
            best = max(best, sum(v * p for v, p in zip(values, pick)))
    return best


def test_uses_contrib_highs_interface():
    m = _knapsack([3, 4], [1, 1], 1)
    res = solve(m, time_limit_s=10, rel_gap=0)
    assert res.interface == "pyomo.contrib.solver.highs"
    assert res.solver == "highs"


@pytest.mark.parametrize("seed", range(5))
def test_knapsack_matches_brute_force(seed):
    import random

    rng = random.Random(seed)
    values = [rng.randint(1, 20) for _ in range(10)]
    weights = [rng.randint(1, 10) for _ in range(10)]
    capacity = sum(weights) // 2
    m = _knapsack(values, weights, capacity)
    res = solve(m, time_limit_s=10, rel_gap=0)
    assert res.status == "optimal"
    assert res.objective == _brute_force_knapsack(values, weights, capacity)
    assert res.gap == 0
    chosen = [i for i in range(10) if pyo.value(m.x[i]) > 0.5]
    assert sum(values[i] for i in chosen) == res.objective


def test_infeasible_is_reported():
    m = pyo.ConcreteModel()
    m.x = pyo.Var(domain=pyo.NonNegativeIntegers)
    m.c = pyo.Constraint(expr=m.x <= -1)
    m.obj = pyo.Objective(expr=m.x)
    res = solve(m, time_limit_s=5)
    assert res.status == "infeasible" and not res.has_solution
    with pytest.raises(Exception, match="infeasible"):
        res.require_solution()


def test_time_limit_required():
    with pytest.raises(SolverError, match="time limit"):
        solve(_knapsack([1], [1], 1), time_limit_s=0)


def test_gap_definition():
    assert relative_gap(110.0, 100.0, "min") == pytest.approx(10 / 110)
    assert relative_gap(100.0, 110.0, "max") == pytest.approx(0.1)
    assert relative_gap(None, 1.0, "min") is None
    assert relative_gap(1.0, float("-inf"), "min") is None


def test_warm_start_reaches_highs():
    values = [5, 4, 3, 2, 1, 7, 8]
    weights = [2, 3, 4, 1, 2, 5, 6]
    m = _knapsack(values, weights, 9)
    start = [(m.x[i], 1 if i in (0, 1, 3) else 0) for i in range(7)]
    res = solve(m, time_limit_s=10, rel_gap=0, warm_start=start, options={"presolve": "off"})
    assert res.extra["warm_start_accepted"] is True
    assert res.objective == _brute_force_knapsack(values, weights, 9)


def test_presolve_rule_switches_off_where_it_would_overrun_the_limit():
    # HiGHS's presolve does not stop at the time limit (solvers/highs.py docstring): ~1e-5 s per nonzero
    from servopt.solvers.highs import _with_presolve_rule

    assert _with_presolve_rule(None, 1_000_000, 5.0)["presolve"] == "off"  # ~10 s estimated, 1.25 s allowed
    assert _with_presolve_rule(None, 1_000_000, 60.0)["presolve"] == "choose"
    assert _with_presolve_rule({"presolve": "on"}, 1_000_000, 5.0)["presolve"] == "on"  # the caller wins
    assert _with_presolve_rule({"mip_rel_gap": 0.1}, 100, 1.0) == {"mip_rel_gap": 0.1, "presolve": "choose"}


def test_solve_highspy_resets_presolve_on_a_reused_model():
    import highspy
    import numpy as np

    from servopt.solvers.highs import solve_highspy

    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    n = 2000  # 2000 x 2000 dense rows: 4 M nonzeros, ~40 s of presolve by the rule's rate
    h.addVars(n, np.zeros(n), np.ones(n))
    h.changeColsCost(n, np.arange(n, dtype=np.int32), -np.ones(n))
    for _ in range(n):
        h.addRow(-np.inf, 1.0, n, np.arange(n, dtype=np.int32), np.ones(n))
    def presolve():
        value = h.getOptionValue("presolve")
        return value[1] if isinstance(value, tuple) else value  # highspy 1.15 returns (status, value)

    solve_highspy(h, time_limit_s=1.0)
    assert presolve() == "off"
    solve_highspy(h, time_limit_s=1e4)
    assert presolve() == "choose"
