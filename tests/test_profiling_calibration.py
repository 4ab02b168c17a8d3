"""Calibration of the cost model to servopt profile measurements, and the shipped H100 profile."""
from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest

from servopt.costmodel import calibration as C
from servopt.costmodel import profiling as P
from servopt.costmodel.profile import Profile, default_profile, load_profile
from servopt.costmodel.roofline import make_cost_model
from servopt.errors import InputError

TRUTH = Profile(name="truth", linear_compute_eff=0.62, linear_memory_eff=0.85, attention_compute_eff=0.3,
                attention_memory_eff=0.7, allreduce_bandwidth_eff=0.267552, allreduce_hop_latency_ms=0.021607,
                overhead_ms=0.4, per_sequence_ms=0.0, per_layer_overhead_ms=0.08, roofline_smoothness=0.2)


def _synthetic_profile(truth: Profile = TRUTH) -> dict:
    """A measurement file whose times are the cost model's own under ``truth`` (shards without all-reduce),
    computed through CostModel.iteration, independently of the fit's vectorised predictor."""
    runs = []
    for llm, tp in (("llama-3.1-8b", 1), ("qwen2.5-7b", 1), ("llama-2-70b", 4)):
        cm = make_cost_model(llm, "h100-sxm", tp, truth)
        points = []
        for shape in P.quick_grid().shapes + P.splitwise_grid().shapes[::3]:
            c = cm.iteration(prefill=list(shape.prefill), decode=shape.decode_contexts())
            ms = c.iteration_ms - sum(o["time_ms"] for o in c.operators if o["name"] == "allreduce")
            points.append(P.Measurement(shape, ms, ms, 0.0, ms, ms, 5).to_dict())
        runs.append({"llm": llm, "tp": tp, "points": points})
    return {"format": P.PROFILE_FORMAT, "gpu": "h100-sxm", "runs": runs,
            "ceilings": {"matmul_tflops": 800.0, "copy_gb_per_s": 2400.0}}


def test_fit_recovers_known_parameters_and_needs_the_per_layer_term():
    data = _synthetic_profile()
    cal = C.calibrate(data, name="t", decode_kv="measured")
    got = cal.profile.parameters()
    for key in C.FREE:
        assert got[key] == pytest.approx(TRUTH.parameters()[key], rel=2e-3, abs=1e-5), key
    assert cal.held_out and cal.profile.metadata["fit"]["held_out_mape"] < 1e-3
    for regime in C.REGIMES:
        assert cal.row("all", regime).calibrated_mape < 1e-3
        assert cal.row("all", regime).roofline_mape > 0.2
    # decode_kv="stream": decode's KV read at the weight-streaming rate the measured fit found, the rest refitted
    stream = C.calibrate(data, name="t")
    assert stream.profile.attention_decode_memory_eff == pytest.approx(got["linear_memory_eff"], rel=1e-9)
    assert stream.profile.metadata["fit"]["decode_kv_memory_eff_as_measured"] == pytest.approx(got["attention_memory_eff"])
    with pytest.raises(InputError, match="decode_kv"):
        C.calibrate(data, name="t", decode_kv="fast")
    # per_sequence_ms is not free: fixed at 0, never inherited from the base (Splitwise's 0.04 ms)
    assert "per_sequence_ms" not in C.FREE and got["per_sequence_ms"] == 0.0
    with_seq = C.calibrate(_synthetic_profile(TRUTH.with_parameters(per_sequence_ms=0.006)), name="t",
                           free=C.FREE + ("per_sequence_ms",), decode_kv="measured")
    assert with_seq.profile.per_sequence_ms == pytest.approx(0.006, rel=2e-3)
    # without the per-layer term, 28-, 32- and 80-layer models cannot all be fitted
    free = tuple(f for f in C.FREE if f != "per_layer_overhead_ms")
    worse = C.calibrate(data, name="t", free=free, decode_kv="measured")
    assert max(worse.row("all", r).calibrated_mape for r in C.REGIMES) > 0.01


def test_decode_kv_fit_recovers_a_decode_rate_of_its_own():
    """Measurements of a packed GQA decode kernel: decode's KV read at 0.9 of the bandwidth while prefill
    attention stays at 0.7. decode_kv="fit" recovers both; "measured" (one shared rate) cannot."""
    truth = TRUTH.with_parameters(attention_decode_memory_eff=0.9)
    data = _synthetic_profile(truth)
    fitted = C.calibrate(data, name="t", decode_kv="fit")
    assert fitted.profile.attention_decode_memory_eff == pytest.approx(0.9, rel=5e-3)
    assert fitted.profile.attention_memory_eff == pytest.approx(0.7, rel=5e-3)
    assert fitted.profile.metadata["fit"]["held_out_mape"] < 1e-3
    shared = C.calibrate(data, name="t", decode_kv="measured")
    assert shared.profile.metadata["fit"]["held_out_mape"] > 10 * fitted.profile.metadata["fit"]["held_out_mape"]


