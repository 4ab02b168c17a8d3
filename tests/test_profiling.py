"""servopt profile without torch: shapes, grids, sharding, memory plan, JSON writing, CLI errors.

The torch parts (attention against its definition, the decoder stack, the CUDA end-to-end run) are
in tests/test_profiling_torch.py.
"""
from __future__ import annotations

import csv
import json
from importlib import resources

import pytest

from servopt.costmodel import profiling as P
from servopt.errors import EnvironmentProblem, InputError
from servopt.instances.catalog import get_llm

GIB = 2**30


def test_batch_shape_counts_by_hand():
    s = P.BatchShape(((512, 1024), (256, 0), (256, 0)), decode_batch=3, decode_ctx_tokens=100)
    assert s.regime == "mixed"
    assert s.new_tokens == 512 + 256 + 256 + 3
    assert s.sampled_rows == 3 + 3
    assert s.kv_tokens == (512 + 1024) + 2 * 256 + 3 * 101
    assert sorted(s.prefill_groups()) == [(1, 512, 1024), (2, 256, 0)]
    assert s.decode_contexts() == [100, 100, 100]
    assert P.BatchShape(((16, 0),)).regime == "prefill"
    assert P.BatchShape((), 4, 8).regime == "decode"
    assert P.BatchShape.from_dict(s.to_dict()) == s


@pytest.mark.parametrize("kwargs", [dict(prefill=()), dict(prefill=((0, 0),)), dict(prefill=((4, -1),)),
                                    dict(decode_batch=2, decode_ctx_tokens=0), dict(decode_batch=-1, decode_ctx_tokens=3)])
def test_batch_shape_rejects_bad_shapes(kwargs):
    with pytest.raises(InputError):
        P.BatchShape(**kwargs)


@pytest.mark.parametrize("name", list(P.GRIDS))
def test_grids_are_valid_and_cover_all_regimes(name):
    grid = P.get_grid(name)
    assert len(set(grid.shapes)) == len(grid.shapes)
    assert {s.regime for s in grid.shapes} == {"prefill", "decode", "mixed"}


def test_unknown_grid_names_the_option():
    with pytest.raises(InputError, match="--grid"):
        P.get_grid("huge")


def test_splitwise_grid_holds_every_prompt_shape_of_the_splitwise_table():
    text = resources.files("servopt.costmodel").joinpath("measurements", "splitwise_perf_model_medians.csv").read_text()
    shapes = set(P.splitwise_grid().shapes)
    rows = [r for r in csv.DictReader(text.splitlines()) if r["model"] == "llama2-70b"]
    assert rows
    for r in rows:
        p, b = int(r["prompt_size"]), int(r["batch_size"])
        assert P.BatchShape(((p, 0),) * b) in shapes, (p, b)


def test_grid_filter_skips_with_reasons():
    grid = P.ProfileGrid("t", (P.BatchShape(((100, 0),)), P.BatchShape((), 10, 99), P.BatchShape(((50, 0),), 1, 10)))
    kept, skipped = grid.filtered(max_kv_tokens=500, max_new_tokens=60)
    # prefill 100 > 60 new tokens; decode 10 x 100 = 1000 > 500 KV tokens; mixed: 51 new, 61 KV
    assert kept == [grid.shapes[2]]
    assert [s["shape"] for s in skipped] == [grid.shapes[0].to_dict(), grid.shapes[1].to_dict()]
    assert "activations" in skipped[0]["reason"] and "KV cache" in skipped[1]["reason"]


def test_shard_sizes_of_llama_70b_at_tp8():
    sh = P.shard(get_llm("llama-2-70b"), 8)
    assert (sh.heads, sh.kv_heads, sh.ffn, sh.vocab, sh.hidden) == (8, 1, 3584, 4000, 8192)
    # KV heads fewer than the TP degree are replicated, one per GPU
    assert P.shard(get_llm("llama-2-70b"), 16).kv_heads == 1


