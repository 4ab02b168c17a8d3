"""Measuring an LLM's iteration times on a CUDA GPU: the measurement side of the cost model.

``servopt profile`` builds the decoder stack of a catalog LLM with random bf16 weights (nothing is
downloaded), runs prefill, decode and mixed batches over a grid of shapes the way a serving engine
runs one iteration, and writes the raw times plus the GPU's measured matmul and copy ceilings to
one profile JSON. ``servopt.costmodel.calibration`` fits the cost model's parameters to them.

PyTorch is an optional dependency: it is imported only inside the functions that touch the GPU
(``_torch()``), so this module's grid, memory plan and JSON writing run and are tested without it.

What one iteration is (per layer, in this order; symbols: hidden ``d``, query heads ``h_q``, KV
heads ``h_kv``, head size ``d_h``, FFN width ``d_ff``, all divided by the TP degree ``T`` where the
weights are sharded Megatron-style):

1. RMSNorm; fused QKV projection ``[n, d] x [d, (h_q + 2 h_kv) d_h / T]``; rotary embedding
   (rotate-half form, Su et al. 2021, "RoFormer") on q and k at each token's absolute position.
2. New k, v written into the KV cache (token-major ``[seq, pos, h_kv, d_h]`` like a serving
   engine's cache blocks), then attention read over the cache:
   - prefill chunks (``chunk`` new tokens after ``cached`` tokens already in the cache): causal
     attention aligned bottom-right (token ``cached + i`` sees positions ``0..cached + i``); equal
     chunks are batched into one call;
   - decode requests (one new token each after ``ctx`` cached tokens): one query per request over
     ``ctx + 1`` keys, the whole decode batch in one call.
   Both go through PyTorch's FlashAttention-2 kernel with grouped-query heads read natively
   (``attention_impl = "flash"``; the kernel splits the KV sequence across thread blocks when the
   batch x heads do not fill the GPU, the flash-decoding scheme of Dao et al. 2023). Where that
   kernel is unavailable (CPU, old PyTorch) it falls back to
   ``scaled_dot_product_attention`` over KV heads repeated to ``h_q`` (``"sdpa-repeat-kv"``),
   which also reads the cache once per iteration. The profile records which ran.
3. Output projection ``[n, h_q d_h / T] x [.., d]`` and residual add; RMSNorm; gated SwiGLU MLP
   (``[d, 2 d_ff / T]`` gate+up, SiLU(gate) * up, ``[d_ff / T, d]`` down) or a 2-matrix GELU MLP
   (OPT), residual add.
   Every architecture gets RMSNorm and RoPE: OPT's LayerNorm and learned positions are elementwise
   passes of the same size, which the cost model counts the same way.
The prefix is the token embedding gather; the suffix is the final RMSNorm, the LM head
``[rows, d] x [d, V / T]`` on the one row per sequence that samples (the last token of each prefill
chunk, every decode request) and a greedy argmax. Tensor-parallel all-reduces are *not* run (one
GPU): with ``--tp T`` the per-GPU shard of a TP-``T`` deployment is timed, and the cost model adds
communication from its own interconnect term.

Timing (METHOD.md of the device notes; Vidur, Agrawal et al. MLSys'24, times operators the same
way): every shape is run once eagerly, captured in a CUDA graph (one graph for the full-depth layer
stack, one for embedding + head), replayed ``warmup`` times, then replayed ``repeats`` times (5 to
``max_repeats``, as many as fit a time budget) with a CUDA event pair around each replay; the
median of ``head + stack`` is kept with the 10th/90th percentiles. Inputs, weights and the KV
cache hold random normal values (never zeros). The stack always runs the model's full depth
``num_layers``. When only ``layers_timed`` distinct layers are built (the model does not fit, or to
save time) layer ``i`` uses the weights and KV buffer of built layer ``i mod layers_timed``: the GPU
executes every kernel of the real iteration, and the reused weights cannot be served from the
50 MB L2 cache because the other built layers' weights (>= 100 MB each for 7B-class and larger
models) stream through it in between. ``scaling_check`` measures this against the distinct full
stack where it fits. (Timing fewer layers and scaling by ``num_layers / layers_timed`` was tried
first and rejected: the smoke run on the H100 showed a fixed ~0.1 ms per graph replay that the
scaling multiplied, +10% on an 8B prefill of 64 tokens; costmodel/PROFILING_NOTES.md.)
"""
from __future__ import annotations

import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

from servopt.errors import EnvironmentProblem, InputError
from servopt.instances.hardware import LLM

PROFILE_FORMAT = "servopt-profile/1"
NEEDS = "servopt profile needs PyTorch and a CUDA GPU"
GIB = 2**30


