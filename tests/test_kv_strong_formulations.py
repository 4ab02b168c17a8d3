"""Every KV-scheduling formulation against brute force and the plain IP on tiny instances;
the direct highspy builder against the Pyomo models (same columns, rows, nonzeros, LP bound);
heuristic and certified schedules against the independent checker."""
from __future__ import annotations

import numpy as np
import pyomo.environ as pyo
import pytest

from kv_bruteforce import brute_force_optimum
from servopt.analysis.kv_check import check_result
from servopt.analysis.kv_optimum import solve_optimum
from servopt.errors import InputError
from servopt.instances.kv_generators import synthetic
from servopt.instances.kv_schedule import KVScheduleInstance
from servopt.instances.requests import Request
from servopt.models import kv_schedule as reference
from servopt.models import kv_schedule_aggregated as aggregated
from servopt.solvers.highs import solve
from servopt.solvers.kv_schedule_certify import (FORMULATIONS, _Arrays, best_heuristic_schedule, certify,
                                                 serial_schedule)
from servopt.solvers.kv_schedule_direct import build_direct, solve_direct

LATENCY_FORMULATIONS = FORMULATIONS


def _instance(rows, M, objective="total_latency"):
    reqs = tuple(Request(f"r{i}", a, s, o, weight=w) for i, (a, s, o, w) in enumerate(rows))
    return KVScheduleInstance(M, reqs, objective)


def _random_instance(seed, *, objective="total_latency", same_prompt=False):
    """Tiny instances with repeated types (so aggregation has something to merge)."""
    rng = np.random.default_rng(seed)
    M = int(rng.integers(5, 12))
    n = int(rng.integers(3, 7))
    s0 = int(rng.integers(0, 3))
    rows = []
    for _ in range(n):
        s = s0 if same_prompt else int(rng.integers(0, 3))
        o = int(rng.integers(1, min(4, M - s) + 1))
        rows.append((int(rng.integers(0, 3)), s, o, float(rng.integers(1, 3))))
    return _instance(rows, M, objective)


def _pyomo_model(inst, formulation, relax, cutoff=None):
    if formulation == "time-indexed":
        return reference.build(inst, relax=relax, cutoff=cutoff)
    return aggregated.build(inst, formulation=formulation, relax=relax, cutoff=cutoff)


def _rows_and_nonzeros(model):
    rows = nnz = 0
    for con in model.component_data_objects(pyo.Constraint, active=True):
        rows += 1
        from pyomo.repn import generate_standard_repn

        nnz += len(generate_standard_repn(con.body).linear_vars)
    return rows, nnz


def test_hand_computed_aggregated():
    # M = 5, two identical requests s=1, o=3 at round 0 (footprints 2, 3, 4): the second can start
    # only when the first has finished (4 + 2 > 5 in every overlap), finishes 3 and 6, total 9.
    # Aggregated: one type with n = 2.
    inst = _instance([(0, 1, 3, 1.0), (0, 1, 3, 1.0)], 5)
    for formulation in LATENCY_FORMULATIONS:
        res = certify(inst, formulation=formulation, time_limit_s=10, rel_gap=0, heuristic_seconds=0)
        assert res.status == "optimal" and res.objective == 9 and res.bound == 9
        assert sorted(r.finish for r in res.schedule.requests) == [3, 6]


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("objective", ["total_latency", "weighted_latency"])
def test_every_formulation_equals_brute_force_and_plain_ip(seed, objective):
    inst = _random_instance(seed, objective=objective, same_prompt=seed % 2 == 0)
    oracle, _ = brute_force_optimum(inst)
    plain = solve_optimum(inst, time_limit_s=20, rel_gap=0)
    assert plain.status == "optimal" and plain.objective == oracle
    for formulation in LATENCY_FORMULATIONS:
        res = certify(inst, formulation=formulation, time_limit_s=20, rel_gap=0, heuristic_seconds=0.05)
        assert res.status == "optimal", (formulation, res.status)
        assert res.objective == oracle and res.bound == oracle, formulation
        assert check_result(inst, res.to_dict(inst)) == []
        # the solver alone (no heuristic incumbent, full proven horizon) reaches the same optimum
        dm = build_direct(inst, formulation=formulation)
        sr, sched = solve_direct(dm, time_limit_s=20, rel_gap=0)
        assert sr.status == "optimal" and round(sr.objective, 6) == oracle
        assert sched.objective_value(inst) == oracle
        assert check_result(inst, {"requests": sched.to_dict()["requests"], "objective": oracle}) == []


