"""Sweeps: a grid of (instance family or instance file, size, seed, method) x policies, run locally or on Ray.

A *cell* is one instance and one method for the offline optimum; the cell solves the optimum once,
with the cell's whole time limit, and runs every policy of the sweep against it (for
``kv_schedule`` as analysis/compare.py does: the policies' schedules re-checked by the independent
checker, the interval ``[ALG/incumbent, ALG/bound]``). Each cell gives one row per policy in ``DIR/results.csv`` (and ``results.parquet``
where pyarrow is installed); ``DIR/summary.json`` holds the ratio table and the check against the
proven constants (analysis/ratios.py).

*Cache and resume.* A cell is a plain dict of everything its numbers depend on (family, its
parameters, size, seed, method, policies, time limit, gap); its key is a hash of that dict and its
outcome is written to ``DIR/cells/<key>.json`` as soon as it finishes (written to a temporary file
and renamed, so an interrupted write leaves nothing half-read). Running the same sweep again only
runs the cells without a file; a cell that raised is reported and not cached, so a rerun retries it.

*Where cells run.* ``workers = 1``: in this process; ``workers > 1``: a local process pool (spawned
processes); ``ray``: each cell is a Ray task (``ray.init(address)``, or a local Ray with ``workers``
CPUs started for the sweep and stopped after it). A cell is a pure function of its dict, so every
route gives the same numbers wherever the optimum is proven (a time-limited, unproven optimum
depends on how much CPU the search got; the ``*_seconds`` columns always differ).

*Instances.* A cell's instance is drawn from ``numpy.random.default_rng([seed, n, crc32(params),
k])`` (``seed`` the sweep's master seed, ``k`` the cell's seed), so adding a size or a family to a
config does not change the instances of the others. Families (``kv_schedule``):

* ``synthetic``: the paper's synthetic family, instances/kv_generators.py (``n`` = size; ``params``
  override its draws, e.g. ``arrival_model``, ``memory_tokens``; ``size: null`` keeps the paper's
  own n ~ U{40..60}; arrival model ``poisson`` draws n itself and takes no size);
* ``trace``: trace-driven instances (kv_generators.trace, n = size);
* ``adversarial_arrivals``: the deterministic family of analysis/adversarial.py (n = size).

``instances: [FILE, ...]`` instead of a family sweeps given instance files of any kind: the kind's
``solve`` (and ``compare``, where the kind has one, for the policies).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from servopt.errors import InputError

CELL_VERSION = 1  # bump when a cell's numbers would change for the same dict (invalidates caches)
FAMILIES = ("synthetic", "trace", "adversarial_arrivals")
CONFIG_KEYS = {"name", "description", "kind", "family", "instances", "params", "sizes", "seeds", "methods", "method",
               "policies", "policy_params", "time_limit_s", "rel_gap", "seed"}
TIMING_COLUMNS = ("solve_seconds", "policy_seconds", "cell_seconds")
COLUMNS = ("key", "family", "arrival_model", "params", "n", "requests", "seed", "method", "instance_name", "memory_tokens",
           "policy", "cost", "policy_status", "preemptions", "opt_status", "incumbent", "bound", "bound_source",
           "gap", "proven", "ratio_lo", "ratio_hi", "all_at_zero", "identical_prompts", "exact_predictions",
           "large_memory", "violations", "solve_seconds", "policy_seconds")


@dataclass(frozen=True)
class SweepConfig:
    """A sweep as read from its JSON file (fields as in docs/analysis.md)."""

    name: str
    kind: str
    family: str | None
    params: dict
    sizes: tuple
    seeds: tuple[int, ...]
    methods: tuple[str, ...]
    policies: tuple[str, ...]
    time_limit_s: float
    rel_gap: float = 0.0
    seed: int = 0
    policy_params: dict = field(default_factory=dict)
    instances: tuple[str, ...] = ()

    def cells(self) -> list[dict]:
        """Every cell of the grid, in a fixed order (the order of results.csv)."""
        base = {"v": CELL_VERSION, "kind": self.kind, "policies": list(self.policies),
                "policy_params": self.policy_params, "time_limit_s": self.time_limit_s, "rel_gap": self.rel_gap}
        out = []
        if self.instances:
            for path in self.instances:
                digest = hashlib.sha1(Path(path).read_bytes()).hexdigest()
                for method in self.methods:
                    out.append({**base, "instance_file": str(Path(path).resolve()), "instance_sha1": digest,
                                "method": method})
            return out
        for params in _grid(self.params):
            for n in self.sizes:
                for k in self.seeds:
                    for method in self.methods:
                        out.append({**base, "family": self.family, "params": params, "n": n, "seed": k,
                                    "master_seed": self.seed, "method": method})
        return out


def _grid(params: dict) -> list[dict]:
    """The cartesian product over the list-valued parameters (scalars are fixed)."""
    combos = [{}]
    for key in sorted(params):
        values = params[key] if isinstance(params[key], list) else [params[key]]
        combos = [{**c, key: v} for c in combos for v in values]
    return combos


def _list(data, key, default=None):
    value = data.get(key, default)
    if value is None:
        return None
    return value if isinstance(value, list) else [value]


def load_config(data: dict, *, base_dir: str | os.PathLike | None = None) -> SweepConfig:
    """Validate a sweep config dict; ``InputError(field, why)`` on anything wrong."""
    if not isinstance(data, dict):
        raise InputError("(top level)", "a sweep config must be a JSON object")
    unknown = sorted(set(data) - CONFIG_KEYS)
    if unknown:
        import difflib

        hint = difflib.get_close_matches(unknown[0], sorted(CONFIG_KEYS), n=1)
        raise InputError(unknown[0], "not a sweep config field" + (f" (did you mean '{hint[0]}'?)" if hint else ""))
    name = data.get("name", "sweep")
    kind = data.get("kind", "kv_schedule")
    if not isinstance(kind, str):
        raise InputError("kind", "must be a string")
    instances = _list(data, "instances")
    family = data.get("family")
    if instances:
        if family is not None:
            raise InputError("family", "give either 'family' or 'instances', not both")
        paths = []
        for i, p in enumerate(instances):
            if not isinstance(p, str):
                raise InputError(f"instances[{i}]", "must be a file path")
            path = Path(p) if Path(p).is_absolute() or base_dir is None else Path(base_dir) / p
            if not path.is_file():
                raise InputError(f"instances[{i}]", f"no such file: {p}")
            paths.append(str(path))
        instances = tuple(paths)
    else:
        if kind != "kv_schedule":
            raise InputError("family", f"instance families are kv_schedule generators; for kind '{kind}' list 'instances'")
        if family not in FAMILIES:
            raise InputError("family", f"must be one of {', '.join(FAMILIES)} (or give 'instances'); got {family!r}")
        instances = ()
    params = data.get("params", {})
    if not isinstance(params, dict):
        raise InputError("params", "must be an object of generator keyword arguments (lists make a grid)")
    sizes = _list(data, "sizes", [None])
    for i, s in enumerate(sizes):
        if s is not None and (isinstance(s, bool) or not isinstance(s, int) or s < 1):
            raise InputError(f"sizes[{i}]", f"must be a positive integer or null (the family's own size), got {s!r}")
    seeds = data.get("seeds", 1)
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if seeds < 1:
            raise InputError("seeds", "a count of seeds must be at least 1")
        seeds = list(range(seeds))
    elif isinstance(seeds, dict):
        try:
            seeds = list(range(int(seeds.get("start", 0)), int(seeds.get("start", 0)) + int(seeds["count"])))
        except (KeyError, TypeError, ValueError):
            raise InputError("seeds", "an object of seeds needs integer 'count' (and optional 'start')") from None
    if not isinstance(seeds, list) or not seeds or not all(isinstance(k, int) and not isinstance(k, bool) for k in seeds):
        raise InputError("seeds", "must be a count, a list of integers or {start, count}")
    methods = _list(data, "methods", None) or _list(data, "method", ["default"])
    if not all(isinstance(m, str) and m for m in methods):
        raise InputError("methods", "must be method (formulation) names")
    policies = _list(data, "policies", [])
    if not all(isinstance(p, str) and p for p in policies):
        raise InputError("policies", "must be policy names")
    if kind == "kv_schedule":
        from servopt.simulator.kv_rounds import policy_module

        for i, p in enumerate(policies):
            try:
                policy_module(p)
            except InputError as exc:
                raise InputError(f"policies[{i}]", exc.message) from None
        from servopt.analysis.kv_optimum import formulations

        known = formulations()
        for i, m in enumerate(methods):
            if m != "default" and m not in known:
                raise InputError(f"methods[{i}]", f"unknown kv_schedule method '{m}'; known: default, {', '.join(known)}")
    time_limit = data.get("time_limit_s", 60.0)
    if isinstance(time_limit, bool) or not isinstance(time_limit, (int, float)) or not time_limit > 0:
        raise InputError("time_limit_s", f"must be a positive number of seconds, got {time_limit!r}")
    rel_gap = data.get("rel_gap", 0.0)
    if isinstance(rel_gap, bool) or not isinstance(rel_gap, (int, float)) or not 0 <= rel_gap < 1:
        raise InputError("rel_gap", f"must be in [0, 1), got {rel_gap!r}")
    seed = data.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InputError("seed", "must be an integer")
    policy_params = data.get("policy_params", {})
    if not isinstance(policy_params, dict):
        raise InputError("policy_params", "must map a policy name to its parameters")
    models = params.get("arrival_model") if isinstance(params.get("arrival_model"), list) else [params.get("arrival_model")]
    if family == "synthetic" and "poisson" in models and any(s is not None for s in sizes):
        raise InputError("sizes", "arrival model 'poisson' draws n from its rate and horizon: use size null, "
                                  "or arrival model 'poisson_fixed_n' for a fixed n")
    return SweepConfig(str(name), kind, family, params, tuple(sizes), tuple(seeds), tuple(methods), tuple(policies),
                       float(time_limit), float(rel_gap), int(seed), policy_params, instances)


def read_config(path_or_name: str) -> SweepConfig:
    """A config file, or the name of a shipped one (``instances/data/sweeps/<name>.json``)."""
    from servopt import jsonio

    path = Path(path_or_name)
    if path.is_file():
        return load_config(jsonio.read_json(str(path)), base_dir=path.parent)
    shipped = shipped_configs()
    if path_or_name in shipped:
        from importlib import resources

        ref = resources.files("servopt.instances").joinpath("data", "sweeps", f"{path_or_name}.json")
        return load_config(json.loads(ref.read_text(encoding="utf-8")))
    raise InputError("config", f"no such file and no shipped sweep '{path_or_name}' (shipped: {', '.join(shipped)})")


def shipped_configs() -> list[str]:
    from importlib import resources

    folder = resources.files("servopt.instances").joinpath("data", "sweeps")
    try:
        return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))
    except (FileNotFoundError, NotADirectoryError):
        return []


def cell_key(cell: dict) -> str:
    return hashlib.sha1(json.dumps(cell, sort_keys=True).encode()).hexdigest()[:20]


# ---- one cell ---------------------------------------------------------------------------------------

def make_instance(cell: dict) -> dict:
    """The instance JSON of a family cell (module docstring, *Instances*)."""
    import numpy as np

    params = dict(cell["params"])
    n = cell["n"]
    tag = zlib.crc32(json.dumps(params, sort_keys=True).encode())
    rng = np.random.default_rng([int(cell["master_seed"]), int(n or 0), tag, int(cell["seed"])])
    label = ",".join(f"{k}={v}" for k, v in sorted(params.items()))
    name = f"{cell['family']}[{label}]-n{n if n is not None else 'paper'}-s{cell['seed']}"
    if cell["family"] == "synthetic":
        from servopt.instances.kv_generators import synthetic

        return synthetic(rng, n=n, name=name, **params)
    if cell["family"] == "trace":
        from servopt.instances.kv_generators import trace

        return trace(rng, **({"n": n} if n is not None else {}), name=name, **params)
    if cell["family"] == "adversarial_arrivals":
        from servopt.analysis.adversarial import adversarial_arrivals

        if n is None:
            raise InputError("sizes", "family adversarial_arrivals needs a size n")
        return adversarial_arrivals(n, name=name, **params)
    raise InputError("family", f"unknown family {cell['family']!r}")


def _kv_rows(cell: dict, data: dict) -> tuple[list[dict], dict]:
    """The optimum with the cell's whole time limit, then every policy against it (as analysis/compare.py,
    but a policy is never cut short by the optimum's time: a policy takes milliseconds, and a sweep wants
    its cost on every instance)."""
    from servopt.analysis.kv_check import check_result
    from servopt.analysis.kv_optimum import formulations, solve_optimum
    from servopt.analysis.ratios import instance_setting
    from servopt.kinds import kv_schedule as kind
    from servopt.simulator.kv_rounds import PolicyLivelock, policy_module, simulate_rounds

    instance = kind.load(data)
    method = cell["method"]
    if method == "default":  # what servopt solve and compare use by default
        method = "auto" if "auto" in formulations() else "time-indexed"
    opt = solve_optimum(instance, time_limit_s=float(cell["time_limit_s"]), rel_gap=float(cell["rel_gap"]),
                        formulation=method)
    proven = opt.status == "optimal" and opt.bound is not None and opt.objective is not None \
        and opt.bound >= opt.objective - 1e-9
    common = {"instance_name": instance.name, "memory_tokens": instance.memory_tokens, "opt_status": opt.status,
              "incumbent": opt.objective, "bound": opt.bound, "bound_source": opt.bound_source, "gap": opt.gap,
              "proven": bool(proven), "solve_seconds": round(opt.solve_seconds, 4), **instance_setting(instance),
              "method": method}
    params = cell.get("policy_params") or {}
    rows = []
    for name in cell["policies"]:
        t0 = time.perf_counter()
        canonical = policy_module(name).NAME
        row = {**common, "policy": canonical, "cost": None, "policy_status": "livelock", "preemptions": None,
               "ratio_lo": None, "ratio_hi": None, "violations": ""}
        try:
            sched = simulate_rounds(instance, name, **params.get(name, params.get(canonical, {})))
        except PolicyLivelock:
            rows.append({**row, "policy_seconds": round(time.perf_counter() - t0, 4)})
            continue
        cost = sched.objective_value(instance)
        violations = check_result(instance, {"objective": cost, **sched.to_dict()})
        if opt.bound is not None and cost < opt.bound - 1e-6 * max(1.0, abs(cost)):
            violations.append(f"cost {cost:g} is below the lower bound {opt.bound:g}: a bug in the bound or the policy")
        rows.append({**row, "cost": cost, "policy_status": "ok" if not violations else "invalid",
                     "preemptions": sched.preemptions,
                     "ratio_lo": cost / opt.objective if opt.objective else None,
                     "ratio_hi": cost / opt.bound if opt.bound else None,
                     "violations": "; ".join(violations), "policy_seconds": round(time.perf_counter() - t0, 4)})
    if not rows:  # no policies: one row for the optimum alone
        rows.append({**common, "policy": "", "cost": None, "policy_status": None, "preemptions": None,
                     "ratio_lo": None, "ratio_hi": None, "violations": "", "policy_seconds": None})
    return rows, {"incumbent": opt.objective, "bound": opt.bound, "status": opt.status}


def _generic_rows(cell: dict, data: dict) -> tuple[list[dict], dict]:
    from servopt import kinds

    module, instance = kinds.load_instance(data)
    options = {"rel_gap": cell["rel_gap"], **({} if cell["method"] == "default" else {"formulation": cell["method"]})}
    common = {"instance_name": data.get("name") or Path(cell["instance_file"]).stem}
    if cell["policies"] and hasattr(module, "compare"):
        res = module.compare(instance, policies=list(cell["policies"]), time_limit_s=float(cell["time_limit_s"]),
                             options=options)
        inc, bnd = res.get("incumbent"), res.get("bound")
        status = res.get("optimum_status", res.get("status"))
        rows = [{**common, "policy": r.get("policy"), "cost": r.get("cost"), "policy_status": r.get("status"),
                 "ratio_lo": r.get("ratio_to_incumbent"), "ratio_hi": r.get("ratio_to_bound"),
                 "incumbent": inc, "bound": bnd, "opt_status": status, "gap": res.get("gap"),
                 "proven": status == "optimal", "solve_seconds": res.get("solve_seconds")} for r in res.get("rows", [])]
        return rows, {"incumbent": inc, "bound": bnd, "status": status}
    res = module.solve(instance, time_limit_s=float(cell["time_limit_s"]), options=options)
    row = {**common, "policy": "", "opt_status": res.get("status"), "incumbent": res.get("objective"),
           "bound": res.get("bound"), "gap": res.get("gap"), "proven": res.get("status") == "optimal",
           "solve_seconds": res.get("solve_seconds")}
    return [row], {"incumbent": res.get("objective"), "bound": res.get("bound"), "status": res.get("status")}


def run_cell(cell: dict) -> dict:
    """Solve one cell; a plain, picklable dict (``rows`` per policy), or ``error`` with the reason."""
    t0, cpu0 = time.perf_counter(), time.process_time()
    key = cell_key(cell)
    try:
        if "instance_file" in cell:
            data = json.loads(Path(cell["instance_file"]).read_text())
            rows, optimum = _generic_rows(cell, data)
            family, params, n, seed = Path(cell["instance_file"]).stem, {}, None, None
        else:
            data = make_instance(cell)
            rows, optimum = _kv_rows(cell, data)
            family, params, n, seed = cell["family"], cell["params"], cell["n"], cell["seed"]
    except Exception as exc:  # a cell's failure must not end the sweep: reported, not cached
        return {"key": key, "cell": cell, "error": f"{type(exc).__name__}: {exc}",
                "cell_seconds": time.perf_counter() - t0}
    meta = {"key": key, "family": family, "arrival_model": params.get("arrival_model"),
            "params": json.dumps(params, sort_keys=True), "n": n if n is not None else len(data.get("requests", [])) or None,
            "seed": seed}
    rows = [{c: {**meta, **r}.get(c) for c in COLUMNS} for r in rows]
    return {"key": key, "cell": cell, "instance": data, "optimum": optimum, "rows": rows,
            "cell_seconds": round(time.perf_counter() - t0, 4), "cpu_seconds": round(time.process_time() - cpu0, 4)}


# ---- progress ---------------------------------------------------------------------------------------

class Progress:
    """A one-line progress bar with an ETA on stderr (a line every few seconds when not a terminal)."""

    def __init__(self, total: int, cached: int, label: str, stream=None, enabled: bool = True):
        self.total, self.done, self.cached, self.label = total, cached, cached, label
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.t0 = time.perf_counter()
        self.first = None  # when the first cell of this run finished
        self.last = 0.0
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.show(force=True)

    def step(self, k: int = 1) -> None:
        self.done += k
        if self.first is None:
            self.first = time.perf_counter()
        self.show(force=self.done >= self.total)

    def line(self) -> str:
        now = time.perf_counter()
        elapsed = now - self.t0
        fresh = self.done - self.cached
        left = self.total - self.done
        # the rate since the first finished cell: start-up (process spawn, JIT compilation) is not a cell's cost
        if fresh >= 2:
            eta = _clock((now - self.first) / (fresh - 1) * left)
        else:
            eta = "--:--" if fresh == 0 else _clock(elapsed * left)
        width = 24
        filled = int(width * self.done / self.total) if self.total else width
        bar = "#" * filled + "." * (width - filled)
        return (f"{self.label}: [{bar}] {self.done}/{self.total} cells ({self.cached} cached) "
                f"{_clock(elapsed)} elapsed, ETA {eta}")

    def show(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.tty:
            if force or now - self.last >= 0.2:
                self.stream.write("\r" + self.line())
                if self.done >= self.total:
                    self.stream.write("\n")
                self.stream.flush()
                self.last = now
        elif force or now - self.last >= 5.0:
            self.stream.write(self.line() + "\n")
            self.stream.flush()
            self.last = now


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60:02d}:{rest % 60:02d}"


# ---- the sweep ----------------------------------------------------------------------------------------

@dataclass
class SweepResult:
    name: str
    out_dir: str
    rows: list[dict]
    errors: list[dict]
    cells_total: int
    cells_cached: int
    cells_run: int
    wall_seconds: float
    runner: str
    cpu_seconds: float | None = None  # CPU time of the cells that recorded it (cached ones included)
    cpu_cells: int = 0  # how many cells recorded their CPU time

    def to_dataframe(self):
        import pandas as pd

        return pd.DataFrame(self.rows, columns=list(COLUMNS))

    def summary(self) -> dict:
        from servopt.analysis.ratios import PROVEN_CONSTANTS, proven_bound_violations, ratio_table

        frame = self.to_dataframe()
        table = ratio_table(frame) if len(frame) and frame["cost"].notna().any() else None
        return {
            "kind": "sweep", "name": self.name, "out_dir": self.out_dir, "runner": self.runner,
            "cells": self.cells_total, "cells_cached": self.cells_cached, "cells_run": self.cells_run,
            "cells_failed": len(self.errors), "rows": len(self.rows), "wall_seconds": round(self.wall_seconds, 2),
            "cpu_seconds": None if self.cpu_seconds is None else round(self.cpu_seconds, 1), "cpu_cells": self.cpu_cells,
            "instances_proven": int(frame.drop_duplicates("key")["proven"].astype(bool).sum()) if len(frame) else 0,
            "instances": int(frame["key"].nunique()) if len(frame) else 0,
            "ratios": _records(table) if table is not None else [],
            "proven_constants": [{**c, "flags": list(c["flags"])} for c in PROVEN_CONSTANTS],
            "violations": proven_bound_violations(frame) if len(frame) else [],
            "errors": [{"key": e["key"], "error": e["error"]} for e in self.errors],
        }

    def to_dict(self) -> dict:
        return self.summary()


def _records(frame) -> list[dict]:
    out = []
    for rec in frame.to_dict("records"):
        out.append({k: (None if isinstance(v, float) and math.isnan(v) else (v.item() if hasattr(v, "item") else v))
                    for k, v in rec.items()})
    return out


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.part")
    tmp.write_text(text)
    os.replace(tmp, path)


def run_sweep(config: SweepConfig, out_dir: str | os.PathLike, *, workers: int = 1, ray: bool = False,
              ray_address: str | None = None, progress: bool = True, stream=None) -> SweepResult:
    """Run every cell not cached in ``out_dir/cells``; write results.csv (+ parquet) and summary.json."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InputError("--workers", f"must be a positive integer, got {workers!r}")
    out = Path(out_dir)
    cache = out / "cells"
    cache.mkdir(parents=True, exist_ok=True)
    cells = config.cells()
    keys = [cell_key(c) for c in cells]
    if len(set(keys)) != len(keys):
        raise InputError("config", "the grid repeats a cell (a size, seed or method listed twice)")
    outcomes: dict[str, dict] = {}
    for key in keys:
        f = cache / f"{key}.json"
        if f.is_file():
            try:
                outcomes[key] = json.loads(f.read_text())
            except json.JSONDecodeError:
                f.unlink()  # a damaged cache file: run the cell again
    pending = [c for c, k in zip(cells, keys) if k not in outcomes]
    cached = len(outcomes)
    errors: list[dict] = []
    bar = Progress(len(cells), cached, f"sweep {config.name}", stream=stream, enabled=progress)

    def done(outcome: dict) -> None:
        if "error" in outcome:
            errors.append(outcome)
        else:
            _write_atomic(cache / f"{outcome['key']}.json", json.dumps(outcome))
            outcomes[outcome["key"]] = outcome
        bar.step()

    t0 = time.perf_counter()
    runner = "ray" if ray else ("process pool" if workers > 1 else "in process")
    if pending:
        if ray:
            _run_on_ray(pending, done, workers=workers, address=ray_address)
        elif workers > 1:
            _run_in_pool(pending, done, workers=workers)
        else:
            for cell in pending:
                done(run_cell(cell))
    wall = time.perf_counter() - t0
    rows = []
    for k in keys:
        if k not in outcomes:
            continue
        cell = outcomes[k]["cell"]
        count = len(outcomes[k].get("instance", {}).get("requests", [])) or None
        for row in outcomes[k]["rows"]:
            # ``n`` is the size the config asked for (null: the family's own, e.g. the paper's n ~ U{40..60}),
            # so a ratio table groups by it; ``requests`` is the instance's actual count
            rows.append({**row, "n": cell.get("n") if "family" in cell else row.get("n"), "requests": count})
    cpu = [outcomes[k]["cpu_seconds"] for k in keys if k in outcomes and outcomes[k].get("cpu_seconds") is not None]
    result = SweepResult(config.name, str(out), rows, errors, len(cells), cached, len(pending) - len(errors), wall, runner,
                         sum(cpu) if cpu else None, len(cpu))
    frame = result.to_dataframe()
    frame.to_csv(out / "results.csv", index=False)
    try:
        import pyarrow  # noqa: F401

        frame.to_parquet(out / "results.parquet", index=False)
    except ImportError:
        pass
    _write_atomic(out / "summary.json", json.dumps(result.summary(), indent=1, default=str))
    return result


def _run_in_pool(pending: list[dict], done, *, workers: int) -> None:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    pool = ProcessPoolExecutor(max_workers=min(workers, len(pending)), mp_context=mp.get_context("spawn"))
    try:
        futures = [pool.submit(run_cell, cell) for cell in pending]
        for fut in as_completed(futures):
            done(fut.result())
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _run_on_ray(pending: list[dict], done, *, workers: int, address: str | None) -> None:
    try:
        import ray
    except ImportError:
        from servopt.errors import EnvironmentProblem

        raise EnvironmentProblem("--ray needs Ray: pip install 'servopt[ray]'") from None
    started = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        started = True
    try:
        task = ray.remote(num_cpus=1)(run_cell)
        refs = [task.remote(cell) for cell in pending]
        while refs:
            ready, refs = ray.wait(refs, num_returns=1)
            for ref in ready:
                done(ray.get(ref))
    finally:
        if started:
            ray.shutdown()
