"""Capacities derived from the cost model: each role's queueing model re-derived at its operating point."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from servopt.costmodel import capacities as capmod
from servopt.costmodel.roofline import make_cost_model
from servopt.errors import InputError
from servopt.instances.catalog import gpus, llms

KW = dict(ttft_ms=1000.0, tpot_ms=50.0)


def _decode_ms(cm, b, ctx):
    return cm.iteration(decode=[ctx] * b).iteration_ms


def test_prefill_is_md1_at_the_ttft_bound():
    cm = make_cost_model("llama-3.1-8b", "a100-80g")
    row = capmod.capacity("llama-3.1-8b", "a100-80g", 1, "prefill", 1000, 200, **KW)
    D = cm.prefill_ms(1000)
    lam = row.rps / 1000.0  # per ms
    ttft = D + lam * D * D / (2 * (1 - lam * D))  # DistServe eq. 1
    assert ttft == pytest.approx(KW["ttft_ms"], rel=1e-9)
    assert lam * D < 1


def test_prefill_zero_when_one_prompt_exceeds_ttft():
    cm = make_cost_model("llama-3.1-8b", "t4")
    D = cm.prefill_ms(8000)
    row = capmod.capacity("llama-3.1-8b", "t4", 1, "prefill", 8000, 10, ttft_ms=D * 0.99, tpot_ms=50)
    assert row.rps == 0 and row.limited_by in ("slo-unmet", "kv")


@pytest.mark.parametrize("gpu", ["a10g", "a100-80g", "h100-sxm"])
def test_decode_batch_is_largest_meeting_tpot_and_kv(gpu):
    P, O = 1000, 250
    cm = make_cost_model("llama-3.1-8b", gpu)
    row = capmod.capacity("llama-3.1-8b", gpu, 1, "decode", P, O, **KW)
    ctx = P + O / 2
    B = row.batch
    assert B >= 1
    t = _decode_ms(cm, B, ctx)  # the slow per-sequence path must agree with the fast path used
    assert t <= KW["tpot_ms"] + 1e-9
    assert B * (P + O) <= cm.kv_capacity_tokens(0.9)
    # batch + 1 breaks TPOT or the KV bound
    assert _decode_ms(cm, B + 1, ctx) > KW["tpot_ms"] or (B + 1) * (P + O) > cm.kv_capacity_tokens(0.9)
    assert row.rps == pytest.approx(1000 * B / ((O - 1) * t), rel=1e-9)  # Little's law


def test_colocated_never_beats_pure_decode_and_meets_both_slos():
    for gpu in ("a10g", "a100-80g", "h100-sxm"):
        for P, O in ((250, 100), (2000, 300)):
            col = capmod.capacity("llama-3.1-8b", gpu, 1, "colocated", P, O, **KW)
            dec = capmod.capacity("llama-3.1-8b", gpu, 1, "decode", P, O, **KW)
            assert col.rps <= dec.rps + 1e-9
            if col.rps > 0:
                assert col.tpot_ms <= KW["tpot_ms"] + 1e-9 and col.ttft_ms <= KW["ttft_ms"] + 1e-9


@settings(max_examples=25, deadline=None)
@given(
    role=st.sampled_from(["colocated", "prefill", "decode"]),
    prompt=st.integers(16, 6000),
    output=st.integers(2, 800),
    tpot=st.floats(15, 200),
    ttft=st.floats(100, 5000),
    factor=st.floats(1.0, 3.0),
)
def test_looser_slo_never_lowers_capacity(role, prompt, output, tpot, ttft, factor):
    tight = capmod.capacity("llama-3.1-8b", "a100-80g", 1, role, prompt, output, ttft_ms=ttft, tpot_ms=tpot)
    loose = capmod.capacity("llama-3.1-8b", "a100-80g", 1, role, prompt, output, ttft_ms=ttft * factor, tpot_ms=tpot * factor)
    assert loose.rps >= tight.rps - 1e-9 * max(1.0, tight.rps)


def test_every_catalog_llm_and_gpu_gets_a_table_or_is_skipped():
    """Every LLM fits somewhere in the catalog at some TP <= 8, and each fitting pair has a capacity row."""
    names = [g.name for g in gpus()]
    for llm in llms():
        fitting = [g for g in names if capmod.tp_options_for(llm.name, g)]
        assert fitting, llm.name
        rows = capmod.capacity_table(llm.name, fitting[:2], [(500, 100)], ttft_ms=5000, tpot_ms=200, roles=("decode",))
        assert rows and all(r.rps >= 0 for r in rows)


def test_70b_needs_tensor_parallelism():
    assert capmod.tp_options_for("llama-2-70b", "a100-80g")[0] == 2
    assert capmod.tp_options_for("llama-2-70b", "t4") == []
    assert 1 in capmod.tp_options_for("llama-3.1-8b", "l4")


def test_instance_capacities_cover_modes_roles_and_buckets():
    from servopt.instances.pd_placement import from_dict

    inst = from_dict({
        "kind": "pd_placement", "mode": "hybrid", "rate_rps": 5, "llm": "llama-3.1-8b",
        "slo": {"ttft_ms": 800, "tpot_ms": 60},
        "buckets": [{"id": "a", "share": 0.5, "prompt_tokens": 300, "output_tokens": 50},
                    {"id": "b", "share": 0.5, "prompt_tokens": 2000, "output_tokens": 400}],
        "gpus": [{"type": "spot", "hardware": "h100-sxm", "usd_per_hour": 1.5}, {"type": "A10G", "usd_per_hour": 1.0}],
    })
    caps = capmod.capacities_for_instance(inst)
    keys = {(c.gpu, c.role, c.bucket, c.tp) for c in caps}
    assert ("spot", "prefill", "b", 1) in keys and ("A10G", "decode", "a", 1) in keys
    assert len(keys) == len(caps)
    bad = from_dict({**inst.to_dict(), "gpus": [{"type": "warp-drive", "usd_per_hour": 1}]})
    with pytest.raises(InputError, match=r"gpus\[0\]\.type: unknown GPU 'warp-drive'"):
        capmod.capacities_for_instance(bad)
