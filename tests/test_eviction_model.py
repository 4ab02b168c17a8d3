"""Eviction optimum: Belady with bypass and the keep-interval MILP against brute force; policies never beat it."""
from __future__ import annotations

import json
import random
from importlib import resources

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eviction_bruteforce import brute_force, random_paths
from servopt.analysis.eviction_check import check_result
from servopt.instances.eviction import EvictionInstance, EvictionRequest
from servopt.models import eviction as model
from servopt.solvers import eviction_milp
from servopt.simulator import registry
from servopt.simulator.eviction_replay import policy_hits, replay
from servopt.solvers.eviction_belady import belady_hits, belady_plan, next_uses

POLICIES = registry.names("eviction")
ONLINE = [p for p in POLICIES if p != "belady_tree"]


def _instance(paths, capacity=3, **kw) -> EvictionInstance:
    replica_of = kw.pop("replica_of", {})
    reqs = tuple(EvictionRequest(f"r{i}", float(i), tuple(p), 512 * len(p), 1, replica_of.get(i, 0))
                 for i, p in enumerate(paths))
    return EvictionInstance(capacity, reqs, **kw)


def _result(inst, plan, objective):
    return {"kind": "eviction", "objective": objective, "hit_blocks": plan.hit_blocks,
            "requests": [{"id": r.id, "hit_blocks": h, "admit": list(a), "evict": list(e)}
                         for r, h, a, e in zip(inst.requests, plan.hits, plan.admit, plan.evict)]}


def _tiny_cases(count, seed):
    rng = random.Random(seed)
    for i in range(count):
        paths = random_paths(rng, rng.randint(2, 7), 4, 2)
        C = rng.randint(1, 4)
        caps = [rng.randint(0, C + 1) for _ in paths] if i % 3 == 0 else C
        yield paths, caps


def test_belady_equals_brute_force_on_300_tiny_instances():
    checked = 0
    for paths, caps in _tiny_cases(300, seed=11):
        plan = belady_plan(paths, caps)
        assert plan.hit_blocks == brute_force(paths, caps), (paths, caps)
        checked += 1
    assert checked == 300


def test_belady_plan_is_ancestor_closed_and_passes_the_checker():
    for paths, caps in _tiny_cases(100, seed=5):
        inst = _instance(paths, capacity=max(caps) if isinstance(caps, list) else caps)
        caps_list = caps if isinstance(caps, list) else [caps] * len(paths)
        plan = belady_plan(paths, caps_list)
        assert check_result(inst, _result(inst, plan, plan.hit_blocks), caps=caps_list) == []
        parent = {p[d]: (p[d - 1] if d else None) for p in paths for d in range(len(p))}
        S = set()
        for a, e in zip(plan.admit, plan.evict):
            S = (S - set(e)) | set(a)
            assert all(parent[b] is None or parent[b] in S for b in S)


def test_bypass_matters_hand_example():
    # C = 1: request 1's block is never used again, so the optimum keeps block 0 (bypass) and hits twice
    paths = [[0], [5], [0], [0]]
    assert belady_hits(paths, 1) == [0, 0, 1, 1]
    assert brute_force(paths, 1) == 2
    # a demand policy must cache block 5 after request 1 and loses the hit of request 2
    assert sum(policy_hits(paths, 1, "lru")) == 1
    assert sum(policy_hits(paths, 1, "belady_tree")) == 1


def test_next_uses():
    assert next_uses([[1, 2], [1], [1, 2]]) == [[1, 2], [2], [3, 3]]


def test_milp_equals_brute_force_with_depth_weights_and_capacities():
    rng = random.Random(3)
    for i, (paths, caps) in enumerate(_tiny_cases(40, seed=21)):
        caps_list = caps if isinstance(caps, list) else [caps] * len(paths)
        weights = [rng.choice([1, 2, 3, 7]) for _ in range(4)]
        inst = _instance(paths, capacity=4)
        res, prog, x = eviction_milp.solve_direct(inst, caps=caps_list, weights=weights, time_limit_s=60, rel_gap=0)
        best = brute_force(paths, caps_list, weights)
        assert res.status == "optimal"
        assert round(-res.objective) == best, (paths, caps_list, weights)
        plan = model.plan_from_x(prog, x, inst)
        value = sum(sum(weights[:h]) for h in plan.hits)
        assert value == best
        # the checker recomputes the weighted objective from the plan
        assert check_result(inst, _result(inst, plan, value), caps=caps_list, weights=weights) == []


