"""Serving simulation of a layout: hand-computed timings, weighted round-robin shares, the CLI path."""
from __future__ import annotations

import json
from importlib import resources

import pytest

from servopt.instances.layer_placement import Layout, instance_from_dict
from servopt.simulator.layer_pipeline import Workload, _SmoothWRR, simulate_layout
from servopt.solvers.maxflow import evaluate_layout


def _one_node(cap=1e12):
    return instance_from_dict({
        "kind": "layer_placement", "num_layers": 2,
        "nodes": [{"id": "a", "type": "unknown-gpu", "throughput_tokens_per_s": [100.0, 50.0]}],
        "links": [{"from": "source", "to": "a", "tokens_per_s": cap}, {"from": "a", "to": "sink", "tokens_per_s": cap}]})


def test_one_request_one_node_matches_hand_computation():
    inst = _one_node()
    lay = Layout({"a": (0, 2)})
    ev = evaluate_layout(inst, lay)
    res = simulate_layout(inst, lay, ev.routing_weights, workload=Workload(num_requests=1, prompt_tokens=10, output_tokens=3),
                          cost="throughput")
    # prefill: 1 ms in, 5 ms + 10 / T(2) = 205 ms on the node, 1 ms out -> TTFT 207 ms
    assert res.ttft_ms["mean"] == pytest.approx(207.0, abs=1e-6)
    # each decode step: 1 ms back to the first node, 1 ms in, 5 ms + 1 / 50 s = 25 ms, 1 ms out = 28 ms
    assert res.tpot_ms["mean"] == pytest.approx(28.0, abs=1e-6)
    assert res.completed == 1 and res.num_paths == 1 and res.mean_path_nodes == 1.0
    assert res.decode_throughput_tokens_per_s == pytest.approx(3 / 0.263, rel=1e-9)


def test_link_bandwidth_and_batching():
    # a 100 tokens/s link: the 10-token prompt needs 0.1 s on each of the two hops
    inst = _one_node(cap=100.0)
    lay = Layout({"a": (0, 2)})
    ev = evaluate_layout(inst, lay)
    one = simulate_layout(inst, lay, ev.routing_weights, workload=Workload(num_requests=1, prompt_tokens=10, output_tokens=2),
                          cost="throughput")
    assert one.ttft_ms["mean"] == pytest.approx(207.0 + 200.0, abs=1e-6)
    # two requests at once: the second prompt waits for the link, then both share iterations
    two = simulate_layout(inst, lay, ev.routing_weights, workload=Workload(num_requests=2, prompt_tokens=10, output_tokens=2),
                          cost="throughput")
    assert two.completed == 2 and two.ttft_ms["p99"] > one.ttft_ms["p99"]


def test_smooth_weighted_round_robin_interleaves_in_proportion():
    wrr = _SmoothWRR({"x": 0.75, "y": 0.25})
    picks = [wrr.pick() for _ in range(8)]
    assert picks.count("x") == 6 and picks.count("y") == 2
    assert "xxxx" not in "".join(picks)  # interleaved, not blocked


def test_routes_follow_the_flow_weights():
    inst = instance_from_dict({
        "kind": "layer_placement", "num_layers": 1,
        "nodes": [{"id": "a", "throughput_tokens_per_s": [30.0]}, {"id": "b", "throughput_tokens_per_s": [10.0]}],
        "links": [{"from": "source", "to": "a", "tokens_per_s": 1e9}, {"from": "source", "to": "b", "tokens_per_s": 1e9},
                  {"from": "a", "to": "sink", "tokens_per_s": 1e9}, {"from": "b", "to": "sink", "tokens_per_s": 1e9}]})
    lay = Layout({"a": (0, 1), "b": (0, 1)})
    ev = evaluate_layout(inst, lay)
    assert ev.routing_weights["source"] == pytest.approx({"a": 0.75, "b": 0.25})
    res = simulate_layout(inst, lay, ev.routing_weights, workload=Workload(num_requests=40, prompt_tokens=4, output_tokens=2),
                          cost="throughput")
    assert res.num_paths == 2 and res.completed == 40
    assert res.node_utilization["a"] > 0 and res.node_utilization["b"] > 0


def test_simulate_a_solved_result_through_the_cli(run_cli, tmp_path):
    src = str(resources.files("servopt.instances").joinpath("data", "helix_a100x4_llama1_30b.json"))
    out = tmp_path / "r.json"
    assert run_cli("solve", src, "--time-limit", "20", "--out", out)[0] == 0
    result = json.loads(out.read_text())
    assert result["instance"]["num_layers"] == 60 and result["pipeline_depth"] == 4
    code, stdout, err = run_cli("simulate", out, "--param", "num_requests=20", "--param", "output_tokens=4", "--json")
    assert code == 0, err
    sim = json.loads(stdout)
    assert sim["simulation"]["completed"] == 20 and sim["objective"] > 0
    assert sim["max_flow_tokens_per_s"] == pytest.approx(result["objective"], rel=1e-9)
    code, stdout, err = run_cli("simulate", src, "--policy", "reference", "--param", "num_requests=10",
                                "--param", "output_tokens=2", "--json")
    assert code == 0, err
    assert json.loads(stdout)["simulation"]["completed"] == 10
    code, _, err = run_cli("simulate", src, "--policy", "nonsense")
    assert code == 2 and "error: --policy" in err
