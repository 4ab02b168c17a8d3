"""Calibrating the cost model to a GPU's ``servopt profile`` measurements, and the error tables.

Input: one or more profile measurement files (``servopt.costmodel.profiling``; format
``servopt-profile/1``): per (LLM, TP) run, the measured iteration times of prefill, decode and
mixed batches. Output: the same file with a ``fit`` object, a :class:`~servopt.costmodel.profile.Profile`
that ``costmodel/profile.py`` reads directly (shipped as ``costmodel/profiles/<gpu>.json``).

The model fitted is the roofline of ``costmodel/roofline.py`` (symbols there), per point ``i``::

    t_i = sum_o max(C_io / eta_c[o], M_io / eta_m[o])            operators at eta x datasheet peaks
          + t0 + c * s_i + l * L_i                                per iteration, sequence, layer
          (+ all-reduce terms when a run is a whole TP replica; servopt profile times one GPU's
           shard alone, so its TP runs carry none: MeasuredPoint.comm = False)

with ``eta_c``/``eta_m`` the compute/memory efficiencies of the linear (GEMM, LM head, elementwise)
and attention operators, ``t0 = overhead_ms``, ``c = per_sequence_ms`` (``s_i`` sequences that
emit a token), ``l = per_layer_overhead_ms`` (``L_i`` decoder layers). The per-layer term is this
calibration's addition: fitted on the H100 without it, an 8B-only fit put 3 ms in ``t0`` and
under-predicted 80-layer Llama-2-70B shards' decode steps by 14-29 %; with it, the same fit predicts
the shards within 2.8-6.0 % MAPE per TP and regime (costmodel/PROFILING_NOTES.md,
benchmarks/results/profile_accuracy.md). Kernel-launch and tail latency per layer (about 20 kernels, a few
microseconds each even inside a CUDA graph) is the physical reading.

Fit: ``servopt.costmodel.fit.fit_profile`` (Levenberg-Marquardt on relative error, the form GenZ
uses with per-operator efficiency factors, Bambhaniya et al. arXiv 2406.01698). The all-reduce
parameters cannot be measured on one GPU and are kept from the public H100 fit
(``public-h100-sxm``, Splitwise's table). Held-out error: before fitting, ``holdout_fraction`` of
the points of every (LLM, TP, regime) group is set aside (seeded, so the split is reproducible
from the recorded seed); the fit never sees them, and the shipped parameters are exactly those
fitted on the rest.

Measured fractions of peak (per point, from the roofline's FLOP and byte counts at 100 %):
``mfu = flops / time / peak`` and ``bw_util = bytes / time / hbm_bandwidth``, both against the
datasheet (catalog) and against the ceilings measured in the same profile (bf16 matmul, and the
device-to-device copy counting bytes read plus written).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Iterable, Sequence

import numpy as np

from servopt.costmodel import profiling
from servopt.costmodel.fit import MeasuredPoint, error_summary, fit_profile, predict_ms, splitwise_points
from servopt.costmodel.profile import ROOFLINE_ONLY, Profile, shipped_profile
from servopt.costmodel.roofline import CostModel
from servopt.errors import InputError
from servopt.instances.catalog import get_gpu, get_llm

# roofline_smoothness (profile format 2): free since the smooth roofline lowered the held-out MAPE
# from 4.1 / 3.8 / 4.6 % (hard max) to 3.3 / 3.4 / 4.3 % (prefill / decode / mixed), seed 0.
FREE = ("linear_compute_eff", "linear_memory_eff", "attention_compute_eff", "attention_memory_eff",
        "overhead_ms", "per_sequence_ms", "per_layer_overhead_ms", "roofline_smoothness")
REGIMES = ("prefill", "decode", "mixed")
DEFAULT_HOLDOUT = 0.25
DEFAULT_SEED = 0
BASE_PROFILE = "public-h100-sxm"  # all-reduce parameters come from here (Splitwise H100 fit)


# --------------------------------------------------------------------------------------------
# Points
# --------------------------------------------------------------------------------------------

def measured_points(profile: dict) -> list[MeasuredPoint]:
    """Every timed shape of a profile as a MeasuredPoint (TP runs are shards: ``comm=False``)."""
    gpu = get_gpu(profile.get("gpu", ""), "gpu").name
    out = []
    for i, run in enumerate(profile["runs"]):
        pr = profiling.ProfileRun.from_dict(run, f"runs[{i}]")
        llm = get_llm(pr.llm, f"runs[{i}].llm").name
        for m in pr.points:
            s = m.shape
            decode = ((s.decode_batch, s.decode_ctx_tokens),) if s.decode_batch else ()
            out.append(MeasuredPoint(llm, gpu, pr.tp, m.time_ms, prefill=s.prefill, decode=decode,
                                     table=f"{gpu} {llm} tp{pr.tp}", note=s.key(), comm=pr.tp == 1))
    if not out:
        raise InputError("runs", "no timed points in the profile")
    return out


def split_points(points: Sequence[MeasuredPoint], fraction: float = DEFAULT_HOLDOUT,
                 seed: int = DEFAULT_SEED) -> tuple[list[int], list[int]]:
    """Indices (train, held out): ``fraction`` of each (table, regime) group held out, seeded."""
    if not 0 <= fraction < 1:
        raise InputError("holdout_fraction", f"must be in [0, 1), got {fraction!r}")
    rng = np.random.default_rng(seed)
    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(points):
        groups.setdefault((p.table, p.regime), []).append(i)
    train, test = [], []
    for key in sorted(groups):
        idx = [int(j) for j in rng.permutation(groups[key])]
        k = int(round(fraction * len(idx))) if len(idx) >= 4 else 0
        test += idx[:k]
        train += idx[k:]
    return sorted(train), sorted(test)


# --------------------------------------------------------------------------------------------
# Error tables
# --------------------------------------------------------------------------------------------

@dataclass
class ErrorRow:
    """Errors of one group of points (``group`` = a run's table or 'all')."""

    group: str
    regime: str
    n: int
    n_held_out: int
    roofline_mape: float
    calibrated_mape: float  # over all points of the group
    held_out_mape: float | None
    held_out_max_abs_error: float | None
    max_abs_error: float
    mean_signed_error: float
    median_mfu: float
    median_bw_util: float

    def to_dict(self) -> dict:
        return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def _work(points: Sequence[MeasuredPoint]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per point: FLOPs and HBM bytes per GPU (roofline counts), datasheet peak and bandwidth."""
    models: dict = {}
    flops, byts, peak, bw = (np.zeros(len(points)) for _ in range(4))
    for i, p in enumerate(points):
        key = (p.llm, p.gpu, p.tp)
        if key not in models:
            models[key] = CostModel(get_llm(p.llm), get_gpu(p.gpu), p.tp, ROOFLINE_ONLY)
        cm = models[key]
        c = cm.iteration_from_totals(p.totals())
        flops[i], byts[i] = c.flops, c.bytes
        peak[i], bw[i] = cm.gpu.bf16_tflops * 1e12, cm.gpu.hbm_gb_per_s * 1e9
    return flops, byts, peak, bw


def error_rows(profile: Profile, points: Sequence[MeasuredPoint], held_out: Iterable[int] = ()) -> list[ErrorRow]:
    """Per (table, regime) and per regime over all tables: roofline-only and calibrated errors,
    held-out errors, and the measured fractions of the datasheet peaks."""
    points = list(points)
    y = np.array([p.measured_ms for p in points])
    rel = predict_ms(profile, points) / y - 1
    roof = predict_ms(ROOFLINE_ONLY, points) / y - 1
    flops, byts, peak, bw = _work(points)
    mfu = flops / (y * 1e-3) / peak
    bwu = byts / (y * 1e-3) / bw
    test = np.zeros(len(points), bool)
    test[list(held_out)] = True
    tables = np.array([p.table for p in points])
    regimes = np.array([p.regime for p in points])
    rows = []
    for group in [*sorted(str(t) for t in set(tables)), "all"]:
        for regime in REGIMES:
            m = (regimes == regime) & ((tables == group) if group != "all" else True)
            if not m.any():
                continue
            h = m & test
            rows.append(ErrorRow(
                group, regime, int(m.sum()), int(h.sum()), float(np.mean(np.abs(roof[m]))),
                float(np.mean(np.abs(rel[m]))), float(np.mean(np.abs(rel[h]))) if h.any() else None,
                float(np.max(np.abs(rel[h]))) if h.any() else None, float(np.max(np.abs(rel[m]))),
                float(np.mean(rel[m])), float(np.median(mfu[m])), float(np.median(bwu[m]))))
    return rows


def ceiling_fractions(profile: dict, points: Sequence[MeasuredPoint]) -> list[dict]:
    """Per regime: median MFU and bandwidth use against the profile's measured ceilings."""
    ceil = profile.get("ceilings") or {}
    if not ceil.get("matmul_tflops") or not ceil.get("copy_gb_per_s"):
        return []
    points = list(points)
    y = np.array([p.measured_ms for p in points]) * 1e-3
    flops, byts, _, _ = _work(points)
    out = []
    for regime in REGIMES:
        m = np.array([p.regime == regime for p in points])
        if m.any():
            out.append({"regime": regime,
                        "median_of_measured_matmul": round(float(np.median(flops[m] / y[m] / (ceil["matmul_tflops"] * 1e12))), 4),
                        "max_of_measured_matmul": round(float(np.max(flops[m] / y[m] / (ceil["matmul_tflops"] * 1e12))), 4),
                        "median_of_measured_copy": round(float(np.median(byts[m] / y[m] / (ceil["copy_gb_per_s"] * 1e9))), 4),
                        "max_of_measured_copy": round(float(np.max(byts[m] / y[m] / (ceil["copy_gb_per_s"] * 1e9))), 4)})
    return out


# --------------------------------------------------------------------------------------------
# Fit
# --------------------------------------------------------------------------------------------

@dataclass
class Calibration:
    """A fitted profile with its error table, the split it was fitted on, and the scaling check."""

    profile: Profile
    rows: list[ErrorRow]
    train: list[int]
    held_out: list[int]
    ceiling_fractions: list[dict] = field(default_factory=list)
    scaling_check: list[dict] = field(default_factory=list)

    def row(self, group: str, regime: str) -> ErrorRow:
        for r in self.rows:
            if (r.group, r.regime) == (group, regime):
                return r
        raise KeyError((group, regime))

    def to_dict(self) -> dict:
        """The Profile dict (what ``costmodel/profile.py`` reads), errors in its metadata."""
        return self.profile.to_dict()


def calibrate(profile: dict, *, name: str | None = None, base: Profile | None = None,
              holdout_fraction: float = DEFAULT_HOLDOUT, seed: int = DEFAULT_SEED, free: Sequence[str] = FREE) -> Calibration:
    """Fit the cost-model parameters ``free`` to a profile's measurements (see the module docstring)."""
    points = measured_points(profile)
    gpu = points[0].gpu
    if base is None:
        base = shipped_profile(BASE_PROFILE)
    train, test = split_points(points, holdout_fraction, seed)
    fitted = fit_profile([points[i] for i in train], name=name or f"{gpu}-measured", gpus=(gpu,),
                         holdout_fraction=0.0, free=free, base=base, seed=seed)
    rows = error_rows(fitted, points, test)
    scaling = [dict(c, llm=r["llm"]) for r in profile["runs"] for c in r.get("scaling_check", [])]
    fractions = ceiling_fractions(profile, points)
    fit_meta = {
        "method": "servopt.costmodel.calibration.calibrate: fit_profile (least squares on relative error) on the "
                  "training points; held-out points never seen by the fit",
        "free_parameters": list(free), "fixed_from": base.name, "seed": seed, "holdout_fraction": holdout_fraction,
        "n_points": len(points), "n_train": len(train), "n_held_out": len(test),
        "held_out_mape": float(np.mean([abs(e) for e in _rel(fitted, [points[i] for i in test])])) if test else None,
        "roofline_only_mape": float(np.mean(np.abs(_rel(ROOFLINE_ONLY, points)))),
    }
    meta = {"fit": fit_meta, "errors": [r.to_dict() for r in rows], "ceiling_fractions": fractions,
            "measured_ceilings": {k: (profile.get("ceilings") or {}).get(k) for k in ("matmul_tflops", "copy_gb_per_s")},
            "device": profile.get("device", {}), "created_utc": profile.get("created_utc"),
            "commands": profile.get("commands") or [profile.get("command", "")]}
    source = (f"servopt profile on {profile.get('device', {}).get('name', gpu)} "
              f"({', '.join(sorted({p.llm + ' tp' + str(p.tp) for p in points}))}), fitted by servopt.costmodel.calibration")
    final = Profile(name=fitted.name, gpus=fitted.gpus, source=source, metadata=meta, **fitted.parameters())
    return Calibration(final, rows, train, test, fractions, scaling)


def _rel(profile: Profile, points: Sequence[MeasuredPoint]) -> np.ndarray:
    if not points:
        return np.zeros(0)
    return predict_ms(profile, points) / np.array([p.measured_ms for p in points]) - 1


def fit_profile_dict(profile: dict) -> Calibration:
    """What ``servopt profile`` calls after measuring (its ``fit`` object is ``.to_dict()``)."""
    return calibrate(profile)


# --------------------------------------------------------------------------------------------
# Merging measurement files
# --------------------------------------------------------------------------------------------

def merge_profiles(profiles: Sequence[dict]) -> dict:
    """One measurement file from several of the same GPU (runs concatenated; first ceilings kept)."""
    if not profiles:
        raise InputError("profiles", "nothing to merge")
    gpus = {p.get("gpu") for p in profiles}
    if len(gpus) != 1:
        raise InputError("gpu", f"profiles of different GPUs cannot be merged: {sorted(map(str, gpus))}")
    merged = {k: v for k, v in profiles[0].items() if k not in ("runs", "fit", "command", "commands")}
    merged["runs"] = []
    seen = set()
    for i, p in enumerate(profiles):
        for r in p["runs"]:
            key = (r["llm"], r["tp"])
            if key in seen:
                raise InputError(f"profiles[{i}].runs", f"{r['llm']} TP{r['tp']} is in more than one file")
            seen.add(key)
            merged["runs"].append(r)
        if not merged.get("ceilings") and p.get("ceilings"):
            merged["ceilings"] = p["ceilings"]
    merged["commands"] = [c for p in profiles for c in (p.get("commands") or [p.get("command", "")]) if c]
    merged["seconds"] = round(sum(float(p.get("seconds", 0)) for p in profiles), 1)
    return merged


def build_shipped(measurement_files: Sequence[str], *, name: str | None = None, seed: int = DEFAULT_SEED) -> dict:
    """Merge measurement files, fit, and return the file to ship (measurements + ``fit``)."""
    merged = merge_profiles([profiling.read_profile(f) for f in measurement_files])
    cal = calibrate(merged, name=name, seed=seed)
    merged["fit"] = cal.to_dict()
    return merged


# --------------------------------------------------------------------------------------------
# Public tables
# --------------------------------------------------------------------------------------------

def public_table_rows(profile: Profile) -> list[dict]:
    """Errors of a profile on Splitwise's measured Llama-2-70B table (TP 2/4/8), for the GPUs the
    profile applies to (every GPU of the table for a profile without ``gpus``)."""
    table_gpus = {"a100-80g", "h100-sxm"}
    gpus = table_gpus & set(profile.gpus) if profile.gpus else table_gpus
    if not gpus:
        return []
    pts = [p for p in splitwise_points(sorted(gpus)) if p.llm == "llama-2-70b"]
    rows = []
    for r in error_summary(profile, pts, by=("gpu", "tp", "regime")):
        rows.append({"table": "splitwise", **r})
    for r in error_summary(profile, pts, by=("gpu",)):
        rows.append({"table": "splitwise", "tp": "all", "regime": "all", **r})
    return rows


def engine_transfer(profile: Profile, *, seed: int = DEFAULT_SEED, holdout_fraction: float = DEFAULT_HOLDOUT) -> dict:
    """Keep the GPU-side parameters measured here, refit only the engine-side ones (per-iteration
    and per-sequence overheads, all-reduce bandwidth and latency) on Splitwise's H100 table.

    If the GPU efficiencies transfer, the engine terms alone bring Splitwise's table within its
    own noise; returns the refitted profile's held-out errors per TP and regime.
    """
    pts = [p for p in splitwise_points(["h100-sxm"]) if p.llm == "llama-2-70b"]
    train, test = split_points(pts, holdout_fraction, seed)
    free = ("overhead_ms", "per_sequence_ms", "allreduce_bandwidth_eff", "allreduce_hop_latency_ms")
    fitted = fit_profile([pts[i] for i in train], name=profile.name + "+splitwise-engine", gpus=profile.gpus,
                         holdout_fraction=0.0, free=free, base=profile, seed=seed)
    held = [pts[i] for i in test]
    return {"free_parameters": list(free), "parameters": {k: fitted.parameters()[k] for k in free},
            "held_out": error_summary(fitted, held, by=("tp", "regime")),
            "all": error_summary(fitted, pts, by=("gpu",))}


def summary_lines(cal: Calibration) -> list[str]:
    out = []
    for regime in REGIMES:
        try:
            r = cal.row("all", regime)
        except KeyError:
            continue
        out.append(f"{regime:8s} n={r.n:4d} roofline-only MAPE {r.roofline_mape:6.1%}  calibrated held-out MAPE "
                   f"{(r.held_out_mape or float('nan')):6.1%} (max {(r.held_out_max_abs_error or float('nan')):6.1%})")
    return out



ENGINE_FREE = ("overhead_ms", "per_sequence_ms", "allreduce_bandwidth_eff", "allreduce_hop_latency_ms")


def splitwise_leave_one_tp_out(gpu: str, *, base: Profile | None = None, free: Sequence[str] | None = None,
                               llm: str = "llama-2-70b") -> dict:
    """Leave-one-configuration-out validation on Splitwise's measured table for one GPU.

    For each TP degree ``t`` of ``llm``: fit ``free`` on every other Splitwise point of that GPU
    (the other TP degrees, and the other model), predict the points of TP ``t``, never seen by the fit.
    With ``base`` (e.g. the measured H100 profile) only the engine terms (:data:`ENGINE_FREE` by
    default) are fitted and the GPU terms stay as measured; without it, every parameter of
    ``fit.DEFAULT_FREE`` plus ``roofline_smoothness`` is fitted from the roofline. Returns
    ``{"cells": [{tp, regime, n, mape, max_abs_error, mean_signed_error}], "mape": over all points,
    "n": ...}``.
    """
    from servopt.costmodel.fit import DEFAULT_FREE, prediction_errors

    gpu = get_gpu(gpu).name
    if free is None:
        free = ENGINE_FREE if base is not None else DEFAULT_FREE + ("roofline_smoothness",)
    pool = splitwise_points([gpu])
    tps = sorted({p.tp for p in pool if p.llm == llm})
    if len(tps) < 2:
        raise InputError("gpu", f"Splitwise has fewer than two TP degrees of {llm} on {gpu}")
    errors: dict[tuple, list[float]] = {}
    for tp in tps:
        train = [p for p in pool if not (p.llm == llm and p.tp == tp)]
        test = [p for p in pool if p.llm == llm and p.tp == tp]
        fitted = fit_profile(train, name=f"{gpu}-without-tp{tp}", holdout_fraction=0.0, free=free,
                             base=base if base is not None else ROOFLINE_ONLY)
        for r in prediction_errors(fitted, test):
            errors.setdefault((tp, r["regime"]), []).append(r["rel_error"])
    cells = [{"tp": tp, "regime": regime, "n": len(e), "mape": float(np.mean(np.abs(e))),
              "max_abs_error": float(np.max(np.abs(e))), "mean_signed_error": float(np.mean(e))}
             for (tp, regime), e in sorted(errors.items())]
    every = np.concatenate([np.abs(e) for e in errors.values()])
    return {"gpu": gpu, "llm": llm, "free_parameters": list(free), "base": base.name if base is not None else None,
            "cells": cells, "mape": float(every.mean()), "n": int(every.size)}
