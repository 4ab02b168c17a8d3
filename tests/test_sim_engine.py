"""The engine against independent references: the round-based KV model, hand-computed timings."""
from __future__ import annotations

import numpy as np
import pytest

from servopt.instances.requests import Request
from servopt.simulator.engine import SimConfig, simulate
from servopt.simulator.timing import LinearTimer, UnitTimer


def _random_round_instance(seed: int):
    from servopt.instances.kv_schedule import KVScheduleInstance

    rng = np.random.default_rng(seed)
    M = int(rng.integers(20, 41))
    s = int(rng.integers(1, 6))
    n = int(rng.integers(6, 16))
    t, reqs = 0, []
    for i in range(n):
        t += int(rng.poisson(1.0))
        o = int(rng.integers(1, M - s + 1))
        reqs.append(Request(f"r{i}", t, s if seed % 2 else int(rng.integers(1, 6)), o))
    reqs = [r if r.prompt_tokens + r.output_tokens <= M else Request(r.id, r.arrival, r.prompt_tokens, M - r.prompt_tokens) for r in reqs]
    return KVScheduleInstance(memory_tokens=M, requests=tuple(reqs))


def _engine_on_rounds(inst, policy):
    reqs = [Request(r.id, float(r.arrival), r.prompt_tokens, r.output_tokens + 1) for r in inst.requests]
    order = sorted(range(len(reqs)), key=lambda i: (reqs[i].arrival, i))
    cfg = SimConfig(kv_tokens=inst.memory_tokens, block_size=1, scheduler="kv_rounds",
                    scheduler_options={"policy": policy})
    res = simulate([reqs[i] for i in order], UnitTimer(prefill_cost=False), cfg)
    df = res.to_dataframe().set_index("id")
    return df


def _policies():
    from servopt.simulator.kv_rounds import available_policies

    return available_policies()


@pytest.mark.parametrize("seed", range(12))
def test_unit_time_engine_reproduces_round_model(seed):
    """Same finish round and the same preemptions for every request, for every round policy
    (preempted requests keep the time of their very first token, as a server streams it)."""
    from servopt.simulator.kv_rounds import simulate_rounds

    inst = _random_round_instance(seed)
    for policy in _policies():
        ref = simulate_rounds(inst, policy)
        df = _engine_on_rounds(inst, policy)
        for row in ref.requests:
            got = df.loc[row.id]
            assert got["finish_s"] == row.finish, (policy, seed, row.id, got["finish_s"], row.finish)
            assert got["preemptions"] == len(row.attempts), (policy, seed, row.id)
            if not row.attempts:  # the first token of the (only) attempt comes at the end of its start round
                assert got["first_token_s"] == row.start, (policy, seed, row.id)
        assert int(df["preemptions"].sum()) == ref.meta["preemptions"], (policy, seed)


def test_single_request_hand_timing():
    """Linear timer, one request: TTFT = one prefill iteration, then output-1 decode iterations."""
    timer = LinearTimer(d0_ms=10.0, d1_ms=1.0, prefill_ms_per_token=0.5)
    r = Request("a", 0.0, 8, 4)
    res = simulate([r], timer, SimConfig(kv_tokens=64, block_size=4, scheduler="sarathi"))
    df = res.to_dataframe()
    ttft = (10 + 1 * 8 + 0.5 * 8) / 1000  # chunk of 8 after 0 cached: KV touched 8, prefill 8 tokens
    dec = sum((10 + 1 * (8 + g)) / 1000 for g in range(1, 4))  # contexts 9, 10, 11
    assert df.loc[0, "first_token_s"] == pytest.approx(ttft)
    assert df.loc[0, "finish_s"] == pytest.approx(ttft + dec)


