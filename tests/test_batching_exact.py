"""The batching MILP and the exhaustive search against a plain brute force and hand-known optima.

Integer iteration coefficients and arrivals make every time an integer, so objectives compare with
exact equality.
"""
from __future__ import annotations

import random

import pytest

from servopt.analysis.batching_check import check_result
from servopt.instances.batching import BatchingInstance, BatchRequest, IterationTime
from servopt.models.batching import safe_horizon
from servopt.solvers.batching_milp import combinatorial_bound, solve_milp
from servopt.solvers.batching_search import exhaustive
from batching_bruteforce import optimum

IT = IterationTime(3.0, 1.0, 2.0, 1.0)


def _inst(reqs, objective="total_latency", B=3, S=2, M=None, ttft=None, tpot=None, continuous=False, it=IT):
    return BatchingInstance(it, B, tuple(BatchRequest(f"r{i}", a, p, o) for i, (a, p, o) in enumerate(reqs)), S, M,
                            objective, ttft, tpot, continuous)


def _random_tiny(seed, n, objective="total_latency"):
    rng = random.Random(seed)
    top = 3 if n <= 2 else 2  # the brute force enumerates every sequence: keep n = 3 to 1-2 tokens
    reqs = [(rng.randint(0, 6), rng.randint(1, top), rng.randint(1, top)) for _ in range(n)]
    extra = {}
    if objective == "goodput":
        extra = {"ttft": rng.randint(6, 14), "tpot": rng.randint(5, 9)}
    return _inst(reqs, objective, B=rng.randint(2, 4), S=rng.choice([1, 2, n]), M=rng.choice([None, 6, 8]),
                 continuous=rng.random() < 0.3, **extra)


def _to_result(inst, sched):
    from servopt.kinds.batching import _result

    return _result(inst, sched, method="t", status="optimal", bound=None, seconds=0.0)


def test_single_request_alone_takes_its_own_time():
    # P = 5 with B = 3: chunks 3 + 2 (two iterations: 3+3 and 3+2), then 2 decodes with contexts 5 and 6
    inst = _inst([(0, 5, 3)], B=3)
    own = (3 + 3) + (3 + 2) + (3 + 2 + 5) + (3 + 2 + 6)
    assert exhaustive(inst).objective == own
    assert combinatorial_bound(inst) == own


def test_chunking_lets_a_short_request_overtake_a_long_prompt():
    # r0: prompt 4, r1 (arrives at 0 too): prompt 1, output 1; B = 4, S = 2. Best: r1 alone first
    # (t = 4), then r0 (t = 4 + 7 = 11): latency 15, vs r0 first (7) then r1 (11): 18, vs both
    # split 3 + 1 then 1 (8, then 12): 20
    inst = _inst([(0, 4, 1), (0, 1, 1)], B=4)
    assert exhaustive(inst).objective == 15
    assert optimum(inst)[0] == 15


@pytest.mark.parametrize("seed", range(14))
def test_search_equals_brute_force(seed):
    objective = ("total_latency", "makespan")[seed % 2]
    inst = _random_tiny(seed, 2 + seed % 2, objective)
    want = optimum(inst)[0]
    got = exhaustive(inst)
    assert got.objective == want
    assert check_result(inst, _to_result(inst, got.schedule)) == []


@pytest.mark.parametrize("seed", range(3))
def test_search_equals_brute_force_goodput(seed):
    inst = _random_tiny(100 + seed, 2, "goodput")
    want = optimum(inst)
    got = exhaustive(inst)
    assert got.objective == want[0]
    assert got.schedule.total_latency_ms(inst) == pytest.approx(want[1], abs=1e-6)
    assert check_result(inst, _to_result(inst, got.schedule)) == []


def test_goodput_uses_idling_to_meet_tpot():
    # r0 (prompt 1, output 2) at 0, r1 (prompt 2, output 1) at 7; one request per iteration,
    # TTFT <= 7, TPOT <= 11. Without idling: r0's decode before r1 (ends 10) makes r1's TTFT 8;
    # r1 first makes r0's TPOT 18 - 4 = 14. Idling 3 ms before r0's prefill (3 -> 7), then r1
    # (7 -> 12), then r0's decode (12 -> 18): TTFTs 7 and 5, TPOT 11: both meet.
    inst = _inst([(0, 1, 2), (7, 2, 1)], "goodput", B=2, S=1, ttft=7, tpot=11)
    assert optimum(inst)[0] == 2
    got = exhaustive(inst)
    assert got.objective == 2
    assert got.schedule.starts_ms[0] == 3
    assert check_result(inst, _to_result(inst, got.schedule)) == []
    out = solve_milp(inst, time_limit_s=120, rel_gap=0.0)
    assert out.schedule.objective_value(inst) == 2
    from servopt.simulator.batching_policies import POLICIES, simulate

    assert max(simulate(inst, p).objective_value(inst) for p in POLICIES) == 1


@pytest.mark.parametrize("seed,objective", [(8, "total_latency"), (2, "makespan"), (3, "total_latency"),
                                            (5, "goodput"), (7, "total_latency")])
def test_milp_equals_brute_force(seed, objective):
    inst = _random_tiny(200 + seed, 2 if objective == "goodput" else 3, objective)
    want = optimum(inst)
    out = solve_milp(inst, time_limit_s=120, rel_gap=0.0)
    assert out.horizon == safe_horizon(inst) and out.horizon_proven
    assert out.status == "optimal"
    assert out.schedule.objective_value(inst) == want[0]
    if objective == "goodput":
        assert out.schedule.total_latency_ms(inst) == pytest.approx(want[1], abs=1e-6)
    assert check_result(inst, _to_result(inst, out.schedule)) == []
    bound = out.bound
    if objective == "goodput":
        assert bound >= want[0]
    else:
        assert bound <= want[0] + 1e-6
        assert bound >= want[0] * (1 - 1e-9) - 1e-6


def test_milp_continuous_rule():
    # continuous: r0, once started, takes part in every iteration, so its decodes ride along r1's
    # prefill; the optimum differs from the non-continuous one
    base = [(0, 2, 3), (1, 3, 1)]
    free = _inst(base, B=3, S=2)
    forced = _inst(base, B=3, S=2, continuous=True)
    assert optimum(forced)[0] >= optimum(free)[0]
    out = solve_milp(forced, time_limit_s=120, rel_gap=0.0)
    assert out.schedule.objective_value(forced) == optimum(forced)[0]
    assert check_result(forced, _to_result(forced, out.schedule)) == []


def test_combinatorial_bound_is_below_the_optimum():
    for seed in range(8):
        inst = _random_tiny(300 + seed, 3, ("total_latency", "makespan")[seed % 2])
        assert combinatorial_bound(inst) <= exhaustive(inst).objective + 1e-9
