"""The run branch-and-bound (solvers/eviction_bnb.py) against the exhaustive optimum and HiGHS's MILP.

Savings grow with depth here (as ``saved_prefill_ms`` does), so the LP relaxation is fractional and the
search must branch; every check is on node counts or proofs, never on the clock.
"""
from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eviction_bruteforce import brute_force, random_paths
from servopt.analysis.eviction_check import check_result
from servopt.errors import InputError
from servopt.instances.eviction import EvictionInstance, EvictionRequest
from servopt.kinds import eviction as kind
from servopt.models import eviction as model
from servopt.simulator.eviction_replay import policy_hits
from servopt.solvers import eviction_bnb, eviction_milp

WEIGHTS = [1, 2, 4, 8, 16, 32]


def _instance(paths, capacity, replica_of=None):
    replica_of = replica_of or {}
    reqs = tuple(EvictionRequest(f"r{i}", float(i), tuple(p), 512 * len(p), 1, replica_of.get(i, 0))
                 for i, p in enumerate(paths))
    return EvictionInstance(capacity, reqs, replicas=1 + max(replica_of.values(), default=0))


def _value(hits, weights):
    return sum(sum(weights[:h]) for h in hits)


def _cases(count, seed, n=(4, 8), depth=5, fanout=2):
    rng = random.Random(seed)
    for i in range(count):
        paths = random_paths(rng, rng.randint(*n), depth, fanout)
        C = rng.randint(1, 5)
        caps = [rng.randint(0, C + 1) for _ in paths] if i % 3 == 0 else [C] * len(paths)
        yield paths, caps


def _plan_result(inst, prog, hits, value):
    plan = model.plan_from_x(prog, model.x_from_hits(prog, hits), inst, "branch-and-bound")
    return {"kind": "eviction", "objective": value, "hit_blocks": plan.hit_blocks,
            "requests": [{"id": r.id, "hit_blocks": h, "admit": list(a), "evict": list(e)}
                         for r, h, a, e in zip(inst.requests, plan.hits, plan.admit, plan.evict)]}


def test_search_equals_brute_force_and_its_plans_pass_the_checker():
    branched = 0
    for paths, caps in _cases(80, seed=7):
        inst = _instance(paths, max(caps) or 1)
        prog = model.interval_program(inst, caps, WEIGHTS)
        found = eviction_bnb.search(prog, inst, caps, time_limit_s=600, rel_gap=0, node_limit=100_000)
        best = brute_force(paths, caps, WEIGHTS)
        assert found.proven and found.status == "optimal", (paths, caps)
        assert found.objective == pytest.approx(best), (paths, caps)
        assert _value(found.hits, WEIGHTS) == pytest.approx(best)
        assert found.bound == pytest.approx(best)
        assert check_result(inst, _plan_result(inst, prog, found.hits, best), caps=caps, weights=WEIGHTS) == []
        branched += found.nodes > 1
    assert branched >= 10  # the family makes the search branch, not only solve its root


def _two_cache_cases(count, seed, n, depth, weights, fanout=3):
    """Random instances on two caches whose capacity varies by step (as pinned running requests make it)."""
    rng = random.Random(seed)
    for paths, caps in _cases(count, seed=seed, n=n, depth=depth, fanout=fanout):
        inst = _instance(paths, max(caps) or 1, {i: rng.randrange(2) for i in range(len(paths))})
        yield inst, caps, model.interval_program(inst, caps, weights)


def test_root_lp_equals_the_milp_relaxation_with_varying_capacity_and_two_caches():
    weights = [1.0 + 0.3 * d for d in range(8)]
    compared = 0
    for inst, caps, prog in _two_cache_cases(30, 3, (10, 30), 8, weights):
        lp, _, _ = eviction_milp.solve_direct(inst, caps=caps, weights=weights, time_limit_s=60, relax=True, prog=prog)
        found = eviction_bnb.search(prog, inst, caps, time_limit_s=600, node_limit=1)
        if found.root_bound is None:  # the presolve fixed every run: no LP to compare
            continue
        assert found.root_bound == pytest.approx(-lp.objective, rel=1e-7)
        compared += 1
    assert compared >= 20


def test_search_equals_highs_on_medium_instances_with_two_caches():
    weights = [10.0 + 2.5 * d for d in range(10)]
    nodes = []
    for inst, caps, prog in _two_cache_cases(12, 9, (40, 60), 10, weights, fanout=2):
        res, _, x = eviction_milp.solve_direct(inst, caps=caps, weights=weights, time_limit_s=120, rel_gap=0, prog=prog)
        found = eviction_bnb.search(prog, inst, caps, time_limit_s=600, rel_gap=1e-9, node_limit=200_000)
        assert res.status == "optimal" and found.proven
        assert found.objective == pytest.approx(-res.objective, rel=1e-7)
        # the plan is feasible: every step holds at most C_t kept blocks (checked apart from the search)
        assert check_result(inst, _plan_result(inst, prog, found.hits, found.objective), caps=caps, weights=weights) == []
        nodes.append(found.nodes)
    assert max(nodes) > 100  # one of them needs a real search


def test_node_limit_stops_with_a_valid_bound():
    stopped = 0
    for paths, caps in _cases(40, seed=21, n=(6, 7), depth=5):
        inst = _instance(paths, max(caps) or 1)
        prog = model.interval_program(inst, caps, WEIGHTS)
        found = eviction_bnb.search(prog, inst, caps, time_limit_s=600, rel_gap=0, node_limit=2)
        best = brute_force(paths, caps, WEIGHTS)
        assert found.objective <= best + 1e-9 <= found.bound + 2e-9, (paths, caps)
        if not found.proven:
            assert found.status == "node_limit"
            stopped += 1
    assert stopped > 0


