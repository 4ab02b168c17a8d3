"""Instance generators (instances/kv_generators.py) and instance round trips."""
from __future__ import annotations

import numpy as np
import pytest

from servopt.instances import kv_generators as gen
from servopt.instances.kv_schedule import KVScheduleInstance, KVSchedule, ScheduledRequest, Attempt
from servopt.kinds import kv_schedule as kind


@pytest.mark.parametrize("model", gen.ARRIVAL_MODELS)
def test_synthetic_follows_the_paper_ranges(model):
    for k in range(20):
        d = gen.synthetic(np.random.default_rng([1, k]), arrival_model=model)
        inst = kind.load(d)  # schema + semantic validation
        s = {r.prompt_tokens for r in inst.requests}
        assert len(s) == 1 and 1 <= s.pop() <= 5
        assert 30 <= inst.memory_tokens <= 50
        assert all(1 <= r.output_tokens <= inst.memory_tokens - r.prompt_tokens for r in inst.requests)
        if model == "all_at_zero":
            assert 40 <= inst.n <= 60 and all(r.arrival == 0 for r in inst.requests)
        elif model == "poisson":
            assert max(r.arrival for r in inst.requests) < d["meta"]["arrival_horizon"] <= 60
        else:
            assert 40 <= inst.n <= 60 and min(r.arrival for r in inst.requests) == 0


def test_generators_are_seeded():
    assert gen.synthetic(3, arrival_model="poisson") == gen.synthetic(3, arrival_model="poisson")
    assert gen.synthetic(3) != gen.synthetic(4)
    assert gen.paper_study(3, arrival_model="all_at_zero")[2] == gen.synthetic(np.random.default_rng([0, 2]),
                                                                               arrival_model="all_at_zero", name="all_at_zero-2")


@pytest.mark.parametrize("source,arrivals", [("azure_conv", "trace"), ("sharegpt", "poisson"), ("sharegpt", "all_at_zero")])
def test_trace_instances_scale_tokens(source, arrivals):
    d = gen.trace(5, source=source, n=40, tokens_per_unit=64, arrivals=arrivals)
    inst = kind.load(d)
    assert inst.memory_tokens == 16492 // 64
    assert inst.n + d["meta"]["dropped_too_large"] == 40
    raw = gen.trace_lengths(source)[d["meta"]["offset"]]
    assert inst.requests[0].prompt_tokens == -(-raw[1] // 64) or d["meta"]["dropped_too_large"]
    assert sorted(r.arrival for r in inst.requests) == [r.arrival for r in inst.requests]


def test_sharegpt_has_no_timestamps():
    with pytest.raises(ValueError, match="no timestamps"):
        gen.trace(0, source="sharegpt", arrivals="trace")


def test_instance_round_trip_and_schedule_frame():
    inst = kind.example_instance()
    assert KVScheduleInstance.from_dict(inst.to_dict()) == inst
    sched = KVSchedule((ScheduledRequest("a", 0, 3, 5, (Attempt(0, 2),)),))
    df = sched.to_dataframe()
    assert list(df.columns) == ["id", "arrival", "start", "finish", "latency", "preemptions"]
    assert df.iloc[0]["latency"] == 5 and df.iloc[0]["preemptions"] == 1
    assert sched.to_dict() == {"requests": [{"id": "a", "arrival": 0, "start": 3, "finish": 5, "latency": 5, "attempts": [{"start": 0, "preempted_at": 2}]}]}


def test_result_json_reads_back_into_a_schedule():
    from servopt.instances.kv_schedule import schedule_from_result

    inst = kind.example_instance()
    res = kind.simulate(inst, policy="vllm")
    sched = schedule_from_result(inst, res)
    assert sched.to_dict()["requests"] == res["requests"]
    assert sched.objective_value(inst) == res["objective"] and sched.preemptions == res["preemptions"]
