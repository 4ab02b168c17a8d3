"""The batching kind end to end through the CLI: solve, simulate, compare, check, the cost-model fit,
and the 40-request scale case (a feasible schedule and a valid bound within a 60 s limit)."""
from __future__ import annotations

import json

from servopt.analysis.batching_check import check_result
from servopt.instances.batching import BatchingInstance, random_instance
from servopt.solvers.batching_milp import combinatorial_bound

TINY = {"kind": "batching", "token_budget": 4, "max_batch": 2, "memory_tokens": 9,
        "iteration": {"fixed_ms": 3, "per_prefill_token_ms": 1, "per_decode_token_ms": 2, "per_context_token_ms": 1},
        "requests": [{"id": "a", "arrival_ms": 0, "prompt_tokens": 5, "output_tokens": 2},
                     {"id": "b", "arrival_ms": 1, "prompt_tokens": 2, "output_tokens": 3},
                     {"id": "c", "arrival_ms": 2, "prompt_tokens": 1, "output_tokens": 2}]}


def _write(tmp_path, name, data):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


def test_solve_check_simulate_compare(tmp_path, run_cli):
    inst = _write(tmp_path, "tiny.json", TINY)
    out = str(tmp_path / "opt.json")
    code, _, err = run_cli("solve", inst, "--time-limit", "60", "--out", out, "--json")
    assert code == 0, err
    opt = json.loads((tmp_path / "opt.json").read_text())
    assert opt["status"] == "optimal" and opt["bound"] == opt["objective"]
    code, stdout, _ = run_cli("check", inst, out)
    assert code == 0 and stdout.startswith("ok")
    for policy in ("vllm", "sarathi", "orca", "static", "sjf", "srpt"):
        pout = str(tmp_path / f"{policy}.json")
        code, _, err = run_cli("simulate", inst, "--policy", policy, "--out", pout, "--json")
        assert code == 0, err
        res = json.loads((tmp_path / f"{policy}.json").read_text())
        assert res["objective"] >= opt["objective"]
        assert run_cli("check", inst, pout)[0] == 0
    code, stdout, _ = run_cli("simulate", inst, "--policy", "sarathi", "--param", "token_budget=2", "--json")
    assert code == 0 and json.loads(stdout)["params"] == {"token_budget": 2}
    code, stdout, err = run_cli("compare", inst, "--time-limit", "60", "--json")
    assert code == 0, err
    cmp = json.loads(stdout)
    assert {r["policy"] for r in cmp["rows"]} == {"vllm", "sarathi", "orca", "static", "sjf", "srpt"}
    assert all(r["ratio_to_incumbent"] >= 1 - 1e-12 for r in cmp["rows"])
    # a tampered result is rejected with exit 2
    opt["iterations"][0]["end_ms"] += 1
    bad = _write(tmp_path, "bad.json", opt)
    code, stdout, _ = run_cli("check", inst, bad)
    assert code == 2 and "violation" in stdout


def test_milp_formulation_through_the_cli(tmp_path, run_cli):
    inst = _write(tmp_path, "tiny.json", dict(TINY, requests=TINY["requests"][:2]))
    code, stdout, err = run_cli("solve", inst, "--formulation", "time-indexed", "--rel-gap", "0", "--time-limit", "120", "--json")
    assert code == 0, err
    milp = json.loads(stdout)
    code, stdout, _ = run_cli("solve", inst, "--formulation", "search", "--json")
    search = json.loads(stdout)
    assert milp["status"] == "optimal" and milp["horizon_proven"] is True
    assert milp["objective"] == search["objective"]


def test_cost_model_iteration_is_fitted_and_reported(tmp_path, run_cli):
    data = dict(TINY, iteration={"llm": "llama-2-7b", "gpu": "a100-80g", "tp": 1}, token_budget=256, memory_tokens=4000)
    inst = _write(tmp_path, "fit.json", data)
    code, stdout, err = run_cli("simulate", inst, "--policy", "sarathi", "--json")
    assert code == 0, err
    res = json.loads(stdout)
    fit = res["fit"]
    assert fit["llm"] == "llama-2-7b" and fit["points"] > 20
    assert fit["max_abs_error_ms"] >= fit["rms_error_ms"] >= 0
    assert all(v >= 0 for v in fit["coefficients"].values())
    assert fit["coefficients"]["fixed_ms"] > 0


def test_forty_requests_feasible_with_a_valid_bound(tmp_path, run_cli):
    inst = random_instance(40, seed=11, prompt_range=(50, 900), output_range=(5, 120), token_budget=512,
                           max_batch=64, memory_tokens=30000)
    path = _write(tmp_path, "n40.json", inst.to_dict())
    out = str(tmp_path / "n40_result.json")
    code, _, err = run_cli("solve", path, "--time-limit", "60", "--out", out, "--json")
    assert code == 0, err
    res = json.loads((tmp_path / "n40_result.json").read_text())
    loaded = BatchingInstance.from_dict(inst.to_dict())
    assert check_result(loaded, res) == []
    assert res["status"] in ("feasible", "time_limit", "optimal")
    assert res["bound"] is not None and 0 < res["bound"] <= res["objective"]
    assert res["bound"] >= combinatorial_bound(loaded) - 1e-6


def test_stopped_search_and_skipped_milp_keep_a_checked_schedule():
    from servopt.kinds import batching
    from servopt.simulator.batching_policies import POLICIES, simulate

    inst = batching.example_instance()
    res = batching.solve(inst, time_limit_s=60, options={"formulation": "search", "max_nodes": 50})
    assert res["status"] == "time_limit" and "search_stopped" in res
    assert check_result(inst, res) == []
    assert res["objective"] <= min(simulate(inst, p).objective_value(inst) for p in POLICIES)
    big = random_instance(40, seed=2, token_budget=512, max_batch=64, memory_tokens=30000)
    res = batching.solve(big, time_limit_s=60, options={"formulation": "time-indexed"})
    assert "milp_skipped" in res and res["status"] == "feasible"
    assert check_result(big, res) == []
