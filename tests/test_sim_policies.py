"""Every policy against the independent run checker, plus hand-checkable behaviours of each family."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from servopt.analysis.sim_check import check_run
from servopt.instances.requests import Request
from servopt.instances.traces import iter_trace
from servopt.simulator import registry
from servopt.simulator.engine import SimConfig, simulate
from servopt.simulator.prefix_cache import PrefixCache
from servopt.simulator.timing import LinearTimer, UnitTimer

DATA = Path(__file__).resolve().parents[1] / "instances" / "data"
TIMER = LinearTimer(d0_ms=20.0, d1_ms=0.002, prefill_ms_per_token=0.15)


def _azure(n=100, scale=0.05):
    return [Request(r.id, r.arrival * scale, r.prompt_tokens, r.output_tokens,
                    output_tokens_interval=(max(1, r.output_tokens // 2), 2 * r.output_tokens))
            for r in iter_trace(DATA / "trace_azure_conv_sample.csv", limit=n)]


@pytest.mark.parametrize("scheduler", [n for n in registry.names("scheduler") if n != "kv_rounds"])
@pytest.mark.parametrize("mode", ["recompute", "swap"])
def test_every_scheduler_passes_the_checker_under_memory_pressure(scheduler, mode):
    reqs = _azure()
    cfg = SimConfig(kv_tokens=9000, replicas=2, scheduler=scheduler, log_iterations=True, kv_bytes_per_token=1e5,
                    scheduler_options={"preempt_mode": mode, "max_batch": 24})
    res = simulate(reqs, TIMER, cfg)
    assert check_run(res, reqs) == []
    assert len(res.to_dataframe()) == len(reqs) and not res.unserved


def test_checker_catches_tampered_runs():
    reqs = _azure(40)
    res = simulate(reqs, TIMER, SimConfig(kv_tokens=9000, log_iterations=True))
    assert check_run(res, reqs) == []
    res.columns["finish_s"] = res.columns["finish_s"].copy()
    res.columns["finish_s"][3] = res.columns["first_token_s"][3] - 1.0
    assert any("finished before" in v for v in check_run(res, reqs))
    res2 = simulate(reqs, TIMER, SimConfig(kv_tokens=9000, log_iterations=True))
    res2.iteration_log.loc[5, "kv_blocks_used"] = 10**6
    assert any("more KV blocks" in v for v in check_run(res2, reqs))
    assert any("neither finished" in v for v in check_run(res2, reqs + [Request("ghost", 1.0, 5, 5)]))


def test_sjf_admits_the_shortest_first():
    """Batch of one: all arrive at 0, SJF serves them in increasing output length."""
    reqs = [Request(str(i), 0.0, 4, o) for i, o in enumerate([9, 3, 6, 1])]
    res = simulate(reqs, UnitTimer(prefill_cost=True), SimConfig(kv_tokens=1024, scheduler="sjf", scheduler_options={"max_batch": 1}))
    df = res.to_dataframe().sort_values("finish_s")
    assert list(df["id"]) == ["3", "1", "2", "0"]
    # unit iterations: prefill + (o - 1) decodes each, back to back
    assert list(df["finish_s"]) == [1.0, 4.0, 10.0, 19.0]


def test_srpt_preempts_a_long_job_for_a_short_arrival():
    reqs = [Request("long", 0.0, 4, 50), Request("short", 5.0, 4, 3)]
    res = simulate(reqs, UnitTimer(prefill_cost=True), SimConfig(kv_tokens=1024, scheduler="srpt", scheduler_options={"max_batch": 1}))
    df = res.to_dataframe().set_index("id")
    assert df.loc["short", "finish_s"] == 5.0 + 3  # starts at its arrival: prefill + 2 decodes
    assert df.loc["long", "finish_s"] == 50 + 3  # paused (KV kept) for the 3 iterations of the short one
    fcfs = simulate(reqs, UnitTimer(prefill_cost=True), SimConfig(kv_tokens=1024, scheduler="vllm", scheduler_options={"max_batch": 1}))
    assert fcfs.to_dataframe().set_index("id").loc["short", "finish_s"] == 53.0


def test_static_batching_waits_for_the_whole_batch():
    reqs = [Request("a", 0.0, 4, 10), Request("b", 0.0, 4, 2), Request("c", 0.5, 4, 2)]
    df = simulate(reqs, UnitTimer(prefill_cost=True), SimConfig(kv_tokens=1024, scheduler="static")).to_dataframe().set_index("id")
    assert df.loc["c", "first_token_s"] >= df.loc["a", "finish_s"]  # joins only once a and b are done
    cont = simulate(reqs, UnitTimer(prefill_cost=True), SimConfig(kv_tokens=1024, scheduler="sarathi")).to_dataframe().set_index("id")
    assert cont.loc["c", "finish_s"] < df.loc["c", "finish_s"]


def test_orca_reserves_and_never_preempts():
    reqs = _azure(60, scale=0.01)
    res = simulate(reqs, TIMER, SimConfig(kv_tokens=6000, scheduler="orca", log_iterations=True))
    assert res.to_dataframe()["preemptions"].sum() == 0
    assert check_run(res, reqs) == []


def test_fastserve_skip_join_and_demotion():
    from servopt.simulator.sched_fastserve import FastServe

    class Rep:  # minimal stand-in: only the timer is used by the skip-join rule
        timer = LinearTimer(d0_ms=10.0, d1_ms=0.0, prefill_ms_per_token=1.0)

    fs = FastServe(base_quantum=2, ratio=2, levels=5)
    short, long_ = Request("s", 0, 5, 10), Request("l", 0, 100, 10)
    from servopt.simulator.engine import _as_req

    a, b = _as_req(0, short), _as_req(1, long_)
    # prefill 15 ms vs decode 10 ms: quantum 2 iterations = 20 ms covers it -> level 0
    assert fs._join_level(Rep, a) == 0
    # prefill 110 ms: 2,4,8 iterations = 20,40,80 ms too short, 16 = 160 ms -> level 3
    assert fs._join_level(Rep, b) == 3


@pytest.mark.parametrize("router", registry.names("router"))
def test_every_router_spreads_and_passes_the_checker(router):
    reqs = _azure(80, scale=0.2)
    opts = {"weights": [1, 2, 1]} if router == "weighted_rr" else {}
    res = simulate(reqs, TIMER, SimConfig(kv_tokens=20000, replicas=3, router=router, router_options=opts, log_iterations=True))
    assert check_run(res, reqs) == []
    counts = np.bincount(res.to_dataframe()["replica"], minlength=3)
    assert counts.sum() == 80 and (counts > 0).sum() >= 2


def test_round_robin_and_weighted_shares_are_exact():
    reqs = [Request(str(i), i * 10.0, 4, 2) for i in range(40)]
    rr = simulate(reqs, UnitTimer(), SimConfig(kv_tokens=1024, replicas=4, router="round_robin")).to_dataframe()
    assert list(rr.sort_values("arrival_s")["replica"])[:8] == [0, 1, 2, 3, 0, 1, 2, 3]
    w = simulate(reqs, UnitTimer(), SimConfig(kv_tokens=1024, replicas=2, router="weighted_rr", router_options={"weights": [3, 1]})).to_dataframe()
    assert list(np.bincount(w["replica"])) == [30, 10]


def test_jsq_goes_to_the_emptiest_replica():
    # three long requests at t=0 fill replicas 0,1,2 (one each); the fourth goes to replica 3, the fifth
    # (after replica 3's short request finished) again to the emptiest: 3
    reqs = [Request("a", 0, 4, 100), Request("b", 0, 4, 100), Request("c", 0, 4, 100), Request("d", 0, 4, 2), Request("e", 50, 4, 2)]
    df = simulate(reqs, UnitTimer(), SimConfig(kv_tokens=2048, replicas=4, router="jsq")).to_dataframe().set_index("id")
    assert [df.loc[k, "replica"] for k in "abcde"] == [0, 1, 2, 3, 3]


def test_cache_aware_routing_keeps_a_prefix_on_one_replica():
    reqs = [Request(str(i), i * 0.5, 1100, 4, prefix_block_ids=(7, 8)) for i in range(6)]
    df = simulate(reqs, TIMER, SimConfig(kv_tokens=20000, replicas=3, router="cache_aware", eviction="lru")).to_dataframe()
    assert df["replica"].nunique() == 1
    assert (df["cached_tokens"].iloc[1:] == 1024).all()  # two 512-token blocks hit after the first request


def _cache(policy):
    return PrefixCache(registry.make("eviction", policy), block_tokens=16, kv_blocks_per_entry=1)


def test_lru_evicts_least_recent_and_never_pinned():
    c = _cache("lru")
    c.insert_pinned([1, 2], 0)
    c.insert_pinned([3], 0)
    c.unpin([1, 2])  # released first: older
    c.unpin([3])
    c.pin([3]); c.unpin([3])  # touched again: most recent
    c.insert_pinned([9], 0)  # pinned: never evicted
    assert c.evict(1) == 1 and 2 not in c.entries  # deepest of the oldest release goes first
    assert c.evict(1) == 1 and 1 not in c.entries
    assert c.evict(5) == 1 and 3 not in c.entries and 9 in c.entries


def test_lfu_fifo_gdsf_orders():
    lfu = _cache("lfu")
    lfu.insert_pinned([1], 0); lfu.insert_pinned([2], 0)
    lfu.unpin([1]); lfu.unpin([2])
    lfu.pin([1]); lfu.unpin([1])  # 1 has two hits, 2 one
    lfu.evict(1)
    assert 2 not in lfu.entries and 1 in lfu.entries
    fifo = _cache("fifo")
    fifo.insert_pinned([1], 0); fifo.insert_pinned([2], 0)
    fifo.unpin([2]); fifo.unpin([1]); fifo.pin([1]); fifo.unpin([1])
    fifo.evict(1)
    assert 1 not in fifo.entries  # inserted first, however recent
    g = _cache("gdsf")
    g.insert_pinned([1, 2, 3], 0)  # depths 0, 1, 2: the deep block costs most to recompute
    g.unpin([1, 2, 3])
    g.evict(1)
    assert 1 not in g.entries and 3 in g.entries
    assert g.inflation > 0


def test_prefix_cache_hits_on_the_mooncake_sample():
    reqs = list(iter_trace(DATA / "trace_mooncake_conv_sample.jsonl", limit=120))
    cfg = SimConfig(kv_tokens=600_000, replicas=2, router="cache_aware", eviction="lru", log_iterations=True)
    res = simulate(reqs, LinearTimer(d0_ms=10, d1_ms=0.0005, prefill_ms_per_token=0.05), cfg)
    df = res.to_dataframe()
    assert df["cached_tokens"].sum() > 0
    assert (df["cached_tokens"] <= df["prompt_tokens"] - 1).all()
    assert check_run(res, reqs) == []
    off = simulate(reqs, LinearTimer(d0_ms=10, d1_ms=0.0005, prefill_ms_per_token=0.05),
                   SimConfig(kv_tokens=600_000, replicas=2, router="cache_aware")).to_dataframe()
    assert df["ttft_s"].mean() < off["ttft_s"].mean()


def test_small_cache_evicts_under_pressure():
    reqs = list(iter_trace(DATA / "trace_mooncake_conv_sample.jsonl", limit=80))
    res = simulate(reqs, LinearTimer(d0_ms=10, d1_ms=0.0005, prefill_ms_per_token=0.05),
                   SimConfig(kv_tokens=100_000, eviction="gdsf", log_iterations=True))
    assert sum(r["cache_evictions"] for r in res.replicas) > 0
    assert check_run(res, reqs) == []


def test_unknown_policy_lists_the_valid_ones():
    from servopt.errors import InputError

    with pytest.raises(InputError, match="valid: .*sarathi"):
        registry.get("scheduler", "sarathy")


@pytest.mark.parametrize("scheduler", [n for n in registry.names("scheduler") if n != "kv_rounds"])
def test_every_scheduler_serves_a_pd_cluster(scheduler):
    """Prefill pool of 1, decode pool of 2: every request finishes, prefill on 0, decode on 1 or 2."""
    reqs = _azure(60)
    res = simulate(reqs, TIMER, SimConfig(kv_tokens=9000, pd=(1, 2), scheduler=scheduler, kv_bytes_per_token=1e5,
                                          log_iterations=True))
    df = res.to_dataframe()
    assert len(df) == 60 and not res.unserved
    assert check_run(res, reqs) == []
    multi = df[df["output_tokens"] > 1]
    assert (multi["prefill_replica"] == 0).all() and multi["replica"].isin([1, 2]).all()
