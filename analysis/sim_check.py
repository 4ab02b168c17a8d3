"""Independent re-check of a simulated run from its per-request log and iteration log.

Checks only what the logs state, recomputed without the engine's data structures:

* every trace request is either finished exactly once or listed as unserved;
* per request: arrival <= first token <= finish, TTFT <= e2e, prompt/output as in the trace;
* per replica: iterations do not overlap in time and never use more KV blocks than the replica has
  (blocks are logged at each step's end, where a decode stretch peaks);
* tokens: decode tokens logged on a replica set never exceed sum(output - 1) of the requests it
  served and are at least sum(output - 1 - preemptions) (a recompute re-prefill emits one token);
  prefill tokens logged are at least the prompts minus the prefix-cache hits;
* each request finishes no earlier than its arrival plus ``output - 1`` iterations' minimum length.
Returns a list of violations ([] when the run is consistent).
"""
from __future__ import annotations

import numpy as np


def check_run(result, requests=None, *, tol: float = 1e-9) -> list[str]:
    out: list[str] = []
    df = result.to_dataframe()
    ids = list(df["id"])
    if len(set(ids)) != len(ids):
        out.append("a request id is reported finished more than once")
    if requests is not None:
        want = {r.id: r for r in requests}
        got = set(ids) | set(result.unserved)
        missing = [i for i in want if i not in got]
        if missing:
            out.append(f"{len(missing)} request(s) neither finished nor reported unserved, e.g. {missing[0]}")
        extra = [i for i in ids if i not in want]
        if extra:
            out.append(f"finished request(s) not in the trace, e.g. {extra[0]}")
        for row in df.itertuples():
            r = want.get(row.id)
            if r is None:
                continue
            if row.prompt_tokens != r.prompt_tokens or row.output_tokens != r.output_tokens:
                out.append(f"request {row.id}: lengths changed ({row.prompt_tokens}, {row.output_tokens})")
            if abs(row.arrival_s - r.arrival) > tol:
                out.append(f"request {row.id}: arrival changed ({row.arrival_s} vs {r.arrival})")
    bad = df[~(df["first_token_s"] >= df["arrival_s"] - tol)]
    if len(bad):
        out.append(f"{len(bad)} request(s) got a first token before arriving, e.g. {bad.iloc[0]['id']}")
    bad = df[~(df["finish_s"] >= df["first_token_s"] - tol)]
    if len(bad):
        out.append(f"{len(bad)} request(s) finished before their first token, e.g. {bad.iloc[0]['id']}")
    bad = df[~(df["ttft_s"] <= df["e2e_s"] + tol)]
    if len(bad):
        out.append(f"{len(bad)} request(s) with TTFT > e2e")
    log = result.iteration_log
    if log is None:
        return out
    caps = {r["replica"]: r["kv_blocks"] for r in result.replicas}
    for rep, g in log.groupby("replica"):
        g = g.sort_values("start_s")
        over = g[g["kv_blocks_used"] > caps[rep]]
        if len(over):
            out.append(f"replica {rep}: {len(over)} step(s) use more KV blocks than it has "
                       f"({int(over['kv_blocks_used'].max())} > {caps[rep]})")
        starts, ends = g["start_s"].to_numpy(), g["end_s"].to_numpy()
        if len(starts) > 1 and np.any(starts[1:] < ends[:-1] - tol):
            out.append(f"replica {rep}: overlapping iterations")
        if np.any(ends < starts - tol):
            out.append(f"replica {rep}: a step ends before it starts")
    served = df
    cfg = result.config or {}
    restarts = cfg.get("scheduler") == "kv_rounds" or (cfg.get("scheduler_options") or {}).get("preempt_mode") == "restart"
    dec_logged = int(log["decode_tokens"].sum())
    dec_hi = int((served["output_tokens"] - 1).sum())
    dec_lo = int((served["output_tokens"] - 1 - served["preemptions"]).clip(lower=0).sum())
    if requests is None or not result.unserved:
        if dec_logged > dec_hi and not restarts:  # a restart redoes its output, so no upper bound then
            out.append(f"decode tokens logged {dec_logged} exceed the outputs' {dec_hi}")
        if dec_logged < dec_lo:
            out.append(f"decode tokens logged {dec_logged} are fewer than the outputs need ({dec_lo})")
        pre_need = int((served["prompt_tokens"] - served["cached_tokens"]).clip(lower=0).sum())
        if int(log["prefill_tokens"].sum()) < pre_need:
            out.append(f"prefill tokens logged {int(log['prefill_tokens'].sum())} are fewer than the prompts need ({pre_need})")
    return out