def test_split_is_stratified_seeded_and_disjoint():
    pts = C.measured_points(_synthetic_profile())
    train, test = C.split_points(pts, 0.25, seed=3)
    assert sorted(train + test) == list(range(len(pts))) and not set(train) & set(test)
    assert (train, test) == C.split_points(pts, 0.25, seed=3)
    assert test != C.split_points(pts, 0.25, seed=4)[1]
    groups = {}
    for i in test:
        groups.setdefault((pts[i].table, pts[i].regime), 0)
        groups[(pts[i].table, pts[i].regime)] += 1
    sizes = {}
    for p in pts:
        sizes[(p.table, p.regime)] = sizes.get((p.table, p.regime), 0) + 1
    for key, n in sizes.items():
        assert groups.get(key, 0) == (round(0.25 * n) if n >= 4 else 0)
    with pytest.raises(InputError, match="holdout_fraction"):
        C.split_points(pts, 1.0)


def test_shard_points_carry_no_allreduce():
    pts = C.measured_points(_synthetic_profile())
    assert {p.comm for p in pts if p.tp > 1} == {False} and {p.comm for p in pts if p.tp == 1} == {True}


def test_merge_refuses_mixed_gpus_and_duplicate_runs():
    a = _synthetic_profile()
    with pytest.raises(InputError, match="runs"):
        C.merge_profiles([a, a])
    b = dict(a, gpu="a100-80g")
    with pytest.raises(InputError, match="gpu"):
        C.merge_profiles([a, b])


# ------------------------------------------------------------------------------ shipped H100 profile

def _shipped() -> dict:
    return json.loads(resources.files("servopt.costmodel").joinpath("profiles", "h100-sxm.json").read_text())


def test_shipped_h100_profile_is_the_default_and_measured_on_an_h100():
    data = _shipped()
    assert default_profile("h100-sxm").name == data["fit"]["name"] == "h100-sxm-measured"
    assert "H100" in data["device"]["name"]
    runs = {(r["llm"], r["tp"]) for r in data["runs"]}
    assert {("llama-3.1-8b", 1), ("qwen2.5-7b", 1), ("llama-2-7b", 1), ("llama-2-13b", 1), ("opt-13b", 1),
            ("llama-2-70b", 2), ("llama-2-70b", 4), ("llama-2-70b", 8)} <= runs
    size = len(resources.files("servopt.costmodel").joinpath("profiles", "h100-sxm.json").read_bytes())
    assert size < 1_000_000


def test_shipped_h100_fit_is_reproducible_and_within_seven_percent_held_out():
    data = _shipped()
    meta = data["fit"]["metadata"]["fit"]
    measurements = {k: v for k, v in data.items() if k != "fit"}
    cal = C.calibrate(measurements, name=data["fit"]["name"], seed=meta["seed"], holdout_fraction=meta["holdout_fraction"])
    shipped = default_profile("h100-sxm").parameters()
    assert cal.profile.parameters() == pytest.approx(shipped, rel=1e-4)
    for regime in C.REGIMES:
        row = cal.row("all", regime)
        assert row.n_held_out >= 20
        assert row.held_out_mape <= 0.07, (regime, row)
        assert row.roofline_mape > 3 * row.calibrated_mape
    # the shipped default reads decode's KV cache at the weight-streaming rate (decode_kv="stream"),
    # faster than servopt profile's own FlashAttention-2 decode path: every run within 12 % held out,
    # the GQA 7-8B models within 6 %
    assert meta["decode_kv"] == "stream" and cal.profile.attention_decode_memory_eff == pytest.approx(
        C.calibrate(measurements, name="m", decode_kv="measured").profile.linear_memory_eff, rel=1e-6)
    for row in cal.rows:
        if row.held_out_mape is not None and row.n_held_out >= 4:
            assert row.held_out_mape <= 0.12, row
            if "llama-3.1-8b" in row.group or "qwen2.5-7b" in row.group:
                assert row.held_out_mape <= 0.06, row
    # as the profiled kernel reads it: every measured run, 70B shards included, within 10 % per regime
    measured = C.calibrate(measurements, name="m", decode_kv="measured")
    assert meta["held_out_mape_as_measured"] == pytest.approx(measured.profile.metadata["fit"]["held_out_mape"])
    assert meta["held_out_mape_as_measured"] < meta["held_out_mape"]
    for row in measured.rows:
        if row.held_out_mape is not None and row.n_held_out >= 4:
            assert row.held_out_mape <= 0.10, row