def _sample(n=120, scale=1.0):
    from servopt.instances.traces import iter_trace
    from servopt.simulator.engine import _as_req  # noqa: F401 - import check only

    reqs = list(iter_trace(Path(__file__).resolve().parents[1] / "instances" / "data" / "trace_azure_conv_sample.csv", limit=n))
    return [Request(r.id, r.arrival * scale, r.prompt_tokens, r.output_tokens, output_tokens_interval=(max(1, r.output_tokens // 2), 2 * r.output_tokens)) for r in reqs]


from pathlib import Path  # noqa: E402

SCHEDULERS_TO_COMPARE = ["sarathi", "vllm", "orca", "static", "sjf", "srpt", "fastserve", "mcsf", "amin", "wait", "nested_wait"]


@pytest.mark.parametrize("scheduler", SCHEDULERS_TO_COMPARE)
def test_skip_ahead_equals_stepping_every_iteration(scheduler):
    """Closed-form decode stretches give exactly the times of stepping one iteration at a time."""
    timer = LinearTimer(d0_ms=20.0, d1_ms=0.002, prefill_ms_per_token=0.15)
    reqs = _sample(80, scale=0.05)  # compressed arrivals: queueing, preemptions
    runs = []
    for skip in (True, False):
        cfg = SimConfig(kv_tokens=12000, replicas=2, scheduler=scheduler, block_size=16, skip_ahead=skip,
                        scheduler_options={"token_budget": 512, "max_batch": 32}, kv_bytes_per_token=1e5)
        runs.append(simulate(reqs, timer, cfg).to_dataframe().set_index("id").sort_index())
    a, b = runs
    assert len(a) == len(reqs)
    np.testing.assert_allclose(a["first_token_s"], b["first_token_s"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(a["finish_s"], b["finish_s"], rtol=1e-12, atol=1e-12)
    assert (a["preemptions"] == b["preemptions"]).all()


def test_recompute_preempts_the_newest_and_keeps_its_tokens():
    """Two requests that cannot both finish in 48 tokens of KV: the later-admitted one is preempted
    by recompute (vLLM), resumes after the first finishes and its output count is unchanged."""
    timer = UnitTimer(prefill_cost=True)
    reqs = [Request("old", 0.0, 16, 20), Request("new", 0.0, 16, 20)]
    cfg = SimConfig(kv_tokens=48, block_size=4, scheduler="vllm", scheduler_options={"watermark": 0.0}, log_iterations=True)
    res = simulate(reqs, timer, cfg)
    df = res.to_dataframe().set_index("id")
    assert df.loc["old", "preemptions"] == 0
    assert df.loc["new", "preemptions"] >= 1
    assert df.loc["old", "finish_s"] < df.loc["new", "finish_s"]
    from servopt.analysis.sim_check import check_run

    assert check_run(res, reqs) == []


def test_pd_disaggregation_hand_timing():
    """Prefill on replica 0, KV over a 1 GB/s link, decode on replica 1: times add up by hand."""
    timer = LinearTimer(d0_ms=10.0, d1_ms=0.0, prefill_ms_per_token=1.0)
    r = Request("a", 0.0, 100, 5)
    cfg = SimConfig(kv_tokens=1024, block_size=16, pd=(1, 1), link_gb_per_s=1.0, kv_bytes_per_token=1e6)
    df = simulate([r], timer, cfg).to_dataframe()
    ttft = (10 + 100) / 1000
    transfer = 100 * 1e6 / 1e9  # the prompt's KV (100 tokens) after the prefill emitted token 1
    decode = 4 * 10 / 1000
    assert df.loc[0, "first_token_s"] == pytest.approx(ttft)
    assert df.loc[0, "finish_s"] == pytest.approx(ttft + transfer + decode)
    assert df.loc[0, "prefill_replica"] == 0 and df.loc[0, "replica"] == 1


def test_deterministic_for_a_seed():
    timer = LinearTimer(d0_ms=20.0, d1_ms=0.002, prefill_ms_per_token=0.15)
    reqs = _sample(60, scale=0.2)
    cfg = SimConfig(kv_tokens=20000, replicas=3, router="power_of_two", seed=7)
    a = simulate(reqs, timer, cfg).to_dataframe()
    b = simulate(reqs, timer, cfg).to_dataframe()
    assert a.equals(b)
    c = simulate(reqs, timer, SimConfig(kv_tokens=20000, replicas=3, router="power_of_two", seed=8)).to_dataframe()
    assert not (a["replica"].to_numpy() == c["replica"].to_numpy()).all()


def test_unservable_request_is_an_error_or_reported():
    from servopt.errors import InputError

    reqs = [Request("ok", 0.0, 10, 10), Request("huge", 1.0, 5000, 10)]
    with pytest.raises(InputError, match="huge"):
        simulate(reqs, UnitTimer(), SimConfig(kv_tokens=1024))
    res = simulate(reqs, UnitTimer(), SimConfig(kv_tokens=1024, unservable="drop"))
    assert res.unserved == ["huge"] and len(res.to_dataframe()) == 1


def test_cost_model_adapter_is_exact_across_a_kink():
    """A scalar-only cost with a kink inside the stretch: the adapter must not extend the first
    slope (it checks the middle and last steps), and must match per-step evaluation exactly."""
    from servopt.simulator.timing import CostModelTimer

    class Kinked:
        def iteration_ms_totals(self, *, prefill_tokens=0, prefill_attention_pairs=0, decode_seqs=0,
                                decode_context_tokens=0, sampled_seqs=0):
            if np.ndim(decode_context_tokens):
                raise ValueError("scalar only")
            return max(20.0 + 0.001 * decode_context_tokens, 5.0 + 0.004 * decode_context_tokens)

    t = CostModelTimer(Kinked())
    n, ctx0, k = 10, 1000, 1000  # kink at ctx 5000: step 400
    got = t.decode_s(n, ctx0, k)
    want = np.array([max(20 + 0.001 * c, 5 + 0.004 * c) for c in ctx0 + n * np.arange(k)]) / 1000
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-15)
    straight = t.decode_s(n, ctx0, 300)  # before the kink: the progression
    np.testing.assert_allclose(straight, want[:300], rtol=0, atol=1e-15)
