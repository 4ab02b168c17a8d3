"""Primal improvement for kv_schedule (solvers/kv_schedule_improve.py): schedules pass the independent
checker, are never worse than the input, respect the wall-clock budget, reach the brute-force optimum
on tiny instances (where the whole-IP neighbourhood proves it), are deterministic for a seed; the
decoder is the serial SGS of solvers/kv_schedule_certify.py; the hook in best_heuristic_schedule."""
from __future__ import annotations

import itertools
import time

import numpy as np
import pytest
from hypothesis import given, settings

from kv_bruteforce import brute_force_optimum
from test_kv_bnb import tiny_instances  # n <= 5, M <= 13, arrivals 0..4, weights 1..3
from servopt.analysis.kv_check import check_result
from servopt.errors import InputError
from servopt.instances.kv_generators import synthetic
from servopt.instances.kv_schedule import KVSchedule, KVScheduleInstance, ScheduledRequest
from servopt.instances.requests import Request
from servopt.solvers.kv_schedule_certify import _Arrays, best_heuristic_schedule, serial_schedule
from servopt.solvers.kv_schedule_improve import _Decoder, _OrderState, improve_schedule


def _instance(rows, M, objective="total_latency"):
    reqs = tuple(Request(f"r{i}", a, s, o, weight=w) for i, (a, s, o, w) in enumerate(rows))
    return KVScheduleInstance(M, reqs, objective)


def _serial(inst: KVScheduleInstance) -> KVSchedule:
    """FCFS one at a time: trivially feasible and usually far from optimal (room to improve)."""
    rows, t = [], 0
    for r in sorted(inst.requests, key=lambda r: (r.arrival, r.id)):
        p = max(t, int(r.arrival))
        rows.append(ScheduledRequest(r.id, int(r.arrival), p, p + int(r.output_tokens)))
        t = p + int(r.output_tokens)
    return KVSchedule(tuple(rows), objective_name=inst.objective)


def _checked(inst, sched):
    result = {"requests": sched.to_dict()["requests"], "objective": sched.objective_value(inst)}
    assert check_result(inst, result) == []
    return sched.objective_value(inst)


def test_decoder_is_the_serial_sgs():
    rng = np.random.default_rng(3)
    for arrival_model in ("all_at_zero", "poisson"):
        inst = KVScheduleInstance.from_dict(synthetic(rng, arrival_model=arrival_model))
        arr = _Arrays.of(inst)
        dec = _Decoder(arr)
        for _ in range(20):
            order = [int(i) for i in rng.permutation(inst.n)]
            state = _OrderState(dec, order)
            expected = serial_schedule(arr, order)
            assert np.array_equal(state.starts, expected)
            assert state.cost == arr.cost(expected)
            # a neighbour decoded from its first changed position equals a full decode
            i, j = (int(x) for x in rng.choice(inst.n, 2, replace=False))
            cand = list(order)
            cand.insert(i, cand.pop(j))
            starts, cost = state.evaluate(cand, min(i, j), float("inf"))
            assert np.array_equal(starts, serial_schedule(arr, cand)) and cost == arr.cost(starts)


@pytest.mark.parametrize("objective", ["total_latency", "weighted_latency", "makespan"])
@pytest.mark.parametrize("arrival_model", ["all_at_zero", "poisson"])
def test_feasible_and_never_worse(arrival_model, objective):
    data = synthetic(np.random.default_rng([11, len(objective)]), arrival_model=arrival_model)
    data["requests"] = data["requests"][:18]
    rng = np.random.default_rng(5)
    for r in data["requests"]:
        r["weight"] = float(rng.integers(1, 4))
    data["objective"] = objective
    inst = KVScheduleInstance.from_dict(data)
    start = _serial(inst)
    before = _checked(inst, start)
    out, stats = improve_schedule(inst, start, seconds=0.6, seed=1)
    after = _checked(inst, out)
    assert after <= before and stats["final"] == after and stats["initial"] == before
    assert after < before  # one-at-a-time leaves room on every one of these instances


def test_respects_the_time_budget_at_paper_size():
    inst = KVScheduleInstance.from_dict(synthetic(1))  # n = 43, M = 39: the instance
    _, start, cost, _ = best_heuristic_schedule(inst, heuristic_seconds=0.0)
    for strategy, seconds in (("hybrid", 1.0), ("lns", 0.7), ("ils", 0.3)):
        t0 = time.perf_counter()
        out, stats = improve_schedule(inst, start, seconds=seconds, strategy=strategy)
        wall = time.perf_counter() - t0
        assert wall <= seconds + 0.3, (strategy, wall)
        assert _checked(inst, out) <= cost


