"""Batching policies: every schedule passes the independent checker; none beats the optimum; the
executor replays an optimal schedule to the same times; the checker catches broken schedules."""
from __future__ import annotations

import copy
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servopt.analysis.batching_check import check_result
from servopt.instances.batching import BatchingInstance, BatchRequest, IterationTime, random_instance
from servopt.kinds.batching import _result
from servopt.simulator.batching_policies import POLICIES, replay, simulate
from servopt.solvers.batching_search import exhaustive

IT = IterationTime(3.0, 1.0, 2.0, 1.0)


def _res(inst, sched):
    return _result(inst, sched, method=sched.method, status="feasible", bound=None, seconds=0.0)


@pytest.mark.parametrize("continuous", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_every_policy_passes_the_checker(seed, continuous):
    inst = random_instance(25, seed=seed, token_budget=256, max_batch=8, memory_tokens=9000, continuous=continuous)
    for p in POLICIES:
        sched = simulate(inst, p)
        assert check_result(inst, _res(inst, sched)) == [], p


def test_sarathi_token_budget_param_and_bad_params():
    from servopt.errors import InputError

    inst = random_instance(10, seed=4)
    small = simulate(inst, "sarathi", token_budget=64)
    assert max(sum(t for _, _, t in b) for b in small.batches) <= 64
    assert check_result(inst, _res(inst, small)) == []
    with pytest.raises(InputError, match="token_budget"):
        simulate(inst, "sarathi", token_budget=100000)
    with pytest.raises(InputError, match="no parameters"):
        simulate(inst, "vllm", token_budget=8)
    with pytest.raises(InputError, match="unknown batching policy"):
        simulate(inst, "sarathy")


def test_prefill_first_and_chunked_differ_as_designed():
    inst = random_instance(12, seed=5, token_budget=512)
    vllm = simulate(inst, "vllm")
    # prefill-first: no iteration mixes prefill chunks with decodes
    assert all(len({k for _, k, _ in b}) == 1 for b in vllm.batches)
    sarathi = simulate(inst, "sarathi")
    assert any(len({k for _, k, _ in b}) == 2 for b in sarathi.batches)


def test_replay_reproduces_the_optimal_times():
    inst = BatchingInstance(IterationTime(2.5, 0.3, 0.7, 0.05), 4, (
        BatchRequest("a", 0.0, 5, 3), BatchRequest("b", 1.25, 2, 2), BatchRequest("c", 3.5, 3, 2)), 2, 12)
    opt = exhaustive(inst).schedule
    again = replay(inst, opt.batches)
    assert again.batches == opt.batches
    for x, y in zip(opt.starts_ms + opt.ends_ms, again.starts_ms + again.ends_ms):
        assert abs(x - y) <= 1e-6
    for x, y in zip(opt.requests, again.requests):
        assert abs(x.finish_ms - y.finish_ms) <= 1e-6 and abs(x.first_token_ms - y.first_token_ms) <= 1e-6


def _valid_opt_result(inst):
    return _result(inst, exhaustive(inst).schedule, method="x", status="optimal", bound=None, seconds=0.0)


@pytest.mark.parametrize("mutation,needle", [
    ("budget", "token budget"), ("end", "tau"), ("early_decode", "before its prompt"), ("objective", "objective"),
    ("start_before_prev", "before the previous"), ("arrival", "arrives"), ("bound", "lower bound"),
    ("missing", "not completed"), ("times", "finish_ms"), ("memory", "memory"), ("batch", "max_batch"),
    ("continuous", "continuous")])
def test_checker_catches_mutations(mutation, needle):
    M = 8 if mutation == "memory" else None
    inst = BatchingInstance(IT, 8 if mutation == "budget" else 3, (
        BatchRequest("a", 0.0, 3, 2), BatchRequest("b", 2.0, 2, 2)), 1 if mutation == "batch" else 2, M,
        continuous=mutation == "continuous")
    res = _valid_opt_result(inst)
    assert check_result(inst, res) == []
    bad = copy.deepcopy(res)
    its = bad["iterations"]
    if mutation == "budget":
        inst = BatchingInstance(IT, 1, inst.requests, 2)
        bad = res
    elif mutation == "end":
        its[0]["end_ms"] += 0.5
    elif mutation == "early_decode":
        its[0]["batch"] = [{"id": "a", "decode_tokens": 1}]
    elif mutation == "objective":
        bad["objective"] += 1
    elif mutation == "start_before_prev":
        its[1]["start_ms"] -= 1
        its[1]["end_ms"] -= 1
    elif mutation == "arrival":
        inst = BatchingInstance(IT, 3, (BatchRequest("a", 0.0, 3, 2), BatchRequest("b", 50.0, 2, 2)), 2)
    elif mutation == "bound":
        bad["bound"] = bad["objective"] + 1
    elif mutation == "missing":
        bad["iterations"] = its[:-1]
    elif mutation == "times":
        bad["requests"][0]["finish_ms"] += 1
    elif mutation == "memory":
        inst = BatchingInstance(IT, 3, inst.requests, 2, 4)
    elif mutation == "batch":
        inst = BatchingInstance(IT, 3, inst.requests, 1)
        bad = copy.deepcopy(_valid_opt_result(BatchingInstance(IT, 3, inst.requests, 2)))
    elif mutation == "continuous":
        from servopt.instances.batching import timed_schedule

        # a's prefill, then b's prefill without a: a started and did not take part
        inst = BatchingInstance(IT, 3, (BatchRequest("a", 0.0, 3, 3), BatchRequest("b", 0.0, 3, 3)), 2, continuous=True)
        free = BatchingInstance(IT, 3, inst.requests, 2)
        seq = [((0, "p", 3),), ((1, "p", 3),), ((0, "d", 1), (1, "d", 1)), ((0, "d", 1), (1, "d", 1))]
        bad = _res(free, timed_schedule(free, seq))
        assert check_result(free, bad) == []
    violations = check_result(inst, bad)
    assert violations, mutation
    assert any(needle in v for v in violations), violations


tiny = st.builds(
    lambda reqs, B, S, M, cont, obj: (reqs, B, S, M, cont, obj),
    st.lists(st.tuples(st.integers(0, 5), st.integers(1, 3), st.integers(1, 3)), min_size=1, max_size=3),
    st.integers(2, 4), st.sampled_from([1, 2, 3]), st.sampled_from([None, 6, 9]), st.booleans(),
    st.sampled_from(["total_latency", "makespan"]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tiny)
def test_no_policy_beats_the_optimum(case):
    reqs, B, S, M, cont, obj = case
    if M is not None and any(p + o - 1 > M for _, p, o in reqs):
        M = None
    inst = BatchingInstance(IT, B, tuple(BatchRequest(f"r{i}", float(a), p, o) for i, (a, p, o) in enumerate(reqs)),
                            S, M, obj, continuous=cont)
    opt = exhaustive(inst).objective
    for p in POLICIES:
        sched = simulate(inst, p)
        assert check_result(inst, _res(inst, sched)) == []
        assert sched.objective_value(inst) >= opt - 1e-9, p


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10_000))
def test_no_policy_beats_the_optimum_goodput(seed):
    rng = random.Random(seed)
    reqs = tuple(BatchRequest(f"r{i}", float(rng.randint(0, 6)), rng.randint(1, 2), rng.randint(1, 3)) for i in range(2))
    inst = BatchingInstance(IT, 3, reqs, rng.choice([1, 2]), None, "goodput", float(rng.randint(5, 12)),
                            float(rng.randint(5, 9)))
    opt = exhaustive(inst).objective
    for p in POLICIES:
        assert simulate(inst, p).objective_value(inst) <= opt + 1e-9, p
