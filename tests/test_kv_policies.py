"""Online policies (simulator/kv_rounds.py + kv_policy_*.py): hand-traced schedules, checker on every
schedule, no policy below the optimum (hypothesis), registry and parameter errors."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from kv_bruteforce import brute_force_optimum
from servopt.analysis.kv_check import check_result
from servopt.errors import InputError
from servopt.instances.kv_schedule import KVScheduleInstance
from servopt.instances.requests import Request
from servopt.kinds import kv_schedule as kind
from servopt.simulator.kv_rounds import available_policies, future_peaks_fit, simulate_rounds

POLICIES = ["fcfs", "vllm", "alpha-threshold", "sjf", "mc-sf", "a-min"]


def _starts(sched):
    return {r.id: r.start for r in sched.requests}


def test_registry_lists_every_policy():
    assert sorted(POLICIES) == available_policies()


def test_future_peaks_by_hand():
    # (s, p, c): two requests started at 0, one ends at 2 (holds 1+2), other at 4 (holds 0+2 at round 2, 4 at 4)
    assert future_peaks_fit([(1, 0, 2), (0, 0, 4)], 5)
    assert not future_peaks_fit([(1, 0, 2), (0, 0, 4)], 4)  # round 2: 3 + 2 = 5 > 4
    assert not future_peaks_fit([(1, 0, 2), (0, 0, 4)], 3)


def test_mc_sf_shortest_first_and_fcfs_order_by_hand():
    # M = 6; at round 0: long (s=1, o=5, peak 6) arrives first, short (s=1, o=1) second.
    inst = KVScheduleInstance(6, (Request("long", 0, 1, 5), Request("short", 0, 1, 1)))
    # MC-SF: short first (peak 2 at round 1); long next to it: round 1 holds 2 + 2 = 4 <= 6, and at
    # long's completion round 5 only long (6) -> both start at 0: latency 1 + 5 = 6.
    assert _starts(simulate_rounds(inst, "mc-sf")) == {"long": 0, "short": 0}
    # FCFS: long first; short next to it at round 1: 2 + 2 = 4 fine, so both at 0 as well.
    assert _starts(simulate_rounds(inst, "fcfs")) == {"long": 0, "short": 0}
    # With M = 6 and s = 2 for short: short peak 3; together round 1: 2 + 3 = 5 ok -> both at 0.
    tight = KVScheduleInstance(6, (Request("long", 0, 1, 5), Request("short", 0, 3, 1)))
    # round 1: long 2 + short 4 = 6 <= 6, fits. Make it not fit with prompt 4 -> 2 + 5 = 7 > 6.
    tighter = KVScheduleInstance(6, (Request("long", 0, 1, 5), Request("short", 0, 4, 1)))
    assert _starts(simulate_rounds(tight, "mc-sf")) == {"long": 0, "short": 0}
    mcsf = _starts(simulate_rounds(tighter, "mc-sf"))
    fcfs = _starts(simulate_rounds(tighter, "fcfs"))
    assert mcsf == {"short": 0, "long": 1}  # short runs round 1, long starts at 1
    assert fcfs == {"long": 0, "short": 5}  # strict FCFS: short waits for long's completion at 5


def test_vllm_preempts_the_newest_and_restarts_it():
    # M = 6, a (s=0, o=4) arrives at 0, b (s=0, o=4) at 0 too. vllm admits both (round 1: 1 + 1 = 2).
    # Rounds 2: 4, 3: 6, next round 4 would hold 8 > 6 -> at round 3 b (newest: same arrival, later
    # position) is preempted, attempt (0, 3); a finishes at 4; b restarts at round 4 (no admission in
    # the preemption round 3? a's next round 4 alone holds 4; b re-admitted at round 4 after a finished).
    inst = KVScheduleInstance(6, (Request("a", 0, 0, 4), Request("b", 0, 0, 4)))
    sched = simulate_rounds(inst, "vllm")
    rows = {r.id: r for r in sched.requests}
    assert rows["a"].start == 0 and rows["a"].finish == 4
    assert [(x.start, x.preempted_at) for x in rows["b"].attempts] == [(0, 3)]
    assert rows["b"].start == 4 and rows["b"].finish == 8
    assert check_result(inst, kind.simulate(inst, policy="vllm")) == []


def test_under_estimated_predictions_never_overflow():
    # predictions say 1 token, truth is 6: MC-SF over-admits, the simulator must preempt, never overflow
    reqs = tuple(Request(f"r{i}", 0, 1, 6, predicted_output_tokens=1) for i in range(4))
    inst = KVScheduleInstance(10, reqs)
    for p in POLICIES:
        res = kind.simulate(inst, policy=p)
        assert check_result(inst, res) == [], p


def test_a_min_uses_interval_lower_bound():
    # estimates of 1 admit all four at round 0 (round 1: 4 x 2 = 8 <= 10); r3 ends at 1; round 2
    # holds 3 x 3 = 9; round 3 would hold 12 > 10, so at round 2 one is evicted (all generated 2,
    # equal estimates 3: the later position, r2) and restarts with estimate 3.
    reqs = tuple(Request(f"r{i}", 0, 1, o, output_tokens_interval=(1, 8)) for i, o in enumerate([6, 5, 6, 1]))
    inst = KVScheduleInstance(10, reqs)
    res = kind.simulate(inst, policy="a-min")
    assert check_result(inst, res) == []
    rows = {r["id"]: r for r in res["requests"]}
    assert rows["r2"]["attempts"][0] == {"start": 0, "preempted_at": 2}
    # back at round 2 with estimate 3 (it revealed >= 3): r0, r1 are expected to end at 3, so
    # round 3 holds 4 + 4 + 2 = 10 <= 10 and r2 restarts at once; it is evicted again at round 3.
    assert rows["r2"]["attempts"][1] == {"start": 2, "preempted_at": 3}
    # exact intervals: A_min is MC-SF
    exact = KVScheduleInstance(10, tuple(Request(r.id, 0, 1, r.output_tokens, output_tokens_interval=(r.output_tokens, 8))
                                         for r in reqs))
    assert kind.simulate(exact, policy="a-min")["requests"] == kind.simulate(exact, policy="mc-sf")["requests"]


def test_unknown_policy_and_parameter_are_named():
    inst = kind.example_instance()
    with pytest.raises(InputError, match="did you mean 'mc-sf'"):
        simulate_rounds(inst, "mc-sff")
    with pytest.raises(InputError, match="no parameter 'gamma'"):
        simulate_rounds(inst, "alpha-threshold", gamma=1)
    with pytest.raises(InputError, match="alpha"):
        simulate_rounds(inst, "alpha-threshold", alpha=1.5)


@pytest.mark.parametrize("policy", POLICIES)
def test_every_policy_passes_the_checker_on_random_instances(policy):
    for seed in range(15):
        rng = np.random.default_rng(seed)
        M = int(rng.integers(20, 60))
        reqs = []
        for i in range(int(rng.integers(5, 40))):
            s = int(rng.integers(0, 6))
            o = int(rng.integers(1, M - s + 1))
            pred = int(max(1, round(o * rng.uniform(0.5, 1.5)))) if seed % 3 == 1 else None
            lo = max(1, o - int(rng.integers(0, 5)))
            reqs.append(Request(f"r{i}", int(rng.integers(0, 30)), s, o, predicted_output_tokens=pred,
                                output_tokens_interval=(lo, o + 3)))
        inst = KVScheduleInstance(M, tuple(reqs))
        res = kind.simulate(inst, policy=policy)
        assert check_result(inst, res) == [], (seed, policy)


@st.composite
def _tiny_instances(draw):
    M = draw(st.integers(3, 9))
    n = draw(st.integers(1, 5))
    reqs = []
    for i in range(n):
        s = draw(st.integers(0, min(3, M - 1)))
        o = draw(st.integers(1, min(4, M - s)))
        pred = draw(st.one_of(st.none(), st.integers(1, 6)))
        reqs.append(Request(f"r{i}", draw(st.integers(0, 4)), s, o, predicted_output_tokens=pred))
    return KVScheduleInstance(M, tuple(reqs), draw(st.sampled_from(["total_latency", "makespan"])))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_tiny_instances())
def test_no_policy_beats_the_optimum_and_all_pass_the_checker(inst):
    opt, _ = brute_force_optimum(inst)
    for p in POLICIES:
        res = kind.simulate(inst, policy=p)
        assert check_result(inst, res) == [], p
        assert res["objective"] >= opt - 1e-9, (p, res["objective"], opt)
