"""servopt sweep: the grid, the per-cell cache and resume, the process pool, the ratio intervals, the CLI."""
from __future__ import annotations

import io
import json

import pandas as pd
import pytest

from servopt.analysis import sweep as sw
from servopt.errors import InputError

TINY = {"name": "tiny", "kind": "kv_schedule", "family": "synthetic",
        "params": {"arrival_model": ["all_at_zero", "poisson_fixed_n"], "memory_tokens": 12},
        "sizes": [3, 4], "seeds": 2, "methods": ["branch-and-bound"], "policies": ["mc-sf", "fcfs", "sjf"],
        "time_limit_s": 60, "rel_gap": 0.0}


def _numbers(frame: pd.DataFrame) -> pd.DataFrame:
    """Everything but the timings, which differ from run to run."""
    return frame.drop(columns=[c for c in sw.TIMING_COLUMNS if c in frame.columns]).reset_index(drop=True)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    result = sw.run_sweep(sw.load_config(TINY), out, progress=False)
    return out, result


def test_grid_rows_and_files(tiny_run):
    out, result = tiny_run
    frame = pd.read_csv(out / "results.csv")
    assert result.cells_total == 2 * 2 * 2  # arrival models x sizes x seeds
    assert len(frame) == 8 * 3  # one row per cell and policy
    assert set(frame["policy"]) == {"mc-sf", "fcfs", "sjf"}
    assert frame["proven"].all() and (frame["opt_status"] == "optimal").all()
    assert (frame["ratio_lo"] == frame["ratio_hi"]).all()  # proven: the interval is a point
    assert len(list((out / "cells").glob("*.json"))) == 8
    summary = json.loads((out / "summary.json").read_text())
    assert summary["instances"] == 8 and summary["instances_proven"] == 8 and summary["violations"] == []


def test_optima_equal_brute_force(tiny_run):
    """The sweep's optimum of every tiny instance is the brute-force optimum (exact equality)."""
    from kv_bruteforce import brute_force_optimum

    from servopt.instances.kv_schedule import KVScheduleInstance

    out, _ = tiny_run
    for f in (out / "cells").glob("*.json"):
        cell = json.loads(f.read_text())
        best, _ = brute_force_optimum(KVScheduleInstance.from_dict(cell["instance"]))
        assert cell["optimum"]["incumbent"] == best == cell["optimum"]["bound"]


def test_no_policy_beats_the_optimum_and_costs_are_rechecked(tiny_run):
    from servopt.analysis.kv_check import check_result
    from servopt.instances.kv_schedule import KVScheduleInstance
    from servopt.simulator.kv_rounds import simulate_rounds

    out, result = tiny_run
    frame = result.to_dataframe()
    assert (frame["ratio_lo"] >= 1 - 1e-12).all()
    cells = {json.loads(f.read_text())["key"]: json.loads(f.read_text()) for f in (out / "cells").glob("*.json")}
    for row in frame.to_dict("records"):
        inst = KVScheduleInstance.from_dict(cells[row["key"]]["instance"])
        sched = simulate_rounds(inst, row["policy"])
        assert check_result(inst, {"objective": row["cost"], **sched.to_dict()}) == []
        assert row["cost"] == sched.objective_value(inst)


def test_resume_runs_only_missing_cells(tiny_run, tmp_path, monkeypatch):
    out, first = tiny_run
    copy = tmp_path / "copy"
    (copy / "cells").mkdir(parents=True)
    files = sorted((out / "cells").glob("*.json"))
    for f in files[:5]:
        (copy / "cells" / f.name).write_text(f.read_text())
    ran = []
    real = sw.run_cell
    monkeypatch.setattr(sw, "run_cell", lambda cell: ran.append(cell) or real(cell))
    again = sw.run_sweep(sw.load_config(TINY), copy, progress=False)
    assert len(ran) == 3 and again.cells_cached == 5 and again.cells_run == 3
    pd.testing.assert_frame_equal(_numbers(again.to_dataframe()), _numbers(first.to_dataframe()))


