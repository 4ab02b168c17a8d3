"""Roofline cost model: hand-computed FLOP/byte counts, monotonicity, TP scaling, KV sizes and capacity,
max batch under a TPOT bound, fast path == detailed path."""
from __future__ import annotations

import math

import numpy as np

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servopt.costmodel.profile import ROOFLINE_ONLY, Profile
from servopt.costmodel.roofline import BatchTotals, CostModel, batch_totals, make_cost_model, smooth_roofline
from servopt.errors import InputError
from servopt.instances.hardware import GPU, LLM

# A made-up model small enough to count by hand: L=2, d=8, h_q=2, h_kv=1, d_h=4, d_ff=16, V=10, bf16.
TOY = LLM(name="toy", num_layers=2, hidden_size=8, num_heads=2, num_kv_heads=1, head_dim=4, intermediate_size=16,
          vocab_size=10)
# 1 TFLOP/s, 1 GB/s, 0.01 GiB, NVLink 1 GB/s.
TOY_GPU = GPU(name="toy-gpu", bf16_tflops=1.0, hbm_gb_per_s=1.0, memory_gib=0.01, nvlink_gb_per_s=1.0,
              pcie_gb_per_s=1.0, usd_per_hour=1.0)


def test_toy_parameter_count_by_hand():
    # per layer: Q 8*2*4=64, K+V 2*8*1*4=64, O 2*4*8=64, MLP 3*8*16=384 -> 576; 2 layers 1152;
    # embedding 10*8=80 and untied LM head 80.
    assert TOY.num_params() == 1152 + 160
    assert TOY.active_params_per_token() == 1152
    assert TOY.kv_bytes_per_token() == 2 * 2 * 1 * 4 * 2 == 32


def test_toy_iteration_flops_and_bytes_by_hand():
    cm = CostModel(TOY, TOY_GPU, 1, ROOFLINE_ONLY)
    # one prompt chunk of 3 new tokens (nothing cached) + one decode sequence with 5 cached tokens
    c = cm.iteration(prefill=[(3, 0)], decode=[5])
    ops = {o["name"]: o for o in c.operators}
    n, s = 4, 2  # new tokens, sequences that emit a token
    # linear: 2 FLOPs per weight per token; weights read once + activations (in+out of each GEMM):
    # per token per layer: QKV in 8 out 16, O in 8 out 8, MLP gate/up in 8 out 32, down in 16 out 8 = 104 elems.
    assert ops["linear"]["flops"] == 2 * 1152 * n == 9216
    assert ops["linear"]["bytes"] == 1152 * 2 + n * 2 * 2 * 104 == 3968
    # LM head for the 2 emitting sequences: 2*V*d each; weights 80*2 bytes + (hidden in 16 B + fp32 logits 40 B) each
    assert ops["lm_head"]["flops"] == 2 * 10 * 8 * s == 320
    assert ops["lm_head"]["bytes"] == 160 + s * (16 + 40) == 272
    # prefill attention: causal pairs 1+2+3 = 6; 4*L*h_q*d_h FLOPs per pair;
    # bytes: Q and O (2*2*L*h_q*d_h = 64 per token) + its K,V written and read (2*32 per token)
    assert ops["attention_prefill"]["flops"] == 4 * 2 * 2 * 4 * 6 == 384
    assert ops["attention_prefill"]["bytes"] == 3 * (64 + 64) == 384
    # decode attention: 5 cached keys + itself; reads 5 tokens of KV, writes 1, Q/O 64
    assert ops["attention_decode"]["flops"] == 4 * 2 * 2 * 4 * 6 == 384
    assert ops["attention_decode"]["bytes"] == 5 * 32 + 32 + 64 == 256
    # elementwise: 2 bytes * (L * (10 d + 2 (h_q + h_kv) d_h + 3 d_ff) + d) per token
    assert ops["elementwise"]["bytes"] == n * 2 * (2 * (80 + 24 + 48) + 8) == 2496
    assert c.flops == 9216 + 320 + 384 + 384
    assert c.bytes == 3968 + 272 + 384 + 256 + 2496
    assert ops["allreduce"]["time_ms"] == 0 and c.comm_bytes == 0
    # roofline times at 1e12 FLOP/s and 1e9 B/s: every operator is memory-bound here
    expected_ms = sum(max(f / 1e12, b / 1e9) for f, b in
                      [(9216, 3968), (320, 272), (384, 384), (384, 256), (0, 2496)]) * 1e3
    assert c.iteration_ms == pytest.approx(expected_ms, rel=1e-12)
    assert c.bound == "memory"


