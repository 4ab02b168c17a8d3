"""Generators of ``kv_schedule`` instances: the paper's synthetic families and trace-driven ones.

All take a seed (or a ``numpy.random.Generator``) and return plain dicts in the instance JSON
format (load them with ``KVScheduleInstance.from_dict`` or ``servopt.kinds.kv_schedule.load``).

Synthetic families, Jaillet et al., arXiv 2502.07115, §6.1 (research notes
scheduling-anchors.md §1.6 and §4.1), per instance:

* ``M ~ U{30..50}``; one prompt size ``s ~ U{1..5}`` shared by all requests; ``n ~ U{40..60}``;
  ``o_i ~ U{1..M-s}`` i.i.d.; predictions exact (the paper's synthetic study uses true lengths);
* arrival model 1 (``"all_at_zero"``): ``a_i = 0``;
* arrival model 2 (``"poisson"``): rate ``lambda ~ U[0.5, 1.5]`` per round over a horizon
  ``T_arr ~ U{40..60}``. The paper does not say whether n or T fixes the size (notes §1.6); we
  draw per-round Poisson(lambda) counts for rounds ``0 .. T_arr-1`` (so n = their sum, 20-90) and
  resample the rare empty draw. ``poisson_fixed_n`` is the other reading: n ~ U{40..60} arrivals
  at the rounds of a rate-lambda Poisson process (floored exponential inter-arrival times).

``synthetic(n=..., memory_tokens=...)`` overrides any of the paper's draws (for small exact studies).

Trace-driven instances (``trace``): lengths from ``instances/data/kv_trace_lengths.csv`` (Azure
LLM inference conversation trace 2023 and ShareGPT, sources in kv_trace_lengths.SOURCE.txt). To
bring real token counts to a size the IP can handle, one *unit* is ``tokens_per_unit`` tokens and
one round is that many decode steps: ``s' = ceil(s/k)``, ``o' = ceil(o/k)``, ``M' = floor(M/k)``
(the coarsening of research/pyomo-highs.md §6.6; the footprint still grows by one unit per round,
so the model is unchanged). The paper's trace study uses M = 16,492 tokens (Llama2-70B on two
A100s, notes §1.6), the default here. Arrivals: ``"trace"`` keeps the Azure window's real
inter-arrival times, with one round lasting ``tokens_per_unit * decode_step_ms`` (default 50 ms
per decode step: the batch-time fit of the same paper, tau = (0.0027 c + 0.52) b + 44.6 + 0.378 P
ms, is 45-60 ms for decode batches of a few dozen requests; notes §1.6), rounded down; ``"poisson"`` draws per-round
Poisson(rate) counts; ``"all_at_zero"`` puts every request at round 0. Requests that would not fit
alone (``s' + o' > M'``) are dropped and counted in ``meta``.
"""
from __future__ import annotations

import csv
import math
from importlib import resources

import numpy as np

ARRIVAL_MODELS = ("all_at_zero", "poisson", "poisson_fixed_n")
TRACE_SOURCES = ("azure_conv", "sharegpt")
PAPER_TRACE_MEMORY_TOKENS = 16492  # Jaillet et al. §6.2, Llama2-70B on 2 x A100 (notes §1.6)


