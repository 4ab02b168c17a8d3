"""Roofline GPU cost model: the time of one engine iteration, KV sizes, capacities, TPOT batch limits.

API (stable; other modules code against these names)::

    from servopt.costmodel.roofline import CostModel, make_cost_model, IterationCost
    cm = make_cost_model("llama-3.1-8b", "h100-sxm", tp=1, profile=None)  # path, Profile, name or None
    c = cm.iteration(prefill=[(chunk_tokens, context_tokens_before), ...], decode=[context_tokens, ...])
    c.iteration_ms, c.flops, c.bytes, c.bound, c.operators
    cm.iteration_ms_totals(prefill_tokens=..., prefill_attention_pairs=..., decode_seqs=...,
                           decode_context_tokens=..., sampled_seqs=..., prefill_context_tokens=0)
    cm.decode_step_ms(batch_size, mean_context_tokens); cm.prefill_ms(prompt_tokens)
    cm.kv_bytes_per_token(); cm.kv_bytes_per_token_per_gpu(); cm.kv_capacity_tokens(memory_fraction=0.9)
    cm.max_batch_under_tpot(tpot_ms, context_tokens); cm.weights_fit(); cm.check_fits()

The batch of one iteration (continuous batching with chunked prefill, Sarathi/vLLM style) holds
prefill chunks ``i`` of ``p_i`` new tokens with ``c_i`` tokens of the same prompt already cached,
and decode sequences ``j`` with ``k_j`` tokens of context cached; each decode sequence adds one
token. Symbols (research/costmodel-anchors.md §3.2-3.3): layers ``L``, hidden ``d``, query heads
``h_q``, KV heads ``h_kv``, head dim ``d_h``, FFN width ``d_ff``, vocabulary ``V``, bytes per element
``b``, tensor-parallel degree ``T``; ``n = sum_i p_i + B_d`` new tokens; ``s`` sequences that emit
a token (every decode sequence, and each prefill chunk that finishes its prompt).

Work per iteration, per GPU (every figure is divided over the ``T`` GPUs of the replica, except
the activations each GPU holds whole between all-reduces):

- ``linear`` (QKV, O, MLP GEMMs): FLOPs ``2 * N_act * n / T`` with ``N_act`` the weights a token
  multiplies through (top-k experts for MoE); bytes: the weights once per iteration, ``b/T`` times
  attention weights plus the experts touched, ``E * (1 - (1 - k/E)^n)`` of ``E`` in expectation
  under uniform top-k routing (1 for a dense model), plus each GEMM's input and output activations.
- ``lm_head``: FLOPs ``2 * V * d * s / T``; bytes ``V * d * b / T`` (weights, only if ``s > 0``)
  plus the fp32 logits ``4 * V * s / T``.
- ``attention_prefill``: FLOPs ``4 * L * h_q * d_h * A / T`` where ``A`` is the number of
  causal query-key pairs, ``A = sum_i p_i * (c_i + (p_i + 1) / 2)`` (query ``t`` of chunk ``i``
  sees ``c_i + t`` keys); bytes: Q and O (``2 b L h_q d_h / T`` per token), the chunk's K, V
  written and read back, and the cached context read (``kv_g`` bytes per token and GPU).
- ``attention_decode``: FLOPs ``4 * L * h_q * d_h * (sum_j k_j + B_d) / T``; bytes: the cached
  context read, ``kv_g * sum_j k_j``, the new K, V written, and Q, O.
- ``elementwise`` (norms, residual adds, RoPE, SiLU-mul, embedding gather): memory only,
  ``b * (L * (10 d + 2 (h_q + h_kv) d_h / T + 3 k d_ff / T) + d)`` bytes per token
  (LLM-Viewer's per-operator accounting, §2.1).
- ``allreduce`` (``T > 1``): 2 per layer (Megatron TP), each moving ``2 (T-1)/T * n d b`` bytes per GPU
  (ring bandwidth term) over NVLink, else PCIe, plus ``2 log2(T)`` tree hops of latency and a fixed
  cost per call (see profile.py).

Time: per operator the roofline ``max(FLOPs / (eta_c * peak), bytes / (eta_m * HBM bandwidth))``
summed over operators (LLM-Viewer / GenZ form, §2.1-2.2) -- or, with a profile's
``roofline_smoothness`` ``s > 0``, the smooth roofline ``(C^(1/s) + M^(1/s))^s`` of the same two
times (computed as ``max * (1 + (min/max)^(1/s))^s``; see profile.py), plus ``2 L (alpha_0 + 2 log2(T) alpha + bytes /
(eta_ar * interconnect))`` for the all-reduces, a fixed ``overhead_ms`` per iteration (§3.3) and
``per_sequence_ms * s``. With a host dispatch time ``h`` per layer (``host_ms_per_layer``, an
eager engine's kernel launches), the GPU part (operators, all-reduces, ``L * per_layer_overhead_ms``)
is ``max(GPU part, L * h)`` (operator ``host_wait`` holds the difference). The eta's, ``alpha`` and the overheads come from a
:class:`~servopt.costmodel.profile.Profile`. ``bound`` is
"compute" when the operators limited by FLOPs take more of the time than those limited by bytes.

Memory (per GPU): weights ``num_params * b / T``; KV ``kv_g = 2 L ceil(h_kv / T) d_h b`` bytes per
token (KV heads are replicated when ``T > h_kv``); an activation reserve for an iteration of
``max_batch_tokens`` tokens (default 8192: an assumption, the order of vLLM's max_num_batched_tokens) and 256
sampled sequences. ``kv_capacity_tokens(f) = floor((f * memory - weights - reserve) / kv_g)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from servopt.costmodel.profile import Profile, default_profile, load_profile, shipped_profile
from servopt.errors import InputError
from servopt.instances.catalog import get_gpu, get_llm
from servopt.instances.hardware import GPU, LLM

OPERATORS = ("linear", "lm_head", "attention_prefill", "attention_decode", "elementwise", "allreduce", "overhead",
             "host_wait")
DEFAULT_MAX_BATCH_TOKENS = 8192
DEFAULT_MAX_SAMPLED_SEQS = 256


@dataclass(frozen=True)
class BatchTotals:
    """Aggregate features of one iteration's batch; everything the cost depends on.

    ``prefill_attention_pairs``: causal query-key pairs of the prefill chunks,
    ``sum_i p_i * (c_i + (p_i + 1) / 2)``. ``decode_context_tokens``: ``sum_j k_j``.
    ``prefill_context_tokens``: ``sum_i c_i`` (cached tokens the chunks read back).
    """

    prefill_tokens: float = 0
    prefill_attention_pairs: float = 0
    prefill_context_tokens: float = 0
    decode_seqs: float = 0
    decode_context_tokens: float = 0
    sampled_seqs: float = 0


def batch_totals(prefill: Sequence = (), decode: Sequence = ()) -> BatchTotals:
    """Totals of a batch given as prefill chunks ``(p, c)`` or ``(p, c, emits_token)`` and decode contexts."""
    p_tokens = pairs = p_ctx = 0
    sampled = 0
    for i, item in enumerate(prefill):
        where = f"prefill[{i}]"
        if isinstance(item, (int, float)) and not isinstance(item, bool):
            item = (item, 0)
        if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
            raise InputError(where, f"expected (chunk_tokens, context_tokens[, emits_token]), got {item!r}")
        p, c = _count(item[0], where + ".chunk_tokens", minimum=1), _count(item[1], where + ".context_tokens", minimum=0)
        emits = bool(item[2]) if len(item) == 3 else True
        p_tokens += p
        p_ctx += c
        pairs += p * c + p * (p + 1) / 2
        sampled += 1 if emits else 0
    d_ctx = 0
    for j, k in enumerate(decode):
        d_ctx += _count(k, f"decode[{j}]", minimum=0)
    n_dec = len(decode)
    return BatchTotals(p_tokens, pairs, p_ctx, n_dec, d_ctx, sampled + n_dec)


def _count(value, where: str, *, minimum: int) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(where, f"expected an integer, got {value!r}")
    if value < minimum:
        raise InputError(where, f"must be >= {minimum}, got {value}")
    return value


@dataclass
class IterationCost:
    """One iteration's predicted time and work. ``flops``/``bytes`` are per GPU (the replica does ``tp`` times that).

    ``operators``: one dict per operator with ``name``, ``flops``, ``bytes`` (HBM), ``comm_bytes``,
    ``compute_ms``, ``memory_ms``, ``comm_ms``, ``time_ms``, ``bound``.
    """

    iteration_ms: float
    flops: float
    bytes: float
    comm_bytes: float
    bound: str
    operators: list[dict]
    llm: str
    gpu: str
    tp: int
    profile: str
    totals: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "llm": self.llm, "gpu": self.gpu, "tp": self.tp, "profile": self.profile,
            "iteration_ms": self.iteration_ms, "flops": self.flops, "bytes": self.bytes,
            "comm_bytes": self.comm_bytes, "bound": self.bound,
            "arithmetic_intensity": self.flops / self.bytes if self.bytes else None,
            "batch": dict(self.totals), "operators": [dict(o) for o in self.operators],
        }

    def to_dataframe(self):
        import pandas as pd

        return pd.DataFrame(self.operators)


class CostModel:
    """Cost model of one replica: ``llm`` on ``tp`` GPUs of type ``gpu`` with efficiency ``profile``.

    Build with :func:`make_cost_model`. Immutable after construction; every method is pure.
    """

    def __init__(self, llm: LLM, gpu: GPU, tp: int = 1, profile: Profile | None = None, *,
                 max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS):
        if isinstance(tp, bool) or not isinstance(tp, int) or tp < 1:
            raise InputError("tp", f"must be an integer >= 1, got {tp!r}")
        if llm.num_heads % tp != 0:
            raise InputError("tp", f"{llm.name} has {llm.num_heads} attention heads, not divisible by tp={tp}")
        self.llm, self.gpu, self.tp = llm, gpu, tp
        self.profile = profile if profile is not None else default_profile(gpu.name)
        self.max_batch_tokens = max_batch_tokens
        self._precompute()

    # ------------------------------------------------------------------ constants
    def _precompute(self) -> None:
        m, g, T, pr = self.llm, self.gpu, self.tp, self.profile
        b = m.dtype_bytes
        L, d, hq, hkv, dh, ff, V = m.num_layers, m.hidden_size, m.num_heads, m.num_kv_heads, m.head_dim, m.intermediate_size, m.vocab_size
        E, k = m.num_experts, m.experts_per_token
        mlp_mats_in = 2 if m.gated_mlp else 1
        self._E, self._k = E, k
        self._peak = g.bf16_tflops * 1e12
        self._bw = g.hbm_gb_per_s * 1e9
        self._ic = g.interconnect_gb_per_s * 1e9
        self.kv_heads_per_gpu = math.ceil(hkv / T)
        self._kv_g = 2 * L * self.kv_heads_per_gpu * dh * b
        # linear
        self._lin_flops_tok = 2.0 * m.active_params_per_token() / T
        self._w_dense_bytes = L * (m.attention_params_per_layer + m.router_params_per_layer) * b / T
        self._w_expert_bytes = L * m.mlp_params_per_expert * b / T
        self._lin_act_tok = b * L * (
            d + (hq + 2 * hkv) * dh / T + hq * dh / T + d
            + k * (d + mlp_mats_in * ff / T + ff / T + d)
        )
        # lm head
        self._head_flops_seq = 2.0 * V * d / T
        self._head_w_bytes = V * d * b / T
        self._head_seq_bytes = d * b + 4.0 * V / T
        # attention
        self._attn_flops_pair = 4.0 * L * hq * dh / T
        self._qo_tok = 2.0 * b * L * hq * dh / T
        # elementwise
        self._elem_tok = b * (L * (10 * d + 2 * (hq + hkv) * dh / T + 3 * k * ff / T) + d)
        # all-reduce
        self._ar_calls = 2 * L if T > 1 else 0
        self._ar_bytes_tok = (2.0 * (T - 1) / T) * d * b if T > 1 else 0.0
        # profile applied
        self._inv_lin_c = 1.0 / (pr.linear_compute_eff * self._peak)
        self._inv_lin_m = 1.0 / (pr.linear_memory_eff * self._bw)
        self._inv_att_c = 1.0 / (pr.attention_compute_eff * self._peak)
        self._inv_att_m = 1.0 / (pr.attention_memory_eff * self._bw)
        self._inv_attd_m = 1.0 / (pr.decode_kv_memory_eff * self._bw)
        self._inv_ar = 1.0 / (pr.allreduce_bandwidth_eff * self._ic) if self._ic > 0 else math.inf
        self._ar_hops = self._ar_calls * 2 * math.log2(T)
        self._ar_fixed_s = (self._ar_hops * pr.allreduce_hop_latency_ms + self._ar_calls * pr.allreduce_call_latency_ms) * 1e-3
        self._overhead_s = pr.overhead_ms * 1e-3
        self._gpu_fixed_s = L * pr.per_layer_overhead_ms * 1e-3
        self._host_s = L * pr.host_ms_per_layer * 1e-3
        self._per_seq_s = pr.per_sequence_ms * 1e-3
        self._smooth = pr.roofline_smoothness
        self._smooth_q = 1.0 / pr.roofline_smoothness if pr.roofline_smoothness > 0 else math.inf

    def _roof(self, c: float, m: float) -> float:
        """One operator's time from its compute and memory times: hard or smooth roofline."""
        hi, lo = (c, m) if c > m else (m, c)
        if self._smooth == 0.0 or hi <= 0.0:
            return hi
        return hi * (1.0 + (lo / hi) ** self._smooth_q) ** self._smooth

    def experts_touched(self, tokens: float) -> float:
        """Expected distinct experts hit by ``tokens`` tokens under uniform top-k routing (1 if dense)."""
        if self._E == 1:
            return 1.0 if tokens > 0 else 0.0
        return self._E * (1.0 - (1.0 - self._k / self._E) ** tokens)

    # ------------------------------------------------------------------ work per operator
    def operator_work(self, t: BatchTotals) -> list[tuple[str, float, float, float]]:
        """(operator, flops, hbm bytes, interconnect bytes) per GPU for a batch's totals."""
        n = t.prefill_tokens + t.decode_seqs
        s = t.sampled_seqs
        kv = self._kv_g
        lin_f = self._lin_flops_tok * n
        lin_b = (self._w_dense_bytes + self._w_expert_bytes * self.experts_touched(n) + self._lin_act_tok * n) if n > 0 else 0.0
        head_f = self._head_flops_seq * s
        head_b = (self._head_w_bytes + self._head_seq_bytes * s) if s > 0 else 0.0
        ap_f = self._attn_flops_pair * t.prefill_attention_pairs
        ap_b = (self._qo_tok + 2 * kv) * t.prefill_tokens + kv * t.prefill_context_tokens
        ad_f = self._attn_flops_pair * (t.decode_context_tokens + t.decode_seqs)
        ad_b = kv * t.decode_context_tokens + (kv + self._qo_tok) * t.decode_seqs
        el_b = self._elem_tok * n
        ar_b = self._ar_calls * self._ar_bytes_tok * n
        return [
            ("linear", lin_f, lin_b, 0.0),
            ("lm_head", head_f, head_b, 0.0),
            ("attention_prefill", ap_f, ap_b, 0.0),
            ("attention_decode", ad_f, ad_b, 0.0),
            ("elementwise", 0.0, el_b, 0.0),
            ("allreduce", 0.0, 0.0, ar_b),
        ]

    def iteration(self, prefill: Sequence = (), decode: Sequence = ()) -> IterationCost:
        """Cost of one iteration with prefill chunks ``(chunk_tokens, context_tokens_before[, emits_token])``
        and decode sequences given by their context tokens. A chunk emits a token (its prompt is
        complete) unless its third element is False."""
        return self.iteration_from_totals(batch_totals(prefill, decode))

    def iteration_from_totals(self, totals: BatchTotals) -> IterationCost:
        inverse = {
            "linear": (self._inv_lin_c, self._inv_lin_m),
            "lm_head": (self._inv_lin_c, self._inv_lin_m),
            "attention_prefill": (self._inv_att_c, self._inv_att_m),
            "attention_decode": (self._inv_att_c, self._inv_attd_m),
            "elementwise": (self._inv_lin_c, self._inv_lin_m),
        }
        ops, flops, hbm, comm = [], 0.0, 0.0, 0.0
        compute_limited = memory_limited = 0.0
        n = totals.prefill_tokens + totals.decode_seqs
        for name, f, by, cb in self.operator_work(totals):
            if name == "allreduce":
                comm_ms = (cb * self._inv_ar + (self._ar_fixed_s if n > 0 else 0.0)) * 1e3 if self._ar_calls else 0.0
                ops.append(_op(name, 0.0, 0.0, cb, 0.0, 0.0, comm_ms, comm_ms, "comm"))
                comm += cb
                continue
            inv_c, inv_m = inverse[name]
            c_ms, m_ms = f * inv_c * 1e3, by * inv_m * 1e3
            time_ms = self._roof(c_ms, m_ms)
            bound = "compute" if c_ms > m_ms else "memory"
            if bound == "compute":
                compute_limited += time_ms
            else:
                memory_limited += time_ms
            ops.append(_op(name, f, by, 0.0, c_ms, m_ms, 0.0, time_ms, bound))
            flops += f
            hbm += by
        over_ms = (self._overhead_s + self._gpu_fixed_s + self._per_seq_s * totals.sampled_seqs) * 1e3 if n > 0 else 0.0
        ops.append(_op("overhead", 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, over_ms, "overhead"))
        if n > 0 and self._host_s > 0:
            # The GPU waits for the host's kernel launches when they take longer than its own work.
            gpu_ms = sum(o["time_ms"] for o in ops) - (self._overhead_s + self._per_seq_s * totals.sampled_seqs) * 1e3
            wait_ms = max(0.0, self._host_s * 1e3 - gpu_ms)
            ops.append(_op("host_wait", 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, wait_ms, "host"))
        total_ms = sum(o["time_ms"] for o in ops)
        return IterationCost(
            iteration_ms=total_ms, flops=flops, bytes=hbm, comm_bytes=comm,
            bound="compute" if compute_limited > memory_limited else "memory",
            operators=ops, llm=self.llm.name, gpu=self.gpu.name, tp=self.tp, profile=self.profile.name,
            totals={k: getattr(totals, k) for k in BatchTotals.__dataclass_fields__},
        )

    # ------------------------------------------------------------------ fast scalar path
    def iteration_ms_totals(self, prefill_tokens: float = 0, prefill_attention_pairs: float = 0, decode_seqs: float = 0,
                            decode_context_tokens: float = 0, sampled_seqs: float | None = None,
                            prefill_context_tokens: float = 0) -> float:
        """Iteration time (ms) from batch totals; equal to ``iteration(...).iteration_ms`` on the same batch.

        ``prefill_attention_pairs`` = ``sum_i p_i * (c_i + (p_i + 1) / 2)`` over prefill chunks with
        ``p_i`` new and ``c_i`` cached tokens (for whole prompts, ``sum_i p_i (p_i + 1) / 2``).
        ``decode_context_tokens`` = ``sum_j k_j``. ``sampled_seqs``: sequences that emit a token (decode
        sequences plus prefill chunks that finish their prompt); None means ``decode_seqs`` only.
        ``prefill_context_tokens`` = ``sum_i c_i`` (0 without chunking). No validation, no allocation:
        meant for inner loops. Any argument may instead be a numpy array (broadcast together): the
        result is then an array of times, element-wise equal to the scalar path.
        """
        try:
            return self._totals_scalar(prefill_tokens, prefill_attention_pairs, decode_seqs, decode_context_tokens,
                                       sampled_seqs, prefill_context_tokens)
        except ValueError:  # "truth value of an array is ambiguous": array arguments
            return self._totals_array(prefill_tokens, prefill_attention_pairs, decode_seqs, decode_context_tokens,
                                      sampled_seqs, prefill_context_tokens)

    def _totals_scalar(self, prefill_tokens, prefill_attention_pairs, decode_seqs, decode_context_tokens,
                       sampled_seqs, prefill_context_tokens) -> float:
        n = prefill_tokens + decode_seqs
        if n <= 0:
            return 0.0
        s = decode_seqs if sampled_seqs is None else sampled_seqs
        kv = self._kv_g
        if self._E == 1:
            w = self._w_dense_bytes + self._w_expert_bytes
        else:
            w = self._w_dense_bytes + self._w_expert_bytes * self._E * (1.0 - (1.0 - self._k / self._E) ** n)
        # (compute, memory) seconds of each operator present; the roofline is applied below, inline,
        # because this path runs millions of times per simulation.
        c1, m1 = self._lin_flops_tok * n * self._inv_lin_c, (w + self._lin_act_tok * n) * self._inv_lin_m
        c2 = m2 = c3 = m3 = c4 = m4 = 0.0
        if s > 0:
            c2, m2 = self._head_flops_seq * s * self._inv_lin_c, (self._head_w_bytes + self._head_seq_bytes * s) * self._inv_lin_m
        if prefill_tokens > 0:
            c3 = self._attn_flops_pair * prefill_attention_pairs * self._inv_att_c
            m3 = ((self._qo_tok + 2 * kv) * prefill_tokens + kv * prefill_context_tokens) * self._inv_att_m
        if decode_seqs > 0:
            c4 = self._attn_flops_pair * (decode_context_tokens + decode_seqs) * self._inv_att_c
            m4 = (kv * decode_context_tokens + (kv + self._qo_tok) * decode_seqs) * self._inv_attd_m
        sm = self._smooth
        if sm:
            q = self._smooth_q
            t = c1 * (1.0 + (m1 / c1) ** q) ** sm if c1 > m1 else m1 * (1.0 + (c1 / m1) ** q) ** sm
            if m2 > 0:
                t += c2 * (1.0 + (m2 / c2) ** q) ** sm if c2 > m2 else m2 * (1.0 + (c2 / m2) ** q) ** sm
            if m3 > 0:
                t += c3 * (1.0 + (m3 / c3) ** q) ** sm if c3 > m3 else m3 * (1.0 + (c3 / m3) ** q) ** sm
            if m4 > 0:
                t += c4 * (1.0 + (m4 / c4) ** q) ** sm if c4 > m4 else m4 * (1.0 + (c4 / m4) ** q) ** sm
        else:
            t = (c1 if c1 > m1 else m1) + (c2 if c2 > m2 else m2) + (c3 if c3 > m3 else m3) + (c4 if c4 > m4 else m4)
        t += self._elem_tok * n * self._inv_lin_m
        if self._ar_calls:
            t += self._ar_calls * self._ar_bytes_tok * n * self._inv_ar + self._ar_fixed_s
        t += self._gpu_fixed_s
        if self._host_s > t:
            t = self._host_s
        return (t + self._overhead_s + self._per_seq_s * s) * 1e3

    def _totals_array(self, prefill_tokens, prefill_attention_pairs, decode_seqs, decode_context_tokens,
                      sampled_seqs, prefill_context_tokens):
        import numpy as np

        p, pairs, b, ctx, p_ctx = (np.asarray(x, dtype=float) for x in
                                   (prefill_tokens, prefill_attention_pairs, decode_seqs, decode_context_tokens,
                                    prefill_context_tokens))
        s = b if sampled_seqs is None else np.asarray(sampled_seqs, dtype=float)
        n = p + b
        kv = self._kv_g
        if self._E == 1:
            w = self._w_dense_bytes + self._w_expert_bytes
        else:
            w = self._w_dense_bytes + self._w_expert_bytes * self._E * (1.0 - (1.0 - self._k / self._E) ** n)
        roof = lambda c, m: smooth_roofline(c, m, self._smooth)  # noqa: E731
        t = roof(self._lin_flops_tok * n * self._inv_lin_c, (w + self._lin_act_tok * n) * self._inv_lin_m)
        t = t + np.where(s > 0, roof(self._head_flops_seq * s * self._inv_lin_c,
                                     (self._head_w_bytes + self._head_seq_bytes * s) * self._inv_lin_m), 0.0)
        t = t + np.where(p > 0, roof(self._attn_flops_pair * pairs * self._inv_att_c,
                                     ((self._qo_tok + 2 * kv) * p + kv * p_ctx) * self._inv_att_m), 0.0)
        t = t + np.where(b > 0, roof(self._attn_flops_pair * (ctx + b) * self._inv_att_c,
                                     (kv * ctx + (kv + self._qo_tok) * b) * self._inv_attd_m), 0.0)
        t = t + self._elem_tok * n * self._inv_lin_m
        if self._ar_calls:
            t = t + self._ar_calls * self._ar_bytes_tok * n * self._inv_ar + self._ar_fixed_s
        t = np.maximum(t + self._gpu_fixed_s, self._host_s) + self._overhead_s + self._per_seq_s * s
        return np.where(n > 0, t * 1e3, 0.0)

    def decode_step_ms(self, batch_size: int, mean_context_tokens: float) -> float:
        """One decode iteration of ``batch_size`` sequences, each with ``mean_context_tokens`` cached."""
        return self.iteration_ms_totals(decode_seqs=batch_size, decode_context_tokens=batch_size * mean_context_tokens,
                                        sampled_seqs=batch_size)

    def prefill_ms(self, prompt_tokens: int) -> float:
        """One prompt of ``prompt_tokens`` tokens prefilled alone in one iteration (emits its first token)."""
        p = prompt_tokens
        return self.iteration_ms_totals(prefill_tokens=p, prefill_attention_pairs=p * (p + 1) / 2, sampled_seqs=1)

    # ------------------------------------------------------------------ memory
    def kv_bytes_per_token(self) -> int:
        """KV bytes of one token for the WHOLE replica's logical cache: ``2 L h_kv d_h b`` (Llama-2-7B: 512 KiB)."""
        return self.llm.kv_bytes_per_token()

    def kv_bytes_per_token_per_gpu(self) -> int:
        """KV bytes one token occupies on each GPU of the replica (KV heads replicated when tp > h_kv)."""
        return self._kv_g

    def weight_bytes_per_gpu(self) -> float:
        return self.llm.weight_bytes() / self.tp

    def activation_reserve_bytes_per_gpu(self) -> float:
        """Peak activations of an iteration of ``max_batch_tokens`` tokens and 256 sampled sequences, per GPU.

        Hidden state, residual, QKV, attention output and the MLP's intermediate at once, plus fp32
        logits; the order of what vLLM's profiling run reserves, not a measurement.
        """
        m, T = self.llm, self.tp
        per_token = m.dtype_bytes * (2 * m.hidden_size + (m.num_heads + 2 * m.num_kv_heads) * m.head_dim / T
                                     + (2 if m.gated_mlp else 1) * m.intermediate_size * m.experts_per_token / T)
        return self.max_batch_tokens * per_token + DEFAULT_MAX_SAMPLED_SEQS * 4.0 * m.vocab_size / T

    def weights_fit(self) -> bool:
        """Whether the weights' shard fits in one GPU's memory (nothing said about room for KV)."""
        return self.weight_bytes_per_gpu() < self.gpu.memory_bytes

    def check_fits(self) -> None:
        if not self.weights_fit():
            need = self.llm.weight_bytes() / 2**30
            raise InputError("--tp" if self.tp > 1 else "--gpu",
                             f"{self.llm.name} weights ({need:.1f} GiB) do not fit in tp={self.tp} x {self.gpu.name} "
                             f"({self.tp * self.gpu.memory_gib:g} GiB); use more GPUs (--tp) or a larger GPU")

    def kv_capacity_tokens(self, memory_fraction: float = 0.9) -> int:
        """Tokens of KV cache the replica holds: what is left of ``memory_fraction`` of each GPU after the
        weights' shard and the activation reserve, divided by the per-GPU KV bytes per token; 0 if none."""
        if not 0 < memory_fraction <= 1:
            raise InputError("memory_fraction", f"must be in (0, 1], got {memory_fraction!r}")
        free = memory_fraction * self.gpu.memory_bytes - self.weight_bytes_per_gpu() - self.activation_reserve_bytes_per_gpu()
        return max(0, int(free // self._kv_g))

    def max_batch_under_tpot(self, tpot_ms: float, context_tokens: float, memory_fraction: float = 0.9) -> int:
        """Largest decode batch B with ``decode_step_ms(B, context_tokens) <= tpot_ms`` whose KV
        (``B * (context_tokens + 1)`` tokens) fits in ``kv_capacity_tokens(memory_fraction)``; 0 if none.

        decode_step_ms is non-decreasing in B (every operator's work is), so a binary search is exact.
        """
        per_seq = context_tokens + 1
        hi = int(self.kv_capacity_tokens(memory_fraction) // per_seq)
        if hi < 1 or self.decode_step_ms(1, context_tokens) > tpot_ms:
            return 0
        lo = 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.decode_step_ms(mid, context_tokens) <= tpot_ms:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def describe(self) -> dict:
        return {
            "llm": self.llm.name, "gpu": self.gpu.name, "tp": self.tp, "profile": self.profile.name,
            "weight_bytes_per_gpu": self.weight_bytes_per_gpu(),
            "kv_bytes_per_token": self.kv_bytes_per_token(),
            "kv_bytes_per_token_per_gpu": self.kv_bytes_per_token_per_gpu(),
            "activation_reserve_bytes_per_gpu": self.activation_reserve_bytes_per_gpu(),
            "kv_capacity_tokens": self.kv_capacity_tokens(),
            "weights_fit": self.weights_fit(),
        }


def smooth_roofline(compute, memory, smoothness: float):
    """Element-wise ``(C^(1/s) + M^(1/s))^s`` (``max(C, M)`` for ``s = 0``) of numpy arrays or floats."""
    import numpy as np

    c, m = np.asarray(compute, dtype=float), np.asarray(memory, dtype=float)
    hi = np.maximum(c, m)
    if smoothness == 0:
        return hi
    lo = np.minimum(c, m)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(hi > 0, lo / np.where(hi > 0, hi, 1.0), 0.0)
    return hi * (1.0 + ratio ** (1.0 / smoothness)) ** smoothness


def _op(name, flops, hbm, comm, c_ms, m_ms, comm_ms, time_ms, bound) -> dict:
    return {"name": name, "flops": flops, "bytes": hbm, "comm_bytes": comm, "compute_ms": c_ms,
            "memory_ms": m_ms, "comm_ms": comm_ms, "time_ms": time_ms, "bound": bound}


def resolve_profile(profile, gpu_name: str) -> Profile:
    """A Profile from a Profile, a path to a JSON file, a shipped profile's name, or None (the GPU's default)."""
    if profile is None:
        return default_profile(gpu_name)
    if isinstance(profile, Profile):
        return profile
    if isinstance(profile, (str, Path)):
        path = Path(profile)
        if path.suffix == ".json" or path.exists():
            return load_profile(path)
        return shipped_profile(str(profile))
    raise InputError("profile", f"expected a Profile, a path or a name, got {type(profile).__name__}")


def make_cost_model(llm: str | LLM, gpu: str | GPU, tp: int = 1, profile=None, *,
                    max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS) -> CostModel:
    """Cost model for catalog names (case-insensitive, aliases allowed) or dataclasses.

    Does not check that the weights fit (``weights_fit()`` / ``check_fits()`` do), so that callers can
    enumerate configurations and filter.
    """
    llm_obj = llm if isinstance(llm, LLM) else get_llm(llm)
    gpu_obj = gpu if isinstance(gpu, GPU) else get_gpu(gpu)
    return CostModel(llm_obj, gpu_obj, tp, resolve_profile(profile, gpu_obj.name), max_batch_tokens=max_batch_tokens)
