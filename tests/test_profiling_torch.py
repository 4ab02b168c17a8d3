"""servopt profile's torch parts, on CPU here (skipped without torch) and end to end on a CUDA GPU.

On the device machine: ``python3 -m pytest tests/test_profiling_torch.py`` runs the CUDA test too.
"""
from __future__ import annotations

import json

import pytest

from servopt.costmodel import profiling as P
from servopt.instances.catalog import get_llm
from servopt.instances.hardware import LLM

torch = pytest.importorskip("torch", exc_type=ImportError)


def _cuda() -> bool:
    return torch.cuda.is_available()



def _tiny_llm(layers=3):
    return LLM(name="tiny", num_layers=layers, hidden_size=64, num_heads=8, num_kv_heads=2, head_dim=16,
               intermediate_size=96, vocab_size=101)


def test_attention_fallback_matches_the_definition():
    err = P.check_attention(torch, "sdpa-repeat-kv", torch.device("cpu"), torch.float32)
    assert err < 1e-5


def test_packed_gqa_decode_is_the_same_attention():
    """The decode layout of flash-packed-gqa (query heads sharing a KV head as rows of one head)
    gives the definition's output, checked on the float64 reference; a wrong head order must not."""
    g = torch.Generator().manual_seed(11)
    q = torch.randn(3, 1, 8, 16, generator=g, dtype=torch.float64)
    k = torch.randn(3, 29, 2, 16, generator=g, dtype=torch.float64)
    v = torch.randn(3, 29, 2, 16, generator=g, dtype=torch.float64)
    direct = P.reference_attention(torch, q, k, v, causal=False)
    packed = P.reference_attention(torch, P.pack_gqa_decode(q, 2), k, v, causal=False)
    assert packed.shape == (3, 4, 2, 16)
    assert torch.allclose(P.unpack_gqa_decode(packed), direct, atol=1e-12)
    interleaved = q.reshape(3, 1, 4, 2, 16).transpose(2, 3).reshape(3, 1, 8, 16)  # head j*2+i -> i*4+j
    wrong = P.reference_attention(torch, P.pack_gqa_decode(interleaved, 2), k, v, causal=False)
    assert not torch.allclose(P.unpack_gqa_decode(wrong), direct, atol=1e-3)


def test_chunked_attention_equals_the_tail_of_full_causal_attention():
    """Bottom-right alignment checked against an independent computation: attention of the whole
    sequence, whose last rows a chunk after a cached prefix must reproduce."""
    g = torch.Generator().manual_seed(7)
    q = torch.randn(1, 40, 8, 16, generator=g)
    k = torch.randn(1, 40, 2, 16, generator=g)
    v = torch.randn(1, 40, 2, 16, generator=g)
    full = P.attention(torch, q, k, v, causal=True, impl="sdpa-repeat-kv")
    tail = P.attention(torch, q[:, 30:], k, v, causal=True, impl="sdpa-repeat-kv")
    assert torch.allclose(full[:, 30:], tail, atol=1e-5)
    # a top-left aligned mask would let row 0 of the chunk see only key 0: it must differ
    wrong = P.attention(torch, q[:, 30:], k[:, :10], v[:, :10], causal=True, impl="sdpa-repeat-kv")
    assert not torch.allclose(wrong, tail, atol=1e-3)


def test_decoder_stack_writes_exactly_the_new_tokens_into_the_cache():
    llm = _tiny_llm()
    sh = P.shard(llm, 1)
    stack = P.DecoderStack(torch, sh, 2, 2048, torch.device("cpu"), torch.float32, attention_impl="sdpa-repeat-kv",
                           max_position=512)
    shape = P.BatchShape(((8, 16),), decode_batch=3, decode_ctx_tokens=20)
    before = [buf.clone() for buf in stack.kv]
    run_stack, run_head = stack.forwards(shape, depth=4)
    x = run_stack()
    tokens = run_head()
    assert x.shape == (shape.new_tokens, 64) and torch.isfinite(x).all()
    assert tokens.shape == (shape.sampled_rows,)
    per_tok = sh.kv_heads * sh.head_dim
    for li in range(2):
        changed = (stack.kv[li] != before[li]).any(dim=0).nonzero().flatten()
        positions = sorted({int(i) // per_tok for i in changed})
        # prefill segment holds 24 positions (16 cached + 8 new): new at 16..23; then 3 decode
        # sequences of 21 positions each, the new token at offset 20 of each
        expect = list(range(16, 24)) + [24 + j * 21 + 20 for j in range(3)]
        assert positions == expect


def test_cycled_stack_equals_explicit_layer_repetition():
    """depth > built layers runs built layer i mod n: the same as building layers [0, 1, 0, 1]."""
    sh = P.shard(_tiny_llm(layers=4), 1)
    shape = P.BatchShape(((6, 0), (6, 0)))  # nothing cached: each layer writes its K/V before reading
    kw = dict(attention_impl="sdpa-repeat-kv", max_position=64)
    two = P.DecoderStack(torch, sh, 2, 64, torch.device("cpu"), torch.float64, **kw)
    four = P.DecoderStack(torch, sh, 4, 64, torch.device("cpu"), torch.float64, seed=5, **kw)
    for name in ("w_qkv", "w_o", "w_in", "w_out", "norm1", "norm2"):
        setattr(four, name, getattr(two, name) * 2)
    torch.manual_seed(3)
    cycled, _ = two.forwards(shape, depth=4)
    torch.manual_seed(3)
    explicit, _ = four.forwards(shape, depth=4)
    a, b = cycled(), explicit()
    assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)
    torch.manual_seed(3)
    shallow, _ = two.forwards(shape, depth=2)
    assert not torch.allclose(shallow(), a)


@pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU (runs on the device machine)")
def test_profile_end_to_end_on_cuda(tmp_path):
    """The whole GPU path on a small catalog model: flash attention checked, times ordered, file written."""
    dev = torch.device("cuda")
    impl, err = P.choose_attention(torch, dev, torch.bfloat16)
    assert impl == "flash-packed-gqa" and err < 2e-2
    assert P.check_attention(torch, "flash", dev, torch.bfloat16) < 2e-2
    out = tmp_path / "p.json"
    prof = P.run_profile([get_llm("llama-2-7b")], [1, 2], gpu="h100-sxm", grid=P.quick_grid(), layers=2, out=str(out),
                         max_repeats=5, ceilings=True, log=lambda s: None)
    data = P.read_profile(out)
    assert data["runs"] == prof["runs"] and len(data["runs"]) == 2
    assert data["ceilings"]["matmul_tflops"] > 100 and data["ceilings"]["copy_gb_per_s"] > 500
    for run in data["runs"]:
        assert run["layers_timed"] == 2 and len(run["points"]) == len(P.quick_grid().shapes)
        for p in run["points"]:
            assert 0 < p["p10_ms"] <= p["time_ms"] <= p["p90_ms"]
            assert p["head_ms"] < p["time_ms"]
    tp1 = {json.dumps(p["prefill"]) + str(p["decode_batch"]): p["time_ms"] for p in data["runs"][0]["points"]}
    tp2 = {json.dumps(p["prefill"]) + str(p["decode_batch"]): p["time_ms"] for p in data["runs"][1]["points"]}
    assert all(tp2[k] < tp1[k] for k in tp1)  # half the work per GPU
