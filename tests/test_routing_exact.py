"""Routing optimum: the exact subset method and the MILP against enumerating assignments x the
per-replica brute-force optimum (tests/kv_bruteforce.py) on tiny instances; bounds never above it."""
from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kv_bruteforce import brute_force_optimum
from servopt.analysis.routing_check import check_result
from servopt.instances import routing as R
from servopt.instances.kv_schedule import KVScheduleInstance
from servopt.simulator.routing_policies import ROUTERS, run_all
from servopt.solvers.routing_exact import solve_exact
from servopt.solvers.routing_search import lower_bounds, solve_search


def assignment_oracle(inst: R.RoutingInstance) -> float:
    """min over every assignment of the combined per-replica brute-force optima (no pruning but memo)."""
    memo: dict = {}

    def part(k, members):
        if not members:
            return 0.0
        mem = inst.replicas[k].memory_tokens
        key = (mem, members)
        if key not in memo:
            reqs = tuple(inst.requests[i] for i in members)
            if any(r.prompt_tokens + r.output_tokens > mem for r in reqs):
                memo[key] = math.inf
            else:
                memo[key] = brute_force_optimum(KVScheduleInstance(mem, reqs, inst.objective))[0]
        return memo[key]

    best = math.inf
    K = inst.num_replicas
    for assign in itertools.product(range(K), repeat=inst.n):
        values = [part(k, tuple(i for i in range(inst.n) if assign[i] == k)) for k in range(K)]
        total = max(values) if inst.objective == "makespan" else sum(values)
        best = min(best, total)
    return best


def _result(inst, sched, objective, bound=None):
    return {"requests": sched.to_dict()["requests"], "objective": objective, "bound": bound}


CASES = [(seed, n, mems, obj) for seed, (n, mems) in enumerate([(4, (6, 9)), (5, (7, 10)), (5, (6, 8, 11)), (4, (8, 8)),
                                                                (5, (7, 7, 10))]) for obj in ("total_latency", "makespan")]


@pytest.mark.parametrize("seed,n,mems,objective", CASES)
def test_exact_equals_assignment_enumeration(seed, n, mems, objective):
    inst = R.RoutingInstance.from_dict(R.synthetic(seed, n=n, memories=mems, prompt_max=3, output_max=4,
                                                   arrival_horizon=3, objective=objective))
    expected = assignment_oracle(inst)
    with_routers = solve_exact(inst, time_limit_s=60, incumbents=run_all(inst))
    cold = solve_exact(inst, time_limit_s=60, incumbents=None)
    for res in (with_routers, cold):
        assert res.status == "optimal"
        assert res.objective == expected
        assert res.bound == expected
        assert check_result(inst, _result(inst, res.schedule, res.objective, res.bound)) == []


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), horizon=st.integers(1, 8), objective=st.sampled_from(["total_latency", "makespan"]))
def test_exact_equals_enumeration_with_spread_arrivals_and_big_requests(seed, horizon, objective):
    # outputs up to the memory: many requests are "big" (2 (s + o) > M), where the chain bound prunes
    inst = R.RoutingInstance.from_dict(R.synthetic(seed, n=5, memories=(7, 10), prompt_max=3, output_max=7,
                                                   arrival_horizon=horizon, objective=objective))
    res = solve_exact(inst, time_limit_s=60, incumbents=run_all(inst))
    assert res.status == "optimal"
    assert res.objective == assignment_oracle(inst)


@pytest.mark.parametrize("seed,horizon", [(33, 4), (84, 8), (92, 4)])
def test_exact_on_instances_where_a_bound_ignoring_arrivals_would_cut_the_optimum(seed, horizon):
    # found by mutation: a chain bound without its arrival terms returns 30, 22, 23 here
    inst = R.RoutingInstance.from_dict(R.synthetic(seed, n=5, memories=(7, 10), prompt_max=3, output_max=7,
                                                   arrival_horizon=horizon))
    res = solve_exact(inst, time_limit_s=60, incumbents=run_all(inst))
    assert res.objective == assignment_oracle(inst) == {33: 29, 84: 21, 92: 22}[seed]


def test_exact_restricts_requests_to_replicas_where_they_fit():
    # r0 needs 9 tokens: only the big replica can take it
    data = {"kind": "routing", "replicas": [{"id": "small", "memory_tokens": 5}, {"id": "big", "memory_tokens": 9}],
            "requests": [{"id": "r0", "arrival": 0, "prompt_tokens": 4, "output_tokens": 5},
                         {"id": "r1", "arrival": 0, "prompt_tokens": 1, "output_tokens": 3},
                         {"id": "r2", "arrival": 0, "prompt_tokens": 2, "output_tokens": 3}]}
    inst = R.RoutingInstance.from_dict(data)
    res = solve_exact(inst, time_limit_s=30, incumbents=run_all(inst))
    assert res.objective == assignment_oracle(inst)
    assert {r.id: r.replica for r in res.schedule.requests}["r0"] == "big"


def test_milp_equals_assignment_enumeration():
    from servopt.models import routing as model
    from servopt.solvers.highs import solve

    for seed, obj in ((0, "total_latency"), (1, "makespan"), (2, "total_latency")):
        inst = R.RoutingInstance.from_dict(R.synthetic(seed, n=4, memories=(6, 9), prompt_max=3, output_max=4,
                                                       arrival_horizon=2, objective=obj))
        m = model.build(inst)
        res = solve(m, time_limit_s=60, rel_gap=0.0)
        assert res.status == "optimal"
        sched = model.extract(m)
        value = sched.objective_value(inst)
        assert value == assignment_oracle(inst)
        assert check_result(inst, _result(inst, sched, value)) == []


