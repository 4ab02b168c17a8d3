"""A plain brute force for tiny ``batching`` instances, independent of solvers/batching_search.py.

Enumerates every sequence of non-empty iterations (no pruning, no dominance), times it from
scratch, and returns the optimum. Goodput: for every sequence and every set of requests that
should meet the SLOs, the least total latency is an LP over the iteration ends (scipy's linprog:
ends chain, arrivals, TTFT and TPOT rows); the best (most met, then least latency) wins. Only for
a handful of tokens.
"""
from __future__ import annotations

import math
from itertools import combinations, product


def sequences(inst):
    n = inst.n
    reqs = inst.requests

    def rec(pre, dec, seq):
        done = [pre[i] == reqs[i].prompt_tokens and dec[i] == reqs[i].output_tokens - 1 for i in range(n)]
        if all(done):
            yield list(seq)
            return
        per = []
        for i in range(n):
            opts = [None]
            if pre[i] < reqs[i].prompt_tokens:
                opts += [("p", c) for c in range(1, reqs[i].prompt_tokens - pre[i] + 1)]
            elif dec[i] < reqs[i].output_tokens - 1:
                opts.append(("d", 1))
            if inst.continuous and pre[i] > 0 and not done[i]:
                opts = opts[1:]
            per.append(opts)
        for combo in product(*per):
            entries = [(i, o[0], o[1]) for i, o in enumerate(combo) if o is not None]
            if not entries or sum(t for _, _, t in entries) > inst.token_budget:
                continue
            if inst.max_batch is not None and len(entries) > inst.max_batch:
                continue
            pre2, dec2 = list(pre), list(dec)
            for i, k, t in entries:
                if k == "p":
                    pre2[i] += t
                else:
                    dec2[i] += 1
            if inst.memory_tokens is not None:
                mem = sum(pre2[i] + dec2[i] for i in range(n) if pre2[i] > 0 and not done[i])
                if mem > inst.memory_tokens:
                    continue
            seq.append(entries)
            yield from rec(pre2, dec2, seq)
            seq.pop()

    yield from rec([0] * n, [0] * n, [])


def _taus_and_events(inst, seq):
    reqs = inst.requests
    n = inst.n
    kv = [0] * n
    pre = [0] * n
    dec = [0] * n
    taus, first, last = [], [None] * n, [None] * n
    for k, batch in enumerate(seq):
        chunks = sum(t for _, kind, t in batch if kind == "p")
        decs = [i for i, kind, _ in batch if kind == "d"]
        ctx = sum(kv[i] for i in decs)
        it = inst.iteration
        taus.append(it.fixed_ms + it.per_prefill_token_ms * chunks + it.per_decode_token_ms * len(decs)
                     + it.per_context_token_ms * ctx)
        for i, kind, t in batch:
            kv[i] += t
            if kind == "p":
                pre[i] += t
                if pre[i] == reqs[i].prompt_tokens:
                    first[i] = k
                    if reqs[i].output_tokens == 1:
                        last[i] = k
            else:
                dec[i] += 1
                if dec[i] == reqs[i].output_tokens - 1:
                    last[i] = k
    return taus, first, last


def earliest_ends(inst, seq):
    taus, first, last = _taus_and_events(inst, seq)
    ends, prev = [], 0.0
    for k, batch in enumerate(seq):
        s = max([prev] + [inst.requests[i].arrival_ms for i, _, _ in batch])
        prev = s + taus[k]
        ends.append(prev)
    return ends, first, last


def optimum(inst):
    """(objective, total latency) of the optimum; goodput via LPs."""
    reqs = inst.requests
    best = None
    for seq in sequences(inst):
        ends, first, last = earliest_ends(inst, seq)
        if inst.objective == "goodput":
            cand = _goodput(inst, seq)
        else:
            tl = sum(ends[last[i]] - r.arrival_ms for i, r in enumerate(reqs))
            val = max(ends[last[i]] for i in range(inst.n)) if inst.objective == "makespan" else tl
            cand = (val, tl)
        key = (-cand[0], cand[1]) if inst.objective == "goodput" else (cand[0],)
        if best is None or key < best[0]:
            best = (key, cand)
    return best[1]


def _goodput(inst, seq):
    from scipy.optimize import linprog

    reqs = inst.requests
    taus, first, last = _taus_and_events(inst, seq)
    K = len(seq)
    best = None
    for size in range(inst.n, -1, -1):
        for targets in combinations(range(inst.n), size):
            A, b = [], []
            lo = []
            for k, batch in enumerate(seq):
                lo.append(max([0.0] + [reqs[i].arrival_ms for i, _, _ in batch]) + taus[k])
                if k:
                    row = [0.0] * K
                    row[k - 1], row[k] = 1.0, -1.0  # E_{k-1} - E_k <= -tau_k
                    A.append(row)
                    b.append(-taus[k])
            for i in targets:
                r = reqs[i]
                if inst.slo_ttft_ms is not None:
                    row = [0.0] * K
                    row[first[i]] = 1.0
                    A.append(row)
                    b.append(r.arrival_ms + inst.slo_ttft_ms)
                if inst.slo_tpot_ms is not None and r.output_tokens > 1:
                    row = [0.0] * K
                    row[last[i]] += 1.0
                    row[first[i]] -= 1.0
                    A.append(row)
                    b.append(inst.slo_tpot_ms * (r.output_tokens - 1))
            cost = [0.0] * K
            for i in range(inst.n):
                cost[last[i]] += 1.0
            res = linprog(cost, A_ub=A or None, b_ub=b or None, bounds=[(l, None) for l in lo], method="highs")
            if res.status != 0:
                continue
            ends = list(res.x)
            met = 0
            for i, r in enumerate(reqs):
                ttft = ends[first[i]] - r.arrival_ms
                tpot = (ends[last[i]] - ends[first[i]]) / (r.output_tokens - 1) if r.output_tokens > 1 else 0.0
                met += (inst.slo_ttft_ms is None or ttft <= inst.slo_ttft_ms + 1e-7) and \
                       (inst.slo_tpot_ms is None or tpot <= inst.slo_tpot_ms + 1e-7)
            tl = sum(ends[last[i]] - r.arrival_ms for i, r in enumerate(reqs))
            cand = (float(met), tl)
            if best is None or (-cand[0], cand[1]) < (-best[0], best[1]):
                best = cand
        if best is not None and best[0] >= size:
            break
    return best if best is not None else (0.0, math.inf)
