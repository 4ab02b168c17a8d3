"""Independent checker for ``batching`` results: every rule and every time recomputed from scratch.

Reads only the instance and the result JSON (no model, no policy, no schedule helper of
``instances/batching.py`` beyond the instance dataclass): replays the iterations in order and
checks, per iteration, start >= previous end and >= every participant's arrival, the prefill and
decode rules (a chunk of 1..remaining prompt tokens; a decode only after the prompt and at most
o_i - 1 of them), one entry per request, the token budget, the batch limit, the memory of
started, unfinished requests (those finishing in the iteration included), the continuous rule,
and end = start + tau; then that every request completed, that the reported per-request times,
the objective and the summary fields equal the recomputed ones, and that the bound is on the
right side of the objective. Times are compared to ``ABS_TOL_MS + REL_TOL * |value|``.
"""
from __future__ import annotations

import math

ABS_TOL_MS = 1e-6
REL_TOL = 1e-9


def _close(a, b) -> bool:
    return abs(a - b) <= ABS_TOL_MS + REL_TOL * max(abs(a), abs(b))


def _num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def check_result(instance, result: dict) -> list[str]:
    v: list[str] = []
    if not isinstance(result, dict):
        return ["the result is not a JSON object"]
    rows = result.get("iterations")
    if not isinstance(rows, list):
        return ["the result has no 'iterations' array"]
    inst = instance
    reqs = inst.requests
    n = inst.n
    index = {r.id: i for i, r in enumerate(reqs)}
    B = inst.token_budget
    S = inst.max_batch
    M = inst.memory_tokens
    it = inst.iteration
    pre = [0] * n
    dec = [0] * n
    first = [None] * n
    last = [None] * n
    prev_end = -math.inf
    for k, row in enumerate(rows):
        w = f"iterations[{k}]"
        if not isinstance(row, dict):
            v.append(f"{w}: not an object")
            continue
        start, end, batch = row.get("start_ms"), row.get("end_ms"), row.get("batch")
        if not _num(start) or not _num(end) or not isinstance(batch, list):
            v.append(f"{w}: needs numeric start_ms, end_ms and a batch array")
            continue
        if start < prev_end - ABS_TOL_MS:
            v.append(f"{w}: starts at {start} before the previous iteration ends ({prev_end})")
        seen = set()
        chunk_tokens = decodes = context = 0
        before_finished = [last[i] is not None for i in range(n)]
        started_before = [pre[i] > 0 for i in range(n)]
        for j, item in enumerate(batch):
            wj = f"{w}.batch[{j}]"
            rid = item.get("id") if isinstance(item, dict) else None
            if rid not in index:
                v.append(f"{wj}: unknown request id {rid!r}")
                continue
            i = index[rid]
            r = reqs[i]
            if i in seen:
                v.append(f"{wj}: request {rid} appears twice in one iteration")
                continue
            seen.add(i)
            if r.arrival_ms > start + ABS_TOL_MS:
                v.append(f"{wj}: request {rid} arrives at {r.arrival_ms}, after the iteration starts ({start})")
            has_p, has_d = "prefill_tokens" in item, "decode_tokens" in item
            if has_p == has_d:
                v.append(f"{wj}: needs exactly one of prefill_tokens and decode_tokens")
                continue
            if has_p:
                c = item["prefill_tokens"]
                if isinstance(c, bool) or not isinstance(c, int) or c < 1:
                    v.append(f"{wj}: prefill_tokens must be a positive integer, got {c!r}")
                    continue
                if pre[i] + c > r.prompt_tokens:
                    v.append(f"{wj}: chunk of {c} exceeds the {r.prompt_tokens - pre[i]} prompt tokens left of {rid}")
                    continue
                pre[i] += c
                chunk_tokens += c
                if pre[i] == r.prompt_tokens:
                    first[i] = k
                    if r.output_tokens == 1:
                        last[i] = k
            else:
                if item["decode_tokens"] != 1 or isinstance(item["decode_tokens"], bool):
                    v.append(f"{wj}: decode_tokens must be 1, got {item['decode_tokens']!r}")
                    continue
                if first[i] is None or first[i] == k:
                    v.append(f"{wj}: decode of {rid} before its prompt is complete")
                    continue
                if dec[i] >= r.output_tokens - 1:
                    v.append(f"{wj}: {rid} already has its {r.output_tokens} output tokens")
                    continue
                context += r.prompt_tokens + dec[i]
                dec[i] += 1
                decodes += 1
                if dec[i] == r.output_tokens - 1:
                    last[i] = k
        if not seen:
            pass  # an empty iteration is allowed (it only costs its fixed time)
        if chunk_tokens + decodes > B:
            v.append(f"{w}: {chunk_tokens} prefill + {decodes} decode tokens exceed the token budget {B}")
        if S is not None and len(seen) > S:
            v.append(f"{w}: {len(seen)} participants exceed max_batch {S}")
        if M is not None:
            mem = sum(pre[i] + dec[i] for i in range(n) if pre[i] > 0 and not before_finished[i])
            if mem > M:
                v.append(f"{w}: memory {mem} tokens exceeds memory_tokens {M}")
        if inst.continuous:
            for i in range(n):
                if started_before[i] and not before_finished[i] and i not in seen:
                    v.append(f"{w}: continuous: started, unfinished request {reqs[i].id} does not take part")
        tau = it.fixed_ms + it.per_prefill_token_ms * chunk_tokens + it.per_decode_token_ms * decodes \
            + it.per_context_token_ms * context
        if not _close(end, start + tau):
            v.append(f"{w}: end {end} != start {start} + tau {tau}")
        prev_end = end
    ends = [row.get("end_ms") if isinstance(row, dict) else None for row in rows]
    recomputed = {}
    for i, r in enumerate(reqs):
        if last[i] is None or first[i] is None:
            v.append(f"request {r.id}: not completed ({pre[i]}/{r.prompt_tokens} prompt tokens, {dec[i]}/{r.output_tokens - 1} decodes)")
            continue
        f_ms, c_ms = ends[first[i]], ends[last[i]]
        if not (_num(f_ms) and _num(c_ms)):
            continue
        tpot = (c_ms - f_ms) / (r.output_tokens - 1) if r.output_tokens > 1 else 0.0
        recomputed[r.id] = {"first_token_ms": f_ms, "finish_ms": c_ms, "ttft_ms": f_ms - r.arrival_ms, "tpot_ms": tpot}
    if v:
        return v
    rep = result.get("requests")
    if not isinstance(rep, list):
        return ["the result has no 'requests' array"]
    ids = [row.get("id") if isinstance(row, dict) else None for row in rep]
    if sorted(map(str, ids)) != sorted(r.id for r in reqs):
        v.append("requests: must list every request id exactly once")
        return v
    for row in rep:
        want = recomputed[row["id"]]
        for key, value in want.items():
            got = row.get(key)
            if not _num(got) or not _close(got, value):
                v.append(f"request {row['id']}: {key} reported {got!r}, recomputed {value}")
    tl = sum(recomputed[r.id]["finish_ms"] - r.arrival_ms for r in reqs)
    mk = max(recomputed[r.id]["finish_ms"] for r in reqs)
    gp = 0
    for r in reqs:
        x = recomputed[r.id]
        ok = (inst.slo_ttft_ms is None or x["ttft_ms"] <= inst.slo_ttft_ms + ABS_TOL_MS) and \
             (inst.slo_tpot_ms is None or x["tpot_ms"] <= inst.slo_tpot_ms + ABS_TOL_MS)
        gp += ok
    objective = {"total_latency": tl, "makespan": mk, "goodput": float(gp)}[inst.objective]
    got = result.get("objective")
    if not _num(got) or not _close(got, objective):
        v.append(f"objective ({inst.objective}) reported {got!r}, recomputed {objective}")
    for key, value in (("total_latency_ms", tl), ("makespan_ms", mk), ("goodput", gp)):
        if key in result and (not _num(result[key]) or not _close(result[key], value)):
            v.append(f"{key} reported {result[key]!r}, recomputed {value}")
    bound = result.get("bound")
    if bound is not None:
        if not _num(bound):
            v.append(f"bound must be a number or null, got {bound!r}")
        elif inst.objective == "goodput" and bound < objective - 1e-9:
            v.append(f"bound {bound} is below the goodput {objective} (an upper bound cannot be)")
        elif inst.objective != "goodput" and bound > objective + ABS_TOL_MS + REL_TOL * abs(objective):
            v.append(f"bound {bound} exceeds the objective {objective} (a lower bound cannot be)")
    return v