def test_toy_tp2_allreduce_and_profile_terms_by_hand():
    prof = Profile(name="p", allreduce_bandwidth_eff=0.5, allreduce_hop_latency_ms=0.01, overhead_ms=2.0,
                   per_sequence_ms=0.25)
    cm = CostModel(TOY, TOY_GPU, 2, prof)
    c = cm.iteration(decode=[5, 7])
    ar = next(o for o in c.operators if o["name"] == "allreduce")
    # 2 all-reduces per layer, each 2*(T-1)/T * n*d*b = 1 * 2*8*2 = 32 bytes; 2*log2(2) = 2 hops of 0.01 ms
    assert ar["comm_bytes"] == 4 * 32
    assert ar["time_ms"] == pytest.approx((4 * 32 / (0.5 * 1e9)) * 1e3 + 4 * 2 * 0.01)
    assert next(o for o in c.operators if o["name"] == "overhead")["time_ms"] == 2.0 + 2 * 0.25
    assert cm.kv_heads_per_gpu == 1  # 1 KV head over 2 GPUs is replicated
    assert cm.kv_bytes_per_token_per_gpu() == 32 and cm.kv_bytes_per_token() == 32


def test_empty_batch_costs_nothing():
    cm = make_cost_model("llama-3.1-8b", "h100-sxm")
    assert cm.iteration().iteration_ms == 0.0
    assert cm.iteration_ms_totals() == 0.0


def test_kv_bytes_per_token_llama():
    assert make_cost_model("llama-2-7b", "a100-80g").kv_bytes_per_token() == 2 * 32 * 4096 * 2 == 512 * 1024
    assert make_cost_model("llama-3.1-8b", "h100").kv_bytes_per_token() == 128 * 1024
    cm = make_cost_model("llama-2-70b", "h100", tp=4)
    assert cm.kv_bytes_per_token() == 320 * 1024 and cm.kv_bytes_per_token_per_gpu() == 80 * 1024
    # TP beyond the 8 KV heads replicates them: per GPU one head's worth
    cm16 = make_cost_model("llama-2-70b", "h100", tp=16)
    assert cm16.kv_bytes_per_token_per_gpu() == 2 * 80 * 1 * 128 * 2


def test_kv_capacity_by_hand():
    cm = CostModel(TOY, TOY_GPU, 1, ROOFLINE_ONLY)
    # activation reserve: 8192 tokens * 2 B * (2 d + (h_q + 2 h_kv) d_h + 2 d_ff) + 256 * 4 B * V
    reserve = 8192 * 2 * (16 + 16 + 32) + 256 * 4 * 10
    assert cm.activation_reserve_bytes_per_gpu() == reserve
    free = 0.9 * 0.01 * 2**30 - 1312 * 2 - reserve
    assert cm.kv_capacity_tokens(0.9) == math.floor(free / 32)
    with pytest.raises(InputError):
        cm.kv_capacity_tokens(0)


def test_capacity_zero_and_fit_check_when_weights_do_not_fit():
    cm = make_cost_model("llama-2-70b", "a100-80g", tp=1)
    assert not cm.weights_fit() and cm.kv_capacity_tokens() == 0
    assert cm.max_batch_under_tpot(1e9, 100) == 0
    with pytest.raises(InputError, match="do not fit"):
        cm.check_fits()
    assert make_cost_model("llama-2-70b", "a100-80g", tp=2).weights_fit()