def test_milp_lp_relaxation_is_a_bound_and_cutoff_keeps_the_optimum():
    from servopt.models import routing as model
    from servopt.solvers.highs import solve

    inst = R.RoutingInstance.from_dict(R.synthetic(3, n=5, memories=(6, 9), prompt_max=3, output_max=4, arrival_horizon=2))
    opt = assignment_oracle(inst)
    lp = model.build(inst, relax=True)
    res = solve(lp, time_limit_s=60, rel_gap=0.0)
    assert res.objective <= opt + 1e-6
    cut = model.build(inst, cutoff=opt)  # the cut-off at the optimum itself keeps it
    res = solve(cut, time_limit_s=60, rel_gap=0.0)
    assert round(res.objective) == opt


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), k=st.integers(2, 3))
def test_no_router_beats_the_optimum(seed, k):
    mems = (7, 9, 12)[:k]
    inst = R.RoutingInstance.from_dict(R.synthetic(seed, n=6, memories=mems, prompt_max=3, output_max=5, arrival_horizon=4))
    scheds = run_all(inst)
    opt = solve_exact(inst, time_limit_s=60, incumbents=scheds)
    assert opt.status == "optimal"
    for name, sched in scheds.items():
        value = sched.objective_value(inst)
        assert check_result(inst, _result(inst, sched, value)) == [], name
        assert value >= opt.objective, name
    assert set(n.split("/")[0] for n in scheds) == set(ROUTERS)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_search_bounds_never_exceed_the_optimum(seed):
    # a replica of 6 leaves the longest requests to the replica of 10: the restricted-pool bound applies
    inst = R.RoutingInstance.from_dict(R.synthetic(seed, n=7, memories=(6, 10), prompt_max=3, output_max=6, arrival_horizon=3))
    scheds = run_all(inst)
    opt = solve_exact(inst, time_limit_s=60, incumbents=scheds)
    assert opt.status == "optimal"
    bounds = lower_bounds(inst, cutoff=min(s.objective_value(inst) for s in scheds.values()), seconds=20)
    for name, value in bounds.items():
        if isinstance(value, float):
            assert value <= opt.objective + 1e-6, name
    res = solve_search(inst, time_limit_s=1, incumbents=scheds)
    assert res.bound <= opt.objective <= res.objective
    assert check_result(inst, _result(inst, res.schedule, res.objective, res.bound)) == []


def test_search_improves_a_poor_router_and_stays_feasible():
    inst = R.RoutingInstance.from_dict(R.synthetic(28, n=8, memories=(12, 18), prompt_max=3, output_max=7, arrival_horizon=3))
    scheds = run_all(inst, routers=("jsq",))
    start = next(iter(scheds.values())).objective_value(inst)
    res = solve_search(inst, time_limit_s=1, incumbents=scheds)
    assert res.objective < start
    assert check_result(inst, _result(inst, res.schedule, res.objective, res.bound)) == []


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), horizon=st.integers(1, 10), objective=st.sampled_from(["total_latency", "makespan"]))
def test_srpt_bound_is_below_the_one_replica_optimum_and_above_the_volume_bound(seed, horizon, objective):
    from servopt.analysis.kv_bounds import volume_lower_bound
    from servopt.solvers.routing_search import _volume

    data = R.synthetic(seed, n=5, memories=(9,), prompt_max=3, output_max=6, arrival_horizon=horizon, objective=objective)
    inst = R.RoutingInstance.from_dict(data).replica_instance(0, range(5))
    opt, _ = brute_force_optimum(inst)
    srpt = _volume(inst)
    assert volume_lower_bound(inst) <= srpt <= opt


def test_srpt_finishes_by_hand():
    from servopt.solvers.routing_search import srpt_finishes

    # M = 2; volumes 4 (arrives 0) and 1 (arrives 1): time 0-1 serves 2 of the first; at 1 the second (1)
    # is shorter: done at 1.5 -> round 2; the first resumes, 2 left, done at 2.5 -> round 3
    assert srpt_finishes([0, 1], [4, 1], 2) == [3, 2]
    assert srpt_finishes([0, 5], [2, 2], 2) == [1, 6]  # idle gap: the second starts at its arrival


def test_search_sgs_equals_the_kv_certify_sgs():
    import numpy as np

    from servopt.solvers.kv_schedule_certify import _Arrays, serial_schedule
    from servopt.solvers.routing_search import serial_starts

    rng = np.random.default_rng(0)
    for trial in range(60):
        n, M = int(rng.integers(1, 25)), int(rng.integers(20, 60))
        a, s = rng.integers(0, 20, n), rng.integers(0, 8, n)
        o = rng.integers(1, M - 8, n) if trial % 2 else rng.integers(1, 12, n)  # long ramps take the numpy path
        order = list(rng.permutation(n))
        ref = serial_schedule(_Arrays(a, s, o, np.ones(n), M, "total_latency"), order)
        got = serial_starts(a, s, o, M, order)
        assert [got[i] for i in range(n)] == list(ref)


@pytest.mark.parametrize("seed", range(4))
def test_makespan_decision_milp(seed):
    from servopt.solvers.routing_exact import _makespan_decision

    data = R.synthetic(seed, n=5, memories=(8,), prompt_max=3, output_max=5, arrival_horizon=3, objective="makespan")
    part = R.RoutingInstance.from_dict(data).replica_instance(0, range(5))
    opt, _ = brute_force_optimum(part)
    settled, value, sched = _makespan_decision(part, int(opt) - 1, 30.0)  # below the optimum: infeasible
    assert settled and value == opt and sched is None
    settled, value, sched = _makespan_decision(part, int(opt) + 3, 30.0)  # above: the optimum itself
    assert settled and value == opt and sched.objective_value(part) == opt