def test_milp_equals_belady_on_unit_weights():
    for paths, caps in _tiny_cases(40, seed=8):
        caps_list = caps if isinstance(caps, list) else [caps] * len(paths)
        inst = _instance(paths, capacity=4)
        res, _, _ = eviction_milp.solve_direct(inst, caps=caps_list, weights=None, time_limit_s=60, rel_gap=0)
        assert round(-res.objective) == belady_plan(paths, caps_list).hit_blocks


def test_pyomo_build_equals_direct_build():
    from servopt.solvers.highs import solve

    for paths, caps in list(_tiny_cases(6, seed=4)):
        caps_list = caps if isinstance(caps, list) else [caps] * len(paths)
        inst = _instance(paths, capacity=4)
        m = model.build(inst, caps=caps_list, weights=[1, 3, 5, 9])
        res = solve(m, time_limit_s=60, rel_gap=0)
        assert round(res.objective) == brute_force(paths, caps_list, [1, 3, 5, 9])
        plan = model.extract(m)
        assert sum(sum([1, 3, 5, 9][:h]) for h in plan.hits) == round(res.objective)


def test_milp_equals_belady_on_shipped_mooncake_slice():
    ref = resources.files("servopt.instances").joinpath("data", "eviction_mooncake_conversation_1000.jsonl")
    paths = [json.loads(line)["hash_ids"] for line in ref.read_text().splitlines()[:300]]
    inst = _instance(paths, capacity=300)
    res, _, _ = eviction_milp.solve_direct(inst, caps=[300] * len(paths), weights=None, time_limit_s=120, rel_gap=0)
    assert res.status == "optimal"
    assert round(-res.objective) == belady_plan(paths, 300).hit_blocks


def test_lp_relaxation_bounds_the_weighted_optimum():
    for paths, caps in _tiny_cases(20, seed=9):
        caps_list = caps if isinstance(caps, list) else [caps] * len(paths)
        inst = _instance(paths, capacity=4)
        res, _, _ = eviction_milp.solve_direct(inst, caps=caps_list, weights=[1, 4, 9, 16], time_limit_s=60, relax=True)
        assert -res.objective >= brute_force(paths, caps_list, [1, 4, 9, 16]) - 1e-6


def test_several_caches_solve_independently():
    paths = [[0, 1], [0, 2], [0, 1], [0, 2], [0, 1]]
    replica_of = {1: 1, 3: 1}
    inst = _instance(paths, capacity=2, replicas=2, replica_of=replica_of)
    from servopt.solvers.eviction_belady import solve_instance

    plan = solve_instance(inst)
    assert plan.hits == (0, 0, 2, 2, 2)
    res, prog, x = eviction_milp.solve_direct(inst, caps=[2] * 5, weights=None, time_limit_s=60, rel_gap=0)
    assert round(-res.objective) == 6
    assert check_result(inst, _result(inst, model.plan_from_x(prog, x, inst), 6)) == []


@pytest.mark.parametrize("name", POLICIES)
def test_policy_plans_pass_the_checker_and_never_beat_the_optimum(name):
    for paths, caps in _tiny_cases(60, seed=17):
        caps_list = caps if isinstance(caps, list) else [caps] * len(paths)
        inst = _instance(paths, capacity=4)
        plan = replay(paths, caps_list, registry.make("eviction", name))
        assert check_result(inst, _result(inst, plan, plan.hit_blocks), caps=caps_list) == []
        assert plan.hit_blocks <= brute_force(paths, caps_list)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(2, 40), cap=st.integers(1, 12), name=st.sampled_from(POLICIES))