def _rng(seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def synthetic(seed=0, *, arrival_model: str = "all_at_zero", n: int | None = None, memory_tokens: int | None = None,
              prompt_tokens: int | None = None, rate: float | None = None, arrival_horizon: int | None = None,
              name: str = "") -> dict:
    """One instance of the paper's synthetic family (module docstring); keywords override draws."""
    if arrival_model not in ARRIVAL_MODELS:
        raise ValueError(f"arrival_model must be one of {ARRIVAL_MODELS}, got {arrival_model!r}")
    rng = _rng(seed)
    M = int(memory_tokens) if memory_tokens is not None else int(rng.integers(30, 51))
    s = int(prompt_tokens) if prompt_tokens is not None else int(rng.integers(1, 6))
    if s + 1 > M:
        raise ValueError(f"prompt_tokens {s} leaves no room for an output token in memory {M}")
    lam = float(rate) if rate is not None else float(rng.uniform(0.5, 1.5))
    horizon = int(arrival_horizon) if arrival_horizon is not None else int(rng.integers(40, 61))
    if arrival_model == "poisson":
        if n is not None:
            raise ValueError("arrival model 'poisson' draws n from the rate and horizon; use 'poisson_fixed_n' to fix n")
        while True:
            counts = rng.poisson(lam, size=horizon)
            if counts.sum() > 0:
                break
        arrivals = np.repeat(np.arange(horizon), counts)
    else:
        size = int(n) if n is not None else int(rng.integers(40, 61))
        if arrival_model == "all_at_zero":
            arrivals = np.zeros(size, dtype=int)
        else:
            arrivals = np.floor(np.cumsum(rng.exponential(1.0 / lam, size=size))).astype(int)
            arrivals -= arrivals.min()  # the first request arrives at round 0
    outputs = rng.integers(1, M - s + 1, size=len(arrivals))
    requests = [{"id": f"r{i}", "arrival": int(a), "prompt_tokens": s, "output_tokens": int(o)}
                for i, (a, o) in enumerate(zip(arrivals, outputs))]
    meta = {"generator": "synthetic", "arrival_model": arrival_model, "prompt_tokens": s}
    if arrival_model != "all_at_zero":
        meta.update(rate_per_round=lam, arrival_horizon=horizon if arrival_model == "poisson" else None)
    return {"kind": "kv_schedule", "name": name or f"synthetic-{arrival_model}", "memory_tokens": M,
            "source": "Jaillet et al., arXiv 2502.07115, synthetic study (notes scheduling-anchors.md §4.1)",
            "meta": meta, "requests": requests}


def paper_study(count: int, *, arrival_model: str, seed: int = 0) -> list[dict]:
    """``count`` independent instances of one arrival model, instance k from ``default_rng([seed, k])``."""
    return [synthetic(np.random.default_rng([seed, k]), arrival_model=arrival_model, name=f"{arrival_model}-{k}")
            for k in range(count)]


def trace_lengths(source: str) -> list[tuple[float | None, int, int]]:
    """(arrival_s or None, prompt_tokens, output_tokens) rows of one shipped source, in file order."""
    if source not in TRACE_SOURCES:
        raise ValueError(f"source must be one of {TRACE_SOURCES}, got {source!r}")
    ref = resources.files("servopt.instances").joinpath("data", "kv_trace_lengths.csv")
    rows = []
    with ref.open("r", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["source"] == source:
                at = float(row["arrival_s"]) if row["arrival_s"] else None
                rows.append((at, int(row["prompt_tokens"]), int(row["output_tokens"])))
    return rows


def trace(seed=0, *, source: str = "azure_conv", n: int = 50, memory_tokens: int = PAPER_TRACE_MEMORY_TOKENS,
          tokens_per_unit: int = 32, arrivals: str = "trace", rate: float = 1.0, decode_step_ms: float = 50.0,
          name: str = "") -> dict:
    """A trace-driven instance (module docstring): n consecutive requests from a random offset."""
    if arrivals not in ("trace", "poisson", "all_at_zero"):
        raise ValueError(f"arrivals must be trace, poisson or all_at_zero, got {arrivals!r}")
    rows = trace_lengths(source)
    if arrivals == "trace" and rows[0][0] is None:
        raise ValueError(f"source {source!r} has no timestamps; use arrivals='poisson' or 'all_at_zero'")
    k = int(tokens_per_unit)
    M = int(memory_tokens) // k
    rng = _rng(seed)
    offset = int(rng.integers(0, max(1, len(rows) - n)))
    chosen = rows[offset: offset + n]
    round_ms = k * float(decode_step_ms)
    if arrivals == "trace":
        t0 = chosen[0][0]
        rounds = [int(math.floor((at - t0) * 1000.0 / round_ms)) for at, _, _ in chosen]
    elif arrivals == "poisson":
        gaps = rng.exponential(1.0 / rate, size=len(chosen))
        rounds = list(np.floor(np.cumsum(gaps) - gaps[0]).astype(int))
    else:
        rounds = [0] * len(chosen)
    requests, dropped = [], 0
    for i, ((_, s, o), a) in enumerate(zip(chosen, rounds)):
        s_u, o_u = math.ceil(s / k), max(1, math.ceil(o / k))
        if s_u + o_u > M:
            dropped += 1
            continue
        requests.append({"id": f"{source}-{offset + i}", "arrival": int(a), "prompt_tokens": s_u, "output_tokens": o_u})
    meta = {"generator": "trace", "source": source, "offset": offset, "tokens_per_unit": k, "arrivals": arrivals,
            "round_ms": round_ms if arrivals == "trace" else None, "rate_per_round": rate if arrivals == "poisson" else None,
            "memory_tokens_unscaled": int(memory_tokens), "dropped_too_large": dropped}
    return {"kind": "kv_schedule", "name": name or f"trace-{source}", "memory_tokens": M,
            "source": "instances/data/kv_trace_lengths.csv (see kv_trace_lengths.SOURCE.txt)", "meta": meta,
            "requests": requests}
