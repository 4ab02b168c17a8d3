"""Efficiency profiles of the roofline cost model: what a real engine achieves of the datasheet peaks.

A :class:`Profile` holds the knobs that turn the ideal roofline of ``costmodel/roofline.py`` into
measured iteration times (the GenZ form, research/costmodel-anchors.md §2.2: per operator
``max(FLOPs / (eta_c * peak), bytes / (eta_m * bandwidth))``, plus a fixed per-iteration overhead
``t0`` as in §3.3, plus the TP all-reduce, ``2 log2(T) alpha + 2 (T-1)/T * bytes / (eta_ar * interconnect)`` per call:
the bandwidth term of ring all-reduce and the latency term of a (double binary) tree, the two
algorithms NCCL picks between for large and small messages -- alpha-beta costs from Thakur,
Rabenseifner & Gropp, "Optimization of collective communication operations in MPICH", IJHPCA 2005,
and Sanders, Speck & Traeff, "Two-tree algorithms for full bandwidth broadcast, reduction and scan",
Parallel Computing 2009. The fixed cost thus grows like log2(T), which fits Splitwise's decode
times (TP 2 -> 4 -> 8 add about the same time per doubling, research/costmodel-anchors.md §3.1)
better than the ring's 2 (T-1) steps (MAPE 11.2 % vs 11.8 % on the generic fit)):

==========================  ===========================================================  ========
field                       meaning                                                      range
==========================  ===========================================================  ========
linear_compute_eff          fraction of bf16 peak the GEMMs (QKV, O, MLP, LM head) reach  (0, 1]
linear_memory_eff           fraction of HBM bandwidth for weight reads and elementwise   (0, 1]
attention_compute_eff       fraction of peak for attention's QK^T and AV (prefill)       (0, 1]
attention_memory_eff        fraction of bandwidth for attention's own reads and writes   (0, 1]
attention_decode_memory_eff fraction of bandwidth for decode's KV-cache read (format 3)  0 or (0, 1]
allreduce_bandwidth_eff     fraction of the interconnect (NVLink, else PCIe) bandwidth   (0, 1]
allreduce_hop_latency_ms    latency of one tree hop; a call costs 2 log2(tp) hops       >= 0
overhead_ms                 fixed cost per iteration (launches, scheduling)              >= 0
per_sequence_ms             cost per sequence that emits a token (sampling, bookkeeping) >= 0
per_layer_overhead_ms       fixed cost per decoder layer and iteration (kernel launches) >= 0
roofline_smoothness         s of the smooth roofline (below); 0 = hard max (format 1)     [0, 1)
allreduce_call_latency_ms   fixed cost of one all-reduce call, any tp > 1 (format 2)     >= 0
host_ms_per_layer           host time to launch one layer's kernels (format 2, below)    >= 0
==========================  ===========================================================  ========

``attention_decode_memory_eff`` (format 3): the rate at which decode attention streams the KV
cache, apart from prefill attention's; 0 (the default, and every profile written before format 3)
means ``attention_memory_eff``, so older profiles predict exactly what they did. Why apart: the
KV read is a pure stream of HBM whose rate depends on the decode kernel (split-KV, pipelining), not
on what prefill attention's mostly compute-bound kernel does (costmodel/calibration.py).

Smooth roofline (format 2): an operator with compute time ``C`` and memory time ``M`` takes
``(C^(1/s) + M^(1/s))^s`` -- the p-norm form (``p = 1/s``) of the "roofline with a soft knee"
that Williams, Waterman & Patterson's roofline (CACM 2009) becomes when compute and memory overlap
imperfectly near the ridge point. ``s = 0`` is the hard ``max(C, M)``; ``s = 1`` would be the sum
(no overlap). Measured GEMMs approach the ridge gradually (H100 iterations of 190-260 tokens were
under-predicted by up to 12 % with the hard max, costmodel/PROFILING_NOTES.md), so the fits
estimate ``s``. Profiles written before this field existed (no ``format_version``, i.e. format 1)
load with ``s = 0`` and predict exactly what they did.

Host-bound iterations (format 2): an engine that launches kernels eagerly from Python (no CUDA
graphs; Splitwise's 2023 runs) cannot finish an iteration faster than the host issues its
``L * ~20`` launches, whatever the GPU. The host runs ahead of the GPU, so the two overlap:
``max(GPU time, L * host_ms_per_layer)`` -- a third roof, the host's launch rate, next to compute
and memory. It is why Splitwise's Llama-2-70B decode steps take the same time at TP4 and TP8
(A100 44.5 / 45.0 ms, H100 29.5 / 30.5 ms) while the weights per GPU halve.

``per_sequence_ms`` is the ``c * B`` term of DistServe's decode model (``a + b * sum(ctx) + c * B``,
research/costmodel-anchors.md §2.5): work per sequence that neither the weights nor the KV reads
explain (sampling, per-sequence scheduler and attention-launch costs); Splitwise's decode times grow
with the batch by far more than the extra KV reads would allow.

``gpus`` lists the catalog GPU names a profile applies to (empty: any GPU). Profiles are JSON files
in ``costmodel/profiles/`` (or anywhere, by path) with exactly these fields plus ``name``,
``source`` and ``metadata`` (free-form: fit data, errors, date). A ``servopt profile`` measurement
file (top-level ``runs``) is accepted too: its ``fit`` object is the profile.

Which profile a GPU gets by default (:func:`default_profile`, rule in costmodel/transfer.py): a
calibrated profile measured on that GPU (any shipped file whose name does not start with
``public-`` and whose ``gpus`` contains the GPU) wins; then the profile measured on the nearest GPU
of the same architecture, lent on this GPU's datasheet peaks with the same engine's overheads
(``h200-from-h100-sxm-measured``); then a profile fitted to public tables (``public-<gpu>.json``),
the nearest same-architecture public profile, and the generic public fit (``public-generic.json``).
:data:`ROOFLINE_ONLY` (every efficiency 1, no overheads) gives the physical floor.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path

from servopt.errors import InputError

EFFICIENCY_FIELDS = (
    "linear_compute_eff",
    "linear_memory_eff",
    "attention_compute_eff",
    "attention_memory_eff",
    "allreduce_bandwidth_eff",
)
TIME_FIELDS = ("allreduce_hop_latency_ms", "overhead_ms", "per_sequence_ms", "per_layer_overhead_ms",
               "allreduce_call_latency_ms", "host_ms_per_layer")
SHAPE_FIELDS = ("roofline_smoothness",)
# Efficiencies where 0 means "as another field" (attention_decode_memory_eff: attention_memory_eff).
OPTIONAL_EFFICIENCY_FIELDS = ("attention_decode_memory_eff",)
PARAMETER_FIELDS = EFFICIENCY_FIELDS + TIME_FIELDS + SHAPE_FIELDS + OPTIONAL_EFFICIENCY_FIELDS
# 1: hard-max roofline, no format_version field; 2: roofline_smoothness added; 3: attention_decode_memory_eff.
PROFILE_FORMAT_VERSION = 3


@dataclass(frozen=True)
class Profile:
    name: str
    linear_compute_eff: float = 1.0
    linear_memory_eff: float = 1.0
    attention_compute_eff: float = 1.0
    attention_memory_eff: float = 1.0
    allreduce_bandwidth_eff: float = 1.0
    allreduce_hop_latency_ms: float = 0.0
    overhead_ms: float = 0.0
    per_sequence_ms: float = 0.0
    # ~20 kernels per layer, each with a few us of launch and tail latency even in a CUDA graph; it
    # scales with depth, which a per-iteration constant cannot (costmodel/PROFILING_NOTES.md).
    per_layer_overhead_ms: float = 0.0
    roofline_smoothness: float = 0.0
    # Fixed cost of one all-reduce call whatever T (kernel launch, the barrier of the engine's
    # communicator); the hop term grows with log2(T), this one does not. Format 2.
    allreduce_call_latency_ms: float = 0.0
    # Host (CPU) time to launch one layer's kernels in an eager engine; launches run ahead of the GPU,
    # so the iteration takes max(GPU time, L * h). Format 2.
    host_ms_per_layer: float = 0.0
    # KV-cache read of decode attention; 0 = attention_memory_eff. Format 3.
    attention_decode_memory_eff: float = 0.0
    gpus: tuple[str, ...] = ()
    source: str = ""
    metadata: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self):
        for key in EFFICIENCY_FIELDS:
            value = getattr(self, key)
            if not _finite(value) or not 0 < value <= 1:
                raise InputError(f"profile.{key}", f"must be in (0, 1], got {value!r}")
        for key in TIME_FIELDS:
            value = getattr(self, key)
            if not _finite(value) or value < 0:
                raise InputError(f"profile.{key}", f"must be a finite number >= 0, got {value!r}")
        value = self.roofline_smoothness
        if not _finite(value) or not 0 <= value < 1:
            raise InputError("profile.roofline_smoothness", f"must be in [0, 1), got {value!r}")
        for key in OPTIONAL_EFFICIENCY_FIELDS:
            value = getattr(self, key)
            if not _finite(value) or not 0 <= value <= 1:
                raise InputError(f"profile.{key}", f"must be 0 (unset) or in (0, 1], got {value!r}")

    @property
    def decode_kv_memory_eff(self) -> float:
        """The efficiency decode attention's KV-cache read runs at (attention_memory_eff if unset)."""
        return self.attention_decode_memory_eff or self.attention_memory_eff

    def parameters(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in PARAMETER_FIELDS}

    def with_parameters(self, **values) -> "Profile":
        return replace(self, **values)

    def to_dict(self) -> dict:
        out = {"format_version": PROFILE_FORMAT_VERSION, **asdict(self)}
        out["gpus"] = list(self.gpus)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json(), encoding="utf-8")


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


