"""GPU/LLM catalogs: lookups, aliases, suggestions, sources, parameter counts against published sizes."""
from __future__ import annotations

import json

import pytest

from servopt.errors import InputError
from servopt.instances.catalog import get_gpu, get_llm, gpus, llms

REQUIRED_GPUS = ("h100-sxm", "h200", "a100-80g", "a100-40g", "l40s", "l4", "a10g", "t4", "v100")
REQUIRED_LLMS = ("llama-2-7b", "llama-2-13b", "llama-2-70b", "llama-3.1-8b", "llama-3.1-70b", "qwen2.5-7b",
                 "qwen2.5-72b", "mixtral-8x7b", "opt-13b", "opt-66b")
GPU_NUMBERS = ("bf16_tflops", "hbm_gb_per_s", "memory_gib", "nvlink_gb_per_s", "pcie_gb_per_s", "usd_per_hour")


def test_required_entries_present():
    assert set(REQUIRED_GPUS) <= {g.name for g in gpus()}
    assert set(REQUIRED_LLMS) <= {m.name for m in llms()}


@pytest.mark.parametrize("alias,name", [("A100", "a100-80g"), ("A10G", "a10g"), ("L4", "l4"), ("H100", "h100-sxm"),
                                        ("h100-SXM", "h100-sxm"), (" t4 ", "t4"), ("NVIDIA A100-SXM4-80GB", "a100-80g")])
def test_gpu_aliases_case_insensitive(alias, name):
    assert get_gpu(alias).name == name


@pytest.mark.parametrize("alias,name", [("llama1-30b", "llama-30b"), ("LLaMA-30B", "llama-30b"),
                                        ("meta-llama/Llama-3.1-8B", "llama-3.1-8b"), ("facebook/opt-66b", "opt-66b"),
                                        ("Mixtral-8x7B", "mixtral-8x7b"), ("QWEN2.5-72B", "qwen2.5-72b")])
def test_llm_aliases(alias, name):
    assert get_llm(alias).name == name


def test_unknown_names_suggest_closest():
    with pytest.raises(InputError, match="did you mean 'h100-sxm'"):
        get_gpu("h10")
    with pytest.raises(InputError, match="did you mean 'llama-2-70b'"):
        get_llm("llama-2-70")
    with pytest.raises(InputError) as exc:
        get_gpu("h10", field="--gpu")
    assert exc.value.field == "--gpu"


def test_aliases_are_unique_across_entries():
    for entries in (gpus(), llms()):
        seen = {}
        for e in entries:
            for alias in (e.name, *e.aliases):
                assert alias.lower() not in seen, (alias, e.name, seen.get(alias.lower()))
                seen[alias.lower()] = e.name


def test_every_gpu_number_names_a_source():
    for g in gpus():
        for key in GPU_NUMBERS:
            assert g.sources.get(key), (g.name, key)
            assert getattr(g, key) >= 0
        assert g.bf16_tflops > 0 and g.hbm_gb_per_s > 0 and g.memory_gib > 0 and g.interconnect_gb_per_s > 0
    # T4 and V100 have no bf16: the entry must say its figure is fp16.
    for name in ("t4", "v100"):
        assert "fp16" in get_gpu(name).sources["bf16_tflops"]


def test_every_llm_names_a_source_and_is_consistent():
    for m in llms():
        assert m.sources, m.name
        assert m.num_heads * m.head_dim == m.hidden_size, m.name
        assert m.num_heads % m.num_kv_heads == 0, m.name
        assert 1 <= m.experts_per_token <= m.num_experts


# Published parameter counts (model cards / papers), billions; our count leaves out norms and biases.
@pytest.mark.parametrize("name,billions", [("llama-2-7b", 6.74), ("llama-2-13b", 13.02), ("llama-2-70b", 68.98),
                                           ("llama-3.1-8b", 8.03), ("llama-3.1-70b", 70.55), ("qwen2.5-7b", 7.61),
                                           ("mixtral-8x7b", 46.7), ("bloom-176b", 176.2)])
def test_parameter_counts_match_published_sizes(name, billions):
    assert get_llm(name).num_params() / 1e9 == pytest.approx(billions, rel=0.005)


def test_mixtral_active_params():
    # Mixtral's paper: 13B active parameters per token (12.9B incl. embeddings); layers alone ~12.6B.
    m = get_llm("mixtral-8x7b")
    assert 12.4e9 < m.active_params_per_token() < 12.9e9


def test_kv_bytes_per_token_known_values():
    assert get_llm("llama-2-7b").kv_bytes_per_token() == 2 * 32 * 4096 * 2 == 512 * 1024
    assert get_llm("llama-3.1-8b").kv_bytes_per_token() == 128 * 1024
    assert get_llm("llama-2-70b").kv_bytes_per_token() == 320 * 1024


def test_catalog_cli_tables_and_json(run_cli):
    code, out, err = run_cli("catalog")
    assert code == 0 and not err
    assert "h100-sxm" in out and "mixtral-8x7b" in out
    code, out, _ = run_cli("catalog", "gpus", "--json")
    data = json.loads(out)
    assert set(data) == {"gpus"} and {g["name"] for g in data["gpus"]} >= set(REQUIRED_GPUS)
    assert all(g["sources"] for g in data["gpus"])
    code, out, _ = run_cli("catalog", "llms", "--json")
    data = json.loads(out)
    l7 = next(m for m in data["llms"] if m["name"] == "llama-2-7b")
    assert l7["kv_bytes_per_token"] == 524288 and l7["num_params"] == get_llm("llama-2-7b").num_params()