def test_layer_and_table_bytes_match_the_catalog_parameter_count():
    llm = get_llm("llama-3.1-8b")
    sh = P.shard(llm, 1)
    norms = (2 * llm.num_layers + 1) * llm.hidden_size * 2  # RMSNorm weights, which the catalog leaves out
    assert llm.num_layers * sh.layer_weight_bytes() + sh.embed_head_bytes() == llm.weight_bytes() + norms
    assert sh.kv_bytes_per_token_layer() * llm.num_layers == llm.kv_bytes_per_token()


@pytest.mark.parametrize("tp,field", [(3, "--tp"), (0, "--tp")])
def test_shard_rejects_bad_tp(tp, field):
    with pytest.raises(InputError, match=field):
        P.shard(get_llm("llama-3.1-8b"), tp)


def test_memory_plan_builds_every_layer_of_an_8b_on_80_gib():
    sh = P.shard(get_llm("llama-3.1-8b"), 1)
    shapes = list(P.full_grid().shapes)
    plan = P.plan_memory(sh, shapes, 78 * GIB, None)
    assert plan.layers_timed == 32
    assert plan.total_bytes <= 78 * GIB
    kept, skipped = P.full_grid().filtered(plan.kv_budget_tokens, plan.max_new_tokens)
    assert kept and skipped  # decode 256 x 8193 tokens cannot fit next to 16 GB of weights


def test_memory_plan_cycles_fewer_layers_of_a_70b_and_refuses_what_cannot_fit():
    sh = P.shard(get_llm("llama-2-70b"), 1)
    shapes = list(P.quick_grid().shapes)
    plan = P.plan_memory(sh, shapes, 78 * GIB, None)
    assert 2 <= plan.layers_timed < 80
    assert plan.layers_timed * sh.layer_weight_bytes() <= P.WEIGHT_SHARE * 78 * GIB
    with pytest.raises(EnvironmentProblem, match="--layers.*at most"):
        P.plan_memory(sh, shapes, 78 * GIB, 80)
    with pytest.raises(EnvironmentProblem, match="does not fit in GPU memory"):
        P.plan_memory(sh, shapes, 4 * GIB, None)
    with pytest.raises(InputError, match="--layers"):
        P.plan_memory(sh, shapes, 78 * GIB, 0)


def test_percentiles_by_hand():
    med, p10, p90 = P.summarise_percentiles([5.0, 1.0, 4.0, 2.0, 3.0, 10.0, 6.0, 7.0, 8.0, 9.0])
    assert (med, p10, p90) == (5.5, 1.0, 9.0)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    out = tmp_path / "p.json"
    with pytest.raises(TypeError):
        P.write_json_atomic({"x": object()}, out)
    assert list(tmp_path.iterdir()) == []
    P.write_json_atomic({"x": 1}, out)
    assert json.loads(out.read_text()) == {"x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["p.json"]


def test_read_profile_names_the_bad_field(tmp_path):
    bad = tmp_path / "b.json"
    bad.write_text(json.dumps({"format": "other", "runs": []}))
    with pytest.raises(InputError, match="format"):
        P.read_profile(bad)
    bad.write_text(json.dumps({"format": P.PROFILE_FORMAT, "runs": [{"llm": "x", "tp": 1}]}))
    with pytest.raises(InputError, match=r"runs\[0\]\.points"):
        P.read_profile(bad)


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


@pytest.mark.skipif(_cuda(), reason="this machine has a CUDA GPU")
def test_profile_without_cuda_is_one_line_and_writes_nothing(run_cli, tmp_path):
    out = tmp_path / "p.json"
    code, _, err = run_cli("profile", "--llm", "llama-3.1-8b", "--grid", "quick", "--out", out)
    assert code == 2
    assert err.strip().count("\n") == 0 and P.NEEDS in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_gpu_names_from_device_names():
    from servopt.commands.profile import gpu_from_device

    assert gpu_from_device("NVIDIA H100 80GB HBM3") == "h100-sxm"
    assert gpu_from_device("NVIDIA A100-SXM4-80GB") == "a100-80g"
    assert gpu_from_device("NVIDIA H200") == "h200"
