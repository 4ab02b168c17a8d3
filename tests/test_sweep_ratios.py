"""Ratio intervals and the literature's proven constants, each applied only in its own setting."""
from __future__ import annotations

import pandas as pd
from hypothesis import given, settings, strategies as st

from servopt.analysis.ratios import PROVEN_CONSTANTS, SETTING_FLAGS, constants_table, instance_setting, \
    proven_bound_violations, ratio_table
from servopt.instances.kv_schedule import KVScheduleInstance

IN_SETTING = {"all_at_zero": True, "identical_prompts": True, "exact_predictions": True, "large_memory": True}


def _row(**kw):
    base = {"instance_name": "x", "policy": "mc-sf", "policy_status": "ok", "ratio_lo": 1.2, "ratio_hi": 1.3,
            "proven": False, **IN_SETTING}
    return {**base, **kw}


def test_a_ratio_above_a_proven_constant_in_its_setting_is_flagged():
    assert proven_bound_violations([_row()]) == []
    bad = proven_bound_violations([_row(ratio_lo=9300.0, ratio_hi=9400.0)])
    assert len(bad) == 1 and "9216" in bad[0]


def test_the_constant_is_not_applied_outside_its_setting():
    for flag in SETTING_FLAGS:
        assert proven_bound_violations([_row(ratio_lo=9300.0, ratio_hi=9400.0, **{flag: False})]) == []
    # another policy: no constant for it
    assert proven_bound_violations([_row(policy="fcfs", ratio_lo=9300.0, ratio_hi=9400.0)]) == []


def test_rules_that_hold_in_every_setting():
    assert len(proven_bound_violations([_row(ratio_hi=0.99, all_at_zero=False)])) == 1  # beats a lower bound
    assert len(proven_bound_violations([_row(ratio_lo=0.98, ratio_hi=0.98, proven=True, large_memory=False)])) >= 1
    assert len(proven_bound_violations([_row(policy_status="invalid", violations="round 3: memory")])) == 1
    # a lower end below 1 on an unproven optimum is fine: the policy beat the incumbent, not OPT
    assert proven_bound_violations([_row(ratio_lo=0.97, ratio_hi=1.4)]) == []


@settings(max_examples=25, deadline=None)
@given(s=st.integers(1, 3), outs=st.lists(st.integers(1, 7), min_size=2, max_size=6))
def test_mc_sf_in_its_theorem_setting_stays_below_9216(s, outs):
    """All at 0, one prompt size, exact lengths, M >= 2 max(s + o): the setting of Jaillet et al. Thm 4.3."""
    from servopt.analysis.adversarial import score

    M = 2 * (s + max(outs))
    data = {"kind": "kv_schedule", "memory_tokens": M,
            "requests": [{"id": f"r{i}", "arrival": 0, "prompt_tokens": s, "output_tokens": o} for i, o in enumerate(outs)]}
    flags = instance_setting(KVScheduleInstance.from_dict(data))
    assert all(flags.values())
    scored = score(data, "mc-sf", time_limit_s=60)
    assert scored.proven and 1.0 <= scored.ratio <= 9216
    row = _row(ratio_lo=scored.ratio, ratio_hi=scored.ratio, proven=True, **flags)
    assert proven_bound_violations([row]) == []


def test_setting_flags():
    inst = KVScheduleInstance.from_dict({"memory_tokens": 20, "requests": [
        {"id": "a", "arrival": 0, "prompt_tokens": 2, "output_tokens": 5}, {"id": "b", "arrival": 1, "prompt_tokens": 3, "output_tokens": 4,
                                                                  "predicted_output_tokens": 6}]})
    assert instance_setting(inst) == {"all_at_zero": False, "identical_prompts": False, "exact_predictions": False,
                                      "large_memory": True}


def test_ratio_table_intervals():
    frame = pd.DataFrame([
        {"family": "f", "arrival_model": "a", "n": 5, "policy": "mc-sf", "cost": 10, "ratio_lo": 1.0, "ratio_hi": 1.0,
         "proven": True, **IN_SETTING},
        {"family": "f", "arrival_model": "a", "n": 5, "policy": "mc-sf", "cost": 12, "ratio_lo": 1.2, "ratio_hi": 1.5,
         "proven": False, **IN_SETTING},
    ])
    row = ratio_table(frame).iloc[0]
    assert row["instances"] == 2 and row["proven"] == 1 and row["proven_share"] == 0.5
    assert row["mean_lo"] == 1.1 and row["mean_hi"] == 1.25 and row["worst_lo"] == 1.2 and row["worst_hi"] == 1.5
    assert row["proven_mean"] == 1.0 and row["policy_optimal"] == 1
    assert row["proven_constant"] == 9216.0 and row["constant_setting_instances"] == 2


def test_constants_table_names_every_source():
    table = constants_table()
    assert len(table) == len(PROVEN_CONSTANTS) and table["source"].str.len().min() > 10
    assert {"mc-sf", "GBA", "GSA", "Sorted-F", "a-min"} <= set(table["policy"])
