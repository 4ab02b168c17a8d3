"""Iteration-time functions the engine runs on: the GPU cost model, Vidur profiles, or unit time.

The engine needs two things (all times in seconds):

``mixed_s(chunks, decode_seqs, decode_context_tokens)``
    one iteration with prefill chunks ``[(chunk_tokens, context_before)]`` plus ``decode_seqs``
    decode sequences whose contexts (tokens attended, the new one included) sum to
    ``decode_context_tokens``;
``decode_s(decode_seqs, first_context_tokens, steps)``
    a numpy array with the durations of ``steps`` consecutive decode-only iterations of the same
    ``decode_seqs`` sequences, the total context growing by ``decode_seqs`` per step.

The second is what makes skip-ahead cheap: under the roofline the decode durations of an unchanged
batch form an arithmetic progression (KV bytes read grow by one token per sequence per step); we
check the progression at the first, second, middle and last step (enough for a convex piecewise-
linear cost) and extend it, else evaluate the cost model on a numpy array of contexts (or once per
step for a scalar-only model).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class UnitTimer:
    """Every iteration takes ``unit_s``; prefill-only iterations take 0 when ``prefill_cost`` is False.

    This is the round-based model of Jaillet et al. (arXiv 2502.07115, §1.2 of
    research/scheduling-anchors.md): one batch per round, every batch one time unit.
    """

    unit_s: float = 1.0
    prefill_cost: bool = False

    def mixed_s(self, chunks, decode_seqs, decode_context_tokens) -> float:
        if not decode_seqs and not self.prefill_cost:
            return 0.0  # a prefill-only iteration is free: the prompt is "already there"
        return self.unit_s

    def decode_s(self, decode_seqs, first_context_tokens, steps) -> np.ndarray:
        return np.full(int(steps), self.unit_s)

    def chunk_run_s(self, chunk, before, decode_seqs, first_context_tokens, steps) -> np.ndarray:
        free = not decode_seqs and not self.prefill_cost
        return np.full(int(steps), 0.0 if free else self.unit_s)


@dataclass(frozen=True)
class LinearTimer:
    """``tau = d0 + d1 * (KV tokens touched) + p1 * (prefill tokens)`` in ms (Ao et al., arXiv
    2504.11320 §2.1, ``tau(B) = d_0 + d_1 * sum KV``; their SGLang A100 Llama-2-7B fit is
    d0 = 276 ms, d1 = 0.0115 ms per token, research/scheduling-anchors.md §2.5)."""

    d0_ms: float = 10.0
    d1_ms: float = 0.001
    prefill_ms_per_token: float = 0.0

    def mixed_s(self, chunks, decode_seqs, decode_context_tokens) -> float:
        kv = decode_context_tokens + sum(c + b for c, b in chunks)
        pre = sum(c for c, _ in chunks)
        return (self.d0_ms + self.d1_ms * kv + self.prefill_ms_per_token * pre) / 1000.0

    def decode_s(self, decode_seqs, first_context_tokens, steps) -> np.ndarray:
        ctx = first_context_tokens + decode_seqs * np.arange(int(steps), dtype=float)
        return (self.d0_ms + self.d1_ms * ctx) / 1000.0

    def chunk_run_s(self, chunk, before, decode_seqs, first_context_tokens, steps) -> np.ndarray:
        k = np.arange(int(steps), dtype=float)
        kv = first_context_tokens + decode_seqs * k + chunk + before + chunk * k
        return (self.d0_ms + self.d1_ms * kv + self.prefill_ms_per_token * chunk) / 1000.0


class CostModelTimer:
    """Adapter over anything with ``iteration_ms_totals`` (the roofline model, Vidur profiles).

    Prefers a per-chunk ``iteration_ms(prefill, decode_seqs, decode_context_tokens)`` when the
    cost object has one (Vidur's batching rules need the chunks, not just totals).
    """

    def __init__(self, cost):
        if not hasattr(cost, "iteration_ms_totals") and not hasattr(cost, "iteration_ms"):
            raise TypeError("cost model needs iteration_ms_totals(...) or iteration_ms(...)")
        self.cost = cost
        self._per_chunk = callable(getattr(cost, "iteration_ms", None)) and hasattr(cost, "decode_ms_array")
        self._decode_run_ms = getattr(cost, "decode_run_ms", None) if self._per_chunk else None
        self._iteration_ms = cost.iteration_ms if self._per_chunk else None
        self._vector_ok: bool | None = None
        import inspect

        try:
            self._takes_context = "prefill_context_tokens" in inspect.signature(cost.iteration_ms_totals).parameters
        except (AttributeError, TypeError, ValueError):
            self._takes_context = False

    def mixed_s(self, chunks, decode_seqs, decode_context_tokens) -> float:
        if self._iteration_ms is not None:
            return float(self._iteration_ms(chunks, decode_seqs, decode_context_tokens)) / 1000.0
        tokens = sum(c for c, _ in chunks)
        # causal attention pairs of a chunk of c tokens after b cached ones: c*b + c*(c+1)/2
        pairs = sum(c * b + c * (c + 1) // 2 for c, b in chunks)
        extra = {"prefill_context_tokens": sum(b for _, b in chunks)} if self._takes_context else {}
        ms = self.cost.iteration_ms_totals(prefill_tokens=tokens, prefill_attention_pairs=pairs,
                                           decode_seqs=decode_seqs, decode_context_tokens=decode_context_tokens,
                                           sampled_seqs=decode_seqs + len(chunks), **extra)
        return float(ms) / 1000.0

    def _decode_ms_scalar(self, n, ctx):
        return float(self.cost.iteration_ms_totals(prefill_tokens=0, prefill_attention_pairs=0, decode_seqs=n,
                                                   decode_context_tokens=ctx, sampled_seqs=n))

    def decode_s(self, decode_seqs, first_context_tokens, steps) -> np.ndarray:
        steps = int(steps)
        if self._decode_run_ms is not None:
            out = self._decode_run_ms(decode_seqs, first_context_tokens, steps)
            out *= 0.001
            return out
        ctx = first_context_tokens + decode_seqs * np.arange(steps, dtype=np.int64)
        if self._per_chunk:
            return np.asarray(self.cost.decode_ms_array(decode_seqs, ctx), dtype=float) / 1000.0
        line = self._decode_line(decode_seqs, first_context_tokens, steps)
        if line is not None:
            return line
        if self._vector_ok is not False:
            try:
                out = np.asarray(self.cost.iteration_ms_totals(
                    prefill_tokens=0, prefill_attention_pairs=0, decode_seqs=decode_seqs,
                    decode_context_tokens=ctx, sampled_seqs=decode_seqs), dtype=float)
                if out.shape == (steps,):
                    self._vector_ok = True
                    return out / 1000.0
            except Exception:  # noqa: BLE001 - scalar-only cost model: one call per step below
                pass
            self._vector_ok = False
        return np.array([self._decode_ms_scalar(decode_seqs, int(c)) for c in ctx]) / 1000.0

    def _decode_line(self, n, ctx0, steps):
        """The stretch's durations as an arithmetic progression when the cost model is linear over it.

        The roofline time is a sum of maxima of terms affine in the context (convex and piecewise
        linear), so agreeing with the line through steps 0 and 1 at the middle and last step means
        agreeing everywhere in between; otherwise None (the caller evaluates every step).
        """
        t0 = self._decode_ms_scalar(n, ctx0)
        if steps == 1:
            return np.array([t0 / 1000.0])
        slope = self._decode_ms_scalar(n, ctx0 + n) - t0
        tol = 1e-9 * max(1.0, abs(t0))
        for k in {steps - 1, (steps - 1) // 2}:
            if k > 1 and abs(self._decode_ms_scalar(n, ctx0 + n * k) - (t0 + slope * k)) > tol:
                return None
        out = np.arange(steps, dtype=float)
        out *= slope
        out += t0
        out *= 0.001
        return out

    def chunk_run_s(self, chunk, before, decode_seqs, first_context_tokens, steps) -> np.ndarray:
        """``steps`` iterations of one prefill chunk (context growing by ``chunk``) beside a decode set."""
        steps = int(steps)
        k = np.arange(steps, dtype=np.int64)
        if self._per_chunk and hasattr(self.cost, "chunk_run_ms"):
            return np.asarray(self.cost.chunk_run_ms(chunk, before + chunk * k, decode_seqs,
                                                     first_context_tokens + decode_seqs * k), dtype=float) / 1000.0
        if not self._per_chunk and steps <= 32:  # a few scalar calls beat one array call here
            return _chunk_run_generic(self, chunk, before, decode_seqs, first_context_tokens, steps)
        if not self._per_chunk and self._vector_ok is not False:
            b = before + chunk * k
            extra = {"prefill_context_tokens": b} if self._takes_context else {}
            try:
                out = np.asarray(self.cost.iteration_ms_totals(
                    prefill_tokens=chunk, prefill_attention_pairs=chunk * b + chunk * (chunk + 1) // 2,
                    decode_seqs=decode_seqs, decode_context_tokens=first_context_tokens + decode_seqs * k,
                    sampled_seqs=decode_seqs + 1, **extra), dtype=float)
                if out.shape == (steps,):
                    return out / 1000.0
            except Exception:  # noqa: BLE001 - scalar-only cost model
                pass
        return _chunk_run_generic(self, chunk, before, decode_seqs, first_context_tokens, steps)


def _chunk_run_generic(timer, chunk, before, decode_seqs, first_context_tokens, steps) -> np.ndarray:
    return np.array([timer.mixed_s([(chunk, before + k * chunk)], decode_seqs, first_context_tokens + k * decode_seqs)
                     for k in range(int(steps))])


def as_timer(cost):
    """Whatever the caller gave (a timer, a cost model) as something with mixed_s/decode_s."""
    if hasattr(cost, "mixed_s") and hasattr(cost, "decode_s"):
        return cost
    return CostModelTimer(cost)
