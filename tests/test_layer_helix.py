"""Helix's own instances: its objectives reproduced, its published layouts beaten, cluster10 proved."""
from __future__ import annotations

import json
from importlib import resources

import pytest

from servopt.analysis.layer_check import layout_max_flow
from servopt.instances.layer_placement import instance_from_dict, layout_from_dict
from servopt.solvers.layer_placement_search import compute_upper_bound, saturation_upper_bound, solve_layer_placement
from servopt.solvers.maxflow import evaluate_layout


def _data(name):
    return json.loads(resources.files("servopt.instances").joinpath("data", name).read_text(encoding="utf-8"))


CLUSTER24 = "helix_cluster24_llama2_70b.json"
SHIPPED = {
    "example_layer_placement.json": 286.5874097546421,  # cluster10, Gurobi-proved optimum
    CLUSTER24: 1289.5557702751735,
    "helix_a100x4_llama1_30b.json": 1044.533345,
    "helix_l4x8_llama1_30b.json": 214.981402,
    "helix_t4x12_llama1_30b.json": 397.685064,
}


def test_cluster24_helix_layout_reproduces_1289_56():
    data = _data(CLUSTER24)
    inst = instance_from_dict(data)
    layout = layout_from_dict(inst, data["reference"]["helix_layout"])
    ev = evaluate_layout(inst, layout)
    # Helix's Gurobi objective 1289.5557702751735; float max-flow agrees to ~1e-14 relative
    assert ev.value == pytest.approx(1289.5557702751735, rel=1e-12)
    assert round(ev.value, 2) == 1289.56
    assert layout_max_flow(inst, layout.ranges) == pytest.approx(1289.5557702751735, rel=1e-12)


@pytest.mark.parametrize("name,value", [("swarm", 757.853186), ("petals", 531.702585)])
def test_cluster24_baseline_layouts_reproduce_helix_values(name, value):
    data = _data(CLUSTER24)
    inst = instance_from_dict(data)
    layout = layout_from_dict(inst, data["reference"]["baselines"][name]["layout"])
    assert evaluate_layout(inst, layout).value == pytest.approx(value, abs=1e-6)


def test_cluster24_helix_compute_bound_is_readme_value():
    inst = instance_from_dict(_data(CLUSTER24))
    assert round(compute_upper_bound(inst), 2) == 2803.86
    assert saturation_upper_bound(inst) == pytest.approx(2045.641047, rel=1e-9)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_instance_beats_or_matches_helix(name):
    data = _data(name)
    inst = instance_from_dict(data)
    out = solve_layer_placement(inst, time_limit_s=60, threads=1)
    assert out.value >= SHIPPED[name] * (1 - 1e-9)
    assert data["reference"]["helix_milp_objective"] == pytest.approx(SHIPPED[name], rel=1e-6)
    assert out.status == "optimal"  # all five are proved here
    assert out.seconds < 60
    assert layout_max_flow(inst, out.layout.ranges) == pytest.approx(out.value, rel=1e-9)


def test_cluster10_proved_optimal_at_the_gurobi_value():
    inst = instance_from_dict(_data("example_layer_placement.json"))
    out = solve_layer_placement(inst, time_limit_s=60, threads=1)
    assert out.status == "optimal"
    assert out.value == pytest.approx(286.5874097546421, rel=1e-12)
    assert out.bound <= 286.5874097546421 * (1 + 1e-7)  # F_t = v(1 + 1e-8) + 1e-5 was proved out of reach
    assert "infeasible" in out.proof


def test_result_dataclass_round_trip():
    from servopt.instances.layer_placement import LayerPlacementResult

    data = _data(CLUSTER24)
    inst = instance_from_dict(data)
    layout = layout_from_dict(inst, data["reference"]["helix_layout"])
    ev = evaluate_layout(inst, layout)
    res = LayerPlacementResult({"status": "feasible", "objective": ev.value}, layout, list(ev.flows), ev.routing_weights)
    frame = res.to_dataframe()
    assert len(frame) == 24
    assert frame[frame.start == 0].flow_tokens_per_s.sum() == pytest.approx(1289.5557702751735, rel=1e-9)
    out = res.to_dict()
    assert out["layers"]["ComputeNode-15"] == [0, 3]
    assert sum(w for w in out["routing_weights"]["source"].values()) == pytest.approx(1.0)
