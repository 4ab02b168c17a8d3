"""Limits of ``kv_schedule`` solves at every size: the method is chosen by size before anything is
built, the policies' fast path gives the same schedules as the general simulator, large instances
get a checked schedule and a valid bound, and formulations too large to build fall back and say so.

No assertion here reads the clock: every decision tested is made on the instance's size."""
from __future__ import annotations

import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from servopt.analysis.kv_bounds import volume_lower_bound
from servopt.analysis.kv_check import check_result
from servopt.analysis.kv_optimum import AUTO_BNB_MAX_REQUESTS, serial_schedule, solve_optimum
from servopt.instances.kv_generators import synthetic
from servopt.instances.kv_schedule import KVScheduleInstance
from servopt.instances.requests import Request
from servopt.simulator.kv_rounds import simulate_rounds


@st.composite
def instances_with_predictions(draw):
    M = draw(st.integers(4, 30))
    n = draw(st.integers(1, 25))
    rows = []
    for i in range(n):
        s = draw(st.integers(0, min(4, M - 1)))
        o = draw(st.integers(1, M - s))
        over = draw(st.one_of(st.none(), st.integers(0, 6)))  # predictions never under-estimate here
        rows.append(Request(f"r{i}", draw(st.integers(0, 15)), s, o,
                            predicted_output_tokens=None if over is None else o + over))
    return KVScheduleInstance(M, tuple(rows), draw(st.sampled_from(["total_latency", "makespan"])))


@settings(max_examples=150, deadline=None)
@given(instances_with_predictions(), st.sampled_from(["mc-sf", "fcfs"]))
def test_fast_path_gives_the_general_simulators_schedule(inst, policy):
    fast = simulate_rounds(inst, policy)
    general = simulate_rounds(inst, policy, max_rounds=10**9)  # max_rounds forces the general loop
    assert fast.to_dict() == general.to_dict()
    assert check_result(inst, {"objective": fast.objective_value(inst), **fast.to_dict()}) == []


def test_under_estimates_take_the_general_path_with_preemptions():
    inst = KVScheduleInstance(6, (Request("a", 0, 1, 5, predicted_output_tokens=1),
                                  Request("b", 0, 1, 5, predicted_output_tokens=1)))
    sched = simulate_rounds(inst, "mc-sf")
    assert sched.preemptions >= 1  # only the general loop preempts
    assert check_result(inst, {"objective": sched.objective_value(inst), **sched.to_dict()}) == []


def test_serial_schedule_is_feasible():
    inst = KVScheduleInstance.from_dict(synthetic(3, arrival_model="poisson_fixed_n", n=30))
    sched = serial_schedule(inst)
    assert check_result(inst, {"objective": sched.objective_value(inst), **sched.to_dict()}) == []


def test_auto_picks_the_exact_search_up_to_its_size_and_proves_small_instances():
    inst = KVScheduleInstance.from_dict(synthetic(np.random.default_rng([1, 8]), arrival_model="all_at_zero", n=8))
    res = solve_optimum(inst, time_limit_s=120, formulation="auto")
    out = res.to_dict(inst)
    assert out["method"] == "auto:branch-and-bound" and out["status"] == "optimal"
    assert check_result(inst, out) == []


def test_auto_beyond_the_exact_size_gives_a_checked_schedule_and_a_valid_bound_at_5000_requests():
    inst = KVScheduleInstance.from_dict(synthetic(5000, arrival_model="poisson_fixed_n", n=5000))
    assert inst.n > AUTO_BNB_MAX_REQUESTS
    out = solve_optimum(inst, time_limit_s=600, formulation="auto").to_dict(inst)
    assert out["method"] == "auto:policies+bounds" and out["status"] == "time_limit"
    mcsf = simulate_rounds(inst, "mc-sf").objective_value(inst)
    assert out["objective"] <= mcsf  # the best online policy's schedule at least
    assert volume_lower_bound(inst) <= out["bound"] <= out["objective"]
    assert 0 < out["gap"] < 1 and out["notes"]
    assert check_result(inst, out) == []


def test_a_formulation_too_large_to_build_falls_back_and_says_so(run_cli, tmp_path):
    path = tmp_path / "kv1000.json"
    path.write_text(json.dumps(synthetic(7, arrival_model="poisson_fixed_n", n=1000)))
    code, out, err = run_cli("solve", path, "--time-limit", "600", "--formulation", "time-indexed", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["method"] == "auto:policies+bounds"
    assert "formulation 'time-indexed' not built" in result["notes"][0] and "memory ceiling" in result["notes"][0]
    assert result["bound"] <= result["objective"]


def test_gap_is_null_where_it_is_undefined():
    from servopt.solvers.highs import relative_gap

    assert relative_gap(0.0, 5.0, "max") is None
    assert relative_gap(0.0, 0.0, "max") == 0.0
    assert relative_gap(10.0, 8.0, "min") == 0.2


def test_auto_hands_an_unproven_search_to_the_mip_which_proves_the_brute_force_optimum(monkeypatch):
    """The search is stubbed to stop without a proof (its incumbent: MC-SF's schedule, its bound: the
    volume bound): the MIP must then start from that incumbent and prove the brute-force optimum."""
    from servopt.analysis import kv_optimum as K

    from kv_bruteforce import brute_force_optimum

    inst = KVScheduleInstance.from_dict(synthetic(np.random.default_rng([4, 2]), arrival_model="poisson_fixed_n", n=6))
    expected, _ = brute_force_optimum(inst)
    mcsf = simulate_rounds(inst, "mc-sf")
    weak = float(volume_lower_bound(inst))
    assert weak < expected <= mcsf.objective_value(inst)
    shares = []

    def unproven_search(instance, *, time_limit_s, **kwargs):
        shares.append(time_limit_s)
        cost = mcsf.objective_value(instance)
        return K.OptimumResult(mcsf, "time_limit", cost, weak, (cost - weak) / cost, time_limit_s, "servopt-bnb",
                               nodes=10, horizon=None, formulation="branch-and-bound", bound_source="branch-and-bound")

    monkeypatch.setattr(K, "_solve_branch_and_bound", unproven_search)
    out = K.solve_auto(inst, time_limit_s=300).to_dict(inst)
    assert shares == [300 * K.AUTO_BNB_SHARE]
    assert out["method"] == "auto:branch-and-bound+time-indexed" and out["status"] == "optimal"
    assert out["objective"] == out["bound"] == expected
    assert check_result(inst, out) == []
    assert "time-indexed MIP ran next" in out["notes"][-1]


def test_auto_keeps_the_whole_limit_for_the_search_when_the_mip_cannot_be_built(monkeypatch):
    from servopt.analysis import kv_optimum as K

    inst = KVScheduleInstance.from_dict(synthetic(np.random.default_rng([4, 3]), arrival_model="all_at_zero", n=6))
    monkeypatch.setattr(K, "MIP_MAX_NONZEROS", 1)
    res = K.solve_auto(inst, time_limit_s=120)
    assert res.method == "auto:branch-and-bound" and res.status == "optimal"
