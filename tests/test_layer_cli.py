"""layer_placement end to end through the CLI: validate, solve, check, import helix, demo rows."""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest

from servopt import jsonio


def _path(name) -> str:
    return str(resources.files("servopt.instances").joinpath("data", name))


def test_solve_then_check(run_cli, tmp_path):
    out = tmp_path / "result.json"
    code, stdout, err = run_cli("solve", _path("example_layer_placement.json"), "--time-limit", "30", "--out", out)
    assert code == 0, err
    assert "throughput" in stdout and "bound" in stdout and "gap" in stdout
    assert "ComputeNode-0" in stdout  # the layout table
    result = json.loads(out.read_text())
    jsonio.validate(result, "result_common")
    jsonio.validate(result, "layer_placement_result")
    assert result["status"] == "optimal"
    assert result["objective"] == pytest.approx(286.5874097546421, rel=1e-12)
    code, stdout, err = run_cli("check", _path("example_layer_placement.json"), out)
    assert code == 0 and stdout.startswith("ok"), (stdout, err)


def test_check_fails_on_a_tampered_result(run_cli, tmp_path):
    out = tmp_path / "result.json"
    assert run_cli("solve", _path("helix_a100x4_llama1_30b.json"), "--time-limit", "10", "--out", out)[0] == 0
    result = json.loads(out.read_text())
    result["objective"] *= 1.5
    out.write_text(json.dumps(result))
    code, stdout, _ = run_cli("check", _path("helix_a100x4_llama1_30b.json"), out)
    assert code == 2 and "violation" in stdout


def test_solve_json_and_helix_formulation(run_cli):
    code, stdout, err = run_cli("solve", _path("helix_a100x4_llama1_30b.json"), "--time-limit", "10", "--json",
                                "--formulation", "helix_capped")
    assert code == 0, err
    result = json.loads(stdout)
    assert result["formulation"] == "helix_capped"
    assert result["objective"] == pytest.approx(1044.533345056491, rel=1e-9)
    assert set(result["routing_weights"]["source"]) <= set(result["layers"])


def test_export_lp(run_cli, tmp_path):
    lp = tmp_path / "m.lp"
    code, _, err = run_cli("solve", _path("helix_a100x4_llama1_30b.json"), "--time-limit", "10", "--json", "--export", lp)
    assert code == 0, err
    assert "threshold" not in lp.read_text()[:200] and lp.stat().st_size > 1000


def _write_cluster10_ini(path: Path, data: dict) -> None:
    """Cluster10 as a Helix cluster file: complete graph, every link 1000 Mbps (Helix's ablation config)."""
    n = len(data["nodes"])
    lines = ["[NodeNames]", f"total_compute_nodes = {n}", "", "[SourceNode]", f"connected_nodes = {list(range(n))}", "",
             "[SinkNode]", f"connected_nodes = {list(range(n))}", ""]
    for i, node in enumerate(data["nodes"]):
        lines += [f"[ComputeNode-{i}]", f"type = {node['type']}",
                  f"connected_nodes = {[j for j in range(n) if j != i]}", ""]
    for i in range(n):
        lines += [f"[Link-source-{i}]", 'bandwidth = 1000 * mbps', 'latency = 1 * MilliSec', ""]
        lines += [f"[Link-{i}-sink]", 'bandwidth = 1000 * mbps', 'latency = 1 * MilliSec', ""]
        for j in range(i + 1, n):
            lines += [f"[Link-{i}-{j}]", 'bandwidth = 1000 * mbps', 'latency = 1 * MilliSec', ""]
    path.write_text("\n".join(lines))


def test_import_helix_reproduces_the_converted_cluster10(run_cli, tmp_path):
    data = json.loads(Path(_path("example_layer_placement.json")).read_text())
    ini = tmp_path / "cluster10.ini"
    _write_cluster10_ini(ini, data)
    table = {"num_layers": 60, "activation_bytes_per_token": 6656 * 2, "token_bytes": 2,
             "throughput_tokens_per_s": {n["type"]: n["throughput_tokens_per_s"] for n in data["nodes"]}}
    (tmp_path / "thr.json").write_text(json.dumps(table))
    out = tmp_path / "inst.json"
    code, stdout, err = run_cli("import", "helix", ini, tmp_path / "thr.json", "--out", out)
    assert code == 0, err
    got = json.loads(out.read_text())
    assert got["nodes"] == data["nodes"]
    want = {(l["from"], l["to"]): l["tokens_per_s"] for l in data["links"]}
    have = {(l["from"], l["to"]): l["tokens_per_s"] for l in got["links"]}
    assert have.keys() == want.keys()
    for key in want:
        assert have[key] == pytest.approx(want[key], rel=1e-12)
    # the CSV table and strict units: 8x smaller capacities
    rows = ["type,num_layers_held,tokens_per_s"] + [f"{t},{k + 1},{v}" for t, vals in table["throughput_tokens_per_s"].items()
                                                    for k, v in enumerate(vals)]
    (tmp_path / "thr.csv").write_text("\n".join(rows))
    out2 = tmp_path / "inst2.json"
    code, _, err = run_cli("import", "helix", ini, tmp_path / "thr.csv", "--out", out2, "--num-layers", "60",
                           "--activation-bytes", "13312", "--units", "strict")
    assert code == 0, err
    strict = {(l["from"], l["to"]): l["tokens_per_s"] for l in json.loads(out2.read_text())["links"]}
    assert strict[("ComputeNode-0", "ComputeNode-1")] == pytest.approx(want[("ComputeNode-0", "ComputeNode-1")] / 8)
    code, stdout, _ = run_cli("solve", out, "--time-limit", "30")
    assert code == 0 and "optimal" in stdout


def test_demo_rows():
    from servopt.kinds import layer_placement as kind

    rows = kind.demo(time_limit_s=20)
    assert rows[0]["status"] == "optimal"
    assert rows[0]["objective"] == pytest.approx(286.5874097546421, rel=1e-12)
    assert all(r["objective"] <= rows[0]["objective"] * (1 + 1e-9) for r in rows[1:])
