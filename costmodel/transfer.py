"""Which efficiency profile each GPU gets, and lending a measured profile to a GPU of the same architecture.

API (stable)::

    from servopt.costmodel.transfer import choose_profile, catalog_choices, transfer_profile
    choice = choose_profile("h200")       # ProfileChoice: .profile, .kind, .donor_gpu, .engine, .note
    choice.profile.name                   # 'h200-from-h100-sxm-measured'
    [c.to_dict() for c in catalog_choices()]   # one row per catalog GPU (servopt costmodel report)

Why: a profile's efficiencies are fractions of the datasheet peaks (costmodel/profile.py). Two GPUs of
one architecture run the same kernels (the same tensor-core instructions, the same FlashAttention and
cuBLAS code paths), so what the kernels achieve of the peaks carries over, and what they achieve in
absolute terms scales with the peaks -- the "efficiency factor" reading of GenZ (Bambhaniya et al.,
arXiv 2406.01698, §3: per-operator efficiencies of a platform applied to another platform's peaks)
and of the H200 datasheet itself, which is the H100's GH100 die with faster HBM3e (compute
capability 9.0 on both). For the H100 -> H200 pair this is what this workplace's device notes
measured: the device-to-device copy moved about 3.0 TB/s on an H100 and 4.3 TB/s on an H200 (ratio
1.43, the datasheet's 4.8 / 3.35 = 1.43), bf16 matmul 798 vs 769-798 TFLOP/s (the same peak).

The fixed terms (``overhead_ms``, ``per_sequence_ms``, ``per_layer_overhead_ms``,
``host_ms_per_layer``, the all-reduce latencies) belong to the *engine* that ran the measurements
(its launches, its scheduler, its sampler), not to the GPU: they are lent together with the
efficiencies, from the same measurement, so a GPU never mixes one engine's efficiencies with another
engine's overheads. Every choice names the engine its overheads come from (:attr:`ProfileChoice.engine`),
and :attr:`ProfileChoice.note` says so where that engine is not ``servopt profile``'s.

The rule (:func:`choose_profile`), first match wins:

1. ``measured``: a shipped profile measured on this GPU (a file not named ``public-*`` whose ``gpus``
   lists it; ``servopt profile`` + ``servopt costmodel fit``);
2. ``transferred``: the profile measured on the nearest GPU of the same architecture, with this GPU's
   datasheet peaks (nearest: smallest ``|ln(F_a / F_b)| + |ln(B_a / B_b)|`` over bf16 peak ``F`` and
   HBM bandwidth ``B``);
3. ``public``: a profile fitted to public measurement tables that lists this GPU
   (``public-<gpu>.json``; its overheads are those tables' engines');
4. ``transferred-public``: the public per-GPU profile of the nearest GPU of the same architecture;
5. ``generic``: the generic public fit (``public-generic.json``);
6. ``roofline-only`` when nothing is shipped.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from servopt.costmodel.profile import ROOFLINE_ONLY, Profile, shipped_profiles
from servopt.instances.catalog import get_gpu, gpus
from servopt.instances.hardware import GPU

GENERIC_FILE = "public-generic.json"
KINDS = ("measured", "transferred", "public", "transferred-public", "generic", "roofline-only")

# Engines whose tables the public fits were made on (costmodel/measurements/SOURCES.md).
_TABLE_ENGINES = {
    "splitwise": "Splitwise table",  # Patel et al. ISCA'24, measured Llama-2-70B/BLOOM-176B medians
    "distserve-distserve": "DistServe table",  # Zhong et al. OSDI'24, fitted A100 latency coefficients
    "distserve-vllm": "DistServe's vLLM table",
    "vidur": "Vidur operator profiles",  # Agrawal et al. MLSys'24
}
# servopt profile: PyTorch kernels replayed in CUDA graphs, FlashAttention-2 (costmodel/profiling.py)
SERVOPT_ENGINE = "servopt profile"


@dataclass(frozen=True)
class ProfileChoice:
    """The profile a catalog GPU gets by default, and where it came from."""

    gpu: str
    architecture: str
    kind: str  # one of KINDS
    profile: Profile
    donor_gpu: str | None  # the GPU the efficiencies were measured or fitted on
    donor_profile: str | None  # the shipped profile lent (transferred kinds) or used
    engine: str  # whose measurements the fixed overheads come from
    note: str  # what a reader must know: another engine's overheads, a transfer, nothing measured

    @property
    def own_engine(self) -> bool:
        """Whether the overheads come from servopt's own measurements (``servopt profile``)."""
        return self.engine == SERVOPT_ENGINE

    def to_dict(self) -> dict:
        return {"gpu": self.gpu, "architecture": self.architecture, "kind": self.kind, "profile": self.profile.name,
                "donor_gpu": self.donor_gpu, "donor_profile": self.donor_profile, "engine": self.engine,
                "overheads_from_servopt_measurements": self.own_engine, "note": self.note,
                "parameters": self.profile.parameters()}