def test_shipped_h100_profile_on_splitwise_h100():
    rows = C.public_table_rows(default_profile("h100-sxm"))
    overall = [r for r in rows if r["regime"] == "all"]
    assert [r["gpu"] for r in overall] == ["h100-sxm"] and overall[0]["n"] >= 90
    assert overall[0]["mape"] < 0.10


def test_report_and_fit_commands(run_cli, tmp_path):
    code, out, err = run_cli("costmodel", "report", "--json")
    assert code == 0, err
    data = json.loads(out)
    reports = {r["profile"]: r for r in data["profiles"]}
    gpus = {g["gpu"]: g for g in data["gpus"]}
    assert gpus["h200"]["profile"] == "h200-from-h100-sxm-measured" and gpus["h200"]["kind"] == "transferred"
    assert {"h100-sxm-measured", "public-h100-sxm"} <= set(reports)
    measured = reports["h100-sxm-measured"]["measured"]
    assert {r["regime"] for r in measured["rows"] if r["group"] == "all"} == set(C.REGIMES)
    assert reports["public-h100-sxm"]["measured"] is None and reports["public-h100-sxm"]["public"]

    src = tmp_path / "m.json"
    src.write_text(json.dumps(_synthetic_profile()))
    dst = tmp_path / "fitted.json"
    code, out, err = run_cli("costmodel", "fit", src, "--out", dst, "--name", "synthetic", "--decode-kv", "measured")
    assert code == 0, err
    prof = load_profile(dst)
    assert prof.name == "synthetic" and prof.gpus == ("h100-sxm",)
    assert prof.per_layer_overhead_ms == pytest.approx(TRUTH.per_layer_overhead_ms, rel=2e-3)
    # servopt cost takes any profile file
    code, out, err = run_cli("cost", "--llm", "llama-3.1-8b", "--gpu", "h100-sxm", "--profile", dst,
                             "--decode", "8x1024", "--json")
    assert code == 0, err
    expect = make_cost_model("llama-3.1-8b", "h100-sxm", 1, TRUTH).decode_step_ms(8, 1024)
    assert json.loads(out)["iteration_ms"] == pytest.approx(expect, rel=5e-3)


def test_mfu_and_bandwidth_use_by_hand():
    """A decode step of 1 sequence that reads W bytes in t: bandwidth use W / t / BW."""
    data = _synthetic_profile()
    pts = C.measured_points(data)
    rows = C.error_rows(TRUTH, pts)
    assert all(0 < r.median_mfu < 1 and 0 < r.median_bw_util < 1.2 for r in rows)
    one = [p for p in pts if p.regime == "decode" and p.llm == "llama-3.1-8b"][:1]
    cm = make_cost_model("llama-3.1-8b", "h100-sxm", 1, "roofline-only")
    c = cm.iteration_from_totals(one[0].totals())
    expect = c.bytes / (one[0].measured_ms * 1e-3) / 3350e9
    assert C.error_rows(TRUTH, one)[0].median_bw_util == pytest.approx(expect)
    assert np.isfinite(C.ceiling_fractions(data, pts)[0]["median_of_measured_copy"])


def test_splitwise_h100_leave_one_tp_out_with_measured_gpu_terms():
    """GPU terms as measured on our H100, engine terms fitted on the other TP degrees: the TP left
    out is predicted within 10 % overall; TP8 prefill (a 2.85x jump from 2048 to 4096 tokens) is the
    one cell that stays off (benchmarks/results/profile_accuracy.md)."""
    res = C.splitwise_leave_one_tp_out("h100-sxm", base=default_profile("h100-sxm"))
    assert res["n"] >= 90 and res["mape"] < 0.10
    cells = {(c["tp"], c["regime"]): c for c in res["cells"]}
    assert all(c["mape"] < 0.12 for key, c in cells.items() if key != (8, "prefill"))
    assert cells[(8, "prefill")]["mape"] > 0.15


def test_splitwise_a100_leave_one_tp_out_with_vidur_gpu_terms():
    from servopt.costmodel.profile import shipped_profile

    res = C.splitwise_leave_one_tp_out("a100-80g", base=shipped_profile("public-vidur-a100-80g"))
    assert res["n"] >= 90 and res["mape"] < 0.10
    cells = {(c["tp"], c["regime"]): c["mape"] for c in res["cells"]}
    # decode at every TP, TP8 included (host-bound: as slow as TP4), within 5 %
    assert all(cells[(tp, "decode")] < 0.05 for tp in (2, 4, 8))