# --------------------------------------------------------------------------------------------
# Shapes and grids (pure Python)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BatchShape:
    """One iteration's batch: prefill chunks and a decode batch of equal context length.

    ``prefill``: ``(chunk_tokens, cached_tokens)`` per prefilling sequence; ``decode_batch``
    requests each with ``decode_ctx_tokens`` tokens already in the KV cache.
    """

    prefill: tuple[tuple[int, int], ...] = ()
    decode_batch: int = 0
    decode_ctx_tokens: int = 0

    def __post_init__(self):
        if not self.prefill and self.decode_batch <= 0:
            raise InputError("shape", "a batch needs a prefill chunk or a decode request")
        for chunk, cached in self.prefill:
            if chunk <= 0 or cached < 0:
                raise InputError("shape.prefill", f"chunk must be > 0 and cached >= 0, got ({chunk}, {cached})")
        if self.decode_batch < 0 or self.decode_ctx_tokens < 0:
            raise InputError("shape.decode", "decode batch and context must be >= 0")
        if self.decode_batch and self.decode_ctx_tokens <= 0:
            raise InputError("shape.decode_ctx_tokens", "decode requests need a context of >= 1 token")

    @property
    def regime(self) -> str:
        if self.prefill and self.decode_batch:
            return "mixed"
        return "prefill" if self.prefill else "decode"

    @property
    def new_tokens(self) -> int:
        return sum(chunk for chunk, _ in self.prefill) + self.decode_batch

    @property
    def sampled_rows(self) -> int:
        """Rows that go through the LM head: one per prefilling sequence and per decode request."""
        return len(self.prefill) + self.decode_batch

    @property
    def kv_tokens(self) -> int:
        """Cache positions the iteration touches (read or written), summed over sequences."""
        return sum(chunk + cached for chunk, cached in self.prefill) + self.decode_batch * (self.decode_ctx_tokens + 1)

    def prefill_groups(self) -> list[tuple[int, int, int]]:
        """Equal prefill chunks batched into one attention call: ``(count, chunk, cached)``."""
        groups: dict[tuple[int, int], int] = {}
        for item in self.prefill:
            groups[item] = groups.get(item, 0) + 1
        return [(count, chunk, cached) for (chunk, cached), count in groups.items()]

    def decode_contexts(self) -> list[int]:
        return [self.decode_ctx_tokens] * self.decode_batch

    def key(self) -> str:
        pre = "+".join(f"{c}@{k}" for c, k in self.prefill) or "-"
        return f"p[{pre}] d[{self.decode_batch}x{self.decode_ctx_tokens}]"

    def to_dict(self) -> dict:
        return {"prefill": [[c, k] for c, k in self.prefill], "decode_batch": self.decode_batch,
                "decode_ctx_tokens": self.decode_ctx_tokens}

    @classmethod
    def from_dict(cls, data: dict, path: str = "shape") -> "BatchShape":
        try:
            prefill = tuple((int(c), int(k)) for c, k in data.get("prefill", []))
            return cls(prefill, int(data.get("decode_batch", 0)), int(data.get("decode_ctx_tokens", 0)))
        except (TypeError, ValueError, AttributeError) as exc:
            raise InputError(path, f"malformed batch shape ({exc})") from None
        except InputError as exc:
            raise InputError(f"{path}.{exc.field.removeprefix('shape').lstrip('.')}".rstrip("."), exc.message) from None


def _p(chunk: int, cached: int = 0, count: int = 1) -> tuple[tuple[int, int], ...]:
    return ((chunk, cached),) * count


@dataclass(frozen=True)
class ProfileGrid:
    """The shapes one profile times; ``max_kv_tokens`` caps the KV cache a shape may touch."""

    name: str
    shapes: tuple[BatchShape, ...]

    def filtered(self, max_kv_tokens: int, max_new_tokens: int) -> tuple[list[BatchShape], list[dict]]:
        kept, skipped = [], []
        for s in self.shapes:
            if s.kv_tokens > max_kv_tokens:
                skipped.append({"shape": s.to_dict(), "reason": f"KV cache of {s.kv_tokens} tokens exceeds the {max_kv_tokens} that fit"})
            elif s.new_tokens > max_new_tokens:
                skipped.append({"shape": s.to_dict(), "reason": f"{s.new_tokens} new tokens exceed the {max_new_tokens} activations that fit"})
            else:
                kept.append(s)
        return kept, skipped


def _unique(shapes: Iterable[BatchShape]) -> tuple[BatchShape, ...]:
    seen, out = set(), []
    for s in shapes:
        if s not in seen:
            seen.add(s)
            out.append(s)
    return tuple(out)


def full_grid() -> ProfileGrid:
    """The default grid for a whole model: about 115 shapes across the three regimes.

    Token counts follow the ranges serving engines meet (Sarathi-Serve chunk sizes 256-2048,
    decode batches up to 256, contexts up to 8K; Agrawal et al. OSDI'24) and Vidur's profiling
    ranges (1-4096 tokens, decode batch 1-128).
    """
    shapes: list[BatchShape] = []
    for p in (16, 32, 64, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096, 6144, 8192):
        shapes.append(BatchShape(_p(p)))
    for count, p in ((2, 512), (4, 256), (4, 1024), (8, 512), (16, 256), (4, 2048), (32, 128)):
        shapes.append(BatchShape(_p(p, 0, count)))
    for p, cached in ((512, 512), (512, 2048), (1024, 1024), (1024, 4096), (2048, 2048), (256, 8192), (128, 1024)):
        shapes.append(BatchShape(_p(p, cached)))
    for ctx in (128, 512, 2048, 8192):
        for b in (1, 2, 4, 8, 16, 32, 48, 64, 96, 128, 192, 256):
            shapes.append(BatchShape((), b, ctx))
    # Large-batch decode (added after the shipped H100 measurement, which stops at batch 256): the
    # cost model's worst known points are decode 512 x 512 (costmodel/calibration.py, DECODE_KV_DEFAULT).
    for ctx in (128, 512, 1024):
        for b in (384, 512):
            shapes.append(BatchShape((), b, ctx))
    for p in (64, 256, 1024, 2048):
        for b in (4, 16, 64, 128):
            for ctx in (512, 2048):
                shapes.append(BatchShape(_p(p), b, ctx))
    shapes.append(BatchShape(_p(512, 2048), 32, 1024))
    shapes.append(BatchShape(_p(256, 4096), 96, 1024))
    shapes.append(BatchShape(_p(512, 0, 2), 64, 512))
    return ProfileGrid("full", _unique(shapes))


def quick_grid() -> ProfileGrid:
    """A dozen shapes across the regimes, for a smoke test of the whole path."""
    shapes = [BatchShape(_p(p)) for p in (64, 512, 2048)]
    shapes += [BatchShape(_p(512, 1024)), BatchShape(_p(256, 0, 4))]
    shapes += [BatchShape((), b, ctx) for b, ctx in ((1, 512), (16, 2048), (128, 1024))]
    shapes += [BatchShape(_p(p), b, 1024) for p, b in ((256, 16), (1024, 64))]
    return ProfileGrid("quick", tuple(shapes))


def splitwise_grid() -> ProfileGrid:
    """Shapes of Splitwise's measured Llama-2-70B table (Patel et al. ISCA'24, ``perf_model.csv``).

    Its prompt phase runs ``batch_size`` prompts of ``prompt_size`` tokens in one iteration
    (prompt 128..8192 at batch 1; prompt 512 at batch 1..64); its token phase decodes
    ``batch_size`` requests whose context grows from ``prompt_size`` over 128 generated tokens.
    Extra shapes fill the ranges in between so that the fit is not tied to that table.
    """
    shapes: list[BatchShape] = []
    for p in (64, 128, 256, 512, 1024, 2048, 4096, 8192):
        shapes.append(BatchShape(_p(p)))
    for b in (2, 4, 8, 16, 32, 64):
        shapes.append(BatchShape(_p(512, 0, b)))
    shapes.append(BatchShape(_p(1024, 2048)))
    shapes.append(BatchShape(_p(256, 0, 8)))
    for ctx in (576, 1088, 2112, 4160, 8256):
        for b in (1, 2, 4, 8, 16, 32, 64):
            shapes.append(BatchShape((), b, ctx))
    for b in (128, 256):
        shapes.append(BatchShape((), b, 576))
    for p, b in ((256, 16), (512, 32), (1024, 64), (2048, 8)):
        shapes.append(BatchShape(_p(p), b, 1088))
    return ProfileGrid("splitwise", _unique(shapes))


