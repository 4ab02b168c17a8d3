"""The routing kind end to end through the CLI: solve (every formulation), simulate --router,
compare with ratio intervals, check, and the front door's contract on the shipped example."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from servopt import jsonio
from servopt.instances import routing as R

EXAMPLE = str(Path(__file__).resolve().parents[1] / "instances" / "data" / "example_routing.json")
EXAMPLE_OPTIMUM = 41  # proven by the exact method; the MILP and the assignment oracle agree (below)


@pytest.mark.parametrize("formulation", ["auto", "exact", "time-indexed"])
def test_solve_example_is_proven(run_cli, tmp_path, formulation):
    out = tmp_path / "res.json"
    code, stdout, err = run_cli("solve", EXAMPLE, "--time-limit", "60", "--formulation", formulation, "--json", "--out", out)
    assert code == 0, err
    res = json.loads(stdout)
    jsonio.validate(res, "result_common")
    jsonio.validate(res, "routing_result")
    assert res["status"] == "optimal"
    assert res["objective"] == res["bound"] == EXAMPLE_OPTIMUM
    code, stdout, err = run_cli("check", EXAMPLE, out)
    assert code == 0 and stdout.startswith("ok"), (stdout, err)


def test_example_optimum_matches_the_assignment_oracle():
    from test_routing_exact import assignment_oracle

    from servopt.kinds import routing

    assert assignment_oracle(routing.example_instance()) == EXAMPLE_OPTIMUM


def test_search_formulation_gives_a_valid_interval(run_cli, tmp_path):
    out = tmp_path / "res.json"
    code, stdout, err = run_cli("solve", EXAMPLE, "--time-limit", "1", "--formulation", "search", "--json", "--out", out)
    assert code == 0, err
    res = json.loads(stdout)
    assert res["bound"] <= EXAMPLE_OPTIMUM <= res["objective"]
    code, _, _ = run_cli("check", EXAMPLE, out)
    assert code == 0


@pytest.mark.parametrize("router,policy", [("jsq", None), ("cache_aware", "fcfs"), ("llm_d", "vllm"), ("dynamo", "mc-sf")])
def test_simulate_with_router(run_cli, tmp_path, router, policy):
    out = tmp_path / "sim.json"
    args = ["simulate", EXAMPLE, "--router", router, "--json", "--out", out]
    if policy:
        args += ["--policy", policy]
    code, stdout, err = run_cli(*args)
    assert code == 0, err
    res = json.loads(stdout)
    jsonio.validate(res, "routing_result")
    assert res["router"] == router and res["policy"] == (policy or "mc-sf")
    assert res["objective"] >= EXAMPLE_OPTIMUM
    code, _, _ = run_cli("check", EXAMPLE, out)
    assert code == 0


def test_compare_intervals(run_cli):
    code, stdout, err = run_cli("compare", EXAMPLE, "--time-limit", "60", "--json")
    assert code == 0, err
    res = json.loads(stdout)
    assert res["optimum_status"] == "optimal" and res["incumbent"] == EXAMPLE_OPTIMUM
    names = [r["policy"] for r in res["rows"]]
    assert len(names) == 10 and "jsq/mc-sf" in names
    for row in res["rows"]:
        assert row["ratio_to_incumbent"] == pytest.approx(row["cost"] / EXAMPLE_OPTIMUM)
        assert row["ratio_to_incumbent"] <= row["ratio_to_bound"] + 1e-12
        assert row["ratio_to_incumbent"] >= 1.0
    code, stdout, _ = run_cli("compare", EXAMPLE, "--policies", "jsq,round_robin/fcfs", "--time-limit", "60")
    assert code == 0 and "round_robin/fcfs" in stdout and "ALG/bound" in stdout


def test_check_rejects_an_overfull_schedule(run_cli, tmp_path):
    inst = json.loads(Path(EXAMPLE).read_text())
    rows = [{"id": r["id"], "replica": "g0", "start": r["arrival"], "finish": r["arrival"] + r["output_tokens"]}
            for r in inst["requests"]]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"kind": "routing", "requests": rows}))
    code, stdout, _ = run_cli("check", EXAMPLE, bad)
    assert code == 2 and "memory" in stdout


def test_instance_round_trip_keeps_hash_ids():
    data = R.synthetic(1, n=3, memories=(8, 8))
    data["requests"][0]["hash_ids"] = [5, 6]
    inst = R.RoutingInstance.from_dict(data)
    again = R.RoutingInstance.from_dict(inst.to_dict())
    assert again == inst and again.requests[0].prefix_block_ids == (5, 6)
    jsonio.validate(inst.to_dict(), "routing")