def test_interrupted_sweep_resumes(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = sw.run_cell

    def flaky(cell):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(cell)

    monkeypatch.setattr(sw, "run_cell", flaky)
    with pytest.raises(KeyboardInterrupt):
        sw.run_sweep(sw.load_config(TINY), tmp_path, progress=False)
    assert len(list((tmp_path / "cells").glob("*.json"))) == 3  # finished cells were kept
    monkeypatch.setattr(sw, "run_cell", real)
    resumed = sw.run_sweep(sw.load_config(TINY), tmp_path, progress=False)
    assert resumed.cells_cached == 3 and resumed.cells_run == 5
    assert len(resumed.rows) == 24


def test_process_pool_gives_the_same_numbers(tiny_run, tmp_path):
    _, first = tiny_run
    pooled = sw.run_sweep(sw.load_config(TINY), tmp_path, workers=2, progress=False)
    assert pooled.runner == "process pool"
    pd.testing.assert_frame_equal(_numbers(pooled.to_dataframe()), _numbers(first.to_dataframe()))


def test_failed_cell_is_reported_not_cached(tmp_path):
    config = sw.load_config({**TINY, "params": {"arrival_model": "all_at_zero", "memory_tokens": 3,
                                                "prompt_tokens": 3}, "sizes": [3], "seeds": 1})
    result = sw.run_sweep(config, tmp_path, progress=False)
    assert len(result.errors) == 1 and "prompt_tokens" in result.errors[0]["error"]
    assert not list((tmp_path / "cells").glob("*.json"))
    assert json.loads((tmp_path / "summary.json").read_text())["cells_failed"] == 1


def test_progress_bar_shows_eta():
    stream = io.StringIO()
    bar = sw.Progress(4, 1, "sweep x", stream=stream)
    bar.step()
    bar.step()
    bar.step()
    text = stream.getvalue()
    assert "4/4 cells (1 cached)" in text and "ETA" in text


def test_instances_do_not_depend_on_the_rest_of_the_grid():
    small = sw.load_config({**TINY, "sizes": [4]}).cells()
    big = sw.load_config(TINY).cells()
    keys = {sw.cell_key(c) for c in big}
    assert all(sw.cell_key(c) in keys for c in small)
    for c in small[:2]:
        twin = next(b for b in big if sw.cell_key(b) == sw.cell_key(c))
        assert sw.make_instance(c) == sw.make_instance(twin)


@pytest.mark.parametrize("patch, field", [
    ({"family": "nope"}, "family"),
    ({"sizes": [0]}, "sizes[0]"),
    ({"seeds": 0}, "seeds"),
    ({"policies": ["mc-sff"]}, "policies[0]"),
    ({"methods": ["simplex"]}, "methods[0]"),
    ({"time_limit_s": -1}, "time_limit_s"),
    ({"rel_gap": 1.5}, "rel_gap"),
    ({"polices": ["fcfs"]}, "polices"),
    ({"params": {"arrival_model": "poisson"}, "sizes": [5]}, "sizes"),
])
def test_bad_config_names_the_field(patch, field):
    with pytest.raises(InputError) as err:
        sw.load_config({**TINY, **patch})
    assert err.value.field == field


def test_shipped_configs_load():
    names = sw.shipped_configs()
    assert {"smoke", "paper_n11_12", "paper_study", "adversarial_arrivals"} <= set(names)
    for name in names:
        sw.read_config(name).cells()
    big = sw.read_config("paper_n11_12")
    assert len(big.cells()) == 1000 and len(big.policies) == 3 and set(big.sizes) == {11, 12}


def test_cli_sweep_json(run_cli, tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**TINY, "sizes": [3], "seeds": 1}))
    code, out, err = run_cli("sweep", path, "--out", tmp_path / "run", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["kind"] == "sweep" and summary["instances"] == 2 and summary["cells_run"] == 2
    assert "ETA" in err  # the progress bar goes to stderr
    code, out, err = run_cli("sweep", path, "--out", tmp_path / "run", "--json", "--no-progress")
    assert code == 0 and json.loads(out)["cells_cached"] == 2 and err == ""


def test_sweep_over_instance_files(tmp_path):
    """A sweep of given instance files of another kind goes through the kind's own solve."""
    from importlib import resources

    src = resources.files("servopt.instances").joinpath("data", "example_pd_melange.json")
    path = tmp_path / "pd.json"
    path.write_text(src.read_text())
    config = sw.load_config({"name": "files", "kind": "pd_placement", "instances": [str(path)], "time_limit_s": 60})
    result = sw.run_sweep(config, tmp_path / "run", progress=False)
    assert not result.errors and len(result.rows) == 1
    assert result.rows[0]["opt_status"] == "optimal" and result.rows[0]["incumbent"] > 0