GRIDS: dict[str, Callable[[], ProfileGrid]] = {"full": full_grid, "quick": quick_grid, "splitwise": splitwise_grid}


def get_grid(name: str) -> ProfileGrid:
    if name not in GRIDS:
        raise InputError("--grid", f"unknown grid '{name}' (known: {', '.join(GRIDS)})")
    return GRIDS[name]()


# --------------------------------------------------------------------------------------------
# Sharding and the memory plan (pure Python)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Shard:
    """Per-GPU sizes of one TP-``tp`` shard of ``llm`` (Megatron-LM column/row split)."""

    llm_name: str
    tp: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    vocab: int
    gated_mlp: bool
    tied_embeddings: bool
    num_layers: int
    dtype_bytes: int = 2

    @property
    def qkv_out(self) -> int:
        return (self.heads + 2 * self.kv_heads) * self.head_dim

    def layer_weight_bytes(self) -> int:
        mlp = (3 if self.gated_mlp else 2) * self.hidden * self.ffn
        attn = self.hidden * self.qkv_out + self.heads * self.head_dim * self.hidden
        return (attn + mlp + 2 * self.hidden) * self.dtype_bytes

    def embed_head_bytes(self) -> int:
        tables = 1 if self.tied_embeddings else 2
        return (tables * self.vocab * self.hidden + self.hidden) * self.dtype_bytes

    def kv_bytes_per_token_layer(self) -> int:
        return 2 * self.kv_heads * self.head_dim * self.dtype_bytes

    def activation_bytes_per_token(self) -> int:
        """Live activations per new token inside one layer (x, norm out, qkv, rotated q/k, attention
        out, o-proj out, gate+up, SiLU product), with a factor 2 for the allocator's slack."""
        per = 4 * self.hidden + 2 * self.qkv_out + self.heads * self.head_dim + (3 if self.gated_mlp else 1) * self.ffn
        return 2 * per * self.dtype_bytes


def shard(llm: LLM, tp: int) -> Shard:
    if not isinstance(tp, int) or tp < 1:
        raise InputError("--tp", f"must be a positive integer, got {tp!r}")
    if llm.num_heads % tp:
        raise InputError("--tp", f"{llm.name} has {llm.num_heads} attention heads, not divisible by TP {tp}")
    if llm.num_kv_heads % tp and tp % llm.num_kv_heads:
        raise InputError("--tp", f"{llm.name} has {llm.num_kv_heads} KV heads: TP {tp} neither divides them nor is a multiple")
    if llm.intermediate_size % tp or llm.hidden_size % tp:
        raise InputError("--tp", f"{llm.name}'s hidden/FFN sizes are not divisible by TP {tp}")
    if llm.num_experts != 1:
        raise InputError("--llm", f"{llm.name} is a mixture of experts; the profiler builds dense decoders only")
    # KV heads fewer than T are replicated (each GPU keeps one), as in vLLM and Megatron.
    return Shard(llm.name, tp, llm.hidden_size, llm.num_heads // tp, max(1, llm.num_kv_heads // tp), llm.head_dim,
                 llm.intermediate_size // tp, math.ceil(llm.vocab_size / tp), llm.gated_mlp, llm.tied_embeddings,
                 llm.num_layers, llm.dtype_bytes)


@dataclass(frozen=True)
class MemoryPlan:
    layers_timed: int
    weight_bytes: int
    kv_budget_tokens: int  # KV positions per layer the cache buffer holds
    max_new_tokens: int
    total_bytes: int
    free_bytes: int


HEADROOM_BYTES = 3 * GIB  # CUDA context, cuBLAS workspaces, graph pools, fragmentation
WEIGHT_SHARE = 0.7  # weights may take this share of free memory when layers are chosen automatically


