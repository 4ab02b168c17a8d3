"""Routers on routing instances: the one-replica case is kv_rounds' simulator exactly, hand-checked
decisions of each score rule, every schedule re-checked by the independent checker, and the checker
itself catching every kind of violation."""
from __future__ import annotations

import pytest

from servopt.analysis.routing_check import check_result
from servopt.errors import InputError
from servopt.instances import routing as R
from servopt.simulator.kv_rounds import simulate_rounds
from servopt.simulator.routing_policies import ROUTERS, make_router, simulate_routing


def _inst(data):
    return R.RoutingInstance.from_dict(data)


@pytest.mark.parametrize("policy", ["fcfs", "mc-sf", "vllm", "sjf"])
@pytest.mark.parametrize("seed", range(4))
def test_one_replica_reproduces_kv_rounds(policy, seed):
    inst = _inst(R.synthetic(seed, n=9, memories=(11,), prompt_max=3, output_max=7, arrival_horizon=5))
    ours = simulate_routing(inst, "round_robin", policy=policy)
    ref = simulate_rounds(inst.replica_instance(0, range(inst.n)), policy)
    assert [(r.start, r.finish, r.attempts) for r in ours.requests] == [(r.start, r.finish, r.attempts) for r in ref.requests]


@pytest.mark.parametrize("router", ROUTERS)
@pytest.mark.parametrize("policy", ["mc-sf", "vllm"])
def test_every_router_passes_the_checker(router, policy):
    data = R.synthetic(5, n=30, memories=(9, 12, 16), prompt_max=3, output_max=6, arrival_horizon=10)
    for i, r in enumerate(data["requests"]):  # a shared first block for half of the requests
        r["hash_ids"] = [0, 100 + i % 3, 1000 + i] if i % 2 else [200 + i]
    inst = _inst(data)
    sched = simulate_routing(inst, router, policy=policy, seed=3)
    res = {"requests": sched.to_dict()["requests"], "objective": sched.objective_value(inst)}
    assert check_result(inst, res) == []
    assert sched.meta["router"] == router


