"""Output for people at the CLI: widths, units, one spelling per policy, --export, per-request latency."""
from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from servopt import jsonio
from servopt.kinds import kv_schedule as kv

EXAMPLE_KV = "instances/data/example_kv_schedule.json"
LONG = "60"  # seconds: far above what the shipped examples need


def test_console_is_100_columns_off_a_terminal():
    from servopt.commands._common import console

    assert console().width == 100  # pytest captures stdout: not a terminal


def test_export_says_what_it_wrote_with_a_key_to_the_names(tmp_path, run_cli):
    lp = tmp_path / "model.lp"
    code, out, err = run_cli("solve", "instances/data/example_pd_melange.json", "--time-limit", LONG, "--export", lp, "--json")
    assert code == 0
    line = [x for x in err.splitlines() if x.startswith("wrote ")][0]
    assert str(lp) in line and " variables, " in line and line.endswith(" constraints)")
    n_vars = int(line.split("(")[1].split(" variables")[0])
    text = lp.read_text()
    assert n_vars > 0 and "\\ y(0): instances of A10G tp1 colocated" in text
    assert json.loads(out)["objective"] == pytest.approx(6.70)


def test_one_spelling_per_policy(run_cli):
    code, out, err = run_cli("simulate", "--list-policies")
    assert code == 0
    names = [line.split()[0] for line in out.splitlines() if line.startswith("  ")]
    assert "mc-sf" in names and "a-min" in names and "mcsf" not in names and "amin" not in names
    assert "kv_schedule policies (round model):" in out

    from servopt.simulator import registry
    from servopt.simulator.kv_rounds import simulate_rounds

    assert registry.get("scheduler", "mcsf").NAME == registry.get("scheduler", "mc-sf").NAME == "mc-sf"
    inst = kv.example_instance()
    alias, canonical = simulate_rounds(inst, "mcsf"), simulate_rounds(inst, "mc-sf")
    assert alias.method == canonical.method == "policy:mc-sf"
    assert alias.to_dict() == canonical.to_dict()


def test_compare_accepts_aliases_names_its_flag_and_captions_the_method(run_cli):
    code, out, err = run_cli("compare", EXAMPLE_KV, "--policies", "mcsf,fcfs", "--time-limit", LONG, "--json")
    assert code == 0
    result = json.loads(out)
    assert [r["policy"] for r in result["rows"]] == ["mc-sf", "fcfs"]
    assert "branch-and-bound" in result["method"] and result["optimum_requests"]
    code, out, err = run_cli("compare", EXAMPLE_KV, "--policies", "mc-sff", "--time-limit", LONG)
    assert code == 2 and err.startswith("error: --policies:") and "did you mean 'mc-sf'" in err
    code, out, err = run_cli("compare", EXAMPLE_KV, "--policies", "fcfs", "--time-limit", LONG)
    assert code == 0 and "hindsight IP" not in out and "branch-and-bound: incumbent" in out


@pytest.mark.parametrize("example", ["example_routing.json", "example_eviction.json", "example_batching.json"])
def test_compare_errors_name_policies_for_every_kind(example, run_cli):
    code, out, err = run_cli("compare", f"instances/data/{example}", "--policies", "nosuch", "--time-limit", LONG)
    assert code == 2 and err.startswith("error: --policies:") and "nosuch" in err


def test_kv_rows_carry_arrival_and_latency(tmp_path, run_cli):
    res = tmp_path / "kv.json"
    code, out, err = run_cli("solve", EXAMPLE_KV, "--time-limit", LONG, "--out", res, "--json")
    assert code == 0
    result = json.loads(res.read_text())
    inst = kv.example_instance()
    arrival = {r.id: r.arrival for r in inst.requests}
    for row in result["requests"]:
        assert row["arrival"] == arrival[row["id"]] and row["latency"] == row["finish"] - row["arrival"]
    assert sum(r["latency"] for r in result["requests"]) == result["objective"]  # total latency
    jsonio.validate(result, "kv_schedule_result")
    assert run_cli("check", EXAMPLE_KV, res)[0] == 0
    # a latency that disagrees with finish - arrival is caught
    result["requests"][0]["latency"] += 1
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(result))
    code, out, err = run_cli("check", EXAMPLE_KV, bad)
    assert code != 0 and "latency" in (out + err)


def test_kv_result_objects_convert():
    from servopt.analysis.kv_optimum import solve_optimum
    from servopt.solvers.kv_schedule_bnb import branch_and_bound

    inst = kv.example_instance()
    for res in (solve_optimum(inst, time_limit_s=60.0), branch_and_bound(inst, time_limit_s=60.0)):
        d = res.to_dict(inst)
        df = res.to_dataframe()
        assert {"arrival", "latency"} <= set(d["requests"][0]) and {"arrival", "latency"} <= set(df.columns)
        assert int(df["latency"].sum()) == d["objective"] == 56


def test_demo_table_fits_and_explains_itself():
    from servopt.commands.demo import demo_table

    sections = [
        ("kv_schedule", [{"instance": "example_kv_schedule.json", "method": "optimum (branch-and-bound)", "objective": 56,
                          "bound": 56, "gap": 0.0, "ratio": 1.0, "status": "optimal", "seconds": 0.5},
                         {"instance": "example_kv_schedule.json", "method": "fcfs", "objective": 69, "ratio": 69 / 56,
                          "status": "feasible", "seconds": 0.01}]),
        ("layer_placement", [{"instance": "helix-cluster10", "method": "boundary MILP", "objective": 286.6, "ratio": 1.0,
                              "status": "optimal"},
                             {"instance": "helix-cluster10", "method": "baseline: petals", "objective": 0.0, "ratio": 0.0,
                              "status": "-", "note": "its stages do not chain"}]),
        ("pd_placement", [{"instance": "example_pd_melange.json", "method": "MILP (optimal mix)", "objective": 6.7,
                           "ratio": 1.0, "status": "optimal"}]),
    ]
    for width in (80, 100, 160):
        con = Console(width=width, record=True, file=io.StringIO())
        table, notes = demo_table(sections, width=width)
        con.print(table)
        text = con.export_text()
        assert max(len(line) for line in text.splitlines()) <= width
        assert "56 rounds" in text and "286.6 tok/s" in text and "6.7 $/h" in text and "0 tok/s" in text
        assert "ratio = objective / the optimum's" in text
        assert notes == ["layer_placement baseline: petals: 0 tok/s: its stages do not chain"]
        assert ("bound" in [c.header for c in table.columns]) == (width >= 90)  # dropped on narrow terminals
