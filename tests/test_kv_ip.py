"""The hindsight IP (models/kv_schedule.py) against brute force and hand-computed optima."""
from __future__ import annotations

import numpy as np
import pytest

from kv_bruteforce import brute_force_optimum
from servopt.analysis.kv_check import check_result
from servopt.analysis.kv_optimum import solve_optimum
from servopt.errors import InputError
from servopt.instances.kv_schedule import KVScheduleInstance
from servopt.instances.requests import Request
from servopt.models import kv_schedule as kvm


def _instance(rows, M, objective="total_latency"):
    reqs = tuple(Request(f"r{i}", a, s, o, weight=(w if w is not None else 1.0))
                 for i, (a, s, o, *rest) in enumerate(rows) for w in [rest[0] if rest else None])
    return KVScheduleInstance(M, reqs, objective)


def _random_instance(seed, n, objective="total_latency"):
    rng = np.random.default_rng(seed)
    M = int(rng.integers(4, 11))
    rows = []
    for _ in range(n):
        s = int(rng.integers(0, min(3, M - 1) + 1))
        o = int(rng.integers(1, min(4, M - s) + 1))
        rows.append((int(rng.integers(0, 5)), s, o, float(rng.integers(1, 4))))
    return _instance(rows, M, objective)


def test_hand_computed_two_requests():
    # M = 5, two requests s=1, o=3 at round 0: footprints 2,3,4. Started together round 3 holds 8;
    # r1 one round later holds 4+3 = 7 in round 3; two rounds later 4+2 = 6 in round 3; so the
    # second starts at 3: finishes 3 and 6, total latency 9, makespan 6.
    inst = _instance([(0, 1, 3), (0, 1, 3)], 5)
    res = solve_optimum(inst, time_limit_s=10, rel_gap=0)
    assert res.status == "optimal" and res.objective == 9 and res.bound == 9
    assert sorted(r.finish for r in res.schedule.requests) == [3, 6]
    mk = solve_optimum(_instance([(0, 1, 3), (0, 1, 3)], 5, "makespan"), time_limit_s=10, rel_gap=0)
    assert mk.objective == 6


def test_hand_computed_fits_together():
    # M = 8: the same two requests fit side by side (2+2, 3+3, 4+4): latency 3 + 3.
    res = solve_optimum(_instance([(0, 1, 3), (0, 1, 3)], 8), time_limit_s=10, rel_gap=0)
    assert res.objective == 6


@pytest.mark.parametrize("seed", range(10))
def test_ip_equals_brute_force_total_latency(seed):
    inst = _random_instance(seed, n=3 + seed % 4)
    expected, _ = brute_force_optimum(inst)
    res = solve_optimum(inst, time_limit_s=20, rel_gap=0)
    assert res.status == "optimal"
    assert res.objective == expected and res.bound == expected
    assert check_result(inst, res.to_dict(inst)) == []


@pytest.mark.parametrize("objective", ["makespan", "weighted_latency"])
@pytest.mark.parametrize("seed", range(4))
def test_ip_equals_brute_force_other_objectives(seed, objective):
    inst = _random_instance(100 + seed, n=4 + seed % 3, objective=objective)
    expected, _ = brute_force_optimum(inst)
    res = solve_optimum(inst, time_limit_s=20, rel_gap=0)
    assert res.status == "optimal"
    assert res.objective == pytest.approx(expected, abs=1e-9)
    assert check_result(inst, res.to_dict(inst)) == []


@pytest.mark.parametrize("seed", range(3))
def test_without_cutoff_or_warm_start_same_optimum(seed):
    inst = _random_instance(200 + seed, n=5)
    expected, _ = brute_force_optimum(inst)
    res = solve_optimum(inst, time_limit_s=20, rel_gap=0, warm_start_policies=(), use_cutoff=False)
    assert res.objective == expected
    assert res.horizon == kvm.proven_horizon(inst)


@pytest.mark.parametrize("seed", range(3))
def test_lp_relaxation_is_a_lower_bound(seed):
    inst = _random_instance(300 + seed, n=5)
    expected, _ = brute_force_optimum(inst)
    lp = solve_optimum(inst, time_limit_s=20, relax=True, warm_start_policies=(), use_cutoff=False)
    assert lp.status == "optimal" and lp.objective <= expected + 1e-7
    assert lp.schedule is None


def test_horizon_and_windows():
    inst = _instance([(2, 1, 3), (0, 0, 4)], 6)
    assert kvm.proven_horizon(inst) == 2 + 7
    T, proven, windows = kvm.start_windows(inst, cutoff=9.0)
    # slack = 9 - (3 + 4) = 2 rounds of waiting in total
    assert proven and windows == ((2, 4), (0, 2))
    T, proven, _ = kvm.start_windows(inst, horizon=5)
    assert not proven