def test_tp_must_divide_heads():
    with pytest.raises(InputError, match="not divisible"):
        make_cost_model("llama-2-70b", "h100", tp=3)


@pytest.mark.parametrize("llm,gpu", [("llama-3.1-8b", "h100-sxm"), ("llama-2-70b", "a100-80g"), ("mixtral-8x7b", "h200")])
def test_tp_scaling_sanity(llm, gpu):
    for batch, dec in (([(4096, 0)], []), ([], [1024] * 32)):
        c2 = make_cost_model(llm, gpu, tp=2, profile=ROOFLINE_ONLY).iteration(prefill=batch, decode=dec)
        c4 = make_cost_model(llm, gpu, tp=4, profile=ROOFLINE_ONLY).iteration(prefill=batch, decode=dec)
        # per-GPU FLOPs of the GEMMs halve exactly; on the bare roofline the time falls, by at most 2x
        lin2 = next(o for o in c2.operators if o["name"] == "linear")["flops"]
        lin4 = next(o for o in c4.operators if o["name"] == "linear")["flops"]
        assert lin4 == pytest.approx(lin2 / 2, rel=1e-12)
        assert c2.iteration_ms / 2 <= c4.iteration_ms < c2.iteration_ms
        assert c4.comm_bytes > c2.comm_bytes
    # with the fitted default profile a long prefill still gets faster with TP, by at most 2x ...
    p2 = make_cost_model(llm, gpu, tp=2).prefill_ms(4096)
    p4 = make_cost_model(llm, gpu, tp=4).prefill_ms(4096)
    assert p2 / 2 <= p4 < p2
    # ... while a decode step can get slower (all-reduce latency grows with log2 T), but never
    # by more than the all-reduce term it adds
    cm4 = make_cost_model(llm, gpu, tp=4)
    d2, d4 = make_cost_model(llm, gpu, tp=2).decode_step_ms(8, 512), cm4.decode_step_ms(8, 512)
    ar4 = next(o for o in cm4.iteration(decode=[512] * 8).operators if o["name"] == "allreduce")["time_ms"]
    assert d4 <= d2 + ar4


def test_prefill_compute_bound_decode_memory_bound():
    cm = make_cost_model("llama-3.1-8b", "h100-sxm")
    assert cm.iteration(prefill=[(4096, 0)]).bound == "compute"
    assert cm.iteration(decode=[1024] * 8).bound == "memory"


_batches = st.tuples(
    st.lists(st.tuples(st.integers(1, 3000), st.integers(0, 5000), st.booleans()), max_size=4),
    st.lists(st.integers(0, 20000), max_size=40),
)
_models = [make_cost_model("llama-3.1-8b", "h100-sxm"), make_cost_model("llama-2-70b", "a100", tp=4),
           make_cost_model("mixtral-8x7b", "h200", tp=2), make_cost_model("opt-13b", "l40s", tp=2)]


@settings(max_examples=150, deadline=None)
@given(_batches, st.integers(0, len(_models) - 1))
def test_fast_path_equals_detailed_path(batch, which):
    cm = _models[which]
    prefill, decode = batch
    c = cm.iteration(prefill=prefill, decode=decode)
    t = batch_totals(prefill, decode)
    fast = cm.iteration_ms_totals(prefill_tokens=t.prefill_tokens, prefill_attention_pairs=t.prefill_attention_pairs,
                                  decode_seqs=t.decode_seqs, decode_context_tokens=t.decode_context_tokens,
                                  sampled_seqs=t.sampled_seqs, prefill_context_tokens=t.prefill_context_tokens)
    assert fast == pytest.approx(c.iteration_ms, rel=1e-12, abs=1e-12)


