"""Figures: each plot draws what it claims (checked on the artists), and ``servopt plot`` writes an image
for every result kind, with a generic figure for kinds without their own."""
from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from servopt.analysis import plots  # noqa: E402
from servopt.instances.kv_schedule import KVScheduleInstance  # noqa: E402

INSTANCE = {"kind": "kv_schedule", "memory_tokens": 10, "requests": [
    {"id": "a", "arrival": 0, "prompt_tokens": 2, "output_tokens": 3},
    {"id": "b", "arrival": 0, "prompt_tokens": 2, "output_tokens": 2},
    {"id": "c", "arrival": 1, "prompt_tokens": 3, "output_tokens": 4}]}


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _png_ok(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000


def test_gantt_memory_curve_matches_the_checker():
    from servopt.analysis.kv_check import memory_profile
    from servopt.kinds import kv_schedule as kind

    inst = kind.load(INSTANCE)
    result = kind.simulate(inst, policy="fcfs")
    fig = plots.kv_gantt(result, inst)
    gantt, mem = fig.axes
    assert len(gantt.collections) == 3  # one bar per request
    line = mem.get_lines()[0]
    load = memory_profile(inst, result["requests"])
    drawn = dict(zip(line.get_xdata(), line.get_ydata()))
    assert all(drawn[t] == v for t, v in load.items())
    assert mem.get_lines()[1].get_ydata()[0] == 10  # the line at M


def test_gantt_draws_preempted_attempts_hatched():
    inst = KVScheduleInstance.from_dict(INSTANCE)
    result = {"kind": "kv_schedule", "objective": 1.0, "requests": [
        {"id": "a", "start": 3, "finish": 6, "attempts": [{"start": 0, "preempted_at": 2}]},
        {"id": "b", "start": 0, "finish": 2, "attempts": []}, {"id": "c", "start": 6, "finish": 10, "attempts": []}]}
    fig = plots.kv_gantt(result, inst)
    hatched = [c for c in fig.axes[0].collections if c.get_hatch()]
    assert len(hatched) == 1


def test_ratio_histograms_one_panel_per_policy_every_series_shown():
    frame = pd.DataFrame([
        {"policy": p, "cost": 10, "ratio_lo": r, "ratio_hi": r if proven else r + 0.2, "proven": proven}
        for p in ("mc-sf", "fcfs", "sjf", "vllm") for r, proven in ((1.0, True), (1.1, True), (1.3, False))])
    fig = plots.ratio_histograms(frame)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 4
    for ax in visible:
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert any(lbl.startswith("proven (2)") for lbl in labels) and any("unproven" in lbl for lbl in labels)


def test_pd_fleet_and_layer_diagram():
    pd_result = {"kind": "pd_placement", "objective": 6.7, "objective_name": "cost_usd_per_hour", "status": "optimal",
                 "counts": {"a10g": {"prefill": 1}, "a100": {"decode": 2}},
                 "assignment": [{"bucket": "short", "gpu": "a10g", "role": "prefill", "rate_rps": 6.0},
                                {"bucket": "short", "gpu": "a100", "role": "decode", "rate_rps": 6.0},
                                {"bucket": "long", "gpu": "a100", "role": "decode", "rate_rps": 2.0}]}
    fig = plots.plot_result(pd_result)
    fleet, assign = fig.axes
    assert sorted(p.get_height() for p in fleet.patches if p.get_height()) == [1, 2]
    assert len(assign.get_legend().get_texts()) == 2
    layer = {"kind": "layer_placement", "status": "optimal", "objective": 100.0, "num_layers": 10,
             "layers": {"n0": [0, 4], "n1": [4, 10]}}
    fig = plots.plot_result(layer)
    assert len(fig.axes[0].collections) == 2 and fig.axes[0].get_xlim() == (0, 10)


def test_generic_fallback_for_unknown_kinds():
    fig = plots.plot_result({"kind": "eviction", "status": "optimal", "objective": 12.0, "bound": 11.0,
                             "rows": [{"policy": "lru", "cost": 15.0}, {"policy": "lfu", "cost": 14.0}]})
    assert len(fig.axes[0].patches) == 4


RESULTS = {  # the layer_placement solve takes seconds: its figure is covered by test_pd_fleet_and_layer_diagram
    "pd": ("solve", "example_pd_melange.json"),
    "kv": ("simulate", "example_kv_schedule.json"),
}


@pytest.mark.parametrize("name", sorted(RESULTS))
def test_cli_plot_every_kind(name, run_cli, tmp_path):
    from importlib import resources

    verb, example = RESULTS[name]
    src = tmp_path / example
    src.write_text(resources.files("servopt.instances").joinpath("data", example).read_text())
    result = tmp_path / "result.json"
    extra = ["--policy", "fcfs"] if verb == "simulate" else ["--time-limit", "60"]
    code, _, err = run_cli(verb, src, *extra, "--out", result)
    assert code == 0, err
    png = tmp_path / "figure.png"
    args = ["--instance", src] if name == "kv" else []
    code, out, err = run_cli("plot", result, "--out", png, *args)
    assert code == 0, err
    _png_ok(png)


def test_cli_plot_compare_sweep_and_generic(run_cli, tmp_path):
    (tmp_path / "inst.json").write_text(json.dumps(INSTANCE))
    code, _, err = run_cli("compare", tmp_path / "inst.json", "--policies", "mc-sf,fcfs", "--formulation",
                           "branch-and-bound", "--out", tmp_path / "cmp.json")
    assert code == 0, err
    for src in ("cmp.json", "other.json"):
        if src == "other.json":
            (tmp_path / src).write_text(json.dumps({"kind": "routing", "status": "feasible", "objective": 3.5}))
        code, _, err = run_cli("plot", tmp_path / src, "--out", tmp_path / f"{src}.png")
        assert code == 0, err
        _png_ok(tmp_path / f"{src}.png")
    frame = pd.DataFrame([{"policy": "mc-sf", "cost": 1, "ratio_lo": 1.0, "ratio_hi": 1.0, "proven": True}])
    (tmp_path / "sweep").mkdir()
    frame.to_csv(tmp_path / "sweep" / "results.csv", index=False)
    code, _, err = run_cli("plot", tmp_path / "sweep", "--out", tmp_path / "hist.svg")
    assert code == 0, err
    assert (tmp_path / "hist.svg").read_text().lstrip().startswith("<?xml")


@pytest.mark.parametrize("args, field", [
    (["missing.json", "--out", "x.png"], "result"),
    (["{tmp}/r.json", "--out", "x.gif"], "--out"),
    (["{tmp}/nokind.json", "--out", "{tmp}/x.png"], "result"),
])
def test_cli_plot_bad_input_one_line(args, field, run_cli, tmp_path):
    (tmp_path / "r.json").write_text(json.dumps({"kind": "kv_schedule", "requests": []}))
    (tmp_path / "nokind.json").write_text(json.dumps([1, 2]))
    code, _, err = run_cli("plot", *[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert code == 2 and err.strip().startswith(f"error: {field}:") and len(err.strip().splitlines()) == 1
