r"""Prefix-aware routing (``"model": "prefix"``): routing + caching, the model of Wu, Silwal, Zhang,
"Randomization Boosts KV Caching, Learning Balances Query Load" (ICLR 2026, arXiv 2601.18999).

Model (symbols as in the code)
------------------------------
Requests ``j`` in (arrival, position) order, each with the root path ``h_j`` of ``L_j`` prefix-block
ids (``hash_ids``; an id names a prefix), ``o_j`` output tokens. Replica ``k`` keeps one prefix cache
of ``C_k`` blocks (``cache_blocks``), run by the base model of the eviction kind
(solvers/eviction_belady.py): the requests routed to ``k`` are served one at a time in order;
request ``j`` hits ``hit_j`` = the longest prefix of ``h_j`` cached on its replica; afterwards the cache
is any subset of the old cache and ``h_j`` of at most ``C_k`` blocks. Its service cost is (Wu et al.'s
``cost_ij = alpha_cached hit_ij + alpha_miss (|q_j| - hit_ij) + O_ij``, prompts counted in whole blocks
of ``B`` tokens)

    c_j = B (alpha_hit hit_j + alpha_miss (L_j - hit_j)) + o_j.

Objectives: ``makespan`` = max over replicas of the summed cost of its requests (Wu et al.'s), and
``total_cost`` = the sum over all requests. Routing and eviction are chosen with hindsight.

Exact (small n). Given the routing, each replica's cost is its fixed part minus ``B (alpha_miss -
alpha_hit)`` times its total hits, and Belady's rule with bypass maximises the total hits of one cache
(proved in solvers/eviction_belady.py). So ``OPT = min over partitions of (+/max)_k cost_k(T_k)`` with
``cost_k(T)`` computed exactly by Belady: the same subset DP over replicas as solvers/routing_exact.py
(replicas with equal ``C_k`` share every part).

Bound (trace scale). *Pooled cache*: the union of the K caches has at most ``sum_k C_k`` blocks and
evolves legally (a block enters only with a request that carries it), and every request's hit on its
own replica is a prefix of that union; so the hits of one cache of ``sum_k C_k`` blocks that sees every
request, maximised by Belady, bound every routing's total hits ``H*``. Hence
``total_cost >= sum_j (B alpha_miss L_j + o_j) - B (alpha_miss - alpha_hit) H*`` and
``makespan >= max(total bound / K, max_j (B alpha_hit L_j + o_j))``.

Search (trace scale). From the best router's routing (its caches re-planned by Belady): relocate one
request to another replica when the objective drops (makespan: the max, then the sum), each move
re-planned by Belady on the two replicas touched, requests of the costliest replica first.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from servopt.instances.routing import RoutingInstance


@dataclass
class PrefixResult:
    status: str
    objective: float
    bound: float
    replica_of: list[int]
    hits: list[int]
    solve_seconds: float
    method: str
    stats: dict = field(default_factory=dict)

    @property
    def gap(self) -> float:
        return 0.0 if self.objective <= self.bound + 1e-9 else (self.objective - self.bound) / max(abs(self.objective), 1e-9)


def request_order(instance: RoutingInstance) -> list[int]:
    return sorted(range(instance.n), key=lambda j: (instance.requests[j].arrival, j))


def cost_of(instance: RoutingInstance, j: int, hit: int) -> float:
    r = instance.requests[j]
    L = len(r.prefix_block_ids)
    return instance.block_tokens * (instance.alpha_hit * hit + instance.alpha_miss * (L - hit)) + r.output_tokens


def replica_cost(instance: RoutingInstance, members: list[int], capacity: int) -> tuple[float, list[int]]:
    """Cost of serving ``members`` (in request order) on one cache of ``capacity`` blocks, Belady-optimal."""
    from servopt.solvers.eviction_belady import belady_hits

    if not members:
        return 0.0, []
    hits = belady_hits([instance.requests[j].prefix_block_ids for j in members], capacity)
    return float(sum(cost_of(instance, j, h) for j, h in zip(members, hits))), hits


def evaluate(instance: RoutingInstance, replica_of: list[int]) -> tuple[float, list[float], list[int]]:
    """Objective, per-replica costs and per-request hits of a routing with Belady caches."""
    order = request_order(instance)
    hits = [0] * instance.n
    costs = []
    for k, rep in enumerate(instance.replicas):
        members = [j for j in order if replica_of[j] == k]
        c, h = replica_cost(instance, members, rep.cache_blocks)
        costs.append(c)
        for j, x in zip(members, h):
            hits[j] = x
    return _combine(instance, costs), costs, hits


def _combine(instance, costs) -> float:
    return max(costs) if instance.objective == "makespan" else sum(costs)


def pooled_bound(instance: RoutingInstance) -> float:
    from servopt.solvers.eviction_belady import belady_hits

    order = request_order(instance)
    H = sum(belady_hits([instance.requests[j].prefix_block_ids for j in order],
                        sum(r.cache_blocks for r in instance.replicas)))
    B = instance.block_tokens
    base = sum(B * instance.alpha_miss * len(r.prefix_block_ids) + r.output_tokens for r in instance.requests)
    total = base - B * (instance.alpha_miss - instance.alpha_hit) * H
    if instance.objective == "makespan":
        alone = max(B * instance.alpha_hit * len(r.prefix_block_ids) + r.output_tokens for r in instance.requests)
        return max(total / instance.num_replicas, alone)
    return total


def solve_exact(instance: RoutingInstance, *, time_limit_s: float) -> PrefixResult:
    """The subset DP of the module docstring (n <= 12)."""
    from servopt.solvers.routing_exact import MAX_EXACT_N, _partition, subset_dp

    t0 = time.perf_counter()
    n, K = instance.n, instance.num_replicas
    if n > MAX_EXACT_N:
        from servopt.errors import InputError

        raise InputError("--formulation", f"the exact prefix method handles n <= {MAX_EXACT_N} requests, got {n}")
    order = request_order(instance)
    caps = sorted({r.cache_blocks for r in instance.replicas})
    full = 1 << n
    values = {}
    for c in caps:
        V = [0.0] * full
        for T in range(1, full):
            V[T] = replica_cost(instance, [j for j in order if T >> j & 1], c)[0]
        values[c] = V
    obj = "makespan" if instance.objective == "makespan" else "total"
    F, choices = subset_dp([values[r.cache_blocks] for r in instance.replicas], n, obj, with_choice=True)
    parts = _partition(choices, n)
    replica_of = [0] * n
    for k, T in enumerate(parts):
        for j in range(n):
            if T >> j & 1:
                replica_of[j] = k
    value, _, hits = evaluate(instance, replica_of)
    return PrefixResult("optimal", value, value, replica_of, hits, time.perf_counter() - t0, "prefix-exact",
                        {"parts": full * len(caps)})


def solve_search(instance: RoutingInstance, *, time_limit_s: float, starts: dict[str, list[int]]) -> PrefixResult:
    """Bound + relocation search from the best given routing (module docstring)."""
    t0 = time.perf_counter()
    deadline = t0 + time_limit_s
    bound = pooled_bound(instance)
    best_name, best_assign, best_val = None, None, math.inf
    for name, assign in starts.items():
        v = evaluate(instance, assign)[0]
        if v < best_val:
            best_name, best_assign, best_val = name, list(assign), v
    order = request_order(instance)
    assign = best_assign
    members = [[j for j in order if assign[j] == k] for k in range(instance.num_replicas)]
    costs = [replica_cost(instance, members[k], rep.cache_blocks)[0] for k, rep in enumerate(instance.replicas)]
    pos = {j: p for p, j in enumerate(order)}

    def key(cs):
        return (max(cs), sum(cs)) if instance.objective == "makespan" else (sum(cs),)

    moves = evals = 0
    improved = True
    while improved and time.perf_counter() < deadline and key(costs)[0] > bound + 1e-9:
        improved = False
        for a in sorted(range(len(costs)), key=lambda k: -costs[k]):
            for j in list(members[a]):
                if time.perf_counter() > deadline:
                    break
                for b in range(len(costs)):
                    if b == a:
                        continue
                    new_a = [x for x in members[a] if x != j]
                    new_b = sorted(members[b] + [j], key=pos.get)
                    ca = replica_cost(instance, new_a, instance.replicas[a].cache_blocks)[0]
                    cb = replica_cost(instance, new_b, instance.replicas[b].cache_blocks)[0]
                    evals += 1
                    trial = list(costs)
                    trial[a], trial[b] = ca, cb
                    if key(trial) < key(costs):
                        members[a], members[b], costs = new_a, new_b, trial
                        assign[j] = b
                        moves += 1
                        improved = True
                        break
                if improved:
                    break
            if improved:
                break
    value, _, hits = evaluate(instance, assign)
    # not proven: time_limit when the search ran out of time, feasible when it stopped at a local optimum
    status = "optimal" if value <= bound + 1e-9 else ("time_limit" if time.perf_counter() >= deadline else "feasible")
    return PrefixResult(status, value, min(bound, value), assign, hits, time.perf_counter() - t0, "prefix-search",
                        {"start": best_name, "start_objective": best_val, "moves": moves, "evaluations": evals})