def test_short_horizon_is_refused_in_one_line():
    inst = _instance([(0, 1, 3), (0, 1, 3)], 5)
    with pytest.raises(InputError, match="no feasible start"):
        kvm.build(inst, horizon=2)


def test_time_limit_returns_incumbent_and_bound():
    rng = np.random.default_rng(5)
    rows = [(0, 2, int(rng.integers(1, 30))) for _ in range(30)]
    inst = _instance(rows, 34)
    res = solve_optimum(inst, time_limit_s=1.0, rel_gap=0)
    assert res.schedule is not None and res.objective is not None
    assert res.bound is None or res.bound <= res.objective
    assert res.status in ("optimal", "time_limit")
    assert check_result(inst, res.to_dict(inst)) == []


def test_every_registered_formulation_reaches_the_brute_force_optimum():
    from servopt.analysis.kv_optimum import formulations

    names = formulations()
    assert "time-indexed" in names
    for seed in range(3):
        inst = _random_instance(400 + seed, n=5)
        expected, _ = brute_force_optimum(inst)
        for name in names:
            res = solve_optimum(inst, time_limit_s=20, rel_gap=0, formulation=name)
            assert check_result(inst, res.to_dict(inst)) == []
            if name == "policies+bounds":  # no search: the best policy's schedule and a valid bound around the optimum
                assert res.bound <= expected <= res.objective, seed
                assert (res.status == "optimal") == (res.bound == res.objective)
                continue
            assert res.status == "optimal" and res.objective == expected, (name, seed)


def test_volume_bound_by_hand():
    from servopt.analysis.kv_bounds import volume_lower_bound

    # two requests s=1, o=3 at 0, M=5: volumes 2+3+4 = 9 each; k=1: max(ceil(9/5)=2, 3) = 3;
    # k=2: max(ceil(18/5)=4, 3) = 4 -> total latency >= 7 (the optimum is 9); makespan >= 4.
    assert volume_lower_bound(_instance([(0, 1, 3), (0, 1, 3)], 5)) == 7
    assert volume_lower_bound(_instance([(0, 1, 3), (0, 1, 3)], 5, "makespan")) == 4


@pytest.mark.parametrize("objective", ["total_latency", "makespan", "weighted_latency"])
def test_volume_bound_never_exceeds_the_optimum(objective):
    from servopt.analysis.kv_bounds import volume_lower_bound

    for seed in range(25):
        inst = _random_instance(500 + seed, n=2 + seed % 5, objective=objective)
        expected, _ = brute_force_optimum(inst)
        assert volume_lower_bound(inst) <= expected + 1e-9, seed


def test_solver_timeout_reports_at_least_the_volume_bound():
    from servopt.analysis.kv_bounds import volume_lower_bound

    rng = np.random.default_rng(8)
    inst = _instance([(0, 3, int(rng.integers(1, 40))) for _ in range(25)], 44)
    res = solve_optimum(inst, time_limit_s=0.5, rel_gap=0)
    assert res.bound is not None and res.bound >= volume_lower_bound(inst)
    assert res.bound_source in ("solver", "volume") and res.bound <= res.objective
    assert check_result(inst, res.to_dict(inst)) == []


def test_volume_bound_without_each_is_the_bound_of_the_rest():
    from servopt.analysis.kv_bounds import volume_lower_bound, volume_lower_bounds_without_each

    for seed in range(6):
        inst = _random_instance(600 + seed, n=4 + seed % 3)
        got = volume_lower_bounds_without_each(inst)
        for k in range(inst.n):
            rest = KVScheduleInstance(inst.memory_tokens, inst.requests[:k] + inst.requests[k + 1:])
            assert got[k] == volume_lower_bound(rest)
            # and it never exceeds the optimum of the rest (brute force)
            assert got[k] <= brute_force_optimum(rest)[0]


def test_others_bound_tightens_windows_and_keeps_the_optimum():
    from servopt.analysis.kv_bounds import volume_lower_bounds_without_each

    for seed in range(8):
        inst = _random_instance(700 + seed, n=5)
        expected, starts = brute_force_optimum(inst)
        others = volume_lower_bounds_without_each(inst)
        _, _, plain = kvm.start_windows(inst, cutoff=expected)
        _, _, tight = kvm.start_windows(inst, cutoff=expected, others_lower_bound=others)
        assert all(t[1] <= p[1] for t, p in zip(tight, plain))
        # the optimum found by brute force lies inside the tightened windows
        assert all(lo <= starts[r.id] <= hi for (lo, hi), r in zip(tight, inst.requests))