def engine_of(profile: Profile, file_name: str = "") -> str:
    """Whose measurements a shipped profile's fixed overhead terms were fitted on."""
    if profile is ROOFLINE_ONLY or profile.name == ROOFLINE_ONLY.name:
        return "none (no overheads)"
    transfer = profile.metadata.get("transfer") if isinstance(profile.metadata, dict) else None
    if transfer:
        return transfer["engine"]
    if "runs" in profile.metadata or profile.source.startswith("servopt profile") or (
            file_name and not file_name.startswith("public-")):
        return SERVOPT_ENGINE
    tables = (profile.metadata.get("fit") or {}).get("tables") or []
    if profile.name == "public-vidur-a100-80g":
        tables = ["splitwise"]  # GPU terms from Vidur; the engine terms were fitted on Splitwise's table
    names = [_TABLE_ENGINES.get(t, t) for t in tables]
    return " + ".join(names) if names else (profile.source or profile.name)


def datasheet_distance(a: GPU, b: GPU) -> float:
    """``|ln(F_a / F_b)| + |ln(B_a / B_b)|`` over dense bf16 peak and HBM bandwidth: 0 for equal peaks."""
    return abs(math.log(a.bf16_tflops / b.bf16_tflops)) + abs(math.log(a.hbm_gb_per_s / b.hbm_gb_per_s))


def transfer_profile(donor: Profile, donor_gpu: str | GPU, target_gpu: str | GPU, *, engine: str | None = None,
                     across_architectures: bool = False) -> Profile:
    """``donor``'s efficiencies and fixed terms on ``target_gpu``'s datasheet peaks.

    The efficiencies are fractions of the peaks, so keeping them scales the donor's achieved FLOP/s,
    bandwidths and interconnect rate by ``target / donor`` datasheet ratios; the fixed terms are the
    donor engine's and are kept as they are. Raises InputError for GPUs of different architectures
    unless ``across_architectures`` (validation only: benchmarks/costmodel_transfer.py).
    """
    from servopt.errors import InputError

    src = donor_gpu if isinstance(donor_gpu, GPU) else get_gpu(donor_gpu)
    dst = target_gpu if isinstance(target_gpu, GPU) else get_gpu(target_gpu)
    if not across_architectures and (not src.architecture or src.architecture != dst.architecture):
        raise InputError("gpu", f"cannot lend {donor.name} ({src.name}, {src.architecture or 'unknown'} architecture) "
                                f"to {dst.name} ({dst.architecture or 'unknown'} architecture): efficiencies carry "
                                f"over only within one architecture")
    engine = engine or engine_of(donor)
    scale = {"bf16_tflops": dst.bf16_tflops / src.bf16_tflops, "hbm_gb_per_s": dst.hbm_gb_per_s / src.hbm_gb_per_s,
             "interconnect_gb_per_s": dst.interconnect_gb_per_s / src.interconnect_gb_per_s}
    meta = {"transfer": {"from_profile": donor.name, "from_gpu": src.name, "to_gpu": dst.name,
                         "architecture": dst.architecture, "peak_ratios": {k: round(v, 6) for k, v in scale.items()},
                         "engine": engine,
                         "rule": "efficiencies (fractions of the datasheet peaks) and the fixed terms kept from the "
                                 "donor; peaks from the target's datasheet (servopt.costmodel.transfer)"}}
    same = "same" if src.architecture == dst.architecture else f"{src.architecture} ->"
    source = (f"{donor.name} ({src.name}) lent to {dst.name} ({same} {dst.architecture} architecture): "
              f"its efficiencies on the {dst.name} datasheet peaks ({scale['bf16_tflops']:.2f}x bf16, {scale['hbm_gb_per_s']:.2f}x HBM "
              f"bandwidth), its fixed overheads from {engine}")
    return Profile(name=f"{dst.name}-from-{donor.name}", gpus=(dst.name,), source=source, metadata=meta,
                   **donor.parameters())