def test_a_node_lp_cut_short_by_the_time_limit_keeps_its_node_open(monkeypatch):
    paths, caps = next(_cases(1, seed=7))
    inst = _instance(paths, max(caps) or 1)
    prog = model.interval_program(inst, caps, WEIGHTS)

    def timed_out(self, seconds_left=None):
        raise TimeoutError("node LP reached the time limit")

    monkeypatch.setattr(eviction_bnb._NodeLP, "solve", timed_out)
    found = eviction_bnb.search(prog, inst, caps, time_limit_s=600)
    assert found.status == "time_limit" and not found.proven and found.nodes == 0
    assert found.bound == float("inf")  # the root was never bounded: no claim


def test_node_lp_time_limit_counts_from_now_not_from_the_first_lp():
    # HiGHS sums its run time over every run of one object: a limit of "seconds left" must be added to it
    import numpy as np

    for inst, caps, prog in _two_cache_cases(1, 9, (40, 60), 10, [10.0 + 2.5 * d for d in range(10)], fanout=2):
        runs, capacity, first = eviction_bnb.runs_of(prog, inst, caps)
        lp = eviction_bnb._NodeLP(runs, capacity, first)
        lp.set_box(np.array([r.lo for r in runs]), np.array([r.hi for r in runs]))
        while lp.h.getRunTime() < 1.5:  # about a millisecond per run from a cleared basis
            lp.h.clearSolver()
            lp.h.run()
        lp.h.clearSolver()
        value, y = lp.solve(seconds_left=1.0)  # must not raise TimeoutError
        assert value is not None and len(y) == len(runs)


def test_savings_that_fall_with_depth_are_refused_and_auto_falls_back_to_the_milp():
    paths = [[1, 2, 3], [1, 2, 4], [1, 2, 3]]
    inst = _instance(paths, 2)
    prog = model.interval_program(inst, [2, 2, 2], [5, 1, 1])
    with pytest.raises(ValueError, match="do not decrease"):
        eviction_bnb.search(prog, inst, [2, 2, 2], time_limit_s=10)
    assert eviction_bnb.non_decreasing([1, 1, 2]) and not eviction_bnb.non_decreasing([2, 1])


def _weighted_instance(tmp_limit=120):
    from importlib import resources

    from servopt.instances.eviction import load_mooncake

    path = resources.files("servopt.instances").joinpath("data", "eviction_mooncake_synthetic_500.jsonl")
    return kind.load(load_mooncake(str(path), capacity_blocks=60, limit=tmp_limit, objective="saved_prefill_ms",
                                   llm="llama-3.1-8b", gpu="h100"))


def test_kind_solves_with_the_search_and_agrees_with_the_milp():
    inst = _weighted_instance()
    auto = kind.solve(inst, time_limit_s=300, options={"rel_gap": 1e-9})
    milp = kind.solve(inst, time_limit_s=300, options={"rel_gap": 1e-9, "formulation": "milp"})
    assert auto["method"] == "branch-and-bound" and auto["status"] == "optimal"
    assert milp["method"] == "milp" and milp["status"] == "optimal"
    assert auto["objective"] == pytest.approx(milp["objective"], rel=1e-7)
    assert auto["objective"] == pytest.approx(auto["saved_prefill_ms"])
    caps, weights = kind._costs(inst)
    assert check_result(inst, auto, caps=caps, weights=weights) == []


def test_kind_falls_back_to_the_milp_when_a_node_lp_fails(monkeypatch):
    inst = _weighted_instance()

    def broken(self, seconds_left=None):
        raise RuntimeError("node LP ended Unknown")

    monkeypatch.setattr(eviction_bnb._NodeLP, "solve", broken)
    res = kind.solve(inst, time_limit_s=300, options={"rel_gap": 1e-9})
    assert res["method"] == "milp" and res["status"] == "optimal"
    assert res["search_status"] == "lp_error" and res["search_notes"] == ["node LP ended Unknown"]


def test_branch_and_bound_formulation_refuses_falling_savings(monkeypatch):
    inst = _weighted_instance(40)
    monkeypatch.setattr(kind, "_costs", lambda i: ([60] * i.n, [5.0 - 0.01 * d for d in range(400)]))
    with pytest.raises(InputError, match="formulation"):
        kind.solve(inst, time_limit_s=60, options={"formulation": "branch-and-bound"})
    res = kind.solve(inst, time_limit_s=120, options={"rel_gap": 1e-9})  # auto: no search, the MILP if needed
    assert res["method"] in ("milp", "lp-bound") and res["status"] == "optimal" and "search_status" not in res


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(3, 7), cap=st.integers(1, 4),
       policy=st.sampled_from(["lru", "lru_sglang", "lfu", "fifo", "gdsf", "tlru", "belady_tree"]))
def test_property_no_policy_beats_the_searched_optimum(seed, n, cap, policy):
    paths = random_paths(random.Random(seed), n, 5, 2)
    inst = _instance(paths, cap)
    caps = [cap] * n
    prog = model.interval_program(inst, caps, WEIGHTS)
    found = eviction_bnb.search(prog, inst, caps, time_limit_s=600, rel_gap=0, node_limit=100_000)
    assert found.proven
    assert _value(policy_hits(paths, cap, policy), WEIGHTS) <= found.objective + 1e-9