def test_makespan_time_indexed_direct_equals_brute_force():
    inst = _random_instance(3, objective="makespan")
    oracle, _ = brute_force_optimum(inst)
    res = certify(inst, formulation="time-indexed", time_limit_s=20, rel_gap=0, heuristic_seconds=0.05)
    assert res.status == "optimal" and res.objective == oracle
    with pytest.raises(InputError, match="makespan"):
        certify(inst, formulation="aggregated", time_limit_s=5)


@pytest.mark.parametrize("formulation", LATENCY_FORMULATIONS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_direct_builder_equals_pyomo_model(formulation, seed):
    """Same columns, rows, nonzeros and LP bound; same cut-off windows."""
    inst = _random_instance(10 + seed, same_prompt=True)
    cutoff = None if seed == 0 else brute_force_optimum(inst)[0] + 2
    dm = build_direct(inst, formulation=formulation, relax=True, cutoff=cutoff)
    model = _pyomo_model(inst, formulation, relax=True, cutoff=cutoff)
    rows, nnz = _rows_and_nonzeros(model)
    assert dm.size["columns"] == sum(1 for _ in model.component_data_objects(pyo.Var))
    assert (dm.size["rows"], dm.size["nonzeros"]) == (rows, nnz)
    direct_lp, _ = solve_direct(dm, time_limit_s=20, rel_gap=0)
    pyomo_lp = solve(model, time_limit_s=20, rel_gap=0)
    assert direct_lp.status == pyomo_lp.status == "optimal"
    assert direct_lp.objective == pytest.approx(pyomo_lp.objective, abs=1e-6)


def test_direct_builder_equals_pyomo_model_on_a_paper_shaped_instance():
    # a scaled-down member of the paper's family (one s, all at round 0, repeated lengths)
    inst = KVScheduleInstance.from_dict(synthetic(5, n=10, memory_tokens=16, prompt_tokens=2))
    for formulation in LATENCY_FORMULATIONS:
        dm = build_direct(inst, formulation=formulation, relax=True)
        model = _pyomo_model(inst, formulation, relax=True)
        assert (dm.size["rows"], dm.size["nonzeros"]) == _rows_and_nonzeros(model)
        lp_direct, _ = solve_direct(dm, time_limit_s=30, rel_gap=0)
        lp_pyomo = solve(model, time_limit_s=30, rel_gap=0)
        assert lp_direct.objective == pytest.approx(lp_pyomo.objective, abs=1e-6)


def test_aggregation_merges_identical_requests():
    inst = _instance([(0, 1, 2, 1.0)] * 3 + [(0, 1, 3, 1.0)], 8)
    assert build_direct(inst, formulation="aggregated").groups.count.tolist() == [3, 1]
    assert build_direct(inst, formulation="time-indexed").groups.count.tolist() == [1, 1, 1, 1]


def test_cardinality_cuts_cut_off_a_fractional_point_the_plain_lp_keeps():
    # M = 12, s = 2: two o=9 requests hold up to 11 tokens (> M/2), at most one such alive per round.
    # The cuts can only raise the LP bound (they are valid, and the LP without them is a relaxation);
    # here they do (measured: 40.48 -> 41.18; optimum 47).
    inst = _instance([(0, 2, o, 1.0) for o in (3, 2, 9, 9, 6, 1)], 12)
    plain, _ = solve_direct(build_direct(inst, formulation="aggregated", relax=True), time_limit_s=10, rel_gap=0)
    cut, _ = solve_direct(build_direct(inst, formulation="aggregated-card", relax=True), time_limit_s=10, rel_gap=0)
    oracle, _ = brute_force_optimum(inst)
    assert plain.objective <= cut.objective + 1e-9 <= oracle + 1e-9
    assert cut.objective > plain.objective + 1e-6


@pytest.mark.parametrize("seed", range(6))
def test_heuristic_schedules_pass_the_independent_checker(seed):
    inst = KVScheduleInstance.from_dict(synthetic(seed, n=20, arrival_model="poisson_fixed_n" if seed % 2 else "all_at_zero"))
    arr = _Arrays.of(inst)
    starts = serial_schedule(arr, list(range(inst.n)))
    rows = [{"id": r.id, "start": int(p), "finish": int(p) + r.output_tokens} for r, p in zip(inst.requests, starts)]
    assert check_result(inst, {"requests": rows, "objective": arr.cost(starts)}) == []
    name, sched, cost, tried = best_heuristic_schedule(inst, heuristic_seconds=0.3)
    assert cost <= min(tried["sgs-spt"], tried["sgs-fcfs"])
    assert check_result(inst, {"requests": sched.to_dict()["requests"], "objective": cost}) == []


def test_certify_reports_bound_and_gap_within_the_time_limit():
    inst = KVScheduleInstance.from_dict(synthetic(1, n=14, memory_tokens=24))
    res = certify(inst, formulation="aggregated", time_limit_s=3, heuristic_seconds=0.2)
    d = res.to_dict(inst)
    assert d["status"] in ("optimal", "time_limit", "feasible")
    assert d["bound"] is not None and d["bound"] <= d["objective"]
    assert d["horizon_is_proven"] is True
    assert check_result(inst, d) == []


def test_unknown_formulation_is_an_input_error():
    inst = _instance([(0, 1, 2, 1.0)], 4)
    with pytest.raises(InputError, match="formulation"):
        certify(inst, formulation="magic", time_limit_s=5)


def test_chain_bound_is_tight_on_the_hand_example_and_never_above_the_optimum():
    from servopt.solvers.kv_schedule_certify import chain_lower_bound

    # hand example: P = 4 > M/2 for both, head-room 0, chain 3 + (3 + 3) = 9 = optimum
    assert chain_lower_bound(_instance([(0, 1, 3, 1.0), (0, 1, 3, 1.0)], 5)) == 9
    assert chain_lower_bound(_instance([(0, 1, 3, 1.0)], 5, objective="makespan")) is None
    tight = 0
    for seed in range(40):
        inst = _random_instance(100 + seed, same_prompt=seed % 2 == 0)
        oracle, _ = brute_force_optimum(inst)
        bound = chain_lower_bound(inst)
        assert bound <= oracle + 1e-9, (seed, bound, oracle)
        tight += bound >= oracle - 1e-9
    assert tight >= 1  # the bound is not vacuous on tiny instances


@pytest.mark.parametrize("formulation, seed", [("aggregated", 2), ("aggregated-count", 3)])
def test_cli_solve_with_a_strong_formulation(run_cli, tmp_path, formulation, seed):
    import json

    inst_path = tmp_path / "inst.json"
    inst_path.write_text(json.dumps(synthetic(seed, n=8, memory_tokens=14)))
    out = tmp_path / "res.json"
    code, stdout, stderr = run_cli("solve", inst_path, "--formulation", formulation, "--time-limit", "20",
                                   "--rel-gap", "0", "--out", out, "--json")
    assert code == 0, stderr
    result = json.loads(out.read_text())
    assert result["formulation"] == formulation and result["status"] == "optimal"
    inst = KVScheduleInstance.from_dict(json.loads(inst_path.read_text()))
    assert result["objective"] == brute_force_optimum(inst)[0]
    code, stdout, stderr = run_cli("check", inst_path, out)
    assert code == 0, stdout + stderr
    code, _, stderr = run_cli("solve", inst_path, "--formulation", "aggregated-cardd", "--time-limit", "5")
    assert code == 2 and "--formulation" in stderr and "aggregated-card" in stderr


def test_exclusive_windows_raise_the_lp_bound_and_stay_valid():
    # the hand example of the chain bound: two s=1, o=3 requests, M=5 -> windows of length 3 each,
    # so the LP must separate them fully: bound 9 = optimum (plain LP: lower)
    inst = _instance([(0, 1, 3, 1.0), (0, 1, 3, 1.0)], 5)
    plain, _ = solve_direct(build_direct(inst, formulation="aggregated", relax=True), time_limit_s=10, rel_gap=0)
    window, _ = solve_direct(build_direct(inst, formulation="aggregated-window", relax=True), time_limit_s=10, rel_gap=0)
    assert plain.objective < 9 - 1e-6 and window.objective == pytest.approx(9)
    for seed in range(30):
        inst = _random_instance(300 + seed, same_prompt=seed % 3 != 0)
        oracle, _ = brute_force_optimum(inst)
        lp, _ = solve_direct(build_direct(inst, formulation="aggregated-window", relax=True), time_limit_s=10, rel_gap=0)
        assert lp.objective <= oracle + 1e-6, seed
        res = certify(inst, formulation="aggregated-window", time_limit_s=10, rel_gap=0, heuristic_seconds=0)
        assert res.status == "optimal" and res.objective == oracle, seed