@settings(max_examples=150, deadline=None)
@given(_batches, st.integers(0, len(_models) - 1), st.integers(0, 3), st.integers(1, 500))
def test_more_work_is_never_faster(batch, which, kind, amount):
    cm = _models[which]
    prefill, decode = batch
    before = cm.iteration(prefill=prefill, decode=decode).iteration_ms
    prefill, decode = list(prefill), list(decode)
    if kind == 0:
        decode.append(amount)  # one more decoding sequence
    elif kind == 1 and decode:
        decode[0] += amount  # longer context
    elif kind == 2:
        prefill.append((amount, 0, True))  # one more prompt
    elif kind == 3 and prefill:
        p, c, e = prefill[0]
        prefill[0] = (p + amount, c, e)  # longer chunk
    after = cm.iteration(prefill=prefill, decode=decode).iteration_ms
    assert after >= before - 1e-12


@pytest.mark.parametrize("llm,gpu,tp,ctx", [("llama-3.1-8b", "h100-sxm", 1, 1024), ("llama-2-70b", "a100-80g", 2, 2048),
                                            ("mixtral-8x7b", "h100", 2, 512), ("llama-2-7b", "l4", 1, 512)])
@pytest.mark.parametrize("slack", [1.05, 1.5, 3.0])
def test_max_batch_under_tpot_is_the_largest(llm, gpu, tp, ctx, slack):
    cm = make_cost_model(llm, gpu, tp=tp)
    tpot = cm.decode_step_ms(1, ctx) * slack
    b = cm.max_batch_under_tpot(tpot, ctx)
    cap = cm.kv_capacity_tokens()
    assert b >= 1
    assert cm.decode_step_ms(b, ctx) <= tpot and b * (ctx + 1) <= cap
    # one more either misses the TPOT or does not fit
    assert cm.decode_step_ms(b + 1, ctx) > tpot or (b + 1) * (ctx + 1) > cap


def test_max_batch_zero_when_tpot_unreachable():
    cm = make_cost_model("llama-3.1-8b", "h100-sxm")
    assert cm.max_batch_under_tpot(cm.decode_step_ms(1, 100) * 0.99, 100) == 0


def test_bad_batches_name_the_field():
    cm = make_cost_model("llama-3.1-8b", "h100-sxm")
    with pytest.raises(InputError, match=r"prefill\[0\].chunk_tokens"):
        cm.iteration(prefill=[(0, 0)])
    with pytest.raises(InputError, match=r"decode\[1\]"):
        cm.iteration(decode=[3, -1])
    with pytest.raises(InputError, match=r"prefill\[0\]"):
        cm.iteration(prefill=[(1, 2, 3, 4)])


def test_prefill_ms_and_decode_step_helpers_match_iteration():
    cm = make_cost_model("llama-2-70b", "h100", tp=2)
    assert cm.prefill_ms(777) == pytest.approx(cm.iteration(prefill=[(777, 0)]).iteration_ms, rel=1e-12)
    assert cm.decode_step_ms(16, 300) == pytest.approx(cm.iteration(decode=[300] * 16).iteration_ms, rel=1e-12)


def test_totals_of_chunked_prefill():
    t = batch_totals([(4, 10), (3, 0, False)], [7, 8])
    assert t == BatchTotals(prefill_tokens=7, prefill_attention_pairs=4 * 10 + 10 + 6, prefill_context_tokens=10,
                            decode_seqs=2, decode_context_tokens=15, sampled_seqs=3)


def test_roofline_floor_matches_research_worked_example():
    # research/costmodel-anchors.md §3.4: Llama-2-70B TP2 on A100, decode B=1 ctx 1024 floor 33.8 ms
    # (weights over HBM); ours adds the small elementwise/activation traffic and an all-reduce.
    cm = make_cost_model("llama-2-70b", "a100-80g", tp=2, profile=ROOFLINE_ONLY)
    assert 33.6 < cm.decode_step_ms(1, 1024) < 34.5


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 3000), st.integers(0, 300), st.integers(0, 200000),
                          st.integers(0, 400)), min_size=2, max_size=20),
       st.integers(0, len(_models) - 1))
