"""The eviction kind end to end through the CLI: import mooncake, solve, simulate --eviction, compare, check."""
from __future__ import annotations

import json
from importlib import resources

import pytest

SLICE = str(resources.files("servopt.instances").joinpath("data", "eviction_mooncake_conversation_1000.jsonl"))
SYNTH = str(resources.files("servopt.instances").joinpath("data", "eviction_mooncake_synthetic_500.jsonl"))


@pytest.fixture()
def instance_file(tmp_path, run_cli):
    out = tmp_path / "inst.json"
    code, stdout, err = run_cli("import", "mooncake", SLICE, "--capacity-blocks", "400", "--limit", "400", "--out", out)
    assert code == 0, err
    assert "400 requests" in stdout
    return out


def _json(run_cli, *args):
    code, out, err = run_cli(*args, "--json")
    assert code == 0, err
    return json.loads(out)


def test_solve_simulate_check_round_trip(instance_file, tmp_path, run_cli):
    opt = _json(run_cli, "solve", instance_file, "--out", tmp_path / "opt.json")
    assert opt["status"] == "optimal" and opt["objective"] == opt["bound"] == opt["hit_blocks"]
    code, out, _ = run_cli("check", instance_file, tmp_path / "opt.json")
    assert code == 0 and out.startswith("ok")
    for name in ("lru", "lru_sglang", "belady_tree", "rlt"):
        res = _json(run_cli, "simulate", instance_file, "--eviction", name, "--out", tmp_path / f"{name}.json")
        assert res["policy"] == name and res["objective"] <= opt["objective"]
        code, out, _ = run_cli("check", instance_file, tmp_path / f"{name}.json")
        assert code == 0, out


def test_check_rejects_a_tampered_plan(instance_file, tmp_path, run_cli):
    opt = _json(run_cli, "solve", instance_file)
    bad = dict(opt)
    bad["requests"] = [dict(r) for r in opt["requests"]]
    i = next(k for k, r in enumerate(bad["requests"]) if r["hit_blocks"] > 1)
    bad["requests"][i]["hit_blocks"] += 1  # claims one more hit than the cache allows
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    code, out, _ = run_cli("check", instance_file, tmp_path / "bad.json")
    assert code == 2 and f"requests[{i}]" in out
    over = dict(opt)
    over["requests"] = [dict(r) for r in opt["requests"]]
    over["requests"][0]["admit"] = over["requests"][0]["admit"] + [999999]  # not one of its blocks
    (tmp_path / "over.json").write_text(json.dumps(over))
    code, out, _ = run_cli("check", instance_file, tmp_path / "over.json")
    assert code == 2 and "999999" in out


def test_compare_lists_every_policy_with_its_share(instance_file, run_cli):
    res = _json(run_cli, "compare", instance_file)
    names = {row["policy"] for row in res["rows"]}
    assert {"lru", "lru_sglang", "lfu", "fifo", "gdsf", "tlru", "rlt", "belady_tree"} <= names
    assert all(0 <= row["share_of_optimum"] <= 1 for row in res["rows"])
    assert res["optimum_status"] == "optimal"


def test_milp_formulation_equals_belady_on_the_base_model(instance_file, run_cli):
    belady = _json(run_cli, "solve", instance_file)
    milp = _json(run_cli, "solve", instance_file, "--formulation", "milp", "--time-limit", "120", "--rel-gap", "0")
    assert milp["status"] == "optimal" and milp["objective"] == belady["objective"]
    lp = _json(run_cli, "solve", instance_file, "--formulation", "lp", "--time-limit", "120")
    assert lp["bound"] >= belady["objective"] - 1e-6


def test_saved_prefill_ms_and_pinned_capacity(tmp_path, run_cli):
    out = tmp_path / "ms.json"
    code, _, err = run_cli("import", "mooncake", SYNTH, "--capacity-blocks", "200", "--limit", "120",
                           "--objective", "saved_prefill_ms", "--llm", "llama-3.1-8b", "--gpu", "h100", "--out", out)
    assert code == 0, err
    data = json.loads(out.read_text())
    data["pin_running"] = True
    out.write_text(json.dumps(data))
    res = _json(run_cli, "solve", out, "--time-limit", "120", "--rel-gap", "0", "--out", tmp_path / "r.json")
    assert res["method"] in ("lp-bound", "branch-and-bound") and res["status"] == "optimal"
    assert res["objective"] == pytest.approx(res["saved_prefill_ms"])
    code, msg, _ = run_cli("check", out, tmp_path / "r.json")
    assert code == 0, msg
    # Belady's hit-optimal plan is feasible here but no better than the MILP's
    bel = _json(run_cli, "solve", out, "--formulation", "belady")
    assert bel["status"] == "feasible" and bel["objective"] <= res["objective"] + 1e-6
    pol = _json(run_cli, "simulate", out, "--eviction", "lru", "--out", tmp_path / "p.json")
    assert pol["objective"] <= res["objective"] + 1e-6
    assert run_cli("check", out, tmp_path / "p.json")[0] == 0


def test_pinning_shrinks_the_capacity():
    from servopt.instances.eviction import EvictionInstance, EvictionRequest
    from servopt.models.eviction import capacity_after

    reqs = tuple(EvictionRequest(f"r{i}", 0.0, (i * 10 + 1,), 512, 512) for i in range(3))
    inst = EvictionInstance(10, reqs, llm="llama-3.1-8b", gpu="h100", pin_running=True)
    # all three arrive together and run for seconds: each pins 2 blocks while the next arrives
    assert capacity_after(inst) == [8, 6, 10]


def test_demo_and_example_instance():
    from servopt.kinds import eviction

    rows = eviction.demo(time_limit_s=30)
    assert rows[0]["status"] == "optimal"
    assert all(r["ratio"] <= 1.0 for r in rows)