ROOFLINE_ONLY = Profile(name="roofline-only", source="datasheet peaks, no efficiency factors or overheads (the physical floor)")


def profile_from_dict(data: dict, where: str = "profile") -> Profile:
    """A Profile from its JSON object, or from a ``servopt profile`` measurement file holding one under
    ``"fit"`` (whose top-level ``"gpu"`` fills in ``gpus`` when the fit names none)."""
    if not isinstance(data, dict):
        raise InputError(where, "a profile must be a JSON object")
    if "runs" in data:
        if not isinstance(data.get("fit"), dict):
            raise InputError(f"{where}.fit", "a measurement file without a fitted profile (run the fit first)")
        fitted = dict(data["fit"])
        if not fitted.get("gpus") and isinstance(data.get("gpu"), str):
            fitted["gpus"] = [data["gpu"]]
        return profile_from_dict(fitted, where=f"{where}.fit")
    known = set(PARAMETER_FIELDS) | {"name", "gpus", "source", "metadata", "format_version"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InputError(f"{where}.{unknown[0]}", f"unknown field (expected {', '.join(sorted(known))})")
    for key in PARAMETER_FIELDS:
        if key in data and not _finite(data[key]):
            raise InputError(f"{where}.{key}", f"expected a finite number, got {data[key]!r}")
    gpus = data.get("gpus", [])
    if not isinstance(gpus, list) or not all(isinstance(g, str) for g in gpus):
        raise InputError(f"{where}.gpus", "expected a list of GPU names")
    name = data.get("name", "")
    if not isinstance(name, str) or not name:
        raise InputError(f"{where}.name", "required non-empty string")
    version = data.get("format_version", 1)
    if isinstance(version, bool) or version not in range(1, PROFILE_FORMAT_VERSION + 1):
        raise InputError(f"{where}.format_version", f"expected 1..{PROFILE_FORMAT_VERSION}, got {version!r}")
    for key in ("roofline_smoothness", "allreduce_call_latency_ms", "host_ms_per_layer"):
        if version < 2 and key in data:
            raise InputError(f"{where}.{key}", "needs format_version 2")
    for key in OPTIONAL_EFFICIENCY_FIELDS:
        if version < 3 and key in data:
            raise InputError(f"{where}.{key}", "needs format_version 3")
        if key in data and not 0 <= data[key] <= 1:
            raise InputError(f"{where}.{key}", f"must be 0 (unset) or in (0, 1], got {data[key]!r}")
    for key in EFFICIENCY_FIELDS:
        if key in data and not 0 < data[key] <= 1:
            raise InputError(f"{where}.{key}", f"must be in (0, 1], got {data[key]!r}")
    if "roofline_smoothness" in data and not 0 <= data["roofline_smoothness"] < 1:
        raise InputError(f"{where}.roofline_smoothness", f"must be in [0, 1), got {data['roofline_smoothness']!r}")
    for key in TIME_FIELDS:
        if key in data and data[key] < 0:
            raise InputError(f"{where}.{key}", f"must be >= 0, got {data[key]!r}")
    return Profile(
        name=name,
        gpus=tuple(g.lower() for g in gpus),
        source=str(data.get("source", "")),
        metadata=dict(data.get("metadata", {}) or {}),
        **{k: float(data[k]) for k in PARAMETER_FIELDS if k in data},
    )


def load_profile(path: str | Path) -> Profile:
    """Read a profile JSON file; errors name the file and field."""
    from servopt import jsonio

    return profile_from_dict(jsonio.read_json(path), where=str(path))


@lru_cache(maxsize=None)
def shipped_profiles() -> tuple[tuple[str, Profile], ...]:
    """(file name, Profile) for every JSON file in ``costmodel/profiles/``, sorted by file name."""
    out = []
    folder = resources.files("servopt.costmodel").joinpath("profiles")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".json"):
            continue
        data = json.loads(entry.read_text(encoding="utf-8"))
        if isinstance(data, dict) and "runs" in data and "fit" not in data:
            continue  # raw measurements shipped for reference, no profile in them
        out.append((entry.name, profile_from_dict(data, where=entry.name)))
    return tuple(out)


def shipped_profile(name: str) -> Profile:
    """A shipped profile by its ``name`` field or file name (with or without ``.json``); "roofline-only" too."""
    if name == ROOFLINE_ONLY.name:
        return ROOFLINE_ONLY
    for file_name, profile in shipped_profiles():
        if name in (profile.name, file_name, file_name.removesuffix(".json")):
            return profile
    from servopt.costmodel.transfer import transferred_profile

    lent = transferred_profile(name)
    if lent is not None:
        return lent
    known = ", ".join([ROOFLINE_ONLY.name] + [p.name for _, p in shipped_profiles()])
    raise InputError("profile", f"no shipped profile '{name}' (shipped: {known})")


def default_profile(gpu_name: str) -> Profile:
    """The best shipped profile for a GPU: measured on it > measured on the nearest GPU of its
    architecture (lent) > public fit for it > nearest public fit of its architecture > generic fit."""
    from servopt.costmodel.transfer import choose_profile

    return choose_profile(gpu_name).profile
