"""The prefix model (routing + caching, Wu, Silwal, Zhang, ICLR 2026): the exact subset DP against
enumerating every assignment x the per-replica Belady optimum, the pooled-cache bound below it, routers
(with LRU caches) never below it, every result re-checked by the independent checker."""
from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servopt.analysis.routing_check import check_result
from servopt.errors import InputError
from servopt.instances import routing as R
from servopt.kinds import routing as kind
from servopt.simulator.routing_policies import ROUTERS
from servopt.solvers import routing_prefix as P


def _random_prefix_instance(seed, n=6, caps=(4, 6), objective="makespan"):
    import numpy as np

    rng = np.random.default_rng(seed)
    roots = [[0, 1], [0, 2], [3], [4, 5]]
    reqs = []
    for i in range(n):
        path = list(roots[int(rng.integers(len(roots)))])
        path += [100 + 10 * i + d for d in range(int(rng.integers(0, 3)))]  # a private tail
        reqs.append({"id": f"q{i}", "arrival": i, "prompt_tokens": 16 * len(path), "output_tokens": int(rng.integers(1, 20)),
                     "hash_ids": path})
    return kind.load({"kind": "routing", "model": "prefix", "objective": objective, "block_tokens": 16,
                      "alpha_hit": 0.25, "alpha_miss": 1.0,
                      "replicas": [{"id": f"c{k}", "cache_blocks": c} for k, c in enumerate(caps)], "requests": reqs})


def _enumerate(inst):
    return min(P.evaluate(inst, list(a))[0] for a in itertools.product(range(inst.num_replicas), repeat=inst.n))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), objective=st.sampled_from(["makespan", "total_cost"]),
       caps=st.sampled_from([(4, 6), (3, 3), (2, 5, 8)]))
def test_exact_equals_enumeration_and_nothing_beats_it(seed, objective, caps):
    inst = _random_prefix_instance(seed, caps=caps, objective=objective)
    res = kind.solve(inst, time_limit_s=60)
    assert res["status"] == "optimal"
    assert res["objective"] == pytest.approx(_enumerate(inst))
    assert check_result(inst, res) == []
    assert P.pooled_bound(inst) <= res["objective"] + 1e-6
    for name in ROUTERS:
        sim = kind.simulate(inst, policy="lru", router=name)
        assert check_result(inst, sim) == [], name
        assert sim["objective"] >= res["objective"] - 1e-6, name


def test_search_on_a_mooncake_slice_is_valid():
    inst = kind.load(R.mooncake_prefix(source="conversation_sample", n=60, replicas=3, cache_blocks=60))
    res = kind.solve(inst, time_limit_s=5, options={"formulation": "search"})
    assert res["bound"] <= res["objective"] <= res["best_router_objective"] + 1e-6
    assert check_result(inst, res) == []


def test_checker_rejects_impossible_hits():
    inst = _random_prefix_instance(3, n=4)
    res = kind.solve(inst, time_limit_s=30)
    first = dict(res["requests"][0])
    first["hit_blocks"] = len(inst.requests[0].prefix_block_ids)  # nothing cached before the first request
    bad = {**res, "requests": [first] + res["requests"][1:]}
    assert any("earlier requests" in p for p in check_result(inst, bad))
    assert any("not a replica" in p for p in check_result(inst, {**res, "requests": [{**first, "replica": "x"}] + res["requests"][1:]}))


def test_prefix_input_errors():
    data = R.mooncake_prefix(source="conversation_sample", n=3, replicas=2)
    with pytest.raises(InputError, match="alpha_hit"):
        kind.load({**data, "alpha_hit": 2.0})
    with pytest.raises(InputError, match="ids must name prefixes"):
        kind.load({**data, "requests": [{**data["requests"][0], "hash_ids": [0, 1]},
                                        {**data["requests"][1], "id": "z", "hash_ids": [1]}]})
    with pytest.raises(InputError, match="--formulation"):
        kind.solve(kind.load(data), time_limit_s=5, options={"formulation": "time-indexed"})


def test_prefix_cli_tables(run_cli, tmp_path):
    import json

    path = tmp_path / "prefix.json"
    path.write_text(json.dumps(R.mooncake_prefix(source="conversation_sample", n=12, replicas=2, cache_blocks=30)))
    out = tmp_path / "res.json"
    code, stdout, err = run_cli("solve", path, "--time-limit", "30", "--out", out)
    assert code == 0 and "hit blocks" in stdout and "optimal" in stdout, err
    code, stdout, _ = run_cli("check", path, out)
    assert code == 0
    code, stdout, err = run_cli("simulate", path, "--router", "cache_aware", "--policy", "lru_sglang")
    assert code == 0 and "hit blocks" in stdout, err


@pytest.mark.parametrize("objective,optimum", [("total_cost", 48.0), ("makespan", 24.0)])
def test_two_conversations_on_two_caches_by_hand(objective, optimum):
    # A = [0, 1], B = [2, 3] alternate; caches of 2 blocks: A's on one replica, B's on the other hit fully.
    # cost = 10 (0.1 hit + 1 miss) + 1: first A, first B 21 each, second A, second B 3 each.
    # The pooled cache (4 blocks) sees every reuse, so the bound is tight; one 2-block cache could not.
    reqs = [{"id": f"q{i}", "arrival": i, "prompt_tokens": 20, "output_tokens": 1, "hash_ids": [0, 1] if i % 2 == 0 else [2, 3]}
            for i in range(4)]
    inst = kind.load({"kind": "routing", "model": "prefix", "objective": objective, "block_tokens": 10,
                      "replicas": [{"id": "a", "cache_blocks": 2}, {"id": "b", "cache_blocks": 2}], "requests": reqs})
    res = kind.solve(inst, time_limit_s=30)
    assert res["objective"] == pytest.approx(optimum)
    assert P.pooled_bound(inst) == pytest.approx(optimum)
    assert kind.solve(inst, time_limit_s=10, options={"formulation": "search"})["bound"] == pytest.approx(optimum)
