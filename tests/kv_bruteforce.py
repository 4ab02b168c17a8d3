"""Brute-force oracle for tiny ``kv_schedule`` instances: enumerate start rounds, keep the best.

Every request's start is tried at every round from its arrival to the proven horizon
``max a + sum o`` (models/kv_schedule.py proves no optimum needs more), with an exact memory
check per round; the only pruning is a valid lower bound (the partial cost plus every remaining
request's own minimum), so the result is the exact optimum. Independent of the IP and the simulator.
"""
from __future__ import annotations

import math


def brute_force_optimum(inst) -> tuple[float, dict[str, int]]:
    reqs = list(inst.requests)
    n = len(reqs)
    M = inst.memory_tokens
    T = max(r.arrival for r in reqs) + sum(r.output_tokens for r in reqs)
    load = [0] * (T + 2)
    obj = inst.objective
    w = [r.weight if obj == "weighted_latency" else 1.0 for r in reqs]
    order = sorted(range(n), key=lambda i: (reqs[i].arrival, -reqs[i].output_tokens))
    rest_min = [0.0] * (n + 1)
    for k in range(n - 1, -1, -1):
        i = order[k]
        own = reqs[i].arrival + reqs[i].output_tokens if obj == "makespan" else w[i] * reqs[i].output_tokens
        rest_min[k] = max(rest_min[k + 1], own) if obj == "makespan" else rest_min[k + 1] + own
    best = [math.inf, None]
    starts = [0] * n

    def combine(partial, value):
        return max(partial, value) if obj == "makespan" else partial + value

    def dfs(k, partial):
        if k == n:
            if partial < best[0]:
                best[0], best[1] = partial, list(starts)
            return
        i = order[k]
        r = reqs[i]
        for p in range(int(r.arrival), T - r.output_tokens + 1):
            value = p + r.output_tokens if obj == "makespan" else w[i] * (p + r.output_tokens - r.arrival)
            if combine(combine(partial, value), rest_min[k + 1]) >= best[0]:
                break  # the bound grows with p
            if all(load[t] + r.prompt_tokens + t - p <= M for t in range(p + 1, p + r.output_tokens + 1)):
                for t in range(p + 1, p + r.output_tokens + 1):
                    load[t] += r.prompt_tokens + t - p
                starts[i] = p
                dfs(k + 1, combine(partial, value))
                for t in range(p + 1, p + r.output_tokens + 1):
                    load[t] -= r.prompt_tokens + t - p

    dfs(0, 0.0)
    return best[0], {reqs[i].id: best[1][i] for i in range(n)}