def test_array_arguments_match_scalar_path(rows, which):
    import numpy as np

    cm = _models[which]
    p, c, b, ctx, extra = (np.array(col) for col in zip(*rows))
    pairs = p * (c + (p + 1) / 2)
    sampled = b + (p > 0)
    out = cm.iteration_ms_totals(prefill_tokens=p, prefill_attention_pairs=pairs, decode_seqs=b,
                                 decode_context_tokens=ctx, sampled_seqs=sampled, prefill_context_tokens=c)
    assert out.shape == (len(rows),)
    for i in range(len(rows)):
        one = cm.iteration_ms_totals(prefill_tokens=int(p[i]), prefill_attention_pairs=float(pairs[i]), decode_seqs=int(b[i]),
                                     decode_context_tokens=int(ctx[i]), sampled_seqs=int(sampled[i]),
                                     prefill_context_tokens=int(c[i]))
        assert out[i] == pytest.approx(one, rel=1e-12, abs=1e-12)


# ---------------------------------------------------------------- smooth roofline (profile format 2)
_SMOOTH = Profile(name="smooth", linear_compute_eff=0.6, linear_memory_eff=0.8, attention_compute_eff=0.3,
                   attention_memory_eff=0.7, allreduce_bandwidth_eff=0.3, allreduce_hop_latency_ms=0.02,
                   overhead_ms=1.0, per_sequence_ms=0.01, roofline_smoothness=0.3, allreduce_call_latency_ms=0.05)


def test_smooth_roofline_by_hand():
    # (3^2 + 4^2)^(1/2) = 5: s = 1/2 is the Euclidean norm of the two times
    assert float(smooth_roofline(3.0, 4.0, 0.5)) == pytest.approx(5.0, rel=1e-15)
    assert float(smooth_roofline(3.0, 4.0, 0.0)) == 4.0
    assert float(smooth_roofline(0.0, 0.0, 0.3)) == 0.0
    # between the hard max and the sum, increasing in s
    vals = [float(smooth_roofline(3.0, 4.0, s)) for s in (0.0, 0.1, 0.3, 0.6, 0.9)]
    assert vals == sorted(vals) and 4.0 <= vals[0] and vals[-1] < 7.0


def test_smooth_profile_operator_times_and_fast_paths():
    cm = make_cost_model("llama-2-70b", "h100-sxm", tp=4, profile=_SMOOTH)
    c = cm.iteration(prefill=[(200, 0)], decode=[1000] * 8)
    for op in c.operators:
        if op["bound"] in ("compute", "memory"):
            want = (op["compute_ms"] ** (1 / 0.3) + op["memory_ms"] ** (1 / 0.3)) ** 0.3
            assert op["time_ms"] == pytest.approx(want, rel=1e-12), op["name"]
    t = batch_totals([(200, 0)], [1000] * 8)
    args = dict(prefill_tokens=t.prefill_tokens, prefill_attention_pairs=t.prefill_attention_pairs,
                decode_seqs=t.decode_seqs, decode_context_tokens=t.decode_context_tokens, sampled_seqs=t.sampled_seqs)
    assert cm.iteration_ms_totals(**args) == pytest.approx(c.iteration_ms, rel=1e-12)
    arr = cm.iteration_ms_totals(**{k: np.array([v, v]) for k, v in args.items()})
    assert arr == pytest.approx([c.iteration_ms] * 2, rel=1e-12)
    hard = make_cost_model("llama-2-70b", "h100-sxm", tp=4, profile=_SMOOTH.with_parameters(roofline_smoothness=0.0))
    assert hard.iteration(prefill=[(200, 0)], decode=[1000] * 8).iteration_ms < c.iteration_ms


