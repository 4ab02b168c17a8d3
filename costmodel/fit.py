"""Fit a cost-model :class:`Profile` to measured iteration times; public measurement tables.

API (stable)::

    from servopt.costmodel.fit import MeasuredPoint, fit_profile, prediction_errors, error_summary
    pts = [MeasuredPoint(llm="llama-3.1-8b", gpu="h100-sxm", tp=1, measured_ms=12.3,
                         prefill=[(512, 0)], decode=[(32, 1024)])]      # decode: (batch, context) groups
    prof = fit_profile(pts, name="h100-sxm-measured", gpus=("h100-sxm",), source="...")
    prof.metadata["fit"]            # train / held-out MAPE, n points, roofline-only MAPE
    prediction_errors(prof, pts)    # one dict per point: predicted_ms, measured_ms, rel_error
    error_summary(prof, pts)        # per (table, regime): n, MAPE, max |error|

``MeasuredPoint``: one timed iteration of ``llm`` on ``tp`` x ``gpu`` (catalog names).
``prefill``: chunks ``(chunk_tokens, context_tokens_before)`` (or ``(p, c, emits_token)``; a bare
int is a whole prompt); ``decode``: ``(batch, context_tokens)`` groups (a bare int is one sequence
with that context). ``measured_ms``: the iteration's wall time. ``table`` labels the data set.

The fit (what ``fit_profile`` does): the model's time is, per point ``i``,
``t_i(theta) = sum_o max(C_io / eta_c[o], M_io / eta_m[o]) + S_i alpha + R_i / eta_ar + t0 + s_i c``
(``s_i`` sequences emitting a token, ``c`` = per_sequence_ms) with
``C_io``, ``M_io`` operator ``o``'s compute and memory time at 100 % of the datasheet peaks
(costmodel/roofline.py), ``S_i`` the number of all-reduce tree hops, ``R_i`` the all-reduce
seconds at full interconnect bandwidth, and ``theta`` the profile's parameters
(``eta``'s in (0, 1], ``alpha``, ``t0``, ``c`` >= 0). It minimises ``sum_i (t_i(theta) / y_i - 1)^2``
(least squares on relative error, so a 40 ms decode step weighs as much as a 3 s prefill) by
Levenberg-Marquardt on unconstrained coordinates (``eta = 1 / (1 + exp(-u))``,
``alpha, t0, c = exp(v)``) from a few starting points, numpy only. A random ``holdout_fraction`` of
the points (stratified by regime, fixed ``seed``) is left out of the fit and its error reported;
the returned profile is the one fitted on the remaining points, so the held-out figure is an
honest estimate for exactly what is shipped.

Public tables (``costmodel/measurements/``, provenance in its SOURCES.md):
:func:`splitwise_points` (measured, Llama-2-70B TP2/4/8 and BLOOM-176B TP8 on A100-80GB and H100)
and :func:`distserve_points` (points evaluated from DistServe's fitted A100 coefficients for
OPT-13B/66B within the ranges the fits were made for; derived, not raw measurements).
:func:`build_public_profiles` refits the shipped ``public-*.json`` profiles
(``python -m servopt.costmodel.fit`` rewrites them).
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from importlib import resources
from typing import Iterable, Sequence

import numpy as np

from servopt.costmodel.profile import (
    EFFICIENCY_FIELDS,
    OPTIONAL_EFFICIENCY_FIELDS,
    PARAMETER_FIELDS,
    ROOFLINE_ONLY,
    SHAPE_FIELDS,
    Profile,
)
from servopt.costmodel.roofline import BatchTotals, CostModel, batch_totals, smooth_roofline
from servopt.errors import InputError
from servopt.instances.catalog import get_gpu, get_llm

_OPS = ("linear", "lm_head", "attention_prefill", "attention_decode", "elementwise")
# Which efficiency pair each operator uses (index into _CLASSES).
_CLASSES = ("linear", "attention")
_OP_CLASS = np.array([0, 0, 1, 1, 0])


@dataclass(frozen=True)
class MeasuredPoint:
    llm: str
    gpu: str
    tp: int
    measured_ms: float
    prefill: tuple = ()
    decode: tuple = ()
    table: str = ""
    note: str = ""
    comm: bool = True  # False: one GPU's TP shard timed alone (servopt profile --tp T), no all-reduce

    def __post_init__(self):
        if not isinstance(self.measured_ms, (int, float)) or not math.isfinite(self.measured_ms) or self.measured_ms <= 0:
            raise InputError("measured_ms", f"must be a finite number > 0, got {self.measured_ms!r}")
        prefill = tuple((int(x), 0) if isinstance(x, (int, np.integer)) else tuple(x) for x in self.prefill)
        decode = tuple((1, int(x)) if isinstance(x, (int, np.integer)) else (int(x[0]), int(x[1])) for x in self.decode)
        if not prefill and not decode:
            raise InputError("prefill/decode", "a measured point needs at least one prefill chunk or decode group")
        object.__setattr__(self, "prefill", prefill)
        object.__setattr__(self, "decode", decode)

    @property
    def regime(self) -> str:
        if self.prefill and self.decode:
            return "mixed"
        return "prefill" if self.prefill else "decode"

    def totals(self) -> BatchTotals:
        base = batch_totals(self.prefill, ())
        d_seqs = sum(b for b, _ in self.decode)
        d_ctx = sum(b * c for b, c in self.decode)
        return BatchTotals(base.prefill_tokens, base.prefill_attention_pairs, base.prefill_context_tokens,
                           d_seqs, d_ctx, base.sampled_seqs + d_seqs)

    def to_dict(self) -> dict:
        return {"llm": self.llm, "gpu": self.gpu, "tp": self.tp, "measured_ms": self.measured_ms,
                "prefill": [list(p) for p in self.prefill], "decode": [list(d) for d in self.decode],
                "regime": self.regime, "table": self.table, "note": self.note}


@dataclass
class _Features:
    """Per point: operator times at 100 % of the peaks (s), all-reduce hops and seconds, measurement (ms)."""

    compute_s: np.ndarray  # (n, len(_OPS))
    memory_s: np.ndarray  # (n, len(_OPS))
    ring_steps: np.ndarray  # (n,)
    allreduce_s: np.ndarray  # (n,)
    measured_ms: np.ndarray  # (n,)
    sampled: np.ndarray  # (n,) sequences that emit a token
    regimes: list[str] = field(default_factory=list)
    layers: np.ndarray | None = None  # (n,) decoder layers, for per_layer_overhead_ms
    allreduce_calls: np.ndarray | None = None  # (n,) all-reduce calls, for allreduce_call_latency_ms

    def subset(self, idx) -> "_Features":
        return _Features(self.compute_s[idx], self.memory_s[idx], self.ring_steps[idx], self.allreduce_s[idx],
                         self.measured_ms[idx], self.sampled[idx], [self.regimes[i] for i in idx],
                         self.layers[idx], self.allreduce_calls[idx])


def _features(points: Sequence[MeasuredPoint]) -> _Features:
    n = len(points)
    comp, mem = np.zeros((n, len(_OPS))), np.zeros((n, len(_OPS)))
    steps, ar, y, sampled = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    layers, calls = np.zeros(n), np.zeros(n)
    models: dict = {}
    for i, pt in enumerate(points):
        key = (pt.llm, pt.gpu, pt.tp)
        if key not in models:
            models[key] = CostModel(get_llm(pt.llm, field=f"points[{i}].llm"), get_gpu(pt.gpu, field=f"points[{i}].gpu"),
                                    pt.tp, ROOFLINE_ONLY)
        cm = models[key]
        totals = pt.totals()
        sampled[i] = totals.sampled_seqs
        layers[i] = cm.llm.num_layers
        work = {name: (f, b, c) for name, f, b, c in cm.operator_work(totals)}
        for j, op in enumerate(_OPS):
            f, b, _ = work[op]
            comp[i, j] = f / cm._peak
            mem[i, j] = b / cm._bw
        if cm.tp > 1 and pt.comm:
            steps[i] = cm._ar_hops
            calls[i] = cm._ar_calls
            ar[i] = work["allreduce"][2] / cm._ic
        y[i] = pt.measured_ms
    return _Features(comp, mem, steps, ar, y, sampled, [p.regime for p in points], layers, calls)


def _predict_ms(fe: _Features, params: dict) -> np.ndarray:
    eta_c = np.array([params["linear_compute_eff"], params["attention_compute_eff"]])[_OP_CLASS]
    eta_m = np.array([params["linear_memory_eff"], params["attention_memory_eff"]])[_OP_CLASS]
    # decode attention's KV read at its own rate when set (profile format 3; 0 = attention_memory_eff)
    eta_m[_OPS.index("attention_decode")] = params.get("attention_decode_memory_eff") or params["attention_memory_eff"]
    ops = smooth_roofline(fe.compute_s / eta_c, fe.memory_s / eta_m, params.get("roofline_smoothness", 0.0)).sum(axis=1)
    comm = (fe.ring_steps * params["allreduce_hop_latency_ms"] * 1e-3 + fe.allreduce_s / params["allreduce_bandwidth_eff"]
            + fe.allreduce_calls * params.get("allreduce_call_latency_ms", 0.0) * 1e-3)
    per_layer = params.get("per_layer_overhead_ms", 0.0) * fe.layers if fe.layers is not None else 0.0
    gpu = (ops + comm) * 1e3 + per_layer
    host = params.get("host_ms_per_layer", 0.0)
    if host > 0:
        gpu = np.maximum(gpu, host * fe.layers)
    return gpu + params["overhead_ms"] + params["per_sequence_ms"] * fe.sampled


def predict_ms(profile: Profile, points: Sequence[MeasuredPoint]) -> np.ndarray:
    """Predicted iteration times (ms) of the points under a profile (vectorised; equals CostModel.iteration)."""
    return _predict_ms(_features(points), profile.parameters())


def _to_params(z: np.ndarray, names: Sequence[str], fixed: dict) -> dict:
    out = dict(fixed)
    for name, v in zip(names, z):
        if name in EFFICIENCY_FIELDS or name in OPTIONAL_EFFICIENCY_FIELDS:
            out[name] = float(min(1.0, max(1e-4, 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, v)))))))
        elif name in SHAPE_FIELDS:
            out[name] = float(min(0.95, 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, v))))))
        else:
            out[name] = float(math.exp(max(-30.0, min(10.0, v))))
    return out


def _from_params(params: dict, names: Sequence[str]) -> np.ndarray:
    z = []
    for name in names:
        v = params[name]
        if name in EFFICIENCY_FIELDS or name in SHAPE_FIELDS or name in OPTIONAL_EFFICIENCY_FIELDS:
            v = min(max(v, 1e-4), 1 - 1e-6)
            z.append(math.log(v / (1 - v)))
        else:
            z.append(math.log(max(v, 1e-9)))
    return np.array(z, dtype=float)


def _levenberg_marquardt(residual, z0: np.ndarray, max_iter: int = 300) -> np.ndarray:
    z, lam = z0.copy(), 1e-2
    r = residual(z)
    cost = float(r @ r)
    for _ in range(max_iter):
        jac = np.empty((r.size, z.size))
        for k in range(z.size):
            dz = np.zeros_like(z)
            dz[k] = 1e-6 * max(1.0, abs(z[k]))
            jac[:, k] = (residual(z + dz) - r) / dz[k]
        g = jac.T @ r
        h = jac.T @ jac
        improved = False
        while lam < 1e12:
            step = np.linalg.solve(h + lam * np.diag(np.diag(h) + 1e-12), -g)
            z_new = z + step
            r_new = residual(z_new)
            cost_new = float(r_new @ r_new)
            if cost_new < cost:
                improved = True
                converged = cost - cost_new < 1e-12 * max(cost, 1e-30)
                z, r, cost, lam = z_new, r_new, cost_new, max(lam / 3, 1e-9)
                break
            lam *= 4
        if not improved or converged:
            break
    return z


def _split(points: Sequence[MeasuredPoint], holdout_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    rng = np.random.default_rng(seed)
    train, test = [], []
    by_regime: dict[str, list[int]] = {}
    for i, p in enumerate(points):
        by_regime.setdefault(p.regime, []).append(i)
    for idx in by_regime.values():
        idx = list(rng.permutation(idx))
        k = int(round(holdout_fraction * len(idx)))
        if len(idx) - k < 1:
            k = 0
        test += idx[:k]
        train += idx[k:]
    return sorted(train), sorted(test)


def _mape(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.abs(pred / y - 1))) if y.size else float("nan")


# per_layer_overhead_ms is identifiable only from models of several depths (servopt profile data), so
# it is fixed (at base's value) unless asked for.
DEFAULT_FREE = tuple(f for f in PARAMETER_FIELDS if f not in ("per_layer_overhead_ms", "roofline_smoothness",
                                                               "allreduce_call_latency_ms", "host_ms_per_layer",
                                                               *OPTIONAL_EFFICIENCY_FIELDS))


def fit_profile(points: Sequence[MeasuredPoint], *, name: str, gpus: Iterable[str] = (), source: str = "",
                holdout_fraction: float = 0.25, seed: int = 0, free: Sequence[str] = DEFAULT_FREE,
                base: Profile = ROOFLINE_ONLY, prior: Profile | None = None, prior_weight: float = 0.0) -> Profile:
    """Least-squares fit (relative error) of the profile parameters in ``free`` to measured points.

    Parameters not in ``free`` keep ``base``'s values. With fewer than 8 points no hold-out is made.
    ``prior``/``prior_weight`` (``mu``): minimise ``mean_i r_i^2 + mu * sum_k (z_k - z_prior_k)^2`` in
    the unconstrained coordinates ``z`` instead (Tikhonov regularisation toward another profile, i.e.
    partial pooling: a per-GPU fit moves away from the generic one only where its data insist).
    ``metadata["fit"]`` records n, train/held-out MAPE and max error, the roofline-only MAPE, seed.
    """
    points = list(points)
    if not points:
        raise InputError("points", "no measured points to fit")
    unknown = [f for f in free if f not in PARAMETER_FIELDS]
    if unknown:
        raise InputError("free", f"unknown profile parameter '{unknown[0]}' (known: {', '.join(PARAMETER_FIELDS)})")
    if not 0 <= holdout_fraction < 1:
        raise InputError("holdout_fraction", f"must be in [0, 1), got {holdout_fraction!r}")
    gpus = tuple(get_gpu(g).name for g in gpus)
    train, test = _split(points, holdout_fraction if len(points) >= 8 else 0.0, seed)
    fe_all = _features(points)
    fe = fe_all.subset(train)
    names = list(free)
    fixed = base.parameters()
    if prior_weight < 0 or (prior_weight > 0 and prior is None):
        raise InputError("prior_weight", "must be >= 0, and > 0 only together with a prior profile")
    z_prior = _from_params(prior.parameters(), names) if prior is not None else None
    scale = 1.0 / math.sqrt(len(train))

    def residual(z):
        r = (_predict_ms(fe, _to_params(z, names, fixed)) / fe.measured_ms - 1.0) * scale
        if prior_weight > 0:
            r = np.concatenate([r, math.sqrt(prior_weight) * (z - z_prior)])
        return r

    starts = []
    for eff0 in (0.3, 0.6, 0.9):
        for t0 in (1.0, 10.0):
            start = dict(fixed)
            for n_ in names:
                start[n_] = (eff0 if n_ in EFFICIENCY_FIELDS or n_ in OPTIONAL_EFFICIENCY_FIELDS
                             else 0.2 if n_ in SHAPE_FIELDS
                             else t0 if n_ == "overhead_ms" else 0.01)
            starts.append(_from_params(start, names))
    if "host_ms_per_layer" in names:
        # max(GPU, host) has no gradient in h while the host is not binding: start it binding too
        k = names.index("host_ms_per_layer")
        for z0 in list(starts):
            for h0 in (0.3, 0.6):
                z1 = z0.copy()
                z1[k] = math.log(h0)
                starts.append(z1)
    if z_prior is not None:
        starts.append(z_prior.copy())
    best_z, best_cost = None, math.inf
    for z0 in starts:
        z = _levenberg_marquardt(residual, z0)
        r = residual(z)
        if float(r @ r) < best_cost:
            best_z, best_cost = z, float(r @ r)
    params = _to_params(best_z, names, fixed)
    pred = _predict_ms(fe_all, params)
    roof = _predict_ms(fe_all, ROOFLINE_ONLY.parameters())
    y = fe_all.measured_ms
    rel = pred / y - 1
    meta = {
        "n_points": len(points), "n_train": len(train), "n_held_out": len(test), "seed": seed,
        "free_parameters": names,
        "prior": prior.name if prior is not None else None, "prior_weight": prior_weight,
        "train_mape": _mape(pred[train], y[train]),
        "held_out_mape": _mape(pred[test], y[test]) if test else None,
        "held_out_max_abs_error": float(np.max(np.abs(rel[test]))) if test else None,
        "all_mape": _mape(pred, y), "all_max_abs_error": float(np.max(np.abs(rel))),
        "roofline_only_mape": _mape(roof, y),
        "tables": sorted({p.table for p in points}),
    }
    metadata = {"fit": meta}
    return Profile(name=name, gpus=gpus, source=source, metadata=metadata,
                   **{k: round(v, 6) for k, v in params.items()})


def prediction_errors(profile: Profile, points: Sequence[MeasuredPoint]) -> list[dict]:
    pred = predict_ms(profile, points)
    return [dict(p.to_dict(), predicted_ms=float(t), rel_error=float(t / p.measured_ms - 1)) for p, t in zip(points, pred)]


def error_summary(profile: Profile, points: Sequence[MeasuredPoint], by: Sequence[str] = ("table", "regime")) -> list[dict]:
    """MAPE, max |relative error| and n per group of points (default: per table and regime)."""
    rows = prediction_errors(profile, points)
    groups: dict[tuple, list[float]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in by), []).append(r["rel_error"])
    out = []
    for key in sorted(groups):
        e = np.abs(np.array(groups[key]))
        out.append(dict(zip(by, key), n=int(e.size), mape=float(e.mean()), max_abs_error=float(e.max()),
                        mean_signed_error=float(np.mean(groups[key]))))
    return out


# ---------------------------------------------------------------------------------------------
# Public measurement tables
# ---------------------------------------------------------------------------------------------

_SPLITWISE_MODEL = {"llama2-70b": "llama-2-70b", "bloom-176b": "bloom-176b"}
_SPLITWISE_GPU = {"a100-80gb": "a100-80g", "h100-80gb": "h100-sxm"}


def _measurement_text(name: str) -> str:
    return resources.files("servopt.costmodel").joinpath("measurements", name).read_text(encoding="utf-8")


def splitwise_points(gpus: Iterable[str] | None = None) -> list[MeasuredPoint]:
    """Splitwise's measured medians (splitwise_perf_model_medians.csv) as points.

    Prefill point: ``batch_size`` prompts of ``prompt_size`` tokens in one iteration
    (``prompt_time_ms``; rows differing only in token_size are the same prefill, their median is
    taken). Decode point: ``batch_size`` sequences at the mean context of the generation,
    ``prompt_size + token_size / 2`` (``token_time_ms``). The power-capped H100 rows are left out.
    A run is dropped as anomalous when its prefill is faster than the same configuration's prefill
    at a smaller batch (two rows: Llama-2-70B TP2 batch 64 on A100 and on H100, e.g. A100 794 ms vs
    6,633 ms at batch 32; research/costmodel-anchors.md §2.6).
    """
    want = None if gpus is None else {get_gpu(g).name for g in gpus}
    rows = list(csv.DictReader(_measurement_text("splitwise_perf_model_medians.csv").splitlines()))
    kept = []
    for r in rows:
        if r["hardware"] not in _SPLITWISE_GPU or r["model"] not in _SPLITWISE_MODEL:
            continue
        r = dict(r, gpu=_SPLITWISE_GPU[r["hardware"]], llm=_SPLITWISE_MODEL[r["model"]], tp=int(r["tensor_parallel"]),
                 p=int(r["prompt_size"]), b=int(r["batch_size"]), t=int(r["token_size"]),
                 prompt=float(r["prompt_time_ms"]), token=float(r["token_time_ms"]))
        if want is not None and r["gpu"] not in want:
            continue
        kept.append(r)
    anomalous = set()
    for r in kept:
        for q in kept:
            if (q["llm"], q["gpu"], q["tp"], q["p"], q["t"]) == (r["llm"], r["gpu"], r["tp"], r["p"], r["t"]) \
                    and q["b"] < r["b"] and r["prompt"] < q["prompt"]:
                anomalous.add(id(r))
    prefill_groups: dict[tuple, list[float]] = {}
    points = []
    for r in kept:
        if id(r) in anomalous:
            continue
        prefill_groups.setdefault((r["llm"], r["gpu"], r["tp"], r["p"], r["b"]), []).append(r["prompt"])
        points.append(MeasuredPoint(r["llm"], r["gpu"], r["tp"], r["token"], decode=((r["b"], r["p"] + r["t"] // 2),),
                                    table="splitwise", note=f"token_time, prompt {r['p']}, {r['t']} generated"))
    for (llm, gpu, tp, p, b), times in sorted(prefill_groups.items()):
        points.append(MeasuredPoint(llm, gpu, tp, float(np.median(times)), prefill=((p, 0),) * b, table="splitwise",
                                    note=f"prompt_time, {b} x {p}"))
    return points


# Batches at which DistServe's fitted formulas are evaluated: inside OPT's 2048-token context and the
# batch ranges the two decode regimes were fitted on (split at batch 95).
_DS_PREFILL = ((1, 128), (1, 256), (1, 512), (1, 1024), (1, 2048), (2, 512), (4, 256), (8, 128), (4, 512))
_DS_DECODE_SMALL = ((1, 256), (1, 1024), (8, 512), (16, 1024), (32, 256), (32, 1024), (64, 512), (94, 256))
_DS_DECODE_LARGE = ((96, 256), (128, 512), (192, 256), (256, 512))


def distserve_points(engine: str = "distserve") -> list[MeasuredPoint]:
    """Points evaluated from DistServe's fitted A100-80GB coefficients (``engine``: distserve or vllm).

    Prefill ``a + b * sum(l) + c * sum(l^2)`` and decode ``a + b * sum(ctx) + c * B`` (ms), per
    model and TP; large-batch decode points only where their KV fits (cost model's capacity).
    These are derived from DistServe's fits, not raw measurements: they carry the fit's own error.
    """
    if engine not in ("distserve", "vllm"):
        raise InputError("engine", f"must be distserve or vllm, got {engine!r}")
    data = json.loads(_measurement_text(f"distserve_profiler-a100-80g.{engine}.json"))
    points = []
    for model, per_tp in data.items():
        llm = get_llm(model)
        for tp_text, coef in per_tp.items():
            tp = int(tp_text)
            cm = CostModel(llm, get_gpu("a100-80g"), tp, ROOFLINE_ONLY)
            if not cm.weights_fit():
                continue
            a, b, c = coef["prefill"]
            for batch, length in _DS_PREFILL:
                ms = a + b * batch * length + c * batch * length**2
                points.append(MeasuredPoint(llm.name, "a100-80g", tp, ms, prefill=((length, 0),) * batch,
                                            table=f"distserve-{engine}", note=f"prefill {batch} x {length}"))
            threshold = coef["decoding_large_small_bs_threshold"]
            capacity = cm.kv_capacity_tokens(0.9)
            for groups, key in ((_DS_DECODE_SMALL, "decoding_smallbs"), (_DS_DECODE_LARGE, "decoding_largebs")):
                a, b, c = coef[key]
                for batch, ctx in groups:
                    if (key == "decoding_smallbs") != (batch < threshold) or batch * (ctx + 1) > capacity:
                        continue
                    ms = a + b * batch * ctx + c * batch
                    points.append(MeasuredPoint(llm.name, "a100-80g", tp, ms, decode=((batch, ctx),),
                                                table=f"distserve-{engine}", note=f"decode {batch} x {ctx}"))
    return points


PUBLIC_PROFILES = {
    # file name: (profile name, GPUs it applies to, point source)
    "public-generic.json": ("public-generic", ()),
    "public-a100-80g.json": ("public-a100-80g", ("a100-80g", "a100-40g")),
    # Not listed for the H200: its overheads are Splitwise's engine's (0.04 ms per sequence, 22 ms at
    # batch 512), and the H200 borrows the measured H100 profile instead (costmodel/transfer.py).
    "public-h100-sxm.json": ("public-h100-sxm", ("h100-sxm",)),
    # Splitwise's A100 measurements alone: the DistServe-derived points (another engine, fitted
    # formulas) pull the A100 fit away from Splitwise's table (Llama-2-70B held-out MAPE 15.1 % with
    # them, 8.3 % without, benchmarks/results/costmodel_error.md). Selected by name; the A100 default
    # stays public-a100-80g (file names sort before it).
    "public-splitwise-a100-80g.json": ("public-splitwise-a100-80g", ("a100-80g",)),
}
# Public fits that are neither pooled toward the generic fit nor fitted with DEFAULT_FREE.
_UNPOOLED_FREE = {"public-splitwise-a100-80g.json": DEFAULT_FREE + ("roofline_smoothness",)}


def public_points(profile_file: str) -> list[MeasuredPoint]:
    if profile_file == "public-a100-80g.json":
        return splitwise_points(["a100-80g"]) + distserve_points("distserve")
    if profile_file == "public-h100-sxm.json":
        return splitwise_points(["h100-sxm"])
    if profile_file == "public-splitwise-a100-80g.json":
        return splitwise_points(["a100-80g"])
    return splitwise_points() + distserve_points("distserve")


# Weight of the pull of the per-GPU public fits toward the generic fit (see fit_profile). Unpooled,
# the H100 fit (one model, TP >= 2 only) puts 0.25 ms on every sequence and makes an 8B decode step at
# batch 32 slower on an H100 than on an A100 (19.1 vs 15.6 ms); pooled at 1e-3 its held-out MAPE on
# Splitwise-H100 goes from 7.5 % to 9.1 % and the per-sequence term to 0.04 ms (10.9 ms on H100).
PUBLIC_PRIOR_WEIGHT = 1e-3


def build_public_profiles(seed: int = 0) -> dict[str, Profile]:
    """Refit the shipped public profiles (same seed and split as shipped): generic first, then the
    per-GPU ones pooled toward it."""
    out = {}
    generic = None
    for file_name, (name, gpus) in PUBLIC_PROFILES.items():
        pts = public_points(file_name)
        tables = sorted({p.table for p in pts})
        source = (f"fit_profile on public tables {', '.join(tables)} (costmodel/measurements/SOURCES.md): "
                  f"least squares on relative error, 25 % held out (seed {seed})")
        if file_name in _UNPOOLED_FREE:
            out[file_name] = fit_profile(pts, name=name, gpus=gpus, source=source, seed=seed,
                                         free=_UNPOOLED_FREE[file_name])
        elif generic is None:
            out[file_name] = generic = fit_profile(pts, name=name, gpus=gpus, source=source, seed=seed)
        else:
            out[file_name] = fit_profile(pts, name=name, gpus=gpus, seed=seed, prior=generic,
                                         prior_weight=PUBLIC_PRIOR_WEIGHT,
                                         source=source + f", pooled toward {generic.name} (weight {PUBLIC_PRIOR_WEIGHT:g})")
    return out


def main() -> int:
    from pathlib import Path

    from servopt.costmodel.calibration import VIDUR_A100_PROFILE, build_vidur_a100_profile

    folder = Path(__file__).resolve().parent / "profiles"
    profiles = dict(build_public_profiles())
    profiles[VIDUR_A100_PROFILE + ".json"] = build_vidur_a100_profile()
    for file_name, prof in profiles.items():
        prof.save(folder / file_name)
        fit = prof.metadata["fit"]
        print(f"{file_name}: n={fit['n_points']} train MAPE {fit['train_mape']:.1%}, held-out MAPE "
              f"{fit['held_out_mape']:.1%}, roofline-only MAPE {fit['roofline_only_mape']:.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
