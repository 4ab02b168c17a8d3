"""kv_schedule end to end through the CLI: validate, solve, simulate, check, compare, demo rows."""
from __future__ import annotations

import json

import pytest

from servopt.kinds import kv_schedule as kind

EXAMPLE = None


@pytest.fixture
def example(tmp_path):
    from importlib import resources

    ref = resources.files("servopt.instances").joinpath("data", "example_kv_schedule.json")
    path = tmp_path / "example.json"
    path.write_text(ref.read_text(encoding="utf-8"))
    return path


def test_validate_solve_check(example, tmp_path, run_cli):
    code, out, err = run_cli("validate", example)
    assert code == 0 and "valid kv_schedule instance" in out
    result = tmp_path / "opt.json"
    code, out, err = run_cli("solve", example, "--time-limit", "20", "--rel-gap", "0", "--json", "--out", result)
    assert code == 0, err
    data = json.loads(out)
    assert data["status"] == "optimal" and data["objective"] == data["bound"] == 56.0  # brute force: 56 (test below)
    code, out, err = run_cli("check", example, result)
    assert code == 0 and out.startswith("ok:")


def test_example_optimum_matches_brute_force():
    from kv_bruteforce import brute_force_optimum

    inst = kind.example_instance()
    assert inst.n == 9
    expected, _ = brute_force_optimum(inst)
    assert expected == 56.0
    assert kind.solve(inst, time_limit_s=20, options={"rel_gap": 0})["objective"] == expected


def test_check_rejects_a_tampered_result(example, tmp_path, run_cli):
    res = kind.simulate(kind.example_instance(), policy="fcfs")
    res["requests"][0]["start"] -= 1
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(res))
    code, out, err = run_cli("check", example, bad)
    assert code == 2 and "violation:" in out


@pytest.mark.parametrize("policy", ["fcfs", "mc-sf", "vllm", "sjf", "alpha-threshold", "a-min"])
def test_simulate_every_policy_then_check(policy, example, tmp_path, run_cli):
    result = tmp_path / f"{policy}.json"
    code, out, err = run_cli("simulate", example, "--policy", policy, "--out", result)
    assert code == 0, err
    code, out, err = run_cli("check", example, result)
    assert code == 0, out


def test_simulate_param_and_bad_param(example, run_cli):
    code, out, err = run_cli("simulate", example, "--policy", "alpha-threshold", "--param", "alpha=0.3", "--param", "beta=1", "--json")
    assert code == 0 and json.loads(out)["params"] == {"alpha": 0.3, "beta": 1, "seed": 0}
    code, out, err = run_cli("simulate", example, "--policy", "alpha-threshold", "--param", "gamma=1")
    assert code == 2 and "no parameter 'gamma'" in err


def test_compare_json_interval(example, tmp_path, run_cli):
    out_file = tmp_path / "cmp.json"
    code, out, err = run_cli("compare", example, "--policies", "fcfs,mc-sf,vllm", "--time-limit", "20", "--json", "--out", out_file)
    assert code == 0, err
    data = json.loads(out)
    assert data == json.loads(out_file.read_text())
    rows = {r["policy"]: r for r in data["rows"]}
    assert data["optimum_status"] == "optimal" and data["incumbent"] == data["bound"] == 56.0
    for r in rows.values():
        assert r["status"] == "ok"
        assert r["ratio_to_incumbent"] == pytest.approx(r["cost"] / 56.0)
        assert r["ratio_to_incumbent"] <= r["ratio_to_bound"] + 1e-12
    assert rows["fcfs"]["cost"] == 69.0 and rows["mc-sf"]["cost"] == 56.0


def test_compare_table_and_dataframe(example, run_cli):
    code, out, err = run_cli("compare", example, "--policies", "mc-sf", "--time-limit", "20")
    assert code == 0 and "ALG/incumbent" in out
    from servopt.analysis.compare import compare_kv_schedule

    df = compare_kv_schedule(kind.example_instance(), ["fcfs", "mc-sf"], time_limit_s=20).to_dataframe()
    assert list(df["policy"]) == ["fcfs", "mc-sf"] and list(df["cost"]) == [69.0, 56.0]


def test_compare_unknown_policy_fails_before_solving(example, run_cli):
    code, out, err = run_cli("compare", example, "--policies", "fcfs,mc-sff", "--time-limit", "20")
    assert code == 2 and "did you mean 'mc-sf'" in err and "--policies" in err


def test_demo_rows():
    rows = kind.demo(time_limit_s=20)
    assert [r["method"] for r in rows][1:] == ["mc-sf", "fcfs", "vllm"] and rows[0]["method"].startswith("optimum (")
    assert rows[0]["status"] == "optimal" and all(r["ratio"] >= 1.0 for r in rows)


def test_solve_export_writes_lp(example, tmp_path, run_cli):
    lp = tmp_path / "m.lp"
    code, out, err = run_cli("solve", example, "--time-limit", "20", "--export", lp, "--json")
    assert code == 0 and lp.exists() and "memory" in lp.read_text()


def test_compare_with_another_formulation(example, run_cli):
    from servopt.analysis.kv_optimum import formulations

    other = [f for f in formulations() if f != "time-indexed"] or ["time-indexed"]
    code, out, err = run_cli("compare", example, "--policies", "fcfs", "--time-limit", "20", "--formulation",
                             other[0], "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["formulation"] == other[0] and data["incumbent"] == 56.0 and data["bound"] == 56.0
    code, out, err = run_cli("compare", example, "--formulation", "nope", "--time-limit", "20")
    assert code == 2 and "unknown kv_schedule formulation" in err


@pytest.mark.parametrize("policy", ["vllm", "a-min"])
def test_simulate_result_matches_the_result_schemas(policy):
    from servopt import jsonio

    res = kind.simulate(kind.example_instance(), policy=policy)
    jsonio.validate(res, "result_common")
    jsonio.validate(res, "kv_schedule_result")
    bad = dict(res, requests=[{"id": "r0", "start": -1, "finish": 3}])
    with pytest.raises(Exception, match="requests"):
        jsonio.validate(bad, "kv_schedule_result")