def plan_memory(sh: Shard, grid_shapes: list[BatchShape], free_bytes: int, layers: int | None) -> MemoryPlan:
    """Choose how many layers to build and how big a KV buffer, or say clearly that it cannot fit.

    ``layers=None``: all layers if their weights take at most ``WEIGHT_SHARE`` of free memory
    (the rest holds activations and the KV cache), else as many as do (at least 2, so that the
    per-layer scaling stays measurable). An explicit ``layers`` that cannot run even the grid's
    smallest shape is an error, never silently reduced. The KV buffer gets what is left, up to
    the grid's largest shape; shapes that need more are skipped and listed as such.
    """
    if not grid_shapes:
        raise InputError("--grid", "the grid has no shapes")
    need_kv = max(s.kv_tokens for s in grid_shapes)
    min_kv = min(s.kv_tokens for s in grid_shapes)
    need_new = max(s.new_tokens for s in grid_shapes)
    act = need_new * sh.activation_bytes_per_token() + max(s.sampled_rows for s in grid_shapes) * sh.vocab * 4
    fixed = sh.embed_head_bytes() + act + HEADROOM_BYTES
    lw, kvpl = sh.layer_weight_bytes(), sh.kv_bytes_per_token_layer()
    fit_layers = int((free_bytes - fixed) // (lw + min_kv * kvpl)) if free_bytes > fixed else 0
    where = f"{sh.llm_name} at TP {sh.tp}"
    if layers is not None:
        if layers < 1 or layers > sh.num_layers:
            raise InputError("--layers", f"must be between 1 and {sh.num_layers} for {sh.llm_name}, got {layers}")
        if layers > fit_layers:
            need = fixed + layers * (lw + min_kv * kvpl)
            raise EnvironmentProblem(
                f"--layers: {where} with {layers} layers needs {need / GIB:.1f} GiB (weights, embedding and head, "
                f"activations for {need_new} tokens) but the GPU has {free_bytes / GIB:.1f} GiB free; "
                f"at most {fit_layers} layers fit")
        chosen = layers
    else:
        share = int((WEIGHT_SHARE * free_bytes - fixed) // lw) if WEIGHT_SHARE * free_bytes > fixed else 0
        chosen = min(sh.num_layers, share, fit_layers)
        if chosen < min(2, sh.num_layers):
            one = fixed + lw + min_kv * kvpl
            raise EnvironmentProblem(
                f"--llm: {where} does not fit in GPU memory: one layer with the embedding, LM head and "
                f"activations for {need_new} tokens needs {one / GIB:.1f} GiB, the GPU has "
                f"{free_bytes / GIB:.1f} GiB free (try a larger --tp or a smaller --grid)")
    weights = sh.embed_head_bytes() + chosen * lw
    kv_tokens = int(min(need_kv, (free_bytes - fixed - chosen * lw) // (chosen * kvpl)))
    total = fixed + chosen * lw + chosen * kv_tokens * kvpl
    return MemoryPlan(chosen, weights, kv_tokens, need_new, total, free_bytes)


# --------------------------------------------------------------------------------------------
# Results (pure Python)
# --------------------------------------------------------------------------------------------

@dataclass
class Measurement:
    """One timed shape: iteration time of the whole model, ``head_ms + stack_ms`` (medians of
    the per-replay sums, with their 10th/90th percentiles ``p10_ms``/``p90_ms``)."""

    shape: BatchShape
    time_ms: float
    stack_ms: float
    head_ms: float
    p10_ms: float
    p90_ms: float
    repeats: int

    @property
    def regime(self) -> str:
        return self.shape.regime

    def to_dict(self) -> dict:
        return {"regime": self.regime, **self.shape.to_dict(), "time_ms": round(self.time_ms, 5),
                "stack_ms": round(self.stack_ms, 5), "head_ms": round(self.head_ms, 5),
                "p10_ms": round(self.p10_ms, 5), "p90_ms": round(self.p90_ms, 5), "repeats": self.repeats}

    @classmethod
    def from_dict(cls, d: dict, path: str = "point") -> "Measurement":
        if not isinstance(d, dict):
            raise InputError(path, "expected an object")
        t = d.get("time_ms")
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
            raise InputError(f"{path}.time_ms", f"must be a finite number > 0, got {t!r}")
        try:
            return cls(BatchShape.from_dict(d, path), float(d["time_ms"]), float(d.get("stack_ms", d["time_ms"])),
                       float(d.get("head_ms", 0.0)), float(d.get("p10_ms", d["time_ms"])),
                       float(d.get("p90_ms", d["time_ms"])), int(d.get("repeats", 1)))
        except KeyError as exc:
            raise InputError(f"{path}.{exc.args[0]}", "required field is missing") from None


@dataclass
class ProfileRun:
    """All measurements of one (LLM, TP) on one GPU."""

    llm: str
    tp: int
    num_layers: int
    layers_timed: int
    grid: str
    attention_impl: str
    attention_check_rel_err: float | None
    points: list[Measurement]
    skipped: list[dict] = field(default_factory=list)
    scaling_check: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"llm": self.llm, "tp": self.tp, "num_layers": self.num_layers, "layers_timed": self.layers_timed,
                "grid": self.grid, "attention_impl": self.attention_impl,
                "attention_check_rel_err": self.attention_check_rel_err, "seconds": round(self.seconds, 2),
                "points": [m.to_dict() for m in self.points], "skipped": self.skipped,
                "scaling_check": self.scaling_check}

    @classmethod
    def from_dict(cls, d: dict, path: str = "runs[0]") -> "ProfileRun":
        if not isinstance(d, dict):
            raise InputError(path, "expected an object")
        for key in ("llm", "tp", "points"):
            if key not in d:
                raise InputError(f"{path}.{key}", "required field is missing")
        if isinstance(d["tp"], bool) or not isinstance(d["tp"], int) or d["tp"] < 1:
            raise InputError(f"{path}.tp", f"must be a positive integer, got {d['tp']!r}")
        if not isinstance(d["points"], list) or not d["points"]:
            raise InputError(f"{path}.points", "expected a non-empty list of timed shapes")
        pts = [Measurement.from_dict(p, f"{path}.points[{i}]") for i, p in enumerate(d["points"])]
        return cls(d["llm"], int(d["tp"]), int(d.get("num_layers", 0)), int(d.get("layers_timed", 0)),
                   d.get("grid", "?"), d.get("attention_impl", "?"), d.get("attention_check_rel_err"), pts,
                   list(d.get("skipped", [])), list(d.get("scaling_check", [])), float(d.get("seconds", 0.0)))


def write_json_atomic(data: dict, path: str | os.PathLike) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename, so that
    a failure at any point leaves no partial file behind."""
    target = Path(path)
    if target.parent and not target.parent.exists():
        raise InputError("--out", f"folder {str(target.parent)!r} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=str(target.parent or "."))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, sort_keys=False)
            fh.write("\n")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would make the shipped file unreadable to others
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def summarise_percentiles(times_ms: list[float]) -> tuple[float, float, float]:
    """Median and 10th/90th percentiles (nearest rank) of repeated timings."""
    if not times_ms:
        raise ValueError("no timings")
    xs = sorted(times_ms)
    def rank(q):
        return xs[min(len(xs) - 1, max(0, math.ceil(q * len(xs)) - 1))]
    return statistics.median(xs), rank(0.10), rank(0.90)


# --------------------------------------------------------------------------------------------
# The torch side
# --------------------------------------------------------------------------------------------

def _torch():
    """Import torch and check for a CUDA GPU; one-line errors otherwise."""
    try:
        import torch  # noqa: PLC0415 - optional dependency, imported only here
    except ImportError:
        raise EnvironmentProblem(f"profile: {NEEDS}: PyTorch is not installed (pip install 'servopt[profile]')") from None
    return torch


def require_cuda():
    torch = _torch()
    if not torch.cuda.is_available():
        raise EnvironmentProblem(f"profile: {NEEDS}: PyTorch {torch.__version__} sees no CUDA device")
    return torch


def _rms_norm(torch, x, w, eps=1e-5):
    f = getattr(torch.nn.functional, "rms_norm", None)
    if f is not None:
        return f(x, (x.shape[-1],), w, eps)
    var = x.float().pow(2).mean(-1, keepdim=True)
    return (x.float() * torch.rsqrt(var + eps)).to(x.dtype) * w


def _rope(torch, x, cos, sin):
    """Rotate-half RoPE: x [n, h, d_h], cos/sin [n, 1, d_h] (RoFormer, Su et al. 2021, eq. 34)."""
    half = x.shape[-1] // 2
    rot = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rot * sin


def attention(torch, q, k, v, *, causal: bool, impl: str):
    """q [b, Lq, h_q, d], k/v [b, Lk, h_kv, d] -> [b, Lq, h_q, d]; causal = bottom-right aligned.

    ``impl="flash"``: FlashAttention-2 through ``aten._scaled_dot_product_flash_attention``, whose
    causal mask is bottom-right aligned and which reads GQA heads natively (Dao, "FlashAttention-2",
    2023). ``impl="flash-packed-gqa"``: the same kernel, but a decode call (one query per sequence,
    no mask) puts the ``g = h_q / h_kv`` query heads that share a KV head into the query-length
    dimension: ``[b, 1, h_q, d]`` is viewed as ``[b, h_kv, g, d]``, so each KV head is read by one
    thread block instead of ``g`` (the "pack GQA" layout of FlashAttention-3, Shah et al. 2024, and of
    FlashInfer's decode kernels; serving engines decode this way). Exact: with no mask every query row
    attends to every key either way. ``impl="sdpa-repeat-kv"``: repeat KV heads and call
    ``scaled_dot_product_attention`` with a lower-right causal bias where ``Lq != Lk``.
    """
    scale = 1.0 / math.sqrt(q.shape[-1])
    b, lq, h_q, d = q.shape
    h_kv = k.shape[2]
    if impl == "flash-packed-gqa" and lq == 1 and not causal and h_q > h_kv:
        out = torch.ops.aten._scaled_dot_product_flash_attention(
            pack_gqa_decode(q, h_kv).transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), 0.0, False, False,
            scale=scale)[0]
        return unpack_gqa_decode(out.transpose(1, 2))
    qt, kt, vt = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    if impl in ("flash", "flash-packed-gqa"):
        out = torch.ops.aten._scaled_dot_product_flash_attention(qt, kt, vt, 0.0, causal, False, scale=scale)[0]
        return out.transpose(1, 2)
    group = q.shape[2] // k.shape[2]
    if group > 1:
        kt = kt.repeat_interleave(group, dim=1)
        vt = vt.repeat_interleave(group, dim=1)
    F = torch.nn.functional
    if causal and q.shape[1] != k.shape[1]:
        from torch.nn.attention.bias import causal_lower_right  # noqa: PLC0415
        out = F.scaled_dot_product_attention(qt, kt, vt, attn_mask=causal_lower_right(q.shape[1], k.shape[1]), scale=scale)
    else:
        out = F.scaled_dot_product_attention(qt, kt, vt, is_causal=causal, scale=scale)
    return out.transpose(1, 2)


def pack_gqa_decode(q, kv_heads: int):
    """Decode queries ``[b, 1, h_q, d]`` -> ``[b, g, h_kv, d]``: the ``g`` query heads that share KV
    head ``j`` (heads ``j g .. j g + g - 1``, PyTorch's GQA order) become ``g`` query rows of head ``j``."""
    b, _, h_q, d = q.shape
    return q.reshape(b, kv_heads, h_q // kv_heads, d).transpose(1, 2)


def unpack_gqa_decode(out):
    """Inverse of ``pack_gqa_decode``: ``[b, g, h_kv, d]`` -> ``[b, 1, h_kv g, d]``."""
    b, g, h_kv, d = out.shape
    return out.transpose(1, 2).reshape(b, 1, h_kv * g, d)


def reference_attention(torch, q, k, v, *, causal: bool):
    """Float64 attention by definition (for checks): softmax(q k^T / sqrt(d) + mask) v."""
    b, lq, hq, d = q.shape
    lk, hkv = k.shape[1], k.shape[2]
    g = hq // hkv
    qf, kf, vf = q.double(), k.double().repeat_interleave(g, dim=2), v.double().repeat_interleave(g, dim=2)
    s = torch.einsum("bqhd,bkhd->bhqk", qf, kf) / math.sqrt(d)
    if causal:
        qpos = torch.arange(lq).view(lq, 1) + (lk - lq)
        kpos = torch.arange(lk).view(1, lk)
        s = s.masked_fill((kpos > qpos).to(s.device), float("-inf"))
    return torch.einsum("bhqk,bkhd->bqhd", torch.softmax(s, dim=-1), vf)


def check_attention(torch, impl: str, device, dtype, heads=8, kv_heads=2, head_dim=64) -> float:
    """Largest relative error of ``attention`` vs the float64 definition over a prefill, a chunked
    prefill and a decode case, on fresh random inputs; NaN never passes."""
    worst = 0.0
    gen = torch.Generator(device="cpu").manual_seed(1234)
    for b, lq, lk, causal in ((2, 64, 64, True), (1, 48, 160, True), (5, 1, 97, False)):
        q = torch.randn(b, lq, heads, head_dim, generator=gen).to(device, dtype)
        k = torch.randn(b, lk, kv_heads, head_dim, generator=gen).to(device, dtype)
        v = torch.randn(b, lk, kv_heads, head_dim, generator=gen).to(device, dtype)
        out = attention(torch, q, k, v, causal=causal, impl=impl).double().cpu()
        ref = reference_attention(torch, q.cpu(), k.cpu(), v.cpu(), causal=causal)
        err = float((out - ref).norm() / ref.norm())
        if not math.isfinite(err):
            return float("inf")
        worst = max(worst, err)
    return worst


ATTENTION_IMPLS = ("flash-packed-gqa", "flash", "sdpa-repeat-kv")


def require_attention_name(name: str) -> None:
    """InputError unless ``name`` is ``auto`` or one of ``ATTENTION_IMPLS`` (checked before any GPU work)."""
    if name not in ("auto",) + ATTENTION_IMPLS:
        raise InputError("--attention", f"unknown attention {name!r}; one of auto, {', '.join(ATTENTION_IMPLS)}")


def choose_attention(torch, device, dtype, prefer: str = "auto") -> tuple[str, float]:
    """The first of ``ATTENTION_IMPLS`` (from ``prefer`` on) that runs and matches the definition.

    FlashAttention with GQA decode packed comes first; ``prefer="flash"`` reproduces profiles taken
    before packing (their decode read the KV cache once per query head)."""
    require_attention_name(prefer)
    order = ATTENTION_IMPLS if prefer == "auto" else ATTENTION_IMPLS[ATTENTION_IMPLS.index(prefer):]
    if device.type == "cuda":
        for impl in order[:-1]:
            try:
                err = check_attention(torch, impl, device, dtype)
            except (RuntimeError, NotImplementedError):
                continue
            if err < 2e-2:
                return impl, err
    return "sdpa-repeat-kv", check_attention(torch, "sdpa-repeat-kv", device, dtype)


class DecoderStack:
    """Random-weight decoder layers of one shard, a KV cache buffer, and per-shape forwards.

    Built once per (LLM, TP); ``forwards(shape)`` returns two closures over static buffers (the
    layer stack and embedding+head) that a CUDA graph captures.
    """

    def __init__(self, torch, sh: Shard, layers: int, kv_tokens: int, device, dtype, *, attention_impl: str,
                 seed: int = 0, max_position: int = 16384):
        self.torch, self.sh, self.layers, self.device, self.dtype = torch, sh, layers, device, dtype
        self.attention_impl = attention_impl
        torch.manual_seed(seed)
        d, std = sh.hidden, 0.02

        def rand(*shape):
            return (torch.randn(*shape, device=device, dtype=dtype) * std)

        mlp_in = (2 if sh.gated_mlp else 1) * sh.ffn
        self.w_qkv = [rand(sh.qkv_out, d) for _ in range(layers)]
        self.w_o = [rand(d, sh.heads * sh.head_dim) for _ in range(layers)]
        self.w_in = [rand(mlp_in, d) for _ in range(layers)]
        self.w_out = [rand(d, sh.ffn) for _ in range(layers)]
        self.norm1 = [1.0 + rand(d) for _ in range(layers)]
        self.norm2 = [1.0 + rand(d) for _ in range(layers)]
        self.embedding = rand(sh.vocab, d)
        self.head = self.embedding if sh.tied_embeddings else rand(sh.vocab, d)
        self.final_norm = 1.0 + rand(d)
        inv = 1.0 / (500000.0 ** (torch.arange(0, sh.head_dim, 2, device=device, dtype=torch.float32) / sh.head_dim))
        ang = torch.outer(torch.arange(max_position, device=device, dtype=torch.float32), inv)
        ang = torch.cat((ang, ang), dim=-1)
        self.cos_table, self.sin_table = ang.cos().to(dtype), ang.sin().to(dtype)
        self.max_position = max_position
        # One random-filled buffer per layer holds every cache segment a shape uses (K and V).
        self.kv_elems = kv_tokens * sh.kv_heads * sh.head_dim
        self.kv = [torch.randn(2, self.kv_elems, device=device, dtype=dtype) for _ in range(layers)]

    def _segments(self, shape: BatchShape):
        """Per layer, the K/V cache views of each prefill group and of the decode batch."""
        sh = self.sh
        per_tok = sh.kv_heads * sh.head_dim
        views = []
        for li in range(self.layers):
            buf, off, segs = self.kv[li], 0, []
            for count, chunk, cached in shape.prefill_groups():
                n = count * (cached + chunk) * per_tok
                segs.append((buf[0, off:off + n].view(count, cached + chunk, sh.kv_heads, sh.head_dim),
                             buf[1, off:off + n].view(count, cached + chunk, sh.kv_heads, sh.head_dim)))
                off += n
            if shape.decode_batch:
                b, ctx = shape.decode_batch, shape.decode_ctx_tokens
                n = b * (ctx + 1) * per_tok
                segs.append((buf[0, off:off + n].view(b, ctx + 1, sh.kv_heads, sh.head_dim),
                             buf[1, off:off + n].view(b, ctx + 1, sh.kv_heads, sh.head_dim)))
                off += n
            if off > self.kv_elems:
                raise InputError("shape", f"{shape.key()} needs {off} KV elements, buffer has {self.kv_elems}")
            views.append(segs)
        return views

    def _positions(self, shape: BatchShape):
        torch = self.torch
        pos = []
        for count, chunk, cached in shape.prefill_groups():
            pos.append(torch.arange(cached, cached + chunk).repeat(count))
        if shape.decode_batch:
            pos.append(torch.full((shape.decode_batch,), shape.decode_ctx_tokens))
        p = torch.cat(pos).clamp_(max=self.max_position - 1).to(self.device)
        return self.cos_table[p].unsqueeze(1), self.sin_table[p].unsqueeze(1)

    def forwards(self, shape: BatchShape, depth: int | None = None):
        """(stack, head) closures for ``shape``; the stack runs ``depth`` layers (default: the
        model's), cycling through the ``layers`` built ones (weights and KV buffers of layer
        ``i`` are those of built layer ``i mod layers``)."""
        torch, sh = self.torch, self.sh
        depth = sh.num_layers if depth is None else depth
        F = torch.nn.functional
        n = shape.new_tokens
        x_in = torch.randn(n, sh.hidden, device=self.device, dtype=self.dtype)
        ids = torch.randint(0, sh.vocab, (n,), device=self.device)
        # Row of the last token of each prefill sequence, then every decode row.
        rows, off = [], 0
        for count, chunk, _cached in shape.prefill_groups():
            rows += [off + (i + 1) * chunk - 1 for i in range(count)]
            off += count * chunk
        rows += list(range(off, off + shape.decode_batch))
        sample_rows = torch.tensor(rows, device=self.device)
        cos, sin = self._positions(shape)
        segs = self._segments(shape)
        groups = shape.prefill_groups()
        q_sizes = [sh.heads * sh.head_dim, sh.kv_heads * sh.head_dim, sh.kv_heads * sh.head_dim]
        impl = self.attention_impl

        def layer(li, x):
            h = _rms_norm(torch, x, self.norm1[li])
            q, k, v = F.linear(h, self.w_qkv[li]).split(q_sizes, dim=-1)
            q = _rope(torch, q.view(n, sh.heads, sh.head_dim), cos, sin)
            k = _rope(torch, k.view(n, sh.kv_heads, sh.head_dim), cos, sin)
            v = v.view(n, sh.kv_heads, sh.head_dim)
            outs, start = [], 0
            for gi, (count, chunk, cached) in enumerate(groups):
                kc, vc = segs[li][gi]
                stop = start + count * chunk
                kc[:, cached:].copy_(k[start:stop].view(count, chunk, sh.kv_heads, sh.head_dim))
                vc[:, cached:].copy_(v[start:stop].view(count, chunk, sh.kv_heads, sh.head_dim))
                qs = q[start:stop].view(count, chunk, sh.heads, sh.head_dim)
                outs.append(attention(torch, qs, kc, vc, causal=True, impl=impl).reshape(count * chunk, -1))
                start = stop
            if shape.decode_batch:
                kc, vc = segs[li][-1]
                ctx = shape.decode_ctx_tokens
                kc[:, ctx].copy_(k[start:])
                vc[:, ctx].copy_(v[start:])
                qd = q[start:].view(shape.decode_batch, 1, sh.heads, sh.head_dim)
                outs.append(attention(torch, qd, kc, vc, causal=False, impl=impl).reshape(shape.decode_batch, -1))
            o = outs[0] if len(outs) == 1 else torch.cat(outs, dim=0)
            x = x + F.linear(o, self.w_o[li])
            h = _rms_norm(torch, x, self.norm2[li])
            u = F.linear(h, self.w_in[li])
            if sh.gated_mlp:
                gate, up = u.chunk(2, dim=-1)
                a = F.silu(gate) * up
            else:
                a = F.gelu(u)
            return x + F.linear(a, self.w_out[li])

        def stack():
            x = x_in
            for i in range(depth):
                x = layer(i % self.layers, x)
            return x

        def head():
            x = F.embedding(ids, self.embedding)
            last = _rms_norm(torch, x.index_select(0, sample_rows), self.final_norm)
            return F.linear(last, self.head).argmax(dim=-1)

        return stack, head


def time_graph(torch, fn, *, warmup: int, repeats: int | Callable[[float], int]) -> list[float]:
    """Capture ``fn`` in a CUDA graph after two eager runs; time replays with a CUDA event pair each.

    ``repeats`` may be a function of one probe replay's time (ms), so that short shapes get more
    replays and long ones fewer within a time budget.
    """
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        fn()  # allocations, cuBLAS handles and kernel selection happen here, outside the graph
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    for _ in range(warmup):
        graph.replay()
    if callable(repeats):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        graph.replay()
        e.record()
        torch.cuda.synchronize()
        repeats = repeats(s.elapsed_time(e))
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
    for s, e in zip(starts, ends):
        s.record()
        graph.replay()
        e.record()
    torch.cuda.synchronize()
    times = [s.elapsed_time(e) for s, e in zip(starts, ends)]
    del graph
    return times


def spin_up(torch, seconds: float = 0.5) -> None:
    """Keep the GPU busy for ``seconds`` so that its clocks are up before the first timed shape.

    Why: in the first H100 run, the first shape timed after building a new stack (an idle second or
    two) came out 10 % slower than the same shape timed again later (costmodel/PROFILING_NOTES.md).
    """
    a = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(20):
            a = (a @ a).clamp_(-1.0, 1.0)
        torch.cuda.synchronize()
    del a


def repeats_for(estimate_ms: float, budget_ms: float, lo: int, hi: int) -> int:
    """Replays that fit ``budget_ms``, between ``lo`` and ``hi``."""
    return int(max(lo, min(hi, budget_ms // max(estimate_ms, 1e-3))))


def measure_shapes(torch, stack: DecoderStack, shapes: list[BatchShape], *, num_layers: int, warmup: int,
                   max_repeats: int, budget_ms: float, log: Callable[[str], None]) -> tuple[list[Measurement], list[dict]]:
    out, skipped = [], []
    spin_up(torch)
    for i, shape in enumerate(shapes):
        try:
            stack_fn, head_fn = stack.forwards(shape, num_layers)
            st = time_graph(torch, stack_fn, warmup=warmup,
                            repeats=lambda est: repeats_for(est, budget_ms, 5, max_repeats))
            hd = time_graph(torch, head_fn, warmup=warmup, repeats=len(st))
        except torch.cuda.OutOfMemoryError:
            stack_fn = head_fn = None
            torch.cuda.empty_cache()
            skipped.append({"shape": shape.to_dict(), "reason": "CUDA out of memory"})
            log(f"  [{i + 1}/{len(shapes)}] {shape.key()}: out of memory, skipped")
            continue
        totals = [h + s for s, h in zip(st, hd)]
        med, p10, p90 = summarise_percentiles(totals)
        out.append(Measurement(shape, med, statistics.median(st), statistics.median(hd), p10, p90, len(st)))
        log(f"  [{i + 1}/{len(shapes)}] {shape.regime:7s} {shape.key():34s} {med:9.3f} ms "
            f"(p10 {p10:.3f}, p90 {p90:.3f}, n={len(st)})")
        del stack_fn, head_fn
    torch.cuda.empty_cache()
    return out, skipped


def measure_ceilings(torch, *, log: Callable[[str], None]) -> dict:
    """Measured bf16 matmul rate and device-to-device copy bandwidth (METHOD.md: 'two ceilings')."""
    dev = torch.device("cuda")
    res: dict[str, Any] = {"matmul": [], "copy": []}
    for m, k, n in ((8192, 8192, 8192), (4096, 4096, 14336), (16384, 8192, 8192)):
        a = torch.randn(m, k, device=dev, dtype=torch.bfloat16)
        b = torch.randn(k, n, device=dev, dtype=torch.bfloat16)
        times = time_graph(torch, lambda: a @ b, warmup=5, repeats=20)
        med = statistics.median(times)
        res["matmul"].append({"m": m, "k": k, "n": n, "median_ms": round(med, 5), "tflops": round(2 * m * k * n / med / 1e9, 2)})
        log(f"  matmul {m}x{k}x{n}: {2 * m * k * n / med / 1e9:.1f} TFLOP/s")
        del a, b
    for size in (1 * GIB, 4 * GIB):
        src = torch.randn(size // 2, device=dev, dtype=torch.bfloat16)
        dst = torch.empty_like(src)
        times = time_graph(torch, lambda: dst.copy_(src), warmup=5, repeats=20)
        med = statistics.median(times)
        res["copy"].append({"bytes": size, "median_ms": round(med, 5), "gb_per_s": round(2 * size / med / 1e6, 1)})
        log(f"  copy {size / GIB:.0f} GiB: {2 * size / med / 1e6:.0f} GB/s (read + write)")
        del src, dst
    torch.cuda.empty_cache()
    res["matmul_tflops"] = max(r["tflops"] for r in res["matmul"])
    res["copy_gb_per_s"] = max(r["gb_per_s"] for r in res["copy"])
    return res


def device_info(torch) -> dict:
    props = torch.cuda.get_device_properties(0)
    free, total = torch.cuda.mem_get_info()
    info = {"name": props.name, "sm_count": props.multi_processor_count, "memory_bytes": int(total),
            "free_bytes_at_start": int(free), "compute_capability": f"{props.major}.{props.minor}",
            "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version()}
    l2 = getattr(props, "L2_cache_size", None)
    if l2:
        info["l2_bytes"] = int(l2)
    return info


def profile_llm(torch, llm: LLM, tp: int, grid: ProfileGrid, *, layers: int | None, warmup: int, max_repeats: int,
                budget_ms: float, scaling_check_layers: int, log: Callable[[str], None],
                attention: str = "auto") -> ProfileRun:
    """Build one (LLM, TP) shard on the GPU and time every grid shape that fits."""
    t0 = time.perf_counter()
    dev, dtype = torch.device("cuda"), torch.bfloat16
    sh = shard(llm, tp)
    torch.cuda.empty_cache()
    free, _ = torch.cuda.mem_get_info()
    plan = plan_memory(sh, list(grid.shapes), free, layers)
    shapes, skipped = grid.filtered(plan.kv_budget_tokens, plan.max_new_tokens)
    impl, err = choose_attention(torch, dev, dtype, attention)
    log(f"{llm.name} TP{tp}: {plan.layers_timed}/{sh.num_layers} layers, {len(shapes)} shapes, "
        f"plan {plan.total_bytes / GIB:.1f} of {free / GIB:.1f} GiB free, attention {impl} (rel err {err:.1e})")
    stack = DecoderStack(torch, sh, plan.layers_timed, plan.kv_budget_tokens, dev, dtype, attention_impl=impl)
    points, oom = measure_shapes(torch, stack, shapes, num_layers=sh.num_layers, warmup=warmup,
                                 max_repeats=max_repeats, budget_ms=budget_ms, log=log)
    del stack
    torch.cuda.empty_cache()
    scaling = []
    if scaling_check_layers and plan.layers_timed == sh.num_layers and scaling_check_layers < sh.num_layers:
        # Same shapes through a few built layers cycled to full depth: validates the cycling.
        few = DecoderStack(torch, sh, scaling_check_layers, plan.kv_budget_tokens, dev, dtype, attention_impl=impl, seed=1)
        picks = [p for i, p in enumerate(points) if i % 4 == 0]
        checked, _ = measure_shapes(torch, few, [p.shape for p in picks], num_layers=sh.num_layers, warmup=warmup,
                                    max_repeats=max_repeats, budget_ms=budget_ms, log=log)
        full = {p.shape: p for p in picks}
        for c in checked:
            f = full[c.shape]
            scaling.append({**c.shape.to_dict(), "regime": c.regime, "full_ms": round(f.time_ms, 5),
                            "cycled_ms": round(c.time_ms, 5), "layers_built": scaling_check_layers,
                            "rel_err": round((c.time_ms - f.time_ms) / f.time_ms, 5)})
        del few
        torch.cuda.empty_cache()
    return ProfileRun(llm.name, tp, sh.num_layers, plan.layers_timed, grid.name, impl, err, points,
                      skipped + oom, scaling, time.perf_counter() - t0)


def run_profile(llms: list[LLM], tps: list[int], *, gpu: str, grid: ProfileGrid, layers: int | None, out: str | None,
                warmup: int = 3, max_repeats: int = 15, budget_ms: float = 400.0, scaling_check_layers: int = 0,
                ceilings: bool = True, command: str = "", fit: Callable[[dict], dict] | None = None,
                attention: str = "auto",
                log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True)) -> dict:
    """Profile every (LLM, TP); return the profile dict and write it to ``out`` only when all is done."""
    for llm in llms:  # input errors before any GPU work
        for tp in tps:
            shard(llm, tp)
    if out is not None:
        parent = Path(out).parent
        if str(parent) and not parent.exists():
            raise InputError("--out", f"folder {str(parent)!r} does not exist")
    torch = require_cuda()
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    torch.backends.cuda.matmul.allow_tf32 = False
    info = device_info(torch)
    log(f"device: {info['name']}, {info['sm_count']} SMs, torch {info['torch']} (CUDA {info['cuda']})")
    ceil = measure_ceilings(torch, log=log) if ceilings else None
    runs = []
    for llm in llms:
        for tp in tps:
            runs.append(profile_llm(torch, llm, tp, grid, layers=layers, warmup=warmup, max_repeats=max_repeats,
                                    budget_ms=budget_ms, scaling_check_layers=scaling_check_layers, log=log,
                                    attention=attention).to_dict())
    profile = {"format": PROFILE_FORMAT, "gpu": gpu, "device": info, "ceilings": ceil,
               "created_utc": started.strftime("%Y-%m-%dT%H:%M:%SZ"), "command": command,
               "seconds": round(time.perf_counter() - t0, 1), "runs": runs,
               "method": "CUDA-graph replays timed with CUDA events after warm-up; median of repeats; random "
                         "bf16 weights, inputs and KV cache; see servopt.costmodel.profiling"}
    if fit is not None:
        profile["fit"] = fit(profile)
    if out is not None:
        write_json_atomic(profile, out)
    return profile


def read_profile(path: str | os.PathLike) -> dict:
    """Read a profile JSON and check its top-level shape; errors name the field."""
    p = Path(path)
    if not p.exists():
        raise InputError(str(path), "file not found")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(str(path), f"not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(data, dict):
        raise InputError(str(path), "expected a JSON object")
    if data.get("format") != PROFILE_FORMAT:
        raise InputError("format", f"expected '{PROFILE_FORMAT}', got {data.get('format')!r}")
    if not isinstance(data.get("runs"), list) or not data["runs"]:
        raise InputError("runs", "expected a non-empty list of profiled (llm, tp) runs")
    for i, r in enumerate(data["runs"]):
        ProfileRun.from_dict(r, f"runs[{i}]")
    return data
