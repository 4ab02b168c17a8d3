"""Profile transfer between GPUs of one architecture (costmodel/transfer.py) and its report."""
from __future__ import annotations

import json

import pytest

from servopt.costmodel.profile import Profile, default_profile, shipped_profile, shipped_profiles
from servopt.costmodel.roofline import make_cost_model
from servopt.costmodel.transfer import (
    SERVOPT_ENGINE,
    catalog_choices,
    choose_profile,
    datasheet_distance,
    engine_of,
    transfer_profile,
)
from servopt.errors import InputError
from servopt.instances.catalog import get_gpu, gpus


def test_every_catalog_gpu_has_an_architecture():
    assert {g.architecture for g in gpus()} <= {"hopper", "ampere", "ada", "turing", "volta"}
    assert get_gpu("h200").architecture == get_gpu("h100").architecture == "hopper"
    assert all(g.sources.get("architecture") for g in gpus())


def test_h200_borrows_the_measured_h100_profile_with_the_same_engines_overheads():
    h100, choice = default_profile("h100-sxm"), choose_profile("H200")
    assert choice.kind == "transferred" and choice.donor_gpu == "h100-sxm" and choice.donor_profile == h100.name
    assert choice.profile.name == "h200-from-h100-sxm-measured" and choice.profile.gpus == ("h200",)
    # efficiencies and every fixed term are the H100 measurement's, never Splitwise's public fit
    assert choice.profile.parameters() == h100.parameters()
    assert choice.profile.parameters() != shipped_profile("public-h100-sxm").parameters()
    assert choice.engine == SERVOPT_ENGINE and choice.own_engine
    assert default_profile("h200") == choice.profile
    # the lent profile can be named like a shipped one
    assert shipped_profile("h200-from-h100-sxm-measured") == choice.profile


def test_transfer_scales_achieved_rates_by_the_datasheet_peaks():
    """Same efficiencies on other peaks: a pure weight-streaming decode step's memory time scales by
    B_h100 / B_h200 exactly; a compute-bound prefill's GEMM time by the bf16 peak ratio (1 here)."""
    h100 = make_cost_model("llama-3.1-8b", "h100-sxm")
    h200 = make_cost_model("llama-3.1-8b", "h200")
    ops1 = {o["name"]: o for o in h100.iteration(decode=[128]).operators}
    ops2 = {o["name"]: o for o in h200.iteration(decode=[128]).operators}
    ratio = 3350 / 4800
    for name in ("linear", "elementwise", "attention_decode"):
        assert ops2[name]["memory_ms"] == pytest.approx(ops1[name]["memory_ms"] * ratio, rel=1e-12)
        assert ops2[name]["compute_ms"] == pytest.approx(ops1[name]["compute_ms"], rel=1e-12)
    assert ops2["overhead"]["time_ms"] == pytest.approx(ops1["overhead"]["time_ms"], rel=1e-12)
    # faster memory, same compute: the H200 is faster in decode, never slower, and no faster in
    # compute-bound prefill than the memory share allows
    for b, ctx in ((1, 128), (64, 2048), (512, 512)):
        assert h200.decode_step_ms(b, ctx) < h100.decode_step_ms(b, ctx)
    assert h200.prefill_ms(8192) <= h100.prefill_ms(8192)
    assert h200.prefill_ms(8192) > 0.9 * h100.prefill_ms(8192)


def test_transfer_by_hand_on_a_toy_pair():
    donor = Profile(name="d", linear_compute_eff=0.5, linear_memory_eff=0.8, overhead_ms=1.5, per_layer_overhead_ms=0.1)
    lent = transfer_profile(donor, "a100-80g", "a10g")
    assert lent.parameters() == donor.parameters() and lent.gpus == ("a10g",)
    meta = lent.metadata["transfer"]
    assert meta["from_gpu"] == "a100-80g" and meta["peak_ratios"]["hbm_gb_per_s"] == pytest.approx(600 / 2039, abs=1e-6)
    with pytest.raises(InputError, match="architecture"):
        transfer_profile(donor, "h100-sxm", "a100-80g")
    assert transfer_profile(donor, "h100-sxm", "a100-80g", across_architectures=True).gpus == ("a100-80g",)


def test_nearest_donor_and_distance():
    assert datasheet_distance(get_gpu("h100"), get_gpu("h100")) == 0.0
    assert datasheet_distance(get_gpu("a100-80g"), get_gpu("a10g")) == pytest.approx(
        abs(__import__("math").log(312 / 125)) + abs(__import__("math").log(2039 / 600)))
    a10g = choose_profile("a10g")
    assert a10g.kind == "transferred-public" and a10g.donor_gpu == "a100-80g"
    assert a10g.profile.parameters() == shipped_profile("public-a100-80g").parameters()


def test_rule_order_and_notes():
    kinds = {c.gpu: c.kind for c in catalog_choices()}
    assert kinds["h100-sxm"] == "measured" and kinds["h200"] == "transferred"
    assert kinds["a100-80g"] == "public" and kinds["t4"] == "generic" and kinds["l4"] == "generic"
    assert len(kinds) == len(gpus())
    for c in catalog_choices():
        # every GPU whose overheads are not servopt's own measurement says so in its note
        if not c.own_engine:
            assert "another engine" in c.note and c.engine != SERVOPT_ENGINE, c
        # no catalog GPU gets Splitwise's H100 fit (another engine's overheads) by default
        assert c.profile.name != "public-h100-sxm"
    assert "h200" not in shipped_profile("public-h100-sxm").gpus


def test_engine_of_shipped_profiles():
    engines = {p.name: engine_of(p, f) for f, p in shipped_profiles()}
    assert engines["h100-sxm-measured"] == SERVOPT_ENGINE
    assert "Splitwise" in engines["public-h100-sxm"] and "DistServe" in engines["public-a100-80g"]
    assert engines["public-vidur-a100-80g"] == "Splitwise table"


def test_report_lists_every_catalog_gpu(run_cli):
    code, out, err = run_cli("costmodel", "report", "--only", "public-generic", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert [g["gpu"] for g in data["gpus"]] == [g.name for g in gpus()]
    h200 = next(g for g in data["gpus"] if g["gpu"] == "h200")
    assert h200["donor_gpu"] == "h100-sxm" and h200["overheads_from_servopt_measurements"] is True
    code, out, err = run_cli("costmodel", "report", "--only", "public-generic")
    assert code == 0, err
    assert "h200-from-h100-sxm" in out and "transferred" in out


def test_cost_command_on_h200_uses_the_lent_profile(run_cli):
    code, out, err = run_cli("cost", "--llm", "llama-3.1-8b", "--gpu", "h200", "--decode", "512x512", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["profile"] == "h200-from-h100-sxm-measured"
    # overheads: the H100 measurement's per-iteration and per-layer terms, no per-sequence term
    h100 = default_profile("h100-sxm")
    over = next(o for o in data["operators"] if o["name"] == "overhead")["time_ms"]
    assert over == pytest.approx(h100.overhead_ms + 32 * h100.per_layer_overhead_ms + 512 * h100.per_sequence_ms)
    assert over < 5.0  # Splitwise's public fit put 22.4 ms here
