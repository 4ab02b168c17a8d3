"""``servopt sweep --ray``: the same cells as Ray tasks on a local Ray with 2 CPUs give the local pool's numbers."""
from __future__ import annotations

import pandas as pd

from servopt.analysis import sweep as sw

CONFIG = {"name": "ray-small", "kind": "kv_schedule", "family": "synthetic",
          "params": {"arrival_model": ["all_at_zero", "poisson_fixed_n"], "memory_tokens": 16},
          "sizes": [4, 5], "seeds": 1, "methods": ["branch-and-bound"], "policies": ["mc-sf", "fcfs", "vllm"],
          "time_limit_s": 60, "rel_gap": 0.0}


def _numbers(frame):
    return frame.drop(columns=[c for c in sw.TIMING_COLUMNS if c in frame.columns]).reset_index(drop=True)


def test_ray_sweep_equals_process_pool(tmp_path, run_cli):
    import ray

    config = sw.load_config(CONFIG)
    pooled = sw.run_sweep(config, tmp_path / "pool", workers=2, progress=False)
    assert ray.is_initialized() is False
    # through the CLI: --ray without an address starts a local Ray with --workers CPUs and stops it after
    code, out, err = run_cli("sweep", _write(tmp_path), "--out", tmp_path / "ray", "--workers", "2", "--ray", "--no-progress")
    assert code == 0, err
    assert ray.is_initialized() is False
    on_ray = pd.read_csv(tmp_path / "ray" / "results.csv")
    local = pd.read_csv(tmp_path / "pool" / "results.csv")
    assert len(on_ray) == len(pooled.rows) == 4 * 3
    assert on_ray["proven"].all()
    pd.testing.assert_frame_equal(_numbers(on_ray), _numbers(local))


def _write(tmp_path):
    import json

    path = tmp_path / "config.json"
    path.write_text(json.dumps(CONFIG))
    return path