def test_allreduce_call_latency_by_hand():
    # 2 calls per layer, each alpha_0 ms, whatever T: 2 * 80 * 0.05 = 8 ms more per iteration
    a = make_cost_model("llama-2-70b", "a100", tp=8, profile=_SMOOTH)
    b = make_cost_model("llama-2-70b", "a100", tp=8, profile=_SMOOTH.with_parameters(allreduce_call_latency_ms=0.0))
    assert a.decode_step_ms(4, 500) - b.decode_step_ms(4, 500) == pytest.approx(8.0, rel=1e-9)
    one = make_cost_model("llama-3.1-8b", "a100", tp=1, profile=_SMOOTH)
    assert one.decode_step_ms(4, 500) == make_cost_model(
        "llama-3.1-8b", "a100", tp=1, profile=_SMOOTH.with_parameters(allreduce_call_latency_ms=0.0)).decode_step_ms(4, 500)


def test_host_bound_iteration_by_hand():
    # 80 layers x 0.5 ms of launches = 40 ms: a small decode step at TP8 waits for the host, a long prefill does not
    host = _SMOOTH.with_parameters(host_ms_per_layer=0.5)
    cm = make_cost_model("llama-2-70b", "a100", tp=8, profile=host)
    free = make_cost_model("llama-2-70b", "a100", tp=8, profile=_SMOOTH)
    c = cm.iteration(decode=[500] * 4)
    assert c.iteration_ms == pytest.approx(40.0 + _SMOOTH.overhead_ms + 4 * _SMOOTH.per_sequence_ms, rel=1e-12)
    assert free.decode_step_ms(4, 500) < c.iteration_ms
    assert [o for o in c.operators if o["name"] == "host_wait"][0]["time_ms"] > 0
    assert cm.decode_step_ms(4, 500) == pytest.approx(c.iteration_ms, rel=1e-12)
    assert cm.iteration_ms_totals(decode_seqs=np.array([4.0]), decode_context_tokens=np.array([2000.0]),
                                  sampled_seqs=np.array([4.0]))[0] == pytest.approx(c.iteration_ms, rel=1e-12)
    assert cm.prefill_ms(8192) == pytest.approx(free.prefill_ms(8192), rel=1e-12)


def test_decode_kv_read_has_its_own_efficiency():
    """attention_decode_memory_eff (format 3) sets decode attention's memory rate alone; 0 means
    attention_memory_eff; the three paths (iteration, scalar, array) agree."""
    import numpy as np

    from servopt.costmodel.profile import Profile

    base = Profile(name="b", attention_memory_eff=0.5, linear_memory_eff=0.8)
    fast = base.with_parameters(attention_decode_memory_eff=0.9)
    cm0 = make_cost_model("llama-3.1-8b", "h100-sxm", profile=base)
    cm1 = make_cost_model("llama-3.1-8b", "h100-sxm", profile=fast)
    ops0 = {o["name"]: o for o in cm0.iteration(prefill=[(256, 1024)], decode=[2048] * 64).operators}
    ops1 = {o["name"]: o for o in cm1.iteration(prefill=[(256, 1024)], decode=[2048] * 64).operators}
    assert ops1["attention_decode"]["memory_ms"] == pytest.approx(ops0["attention_decode"]["memory_ms"] * 0.5 / 0.9)
    assert ops1["attention_prefill"]["memory_ms"] == ops0["attention_prefill"]["memory_ms"]
    bytes_ = ops1["attention_decode"]["bytes"]
    assert ops1["attention_decode"]["memory_ms"] == pytest.approx(bytes_ / (0.9 * 3350e9) * 1e3)
    t = cm1.iteration(prefill=[(256, 1024)], decode=[2048] * 64)
    kw = dict(prefill_tokens=256, prefill_attention_pairs=256 * (1024 + 257 / 2), decode_seqs=64,
              decode_context_tokens=64 * 2048, sampled_seqs=65, prefill_context_tokens=1024)
    assert cm1.iteration_ms_totals(**kw) == pytest.approx(t.iteration_ms, rel=1e-12)
    arr = cm1.iteration_ms_totals(**{k: np.array([v, v]) for k, v in kw.items()})
    assert arr == pytest.approx([t.iteration_ms] * 2, rel=1e-12)
    assert base.decode_kv_memory_eff == 0.5 and fast.decode_kv_memory_eff == 0.9
