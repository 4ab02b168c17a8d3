"""pd_placement end to end through the CLI: solve, check, validate, capacities; result schema."""
from __future__ import annotations

import json
from importlib import resources

import pytest

from servopt import jsonio


def _example_path(name: str) -> str:
    return str(resources.files("servopt.instances").joinpath("data", name))


@pytest.mark.parametrize("example", ["example_pd_melange.json", "example_pd_derived.json"])
def test_solve_then_check(example, run_cli, tmp_path):
    out = tmp_path / "result.json"
    code, stdout, err = run_cli("solve", _example_path(example), "--time-limit", "20", "--out", out)
    assert code == 0, err
    assert "fleet" in stdout
    result = json.loads(out.read_text())
    jsonio.validate(result, "result_common")
    jsonio.validate(result, "pd_placement_result")
    assert result["status"] == "optimal"
    code, stdout, err = run_cli("check", _example_path(example), out)
    assert code == 0 and stdout.startswith("ok:"), (stdout, err)


def test_check_rejects_a_tampered_plan(run_cli, tmp_path):
    out = tmp_path / "result.json"
    assert run_cli("solve", _example_path("example_pd_melange.json"), "--out", out)[0] == 0
    result = json.loads(out.read_text())
    result["counts"]["A10G"]["colocated"] = 1
    out.write_text(json.dumps(result))
    code, stdout, _ = run_cli("check", _example_path("example_pd_melange.json"), out)
    assert code == 2
    assert "A10G tp1 colocated: load 3 instances exceeds count 1" in stdout


def test_json_output_and_per_slice_formulation(run_cli):
    code, stdout, _ = run_cli("solve", _example_path("example_pd_melange.json"), "--json", "--formulation", "per_slice")
    assert code == 0
    result = json.loads(stdout)
    assert result["formulation"] == "per_slice" and result["objective"] == pytest.approx(6.7)


def test_unknown_formulation_is_one_line(run_cli):
    code, _, err = run_cli("solve", _example_path("example_pd_melange.json"), "--formulation", "nope")
    assert code == 2 and err.startswith("error: --formulation: unknown formulation 'nope'")


def test_validate_derived_example(run_cli):
    code, stdout, _ = run_cli("validate", _example_path("example_pd_derived.json"))
    assert code == 0 and "valid pd_placement" in stdout


def test_capacities_table_and_json(run_cli):
    code, stdout, _ = run_cli("capacities", "--llm", "llama-2-70b", "--ttft-ms", "2000", "--tpot-ms", "100",
                              "--gpus", "a100-80g,t4", "--buckets", "500x200")
    assert code == 0
    assert "a100-80g" in stdout and "skipped" in stdout and "t4" in stdout
    code, stdout, _ = run_cli("capacities", "--llm", "llama-3.1-8b", "--ttft-ms", "1000", "--tpot-ms", "50",
                              "--gpus", "a100-80g", "--buckets", "250x100,1000x250", "--roles", "decode", "--tp", "1", "--json")
    assert code == 0
    data = json.loads(stdout)
    assert [(r["prompt_tokens"], r["output_tokens"]) for r in data["rows"]] == [(250, 100), (1000, 250)]
    assert all(r["role"] == "decode" and r["tp"] == 1 and r["rps"] > 0 for r in data["rows"])


def test_demo_rows():
    from servopt.kinds import pd_placement as pd

    rows = pd.demo(time_limit_s=20)
    mel = [r for r in rows if r["instance"] == "example_pd_melange.json"]
    assert mel[0]["objective"] == pytest.approx(6.7)
    assert mel[1]["method"] == "best single GPU type" and mel[1]["objective"] == pytest.approx(7.34)
