"""Offline eviction policies inside the serving simulator: the optimum's replay and tree Belady.

Checked against independent code: every eviction the simulator's prefix cache makes is re-ranked by a
brute-force scan of the trace (next use, the plan's decision), the plan's hits equal the exhaustive
optimum, and with requests one at a time and room for the plan's cache every planned hit happens.
"""
from __future__ import annotations

import random
from importlib import resources

import pytest

from eviction_bruteforce import brute_force, random_paths
from servopt.costmodel.roofline import make_cost_model
from servopt.errors import InputError
from servopt.instances.requests import Request
from servopt.simulator import prefix_cache
from servopt.simulator.engine import SimConfig, simulate
from servopt.solvers.eviction_belady import belady_hits

T = 512  # tokens per prefix block
ENTRY = T // 16  # KV blocks per prefix block (block size 16)
SLICE = str(resources.files("servopt.instances").joinpath("data", "eviction_mooncake_conversation_1000.jsonl"))


def _cost():
    return make_cost_model("llama-3.1-8b", "h100", 1)


def _requests(paths, gap_s):
    # a prompt of len(path) full blocks and a partial one, so every full block can be hit and inserted
    return [Request(f"r{i}", i * gap_s, T * len(p) + 100, 4, prefix_block_ids=tuple(p)) for i, p in enumerate(paths)]


def _next_use(paths, r, key):
    for j in range(r + 1, len(paths)):
        if key in paths[j]:
            return j
    return len(paths)


def _expected_rank(policy_name, policy, paths, key, r):
    """The policy's order recomputed from the trace by scanning (not from the policy's tables): ``key``
    last used by request ``r``."""
    nu = _next_use(paths, r, key)
    depth = paths[r].index(key)
    if policy_name == "belady_tree":
        return (-nu, -depth)
    planned = nu < len(paths) and depth < policy.plan.hits[nu]
    return (1 if planned else 0, -nu, -depth)


@pytest.fixture()
def audited_evictions(monkeypatch):
    """Wrap PrefixCache.evict: before each call snapshot the evictable entries, after it check that every
    evicted entry ranks no later than every evictable entry left behind. Entries are recorded as (key, last
    user) at that moment (the simulator reuses the objects)."""
    records = []
    original = prefix_cache.PrefixCache.evict

    def evict(self, blocks_needed):
        before = {k: e.owner for k, e in self.entries.items() if e.refs == 0}
        freed = original(self, blocks_needed)
        gone = [(k, r) for k, r in before.items() if k not in self.entries]
        left = [(k, r) for k, r in before.items() if k in self.entries]
        records.append((self.policy, gone, left))
        return freed

    monkeypatch.setattr(prefix_cache.PrefixCache, "evict", evict)
    return records


@pytest.mark.parametrize("name", ["optimum_replay", "belady_tree"])
def test_every_eviction_follows_the_policys_order_under_concurrency(name, audited_evictions):
    rng = random.Random(5)
    checked = 0
    for case in range(6):
        paths = random_paths(rng, 14, 5, 2)
        # tight memory (room for a few prefix blocks) and overlapping requests
        kv_tokens = (max(len(p) for p in paths) + 3 + case) * T
        res = simulate(_requests(paths, 0.05), _cost(), SimConfig(kv_tokens=kv_tokens, eviction=name, seed=case))
        assert len(res.columns["first_token_s"]) == len(paths)
        for policy, gone, left in audited_evictions:
            if not gone or not left:
                continue
            worst_gone = max(_expected_rank(name, policy, paths, k, r) for k, r in gone)
            best_left = min(_expected_rank(name, policy, paths, k, r) for k, r in left)
            assert worst_gone <= best_left, (paths, worst_gone, best_left)
            checked += 1
        audited_evictions.clear()
    assert checked > 0


def test_plan_is_the_exhaustive_optimum_and_its_hits_happen_one_request_at_a_time():
    from servopt.simulator.evict_optimum_replay import OptimumReplay

    rng = random.Random(11)
    for case in range(12):
        paths = random_paths(rng, rng.randint(3, 7), 4, 2)
        C = rng.randint(1, 4)
        plan_policy = OptimumReplay(C)
        plan_policy.prepare(paths, capacity_blocks=0)
        assert sum(plan_policy.plan.hits) == brute_force(paths, C), (paths, C)
        # room for the plan's C blocks beside the running request's whole KV; one request at a time
        kv_tokens = (C + max(len(p) for p in paths) + 2) * T
        cfg = SimConfig(kv_tokens=kv_tokens, eviction="optimum_replay", eviction_options={"capacity_blocks": C})
        res = simulate(_requests(paths, 100.0), _cost(), cfg)
        order = res.columns["request_index"]
        sim_hits = [0] * len(paths)
        for i, cached in zip(order, res.columns["cached_tokens"]):
            sim_hits[int(i)] = int(cached) // T
        assert all(s >= p for s, p in zip(sim_hits, plan_policy.plan.hits)), (paths, C, sim_hits, plan_policy.plan.hits)
        # and nothing beats the optimum of the most the cache can ever hold
        assert sum(sim_hits) <= sum(belady_hits(paths, kv_tokens // T))


@pytest.mark.parametrize("name", ["lru", "lru_sglang", "lfu", "fifo", "gdsf", "tlru", "rlt", "belady_tree", "optimum_replay"])
def test_no_policy_in_the_simulator_beats_the_optimum_one_request_at_a_time(name):
    rng = random.Random(17)
    for case in range(4):
        paths = random_paths(rng, 10, 5, 2)
        kv_tokens = (max(len(p) for p in paths) + 2 + case) * T
        res = simulate(_requests(paths, 100.0), _cost(), SimConfig(kv_tokens=kv_tokens, eviction=name, seed=case))
        hits = int(res.columns["cached_tokens"].sum()) // T
        assert hits <= sum(belady_hits(paths, kv_tokens // T))


def test_offline_policies_need_one_replica():
    paths = [[1, 2], [1, 3]]
    with pytest.raises(InputError, match="one replica"):
        simulate(_requests(paths, 1.0), _cost(), SimConfig(kv_tokens=20 * T, eviction="optimum_replay", replicas=2))


def test_cli_simulate_trace_with_the_optimums_replay(run_cli):
    base = ("simulate", SLICE, "--llm", "llama-3.1-8b", "--gpu", "h100", "--limit", "150", "--arrivals", "poisson",
            "--rate", "0.3", "--kv-tokens", "200000")
    for name in ("optimum_replay", "belady_tree", "lru"):
        code, out, err = run_cli(*base, "--eviction", name)
        assert code == 0, err
        assert "prefix cache hit ratio" in out
    code, out, err = run_cli(*base, "--eviction", "optimum_replay", "--replicas", "2")
    assert code == 2 and "one replica" in err