def test_property_no_policy_beats_belady(seed, n, cap, name):
    paths = random_paths(random.Random(seed), n, 6, 3)
    assert sum(policy_hits(paths, cap, name)) <= sum(belady_hits(paths, cap))


def test_lru_vllm_and_sglang_semantics_hand_example():
    # C = 3. r0 = [0,1,2] cached; r1 = [0,3] needs one slot: LRU takes the deepest block of r0 (2).
    paths = [[0, 1, 2], [0, 3], [0, 1, 2]]
    assert policy_hits(paths, 3, "lru") == [0, 1, 2]
    # SGLang frees whole leaf nodes: node [1, 2] (inserted together by r0, unsplit) goes at once
    plan = replay(paths, 3, registry.make("eviction", "lru_sglang"))
    assert plan.evict[1] == (2, 1)
    assert plan.hits == (0, 1, 1)


def test_rlt_is_repeatable_by_seed_and_tlru_prefers_conversation_tails():
    rng = random.Random(1)
    paths = random_paths(rng, 60, 6, 3)
    a = policy_hits(paths, 5, "rlt", {"seed": 3})
    assert a == policy_hits(paths, 5, "rlt", {"seed": 3})
    # T-LRU with slack 1: the last block of the older request goes before an older-but-shared prefix
    plan = replay([[0, 1, 2], [0, 3, 4], [0, 5]], 5, registry.make("eviction", "tlru"))
    assert plan.evict[2] == (2,)  # LRU would also take 2 here; now make r1 older than r0's prefix:
    # r3 needs a slot: LRU takes block 1 (oldest), T-LRU the tail block 3 of r1 (block 1 is inner to r0's path)
    paths = [[0, 1, 2], [0, 3], [0, 4], [0, 5]]
    plan = replay(paths, 4, registry.make("eviction", "tlru"))
    lru = replay(paths, 4, registry.make("eviction", "lru"))
    assert plan.evict[3] == (3,) and lru.evict[3] == (1,)


def test_lp_rounding_and_restricted_milp_give_valid_plans_below_the_optimum():
    from servopt.models.eviction import hits_from_x, interval_program

    rng = random.Random(12)
    for paths, caps in _tiny_cases(30, seed=31):
        caps_list = caps if isinstance(caps, list) else [caps] * len(paths)
        weights = [rng.choice([1, 2, 5]) for _ in range(4)]
        inst = _instance(paths, capacity=4)
        best = brute_force(paths, caps_list, weights)
        res, prog, x = eviction_milp.solve_direct(inst, caps=caps_list, weights=weights, time_limit_s=60, relax=True)
        xr = eviction_milp.fill_plan(prog, eviction_milp.round_lp(prog, x, caps_list, inst), caps_list, inst, x)
        plan = model.plan_from_x(prog, xr, inst)
        value = sum(sum(weights[:h]) for h in plan.hits)
        assert value <= best <= -res.objective + 1e-6
        assert check_result(inst, _result(inst, plan, value), caps=caps_list, weights=weights) == []
        prog2 = interval_program(inst, caps_list, weights)
        res2, _, x2 = eviction_milp.solve_direct(inst, caps=caps_list, weights=weights, time_limit_s=60, rel_gap=0,
                                                 fix_from=x, prog=prog2, warm_hits=plan.hits)
        v2 = sum(sum(weights[:h]) for h in hits_from_x(prog2, x2))
        assert value <= v2 <= best


def test_sglang_node_splits_where_a_match_ends():
    # r0 inserts node [0,1,2,3]; r1 matches [0,1] (SGLang splits the node there); r2 needs one slot:
    # the LRU leaf node is [2,3], freed whole; vLLM's LRU frees the single block 3
    paths = [[0, 1, 2, 3], [0, 1], [0, 5]]
    sg = replay(paths, 4, registry.make("eviction", "lru_sglang"))
    assert sg.evict[2] == (3, 2)
    assert replay(paths, 4, registry.make("eviction", "lru")).evict[2] == (3,)