def _own(gpu: str) -> tuple[list[tuple[str, Profile]], list[tuple[str, Profile]]]:
    """(measured, public per-GPU) shipped profiles that list ``gpu``."""
    measured, public = [], []
    for file_name, profile in shipped_profiles():
        if gpu in profile.gpus:
            (public if file_name.startswith("public-") else measured).append((file_name, profile))
    return measured, public


def _fitted_on(profile: Profile) -> str | None:
    """The GPU a public per-GPU profile was fitted on: the first it lists (public-a100-80g: a100-80g)."""
    return profile.gpus[0] if profile.gpus else None


def _nearest(target: GPU, public: bool) -> tuple[GPU, str, Profile] | None:
    """The nearest other GPU of ``target``'s architecture with a measured (or, with ``public``, a
    public per-GPU) profile fitted on it; ties go to the catalog's order."""
    if not target.architecture:
        return None
    best = None
    for g in gpus():
        if g.name == target.name or g.architecture != target.architecture:
            continue
        measured, pub = _own(g.name)
        pool = pub if public else measured
        pool = [(f, p) for f, p in pool if not public or _fitted_on(p) == g.name]
        if not pool:
            continue
        d = datasheet_distance(g, target)
        if best is None or d < best[0]:
            best = (d, g, pool[0][0], pool[0][1])
    return None if best is None else best[1:]


def choose_profile(gpu_name: str) -> ProfileChoice:
    """The default profile of a catalog GPU by the rule of the module docstring."""
    return _choose(get_gpu(gpu_name).name)


@lru_cache(maxsize=None)
def _choose(gpu_name: str) -> ProfileChoice:
    # Cached: shipped profiles and the catalog are read once per process (both lru_cached too).
    gpu = get_gpu(gpu_name)
    arch = gpu.architecture
    measured, public = _own(gpu.name)
    if measured:
        file_name, prof = measured[0]
        return ProfileChoice(gpu.name, arch, "measured", prof, gpu.name, prof.name, engine_of(prof, file_name),
                             f"measured on this GPU ({file_name})")
    near = _nearest(gpu, public=False)
    if near is not None:
        donor_gpu, file_name, donor = near
        prof = transfer_profile(donor, donor_gpu, gpu, engine=engine_of(donor, file_name))
        return ProfileChoice(gpu.name, arch, "transferred", prof, donor_gpu.name, donor.name, engine_of(prof),
                             f"not measured: lent from {donor_gpu.name} (same architecture, same engine) "
                             f"on this GPU's datasheet peaks")
    other_engine = "overheads from another engine's table"
    if public:
        file_name, prof = public[0]
        on = _fitted_on(prof)
        where = "public tables of this GPU" if on == gpu.name else f"public tables of {on}, listed for this GPU"
        return ProfileChoice(gpu.name, arch, "public", prof, on, prof.name, engine_of(prof, file_name),
                             f"{where}; {other_engine}")
    near = _nearest(gpu, public=True)
    if near is not None:
        donor_gpu, file_name, donor = near
        prof = transfer_profile(donor, donor_gpu, gpu, engine=engine_of(donor, file_name))
        return ProfileChoice(gpu.name, arch, "transferred-public", prof, donor_gpu.name, donor.name, engine_of(prof),
                             f"nothing measured in its architecture: lent from {donor_gpu.name}'s public fit on this "
                             f"GPU's datasheet peaks; {other_engine}")
    for file_name, prof in shipped_profiles():
        if file_name == GENERIC_FILE:
            return ProfileChoice(gpu.name, arch, "generic", prof, None, prof.name, engine_of(prof, file_name),
                                 f"no profile of its architecture ({arch or 'unknown'}): generic fit of all public "
                                 f"tables; {other_engine}")
    return ProfileChoice(gpu.name, arch, "roofline-only", ROOFLINE_ONLY, None, None, engine_of(ROOFLINE_ONLY),
                         "no profile shipped: datasheet peaks, no efficiencies or overheads")


def catalog_choices() -> list[ProfileChoice]:
    """:func:`choose_profile` for every catalog GPU, in catalog order."""
    return [choose_profile(g.name) for g in gpus()]


def transferred_profile(name: str) -> Profile | None:
    """A transferred default profile by its name (e.g. ``h200-from-h100-sxm-measured``), or None."""
    for g in gpus():
        if name.startswith(g.name + "-from-"):
            choice = choose_profile(g.name)
            if choice.profile.name == name:
                return choice.profile
    return None
