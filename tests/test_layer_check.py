"""The independent layer-placement checker catches every kind of violation, and passes good results."""
from __future__ import annotations

import copy
import json
from importlib import resources

import pytest
from hypothesis import given, settings, strategies as st

from servopt.analysis.layer_check import check, layout_max_flow
from servopt.instances.layer_placement import Layout, instance_from_dict
from servopt.solvers.maxflow import evaluate_layout

from layer_bruteforce import all_layouts, tiny_instance


def _data():
    ref = resources.files("servopt.instances").joinpath("data", "example_layer_placement.json")
    return json.loads(ref.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def solved():
    from servopt.kinds import layer_placement as kind

    inst = kind.load(_data())
    return inst, kind.solve(inst, time_limit_s=30, options={})


def test_solver_result_passes(solved):
    inst, result = solved
    assert check(inst, result) == []


def _mutate(result, fn):
    bad = copy.deepcopy(result)
    fn(bad)
    return bad


def _first_node(result):
    return sorted(result["layers"])[0]


CASES = {
    "range outside the model": (lambda r: r["layers"].__setitem__(_first_node(r), [55, 61]), "not inside"),
    "too many layers": (lambda r: r["layers"].__setitem__("ComputeNode-0", [0, 8]), "more than K"),
    "missing node": (lambda r: r["layers"].pop("ComputeNode-3"), "holds no layers"),
    "unknown node": (lambda r: r["layers"].__setitem__("ghost", [0, 1]), "unknown node"),
    "flow on an arc that does not abut": (
        lambda r: r["layers"].__setitem__("ComputeNode-1", [7, 13]), "ends at"),
    "flow above a node's throughput": (
        lambda r: [a.__setitem__("tokens_per_s", a["tokens_per_s"] * 2) for a in r["flows"]], "exceeds its throughput"),
    "conservation broken": (lambda r: r["flows"][0].__setitem__("tokens_per_s", r["flows"][0]["tokens_per_s"] / 2), "!="),
    "flow on a link that does not exist": (
        lambda r: r["flows"].append({"from": "sink", "to": "source", "tokens_per_s": 1.0}), "no link"),
    "objective misreported": (lambda r: r.__setitem__("objective", r["objective"] + 1.0), "objective"),
    "bound below objective": (lambda r: r.__setitem__("bound", r["objective"] / 2), "bound"),
    "routing weights wrong": (
        lambda r: r["routing_weights"]["source"].__setitem__(next(iter(r["routing_weights"]["source"])), 0.5), "routing_weights"),
    "negative flow": (lambda r: r["flows"][0].__setitem__("tokens_per_s", -5.0), ">= 0"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_checker_catches(solved, case):
    inst, result = solved
    fn, needle = CASES[case]
    violations = check(inst, _mutate(result, fn))
    assert violations, case
    assert any(needle in v for v in violations), violations


def test_checker_rejects_a_feasible_but_not_maximum_flow(solved):
    inst, result = solved
    # scale every flow down: feasible, conserved, but not the layout's max flow
    bad = _mutate(result, lambda r: [a.__setitem__("tokens_per_s", a["tokens_per_s"] / 2) for a in r["flows"]])
    bad["objective"] = result["objective"] / 2
    violations = check(inst, bad)
    assert any("not the max flow" in v for v in violations), violations


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), pick=st.integers(0, 10_000))
def test_networkx_and_checker_max_flow_agree(seed, pick):
    inst = instance_from_dict(tiny_instance(seed, num_nodes=3, num_layers=4, binding=seed % 2 == 0, missing=seed % 3 == 0,
                                            integer=False))
    layouts = list(all_layouts(inst))
    ranges = layouts[pick % len(layouts)]
    assert evaluate_layout(inst, Layout(ranges)).value == pytest.approx(layout_max_flow(inst, ranges), rel=1e-9, abs=1e-9)
