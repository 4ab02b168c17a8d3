"""``servopt cost`` end to end: JSON contract, table, batch syntax, agreement with the API."""
from __future__ import annotations

import json

import pytest

from servopt.costmodel.roofline import make_cost_model


def test_cost_json_contract_and_api_agreement(run_cli):
    code, out, err = run_cli("cost", "--llm", "Llama-3.1-8B", "--gpu", "H100", "--prefill", "512", "--prefill", "256@1024",
                             "--decode", "32x1024", "--decode", "4x100", "--json")
    assert code == 0, err
    data = json.loads(out)
    for key in ("iteration_ms", "flops", "bytes", "bound", "operators", "replica"):
        assert key in data
    assert data["bound"] in ("compute", "memory")
    assert {o["name"] for o in data["operators"]} >= {"linear", "attention_prefill", "attention_decode", "allreduce"}
    assert sum(o["time_ms"] for o in data["operators"]) == pytest.approx(data["iteration_ms"])
    cm = make_cost_model("llama-3.1-8b", "h100-sxm")
    expected = cm.iteration(prefill=[(512, 0), (256, 1024)], decode=[1024] * 32 + [100] * 4)
    assert data["iteration_ms"] == pytest.approx(expected.iteration_ms, rel=1e-12)
    assert data["batch"]["decode_seqs"] == 36 and data["batch"]["prefill_tokens"] == 768
    assert data["replica"]["kv_bytes_per_token"] == 128 * 1024


def test_cost_table_and_tp(run_cli):
    code, out, err = run_cli("cost", "--llm", "llama-2-70b", "--gpu", "a100", "--tp", "4", "--decode", "8x512")
    assert code == 0, err
    assert "iteration:" in out and "allreduce" in out and "a100-80g" in out


def test_cost_without_batch_describes_replica(run_cli):
    code, out, err = run_cli("cost", "--llm", "llama-2-7b", "--gpu", "l4", "--json", "--memory-fraction", "0.8")
    assert code == 0, err
    data = json.loads(out)
    assert "iteration_ms" not in data
    assert data["replica"]["kv_capacity_tokens"] == make_cost_model("llama-2-7b", "l4").kv_capacity_tokens(0.8)


def test_cost_with_profile_file(run_cli, tmp_path):
    from servopt.costmodel.profile import ROOFLINE_ONLY

    path = tmp_path / "floor.json"
    ROOFLINE_ONLY.save(path)
    code, out, _ = run_cli("cost", "--llm", "llama-2-70b", "--gpu", "a100", "--tp", "2", "--decode", "1x1024",
                           "--profile", str(path), "--json")
    floor = json.loads(out)["iteration_ms"]
    code, out, _ = run_cli("cost", "--llm", "llama-2-70b", "--gpu", "a100", "--tp", "2", "--decode", "1x1024", "--json")
    assert code == 0 and json.loads(out)["iteration_ms"] > floor
    code, out, _ = run_cli("cost", "--llm", "llama-2-70b", "--gpu", "a100", "--tp", "2", "--decode", "1x1024",
                           "--profile", "public-generic", "--json")
    assert code == 0 and json.loads(out)["profile"] == "public-generic"


def test_roofline_only_profile_by_name(run_cli):
    code, out, err = run_cli("cost", "--llm", "llama-2-7b", "--gpu", "a10g", "--decode", "4x256", "--profile",
                             "roofline-only", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["profile"] == "roofline-only"
    assert next(o for o in data["operators"] if o["name"] == "overhead")["time_ms"] == 0.0
