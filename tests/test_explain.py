"""analysis/explain.py and servopt explain: explanations that agree with hand-known facts of the shipped examples."""
from __future__ import annotations

import io

import json
import time
from dataclasses import replace
from importlib import resources

import pytest
from rich.console import Console

from servopt.analysis import explain as ex
from servopt.costmodel.capacities import capacity, operating_point
from servopt.errors import InputError
from servopt.instances.layer_placement import Layout
from servopt.kinds import kv_schedule as kv
from servopt.kinds import layer_placement as lp
from servopt.kinds import pd_placement as pd

LONG = 60.0  # a limit far above what these tiny solves need


def _data(name: str) -> dict:
    return json.loads(resources.files("servopt.instances").joinpath("data", name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def melange():
    inst = pd.load(_data("example_pd_melange.json"))
    return inst, pd.solve(inst, time_limit_s=LONG, options={"explain": True})


@pytest.fixture(scope="module")
def derived():
    inst = pd.load(_data("example_pd_derived.json"))
    return inst, pd.solve(inst, time_limit_s=LONG, options={"explain": True})


def _text(render, *args, width=80) -> str:
    con = Console(width=width, record=True, soft_wrap=False, file=io.StringIO())
    render(*args, con)
    text = con.export_text()
    assert max(len(line) for line in text.splitlines()) <= width
    return text


# ---- the operating point of the capacity model ------------------------------------------------------


@pytest.mark.parametrize("role", ["prefill", "decode", "colocated"])
def test_operating_point_at_capacity_is_the_capacity_rows_latency(role):
    row = capacity("llama-3.1-8b", "h100-sxm", 1, role, 1000, 250, ttft_ms=1000, tpot_ms=50)
    at = operating_point("llama-3.1-8b", "h100-sxm", 1, role, 1000, 250, row.rps)
    half = operating_point("llama-3.1-8b", "h100-sxm", 1, role, 1000, 250, 0.5 * row.rps)
    for key in ("ttft_ms", "tpot_ms"):
        want = getattr(row, key)
        if want is None:
            assert at[key] is None
        else:
            assert at[key] == pytest.approx(want, rel=1e-6)
            assert half[key] < at[key]  # less load, less waiting


def test_operating_point_beyond_any_capacity_is_infinite():
    D = operating_point("llama-3.1-8b", "h100-sxm", 1, "prefill", 4000, 10, 0.0)["ttft_ms"]  # the prefill time alone
    assert operating_point("llama-3.1-8b", "h100-sxm", 1, "prefill", 4000, 10, 1000.0 / D)["ttft_ms"] == float("inf")


# ---- pd_placement ----------------------------------------------------------------------------------------


def test_melange_alternatives_match_hand_counts(melange):
    inst, res = melange
    e = res["explanation"]
    alt = {a["alternative"]: a for a in e["alternatives"]}
    # A10G alone: each bucket needs 3 instances (6/2, 3/1, 15/5, 6/2) -> 12 x 1.01 $/h
    assert alt["A10G only"]["objective"] == pytest.approx(12 * 1.01)
    # A100 alone: 6/20 + 3/20 + 15/40 + 6/20 = 1.125 instances -> 2 x 3.67 $/h
    assert alt["A100-80GB only"]["objective"] == pytest.approx(2 * 3.67)
    assert alt["disaggregated serving"]["status"] == "cannot serve"
    assert alt["hybrid serving"]["objective"] == pytest.approx(6.70)  # colocated capacities only: the same plan
    assert alt["A10G only"]["relative"] == pytest.approx(12.12 / 6.70)
    assert "unknown" in e["latency_source"]
    assert all(s["ttft_ms"] is None and s["tpot_ms"] is None for b in e["buckets"] for s in b["served_by"])
    # every bucket is served in full, by what the assignment says
    for b in e["buckets"]:
        assert b["served_rps"] == pytest.approx(b["rate_rps"])
    # the three A10G run at 100 %: the only binding limit of an instance with unlimited availability
    assert [x["constraint"] for x in e["binding"]] == ["utilisation"]
    assert pd.check(inst, res) == []


def test_derived_latencies_meet_the_slo_and_bindings(derived):
    inst, res = derived
    e = res["explanation"]
    assert "cost model" in e["latency_source"]
    for b in e["buckets"]:
        assert b["served_rps"] == pytest.approx(b["rate_rps"])
        for s in b["served_by"]:
            assert 0 < s["ttft_ms"] <= inst.slo.ttft_ms and 0 < s["tpot_ms"] <= inst.slo.tpot_ms
    kinds = {x["constraint"]: x["what"] for x in e["binding"]}
    used = sum(c["gpus"] for c in res["configs"] if c["gpu"] == "h100-sxm")
    assert used == 2 and "h100-sxm: 2 of 2" in kinds["availability"]
    alt = {a["alternative"]: a for a in e["alternatives"]}
    # hybrid may use everything disaggregated may: never dearer; colocated is a different fleet
    assert alt["hybrid serving"]["objective"] <= res["objective"] + 1e-6
    assert alt["colocated serving"]["objective"] > 0
    # no single type serves 40 rps within its availability, and the note says what it would cost without it
    for g in inst.gpus:
        row = alt[f"{g.type} only"]
        assert row["objective"] is None and "too few GPUs available" in row["note"]
    text = _text(ex.render_pd, e, res)
    assert "TTFT ms" in text and "binding constraints" in text and "colocated serving" in text


def test_link_limits_are_priced():
    data = _data("example_pd_derived.json")
    data["links"] = [{"from": "a10g", "to": "h100-sxm", "gb_per_s": 0.3}]
    data["gpus"][3]["available"] = 3
    inst = pd.load(data)
    res = pd.solve(inst, time_limit_s=LONG, options={"explain": True})
    free = pd.solve(replace(inst, links=()), time_limit_s=LONG, options={})
    row = next(a for a in res["explanation"]["alternatives"] if a["alternative"] == "no link limits")
    assert row["status"] == "optimal" and row["objective"] == pytest.approx(free["objective"])
    assert free["objective"] < res["objective"]  # the link forces a dearer fleet on this instance
    assert pd.check(inst, res) == []


def test_pd_comparisons_skipped_when_no_time_is_left(derived):
    inst, res = derived
    e = ex.pd_explanation(inst, res, deadline=time.perf_counter())  # the deadline is now
    assert all(a["status"] in ("skipped", "cannot serve") for a in e["alternatives"])
    assert any("raise --time-limit" in n for n in e["notes"])
    assert e["buckets"] and e["binding"]  # the per-bucket view needs no solve


def test_max_goodput_names_the_unserved_bucket_and_its_cost():
    data = _data("example_pd_derived.json")
    data.update(objective="max_goodput", budget_usd_per_hour=5.0)
    inst = pd.load(data)
    res = pd.solve(inst, time_limit_s=LONG, options={"explain": True})
    e = res["explanation"]
    unserved_slices = {}
    for u in res["unserved"]:
        unserved_slices[u["bucket"]] = unserved_slices.get(u["bucket"], 0) + 1
    assert {r["bucket"]: r["slices"] for r in e["unserved"]} == unserved_slices and unserved_slices
    for r in e["unserved"]:
        b = next(b for b in inst.buckets if b.id == r["bucket"])
        assert r["rate_rps"] == pytest.approx(r["slices"] * inst.slice_rate_rps(b))
        assert r["extra_usd_per_hour"] is not None and r["extra_usd_per_hour"] > 0
    assert res["served_rate_rps"] + sum(r["rate_rps"] for r in e["unserved"]) == pytest.approx(inst.rate_rps)
    assert "budget" in {x["constraint"] for x in e["binding"]}
    assert "unserved traffic" in _text(ex.render_pd, e, res)


# ---- layer_placement ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def layer_result():
    inst = lp.load(_data("example_layer_placement.json"))
    return inst, lp.solve(inst, time_limit_s=LONG, options={})


def test_layer_pipelines_carry_the_throughput(layer_result):
    inst, res = layer_result
    e = ex.layer_explanation(res)
    assert sum(p["tokens_per_s"] for p in e["pipelines"]) == pytest.approx(res["objective"], rel=1e-6)
    assert max(p["depth"] for p in e["pipelines"]) <= res["pipeline_depth"]
    for n in e["nodes"]:  # no node carries more than its capacity T(k)
        assert n["flow_tokens_per_s"] <= n["capacity_tokens_per_s"] * (1 + 1e-6)
    assert e["bottleneck_nodes"]  # an optimal layout saturates some node or link
    assert "chain" in e["zero_baselines"]["petals"]
    text = _text(ex.render_layer, e, res)
    assert "bottleneck nodes" in text and "petals" in text


def test_zero_reasons_by_hand(layer_result):
    inst, _ = layer_result
    L = inst.num_layers
    ids = [n.id for n in inst.nodes]
    uncovered = Layout({ids[0]: (0, 1)})
    assert "layer 1 is held by no node" in ex.layer_zero_reason(inst, uncovered)
    # every layer held, but the second stage starts one layer early: chains from layer 0 stop at layer 2
    overlapping = Layout({ids[0]: (0, 2), ids[1]: (1, L)})
    assert f"only up to layer 2 of {L}" in ex.layer_zero_reason(inst, overlapping)


# ---- kv_schedule -------------------------------------------------------------------------------------------


def test_kv_delays_add_up_to_the_cost_difference():
    inst = kv.example_instance()
    res = kv.solve(inst, time_limit_s=LONG, options={"rel_gap": 0.0})
    e = ex.kv_explanation(inst, res, policies=["mc-sf", "fcfs", "vllm"], top=10_000)
    by = {p["policy"]: p for p in e["policies"]}
    assert by["mc-sf"]["cost"] == 56 and by["mc-sf"]["rounds_lost"] == 0  # MC-SF is optimal on the example
    for p in e["policies"]:  # total latency: the per-request differences sum to ALG - OPT
        assert p["rounds_lost"] - p["rounds_gained"] == p["cost"] - res["objective"]
        assert all(d["delay"] > 0 and d["latency"] - d["optimum_latency"] == d["delay"] for d in p["delays"])
    assert by["fcfs"]["ratio"] == pytest.approx(69 / 56)
    assert "delays most" in _text(ex.render_kv, e)


def test_kv_needs_the_instance_and_the_right_one():
    inst = kv.example_instance()
    res = kv.solve(inst, time_limit_s=LONG, options={})
    with pytest.raises(InputError, match="--instance"):
        ex.explain(res)
    other = replace(inst, requests=inst.requests[:-1])
    with pytest.raises(InputError, match="not in this instance"):
        ex.kv_explanation(other, res)


def test_generic_summary_for_other_kinds():
    result = {"kind": "eviction", "status": "optimal", "objective": 12.0, "bound": 12.0, "gap": 0.0,
              "method": "belady", "notes": ["a note"]}
    e = ex.explain(result)
    assert e["details"] is None and e["summary"]["method"] == "belady" and e["summary"]["notes"] == ["a note"]
    text = _text(ex.render, e, result)
    assert "belady" in text and "note: a note" in text
    comparison = {"kind": "routing_comparison", "incumbent": 41, "bound": 41, "gap": 0.0,
                  "rows": [{"policy": "jsq", "cost": 71, "ratio_to_incumbent": 71 / 41, "status": "ok"}]}
    e = ex.explain(comparison)
    assert e["summary"]["policies"] == [{"policy": "jsq", "cost": 71, "ratio": 71 / 41, "status": "ok"}]
    assert "1.7317" in _text(ex.render, e, comparison)


# ---- CLI -----------------------------------------------------------------------------------------------------


def test_cli_explain_each_kind(tmp_path, run_cli):
    pd_res = tmp_path / "pd.json"
    code, out, err = run_cli("solve", "instances/data/example_pd_melange.json", "--time-limit", LONG, "--out", pd_res)
    assert code == 0 and "beside the optimum" in out
    code, out, err = run_cli("explain", pd_res)
    assert code == 0 and "A10G only" in out and "per bucket" in out
    code, out, err = run_cli("explain", pd_res, "--json")
    assert code == 0 and json.loads(out)["details"]["alternatives"]
    # without its explanation, a pd result needs the instance
    raw = json.loads(pd_res.read_text())
    raw.pop("explanation")
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps(raw))
    code, out, err = run_cli("explain", bare)
    assert code == 2 and "--instance" in err
    code, out, err = run_cli("explain", bare, "--instance", "instances/data/example_pd_melange.json")
    assert code == 0 and "A100-80GB only" in out

    kv_res = tmp_path / "kv.json"
    assert run_cli("solve", "instances/data/example_kv_schedule.json", "--time-limit", LONG, "--out", kv_res, "--json")[0] == 0
    code, out, err = run_cli("explain", kv_res)
    assert code == 2 and "error: --instance:" in err and "Traceback" not in err
    code, out, err = run_cli("explain", kv_res, "--instance", "instances/data/example_kv_schedule.json")
    assert code == 0 and "fcfs" in out
    code, out, err = run_cli("explain", kv_res, "--instance", "instances/data/example_pd_melange.json")
    assert code == 2 and "pd_placement instance cannot explain" in err

    cmp_res = tmp_path / "cmp.json"
    assert run_cli("compare", "instances/data/example_kv_schedule.json", "--policies", "mc-sf,fcfs", "--time-limit", LONG,
                   "--out", cmp_res, "--json")[0] == 0
    code, out, err = run_cli("explain", cmp_res, "--instance", "instances/data/example_kv_schedule.json", "--json")
    assert code == 0 and [p["policy"] for p in json.loads(out)["details"]["policies"]] == ["mc-sf", "fcfs"]


def test_cli_explain_bad_file(tmp_path, run_cli):
    bad = tmp_path / "x.json"
    bad.write_text("[1, 2]")
    code, out, err = run_cli("explain", bad)
    assert code == 2 and "not a servopt result" in err