def test_routers_never_send_a_request_where_it_cannot_fit():
    data = {"kind": "routing", "replicas": [{"id": "a", "memory_tokens": 4}, {"id": "b", "memory_tokens": 10}],
            "requests": [{"id": f"r{i}", "arrival": i // 3, "prompt_tokens": 2, "output_tokens": 6 if i % 2 else 1}
                         for i in range(9)]}
    inst = _inst(data)
    for router in ROUTERS:
        sched = simulate_routing(inst, router)
        for r in sched.requests:
            if r.id in {f"r{i}" for i in range(1, 9, 2)}:
                assert r.replica == "b", router


def _two_replicas(requests):
    return _inst({"kind": "routing", "replicas": [{"id": "g0", "memory_tokens": 20}, {"id": "g1", "memory_tokens": 20}],
                  "requests": requests})


def test_round_robin_alternates_and_jsq_balances():
    inst = _two_replicas([{"id": f"r{i}", "arrival": 0, "prompt_tokens": 1, "output_tokens": 3} for i in range(4)])
    rr = simulate_routing(inst, "round_robin")
    assert [r.replica for r in rr.requests] == ["g0", "g1", "g0", "g1"]
    jsq = simulate_routing(inst, "jsq")
    assert [r.replica for r in jsq.requests] == ["g0", "g1", "g0", "g1"]


def test_dynamo_weighs_missing_prompt_against_held_kv():
    # r0 (prompt 6, block ids 1..6) goes to g0; at round 1 r1 shares 4 of its 6 blocks.
    # dynamo cost at round 1: g0 = w * 2 missing + 9 held next round (6 + 2 + 1); g1 = w * 6 + 0.
    reqs = [{"id": "r0", "arrival": 0, "prompt_tokens": 6, "output_tokens": 5, "hash_ids": [1, 2, 3, 4, 5, 6]},
            {"id": "r1", "arrival": 1, "prompt_tokens": 6, "output_tokens": 2, "hash_ids": [1, 2, 3, 4, 7, 8]}]
    inst = _two_replicas(reqs)
    default = simulate_routing(inst, "dynamo")  # 2 + 8 = 10 > 6: g1
    assert [r.replica for r in default.requests] == ["g0", "g1"]
    heavy = simulate_routing(inst, "dynamo", router_options={"overlap_weight": 3.0})  # 6 + 8 = 14 < 18: g0
    assert [r.replica for r in heavy.requests] == ["g0", "g0"]


def test_cache_aware_follows_prefix_unless_imbalanced():
    reqs = [{"id": "r0", "arrival": 0, "prompt_tokens": 4, "output_tokens": 2, "hash_ids": [1, 2, 3, 4]},
            {"id": "r1", "arrival": 0, "prompt_tokens": 4, "output_tokens": 2, "hash_ids": [9, 8, 7, 6]},
            {"id": "r2", "arrival": 0, "prompt_tokens": 4, "output_tokens": 2, "hash_ids": [1, 2, 3, 5]}]
    inst = _two_replicas(reqs)
    sched = simulate_routing(inst, "cache_aware")
    # r0 -> g0 (empty trees, smallest tree ties to g0); r1 matches nothing -> smallest tree g1; r2 matches 3/4 of g0
    assert [r.replica for r in sched.requests] == ["g0", "g1", "g0"]
    forced = simulate_routing(inst, "cache_aware", router_options={"cache_threshold": 0.9})
    assert [r.replica for r in forced.requests][2] == "g0"  # smallest tree: both hold 4 keys, ties to g0


def test_llm_d_default_weights_prefer_prefix_hits():
    reqs = [{"id": "r0", "arrival": 0, "prompt_tokens": 4, "output_tokens": 6, "hash_ids": [1, 2, 3, 4]},
            {"id": "r1", "arrival": 1, "prompt_tokens": 4, "output_tokens": 2, "hash_ids": [1, 2, 3, 4]}]
    inst = _two_replicas(reqs)
    # r0's tie at round 0 is broken at random. Round 1: r0's replica scores prefix 3 + kv 2 (1 - 6/20) = 1.4
    # + queue 2 = 6.4, the other 0 + 2 + 2 = 4: r1 follows r0
    first, second = [r.replica for r in simulate_routing(inst, "llm_d").requests]
    assert first == second
    first, second = [r.replica for r in simulate_routing(inst, "llm_d", router_options={"prefix_weight": 0.0}).requests]
    assert first != second


def test_unknown_router_and_options_are_input_errors():
    with pytest.raises(InputError, match="did you mean 'jsq'"):
        make_router("jsqq")
    with pytest.raises(InputError, match="--router"):
        make_router("dynamo", nonsense=1)


def test_checker_catches_each_violation():
    inst = _inst({"kind": "routing", "replicas": [{"id": "a", "memory_tokens": 6}, {"id": "b", "memory_tokens": 9}],
                  "requests": [{"id": "x", "arrival": 0, "prompt_tokens": 2, "output_tokens": 3},
                               {"id": "y", "arrival": 1, "prompt_tokens": 3, "output_tokens": 5}]})
    good = [{"id": "x", "replica": "a", "start": 0, "finish": 3}, {"id": "y", "replica": "b", "start": 1, "finish": 6}]
    assert check_result(inst, {"requests": good, "objective": 8.0, "bound": 8.0}) == []

    def bad(rows, **kw):
        return check_result(inst, {"requests": rows, **kw})

    assert any("more than replica 'a'" in p for p in bad([good[0], {**good[1], "replica": "a"}]))
    assert any("memory" in p for p in bad([{**good[0], "replica": "b"}, {**good[1], "start": 0, "finish": 5}]))
    assert any("before its arrival" in p for p in bad([good[0], {**good[1], "start": 0, "finish": 5}]))
    assert any("missing" in p for p in bad([good[0]]))
    assert any("not a replica" in p for p in bad([good[0], {**good[1], "replica": "zz"}]))
    assert any("!= start" in p for p in bad([good[0], {**good[1], "finish": 7}]))
    assert any("reported objective" in p for p in bad(good, objective=9.0))
    assert any("exceeds" in p for p in bad(good, objective=8.0, bound=9.0))
    assert any("more than once" in p for p in bad(good + [good[0]]))