@settings(max_examples=40, deadline=None)
@given(tiny_instances().filter(lambda inst: inst.objective != "makespan"))  # the LNS minimises latency
def test_equals_brute_force_on_tiny_instances(inst):
    expected, _ = brute_force_optimum(inst)
    out, stats = improve_schedule(inst, _serial(inst), seconds=20, max_rounds=400)
    # the window grew over the whole schedule and HiGHS closed the IP (one request: nothing to do)
    assert stats["proven_optimal"] or inst.n == 1
    assert _checked(inst, out) == expected


@pytest.mark.parametrize("rows, M", [
    ([(0, 1, 1, 1.0), (0, 1, 3, 1.0), (0, 1, 6, 1.0), (0, 1, 4, 1.0), (0, 1, 9, 1.0)], 10),  # the paper family in small
    ([(0, 1, 6, 1.0), (2, 0, 3, 1.0), (2, 0, 5, 1.0), (0, 2, 4, 1.0)], 8),
])
def test_finds_an_optimum_that_no_serial_sgs_order_reaches(rows, M):
    """Found by a search over random tiny instances: serial SGS (any order) misses the optimum by 1."""
    inst = _instance(rows, M)
    expected, _ = brute_force_optimum(inst)
    arr = _Arrays.of(inst)
    best_sgs = min(arr.cost(serial_schedule(arr, list(order))) for order in itertools.permutations(range(inst.n)))
    assert best_sgs == expected + 1
    ils, _ = improve_schedule(inst, _serial(inst), seconds=20, max_rounds=300, strategy="ils")
    assert _checked(inst, ils) == best_sgs  # the order search alone is stuck at the best SGS schedule
    out, stats = improve_schedule(inst, _serial(inst), seconds=20, max_rounds=300)
    assert _checked(inst, out) == expected and stats["proven_optimal"]


def test_deterministic_for_a_seed():
    tiny = _instance([(0, 1, 1, 1.0), (0, 1, 3, 1.0), (0, 1, 6, 1.0), (0, 1, 4, 1.0), (0, 1, 9, 1.0)], 10)
    runs = [improve_schedule(tiny, _serial(tiny), seconds=30, seed=7, max_rounds=300) for _ in range(2)]
    assert runs[0][0].to_dict() == runs[1][0].to_dict() and runs[0][1]["evaluations"] == runs[1][1]["evaluations"]
    inst = KVScheduleInstance.from_dict(synthetic(np.random.default_rng(4), arrival_model="poisson"))
    start = _serial(inst)
    ils = [improve_schedule(inst, start, seconds=60, seed=3, max_rounds=4000, strategy="ils") for _ in range(2)]
    assert ils[0][0].to_dict() == ils[1][0].to_dict() and ils[0][1] == {**ils[1][1], "seconds": ils[0][1]["seconds"]}
    other = improve_schedule(inst, start, seconds=60, seed=4, max_rounds=4000, strategy="ils")
    assert other[1]["evaluations"] != ils[0][1]["evaluations"] or other[0].to_dict() != ils[0][0].to_dict()


def test_hook_in_best_heuristic_schedule():
    inst = KVScheduleInstance.from_dict(synthetic(np.random.default_rng(9), arrival_model="poisson"))
    name0, _, cost0, tried0 = best_heuristic_schedule(inst, heuristic_seconds=0.0)
    assert "improve" not in tried0  # default off: existing results do not move
    name1, sched1, cost1, tried1 = best_heuristic_schedule(inst, heuristic_seconds=0.0, improve_seconds=0.8)
    assert tried1["improve"] == cost1 <= cost0 and _checked(inst, sched1) == cost1


def test_bad_calls_are_refused():
    inst = _instance([(0, 1, 3, 1.0), (0, 1, 3, 1.0)], 6)
    overlap = KVSchedule((ScheduledRequest("r0", 0, 0, 3), ScheduledRequest("r1", 0, 0, 3)))
    with pytest.raises(InputError, match="schedule"):
        improve_schedule(inst, overlap, seconds=0.1)  # 2 x (1+3) tokens > 6 in round 3
    with pytest.raises(InputError, match="schedule"):
        improve_schedule(inst, KVSchedule((ScheduledRequest("r0", 0, 0, 3),)), seconds=0.1)
    twice = KVSchedule((ScheduledRequest("r0", 0, 0, 3), ScheduledRequest("r0", 0, 0, 3), ScheduledRequest("r1", 0, 3, 6)))
    with pytest.raises(InputError, match="schedule"):
        improve_schedule(inst, twice, seconds=0.1)
    with pytest.raises(InputError, match="seconds"):
        improve_schedule(inst, _serial(inst), seconds=-1)
    with pytest.raises(InputError, match="strategy"):
        improve_schedule(inst, _serial(inst), seconds=1, strategy="tabu")
