"""Metrics of a simulated serving run: a per-request DataFrame and the summary ``servopt simulate`` prints.

Per request (DataFrame columns): ``ttft_s`` = first token - arrival, ``e2e_s`` = last token - arrival,
``tpot_s`` = (e2e - TTFT) / (output - 1) (undefined for one-token outputs), ``preemptions``,
``cached_tokens`` (prompt tokens served from the prefix cache), the replica and the arrival.
Summary: ``ttft_s``/``tpot_s``/``e2e_s`` as ``{p50, p90, p99, mean}`` (linear-interpolated
percentiles), ``makespan_s`` (last finish), ``requests`` (finished), ``unserved``, ``preemptions``,
``wall_s`` (the simulator's own run time), throughput (requests and tokens per second of makespan),
goodput under an SLO (requests per second meeting every given target, DistServe's definition,
Zhong et al., OSDI'24) and SLO attainment, and KV utilisation (time-averaged used blocks / capacity
per replica, and the peak).
"""
from __future__ import annotations

import numpy as np


def request_metrics(result):
    """Per-request metrics as a pandas DataFrame."""
    return result.to_dataframe()


def _pct(values) -> dict:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"p50": None, "p90": None, "p99": None, "mean": None}
    p50, p90, p99 = np.percentile(v, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "mean": float(v.mean())}


def summarize(result, *, slo_ttft_s: float | None = None, slo_tpot_s: float | None = None,
              slo_e2e_s: float | None = None) -> dict:
    df = result.to_dataframe()
    n = len(df)
    span = result.makespan_s
    out_tokens = int(df["output_tokens"].sum()) if n else 0
    in_tokens = int(df["prompt_tokens"].sum()) if n else 0
    summary = {
        "requests": n,
        "unserved": len(result.unserved),
        "ttft_s": _pct(df["ttft_s"]),
        "tpot_s": _pct(df["tpot_s"]),
        "e2e_s": _pct(df["e2e_s"]),
        "makespan_s": span,
        "preemptions": int(df["preemptions"].sum()) if n else 0,
        "wall_s": result.wall_s,
        "throughput": {
            "requests_per_s": n / span if span > 0 else None,
            "output_tokens_per_s": out_tokens / span if span > 0 else None,
            "total_tokens_per_s": (in_tokens + out_tokens) / span if span > 0 else None,
        },
    }
    if any(x is not None for x in (slo_ttft_s, slo_tpot_s, slo_e2e_s)):
        ok = np.ones(n, dtype=bool)
        if slo_ttft_s is not None:
            ok &= df["ttft_s"].to_numpy() <= slo_ttft_s
        if slo_tpot_s is not None:
            tp = df["tpot_s"].to_numpy()
            ok &= ~(tp > slo_tpot_s)  # one-token outputs have no TPOT and meet it
        if slo_e2e_s is not None:
            ok &= df["e2e_s"].to_numpy() <= slo_e2e_s
        total = n + len(result.unserved)
        summary["slo"] = {"ttft_s": slo_ttft_s, "tpot_s": slo_tpot_s, "e2e_s": slo_e2e_s}
        summary["goodput_requests_per_s"] = float(ok.sum()) / span if span > 0 else None
        summary["slo_attainment"] = float(ok.sum()) / total if total else None
    reps = result.replicas
    summary["kv_utilization"] = {
        "mean": float(np.mean([r["kv_utilization"] for r in reps])) if reps else None,
        "peak": float(max(r["peak_kv_blocks"] / r["kv_blocks"] for r in reps)) if reps else None,
    }
    hits = sum(r["cache_hit_blocks"] for r in reps)
    looks = sum(r["cache_lookup_blocks"] for r in reps)
    if looks:
        summary["prefix_cache"] = {"hit_ratio": hits / looks, "cached_tokens": int(df["cached_tokens"].sum()),
                                   "evictions": int(sum(r["cache_evictions"] for r in reps))}
    summary["replicas"] = reps
    return summary
