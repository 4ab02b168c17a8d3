"""Iteration times from Vidur's operator profiles, so our simulator and Vidur run on the same costs.

Vidur (Agrawal et al., MLSys'24, arXiv 2405.05465; microsoft/vidur, MIT) profiles each transformer
operator on a real GPU and composes an iteration from them. We read its profile CSVs (the files in
``shared/traces/vidur_profiling/``: ``mlp.csv``, ``attention.csv``, ``all_reduce.csv``) and apply
its composition rule (research/costmodel-anchors.md §1.1) with our own interpolation instead of its
random forests (piecewise-linear in the profiled points, which the forests fit to 0.5-1.9 % MAPE,
§1.4):

    t_iter = L * ( sum_op f_op(n8)                      token-level operators, n8 = ceil(n / 8) * 8
                 + a_dec(B_d, kbar) * (1.1 if B_d > 1)   decode attention, kbar = mean KV length
                 + a_pre(q_eq, k_sum) * (1.1 if P > 1)   prefill attention, q_eq = sqrt(sum_i p_i^2)
                 + 2 * (r(n8 * d * 2 bytes) + 0.02) )    two TP all-reduces per layer (tp > 1)

with ``n`` the tokens in the batch (prefill chunk tokens plus one per decode sequence), ``L`` the
layers, ``d`` the hidden size, ``f_op`` the median times of ``attn_pre_proj, attn_post_proj,
attn_rope, mlp_up_proj, mlp_down_proj, mlp_act, input_layernorm, post_attention_layernorm, add``
(embedding and LM head not counted, as in Vidur), ``a_dec`` keyed by (decode batch, mean KV
length), ``a_pre`` by (equivalent chunk, total KV before the chunks) — Vidur's batching rules, with
its 10 % batching overhead and 0.02 ms NCCL launch term (§1.1). Beyond the profiled range values
are extrapolated linearly along the token axis and clamped on the others.

:class:`VidurProfileCost` has the same ``iteration_ms_totals`` signature as the roofline cost model
(with one equivalent prefill chunk when only totals are known) and a per-chunk ``iteration_ms``.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from servopt.errors import InputError

try:
    from numpy._core.multiarray import interp as _interp
except ImportError:  # numpy < 2
    from numpy.core.multiarray import interp as _interp

TOKEN_OPS = ("attn_pre_proj", "attn_post_proj", "attn_rope", "mlp_up_proj", "mlp_down_proj", "mlp_act",
             "input_layernorm", "post_attention_layernorm", "add")
BATCHING_OVERHEAD = 0.1  # Vidur's attention batching overhead fraction (§1.1)
NCCL_LAUNCH_MS = 0.02  # Vidur's fixed all-reduce launch overhead (§1.1)


def _read_csv(path, what: str):
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise InputError(what, f"file not found: {path}")
    try:
        return pd.read_csv(p)
    except Exception as exc:  # noqa: BLE001 - any parse failure is the user's file
        raise InputError(what, f"cannot read CSV {path}: {exc}") from None


def _need(df, cols, what):
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise InputError(what, f"missing column '{missing[0]}' (is this a Vidur profile CSV?)")


@dataclass(frozen=True)
class VidurProfileCost:
    """Vidur's composition of profiled operator times; build with :func:`load_vidur_profiles`."""

    num_layers: int
    hidden_size: int
    tp: int
    token_grid: np.ndarray = field(repr=False)  # tokens (ascending)
    token_ms: np.ndarray = field(repr=False)  # summed token-level operator ms per layer at token_grid
    dec_batch: np.ndarray = field(repr=False)
    dec_kv: np.ndarray = field(repr=False)
    dec_ms: np.ndarray = field(repr=False)  # [batch, kv]
    pre_chunk: np.ndarray = field(repr=False)
    pre_kv: np.ndarray = field(repr=False)
    pre_ms: np.ndarray = field(repr=False)  # [chunk, kv]
    ar_size: np.ndarray = field(repr=False)
    ar_ms: np.ndarray = field(repr=False)
    kv_bytes_per_token_per_gpu: float = 0.0
    source: str = ""

    # ---- pieces -------------------------------------------------------------------------------
    def _token_ms(self, n):
        n8 = np.ceil(np.asarray(n, dtype=float) / 8.0) * 8.0
        g, v = self.token_grid, self.token_ms
        inside = np.interp(n8, g, v)
        slope = (v[-1] - v[-2]) / (g[-1] - g[-2])
        return np.where(n8 > g[-1], v[-1] + slope * (n8 - g[-1]), inside)

    def _allreduce_ms(self, n):
        if self.tp <= 1:
            return np.zeros_like(np.asarray(n, dtype=float))
        n8 = np.ceil(np.asarray(n, dtype=float) / 8.0) * 8.0
        size = n8 * self.hidden_size * 2.0
        g, v = self.ar_size, self.ar_ms
        inside = np.interp(size, g, v)
        slope = (v[-1] - v[-2]) / (g[-1] - g[-2])
        return np.where(size > g[-1], v[-1] + slope * (size - g[-1]), inside) + NCCL_LAUNCH_MS

    def _decode_attention_ms(self, batch, mean_kv):
        if batch <= 0:
            return np.zeros_like(np.asarray(mean_kv, dtype=float))
        b = min(max(batch, 1), int(self.dec_batch[-1]))
        # rows interpolated on the batch axis, then the KV axis (extrapolated linearly beyond it)
        i = np.searchsorted(self.dec_batch, b)
        if self.dec_batch[i] == b:
            row = self.dec_ms[i]
        else:
            lo, hi = self.dec_batch[i - 1], self.dec_batch[i]
            w = (b - lo) / (hi - lo)
            row = (1 - w) * self.dec_ms[i - 1] + w * self.dec_ms[i]
        if batch > self.dec_batch[-1]:  # more sequences than profiled: scale linearly in batch
            row = row * (batch / self.dec_batch[-1])
        kv = np.asarray(mean_kv, dtype=float)
        inside = np.interp(kv, self.dec_kv, row)
        slope = (row[-1] - row[-2]) / (self.dec_kv[-1] - self.dec_kv[-2])
        out = np.where(kv > self.dec_kv[-1], row[-1] + slope * (kv - self.dec_kv[-1]), inside)
        return out * (1 + BATCHING_OVERHEAD if batch > 1 else 1.0)

    def _prefill_attention_ms(self, chunk_eq: float, kv: float) -> float:
        memo = self._pre_memo()
        key = (chunk_eq, kv)
        hit = memo.get(key)
        if hit is None:
            hit = memo[key] = self._prefill_attention_interp(chunk_eq, kv)
            if len(memo) > 1 << 18:
                memo.clear()
        return hit

    def _pre_memo(self) -> dict:
        if not hasattr(self, "_memo"):
            object.__setattr__(self, "_memo", {})
        return self._memo

    def _prefill_attention_interp(self, chunk_eq: float, kv: float) -> float:
        pc, pk = self._pre_lists()
        c = min(max(chunk_eq, pc[0]), pc[-1])
        k = min(max(kv, pk[0]), pk[-1])
        i = min(max(bisect.bisect_left(pc, c), 1), len(pc) - 1)
        j = min(max(bisect.bisect_left(pk, k), 1), len(pk) - 1)
        c0, c1 = pc[i - 1], pc[i]
        k0, k1 = pk[j - 1], pk[j]
        wc = (c - c0) / (c1 - c0)
        wk = (k - k0) / (k1 - k0)
        m = self._pre_rows
        val = ((1 - wc) * (1 - wk) * m[i - 1][j - 1] + wc * (1 - wk) * m[i][j - 1]
               + (1 - wc) * wk * m[i - 1][j] + wc * wk * m[i][j])
        if chunk_eq > pc[-1]:  # quadratic in the chunk beyond the profile
            val *= (chunk_eq / pc[-1]) ** 2
        return float(val)

    def _pre_lists(self):
        if not hasattr(self, "_pc"):
            object.__setattr__(self, "_pc", self.pre_chunk.tolist())
            object.__setattr__(self, "_pk", self.pre_kv.tolist())
            object.__setattr__(self, "_pre_rows", [row.tolist() for row in self.pre_ms])
        return self._pc, self._pk

    # ---- fast scalar path: tables over the token axis, like Vidur's own prediction tables ------
    def __post_init__(self):
        limit = int(max(self.token_grid[-1], 4096)) * 4
        n8 = np.arange(0, limit + 8, 8, dtype=float)
        tok = self._token_ms(np.maximum(n8, 1)) + 2 * self._allreduce_ms(np.maximum(n8, 1))
        object.__setattr__(self, "_tok_table", tok.tolist())
        object.__setattr__(self, "_dec_rows", [row.tolist() for row in self.dec_ms])
        object.__setattr__(self, "_dec_kv_list", self.dec_kv.tolist())
        object.__setattr__(self, "_run_rows", {})

    def _token_layer_ms(self, n: int) -> float:
        i = -(-n // 8)
        tab = self._tok_table
        if i < len(tab):
            return tab[i]
        return float(self._token_ms(n) + 2 * self._allreduce_ms(n))

    def _decode_attention_scalar(self, batch: int, mean_kv: float) -> float:
        b = int(batch)
        if b < 1 or b > int(self.dec_batch[-1]) or self.dec_batch[b - 1] != b:
            return float(self._decode_attention_ms(batch, mean_kv))
        row = self._dec_rows[b - 1]
        kvs = self._dec_kv_list
        if mean_kv <= kvs[0]:
            val = row[0]
        elif mean_kv >= kvs[-1]:
            val = row[-1] + (row[-1] - row[-2]) / (kvs[-1] - kvs[-2]) * (mean_kv - kvs[-1])
        else:
            j = bisect.bisect_left(kvs, mean_kv)
            w = (mean_kv - kvs[j - 1]) / (kvs[j] - kvs[j - 1])
            val = row[j - 1] + w * (row[j] - row[j - 1])
        return val * (1 + BATCHING_OVERHEAD if b > 1 else 1.0)

    # ---- public -------------------------------------------------------------------------------
    def iteration_ms(self, prefill=(), decode_seqs: int = 0, decode_context_tokens: float = 0.0) -> float:
        """One iteration: ``prefill`` = [(chunk_tokens, context_before)], plus ``decode_seqs``
        decode sequences whose contexts sum to ``decode_context_tokens``."""
        chunks = [(c, b) for c, b in prefill if c > 0]
        n = sum(c for c, _ in chunks) + decode_seqs
        if n == 0:
            return 0.0
        per_layer = self._token_layer_ms(n)
        if decode_seqs:
            per_layer += self._decode_attention_scalar(decode_seqs, decode_context_tokens / decode_seqs)
        if chunks:
            q_eq = math.sqrt(sum(c * c for c, _ in chunks))
            kv = sum(b for _, b in chunks)
            per_layer += self._prefill_attention_ms(q_eq, kv) * (1 + BATCHING_OVERHEAD if len(chunks) > 1 else 1.0)
        return self.num_layers * per_layer

    def decode_run_ms(self, decode_seqs: int, first_context_tokens: float, steps: int) -> np.ndarray:
        """``steps`` decode-only iterations of the same ``decode_seqs`` sequences, the total context
        starting at ``first_context_tokens`` and growing by one token per sequence per step (so the
        mean KV length grows by one): the fast path of a decode stretch."""
        n = int(decode_seqs)
        fast = self._run_rows.get(n)
        if fast is None:
            if not (1 <= n <= int(self.dec_batch[-1]) and self.dec_batch[n - 1] == n):
                return self.decode_ms_array(n, first_context_tokens + n * np.arange(int(steps)))
            scale = self.num_layers * (1 + BATCHING_OVERHEAD if n > 1 else 1.0)
            fast = self._run_rows[n] = (self.dec_ms[n - 1] * scale, self.num_layers * self._token_layer_ms(n))
        steps = int(steps)
        mean0 = first_context_tokens / n
        if (steps - 1) + mean0 > self._dec_kv_list[-1]:  # = kv[-1] below, compared before building kv
            return self.decode_ms_array(n, first_context_tokens + n * np.arange(steps))
        kv = np.arange(steps, dtype=float)
        kv += mean0
        out = _interp(kv, self.dec_kv, fast[0])  # np.interp minus its Python wrapper (same C routine)
        out += fast[1]
        return out

    def decode_ms_array(self, decode_seqs: int, decode_context_tokens) -> np.ndarray:
        """Decode-only iterations at several total contexts at once (numpy)."""
        ctx = np.asarray(decode_context_tokens, dtype=float)
        n = int(decode_seqs)
        if 1 <= n <= int(self.dec_batch[-1]) and self.dec_batch[n - 1] == n:
            row = self.dec_ms[n - 1]
            kv = ctx / n
            att = np.interp(kv, self.dec_kv, row)
            if kv.size and kv[-1] > self.dec_kv[-1]:
                slope = (row[-1] - row[-2]) / (self.dec_kv[-1] - self.dec_kv[-2])
                att = np.where(kv > self.dec_kv[-1], row[-1] + slope * (kv - self.dec_kv[-1]), att)
            if n > 1:
                att = att * (1 + BATCHING_OVERHEAD)
            return self.num_layers * (self._token_layer_ms(n) + att)
        per_layer = (self._token_ms(n) + 2 * self._allreduce_ms(n)
                     + self._decode_attention_ms(n, ctx / max(n, 1)))
        return self.num_layers * per_layer

    def chunk_run_ms(self, chunk: int, before, decode_seqs: int, decode_context_tokens) -> np.ndarray:
        """Iterations of one prefill chunk at several contexts ``before`` beside ``decode_seqs``
        decode sequences at total contexts ``decode_context_tokens`` (arrays of one length; the
        decode contexts grow by ``decode_seqs`` per iteration)."""
        n = int(decode_seqs)
        pre = np.array([self._prefill_attention_ms(float(chunk), int(b)) for b in before])
        out = self.num_layers * (pre + self._token_layer_ms(int(chunk) + n))
        if n:
            ctx = np.asarray(decode_context_tokens)
            out += self.decode_run_ms(n, float(ctx[0]), len(ctx)) - self.num_layers * self._token_layer_ms(n)
        return out

    def iteration_ms_totals(self, *, prefill_tokens=0, prefill_attention_pairs=0, decode_seqs=0,
                            decode_context_tokens=0, sampled_seqs=0):
        """Same signature as the roofline model. With totals only, the prefill is taken as one chunk
        of ``prefill_tokens`` whose context before it solves ``pairs = c*b + c*(c+1)/2``."""
        c = float(prefill_tokens)
        if np.ndim(decode_context_tokens) > 0:
            if c:
                raise InputError("prefill_tokens", "array contexts are for decode-only iterations")
            return self.decode_ms_array(int(decode_seqs), decode_context_tokens)
        chunks = []
        if c > 0:
            before = max(0.0, (float(prefill_attention_pairs) - c * (c + 1) / 2) / c)
            chunks = [(c, before)]
        return self.iteration_ms(chunks, int(decode_seqs), float(decode_context_tokens))

    def kv_bytes_per_token(self) -> float:
        return self.kv_bytes_per_token_per_gpu * self.tp


def load_vidur_profiles(mlp_csv, attention_csv, all_reduce_csv=None, *, num_layers: int, hidden_size: int,
                        tp: int, num_kv_heads: int = 8, head_dim: int = 128, devices_per_node: int | None = None,
                        dtype_bytes: int = 2) -> VidurProfileCost:
    """Read Vidur's three profile CSVs for one (model, GPU, TP) and build the cost function."""
    mlp = _read_csv(mlp_csv, "--vidur-mlp")
    _need(mlp, ["num_tokens", "num_tensor_parallel_workers"] + [f"time_stats.{o}.median" for o in TOKEN_OPS], "--vidur-mlp")
    mlp = mlp[mlp.num_tensor_parallel_workers == tp]
    if mlp.empty:
        raise InputError("--vidur-mlp", f"no rows for num_tensor_parallel_workers = {tp}")
    cols = [f"time_stats.{o}.median" for o in TOKEN_OPS]
    g = mlp.groupby("num_tokens")[cols].median().sort_index()
    token_grid = g.index.to_numpy(dtype=float)
    token_ms = g.sum(axis=1).to_numpy(dtype=float)

    att = _read_csv(attention_csv, "--vidur-attention")
    _need(att, ["is_prefill", "batch_size", "prefill_chunk_size", "kv_cache_size", "num_tensor_parallel_workers",
                "time_stats.attn_decode.median", "time_stats.attn_prefill.median"], "--vidur-attention")
    att = att[att.num_tensor_parallel_workers == tp]
    if att.empty:
        raise InputError("--vidur-attention", f"no rows for num_tensor_parallel_workers = {tp}")
    is_pre = att.is_prefill.astype(str).str.lower() == "true"
    dec = att[~is_pre].pivot_table(index="batch_size", columns="kv_cache_size", values="time_stats.attn_decode.median")
    dec = dec.interpolate(axis=1, limit_direction="both").interpolate(axis=0, limit_direction="both")
    pre = att[is_pre].pivot_table(index="prefill_chunk_size", columns="kv_cache_size", values="time_stats.attn_prefill.median")
    # the profile is triangular (chunk + kv <= max length); fill the rest along the KV axis
    pre = pre.interpolate(axis=1, limit_direction="both").ffill(axis=1).interpolate(axis=0, limit_direction="both")

    if all_reduce_csv is not None and tp > 1:
        ar = _read_csv(all_reduce_csv, "--vidur-all-reduce")
        _need(ar, ["num_workers", "size", "time_stats.all_reduce.median"], "--vidur-all-reduce")
        sel = ar[ar.num_workers == tp]
        if "devices_per_node" in ar.columns:
            dpn = devices_per_node or tp
            if (sel.devices_per_node == dpn).any():
                sel = sel[sel.devices_per_node == dpn]
        if sel.empty:
            raise InputError("--vidur-all-reduce", f"no rows for num_workers = {tp}")
        a = sel.groupby("size")["time_stats.all_reduce.median"].median().sort_index()
        ar_size, ar_ms = a.index.to_numpy(dtype=float), a.to_numpy(dtype=float)
    else:
        ar_size, ar_ms = np.array([0.0, 1.0]), np.array([0.0, 0.0])

    kv_per_gpu = 2.0 * dtype_bytes * head_dim * max(1, num_kv_heads // tp) * num_layers
    return VidurProfileCost(
        num_layers=num_layers, hidden_size=hidden_size, tp=tp,
        token_grid=token_grid, token_ms=token_ms,
        dec_batch=dec.index.to_numpy(dtype=float), dec_kv=dec.columns.to_numpy(dtype=float), dec_ms=dec.to_numpy(dtype=float),
        pre_chunk=pre.index.to_numpy(dtype=float), pre_kv=pre.columns.to_numpy(dtype=float), pre_ms=pre.to_numpy(dtype=float),
        ar_size=ar_size, ar_ms=ar_ms, kv_bytes_per_token_per_gpu=kv_per_gpu,
        source=f"Vidur operator profiles: {mlp_csv}, {attention_csv}, {all_reduce_csv}",
    )


def vidur_kv_capacity_tokens(*, params_per_gpu: float, kv_bytes_per_token_per_gpu: float, memory_gib: float = 80.0,
                             margin_fraction: float = 0.1) -> int:
    """Vidur's KV capacity rule (its MemoryPlanner): (memory * (1 - margin) - 2 * params) / KV bytes."""
    return int((memory_gib * 2**30 * (1 - margin_fraction) - 2 * params_per_gpu) // kv_bytes_per_token_per_gpu)


def vidur_sample_points(cost: VidurProfileCost, *, llm: str, gpu: str, tp: int, max_tokens: int = 4096) -> list:
    """Iterations priced by Vidur's profiles, as ``costmodel.fit.MeasuredPoint`` rows: whole and
    chunked prefills, decode batches over contexts, and Sarathi-style mixed batches."""
    from servopt.costmodel.fit import MeasuredPoint

    pts = []
    for p in (64, 128, 256, 512, 1024, 2048, 4096):
        if p <= max_tokens:
            pts.append(MeasuredPoint(llm=llm, gpu=gpu, tp=tp, measured_ms=cost.iteration_ms([(p, 0)]),
                                     prefill=[(p, 0)], table="vidur-prefill"))
    for c, before in ((512, 512), (512, 1536), (512, 3072), (256, 2048)):
        pts.append(MeasuredPoint(llm=llm, gpu=gpu, tp=tp, measured_ms=cost.iteration_ms([(c, before)]),
                                 prefill=[(c, before)], table="vidur-chunk"))
    for b in (1, 4, 16, 32, 64, 96, 128):
        for ctx in (256, 1024, 2048, 3584):
            pts.append(MeasuredPoint(llm=llm, gpu=gpu, tp=tp, measured_ms=cost.iteration_ms([], b, b * ctx),
                                     decode=[(b, ctx)], table="vidur-decode"))
    for b in (8, 32, 64):
        for ctx in (512, 2048):
            c = 512 - b
            pts.append(MeasuredPoint(llm=llm, gpu=gpu, tp=tp, measured_ms=cost.iteration_ms([(c, 512)], b, b * ctx),
                                     prefill=[(c, 512)], decode=[(b, ctx)], table="vidur-mixed"))
    return pts


def fit_roofline_to_vidur(cost: VidurProfileCost, *, llm: str, gpu: str, tp: int, seed: int = 0):
    """A roofline efficiency ``Profile`` fitted (``costmodel.fit.fit_profile``) to Vidur-priced iterations."""
    from servopt.costmodel.fit import fit_profile

    pts = vidur_sample_points(cost, llm=llm, gpu=gpu, tp=tp)
    return fit_profile(pts, name=f"vidur-fit-{gpu}-tp{tp}", gpus=(gpu,), source=cost.source, seed=seed)
