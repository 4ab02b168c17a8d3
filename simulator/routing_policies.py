"""Online routers on ``routing`` instances: a round simulator of K replicas, each running a ``kv_schedule`` policy.

Model: instances/routing.py (each replica the round model of Jaillet et al., arXiv 2502.07115, §2).

Per-round order of operations (round ``t``; every replica follows simulator/kv_rounds.py's contract,
so a one-replica instance gives exactly ``simulate_rounds``'s schedule):

1. **Completions** on every replica.
2. **Routing.** The requests arriving in round ``t`` are routed one at a time in (arrival, position)
   order; the router sees every replica's state after step 1 and after the earlier routings of this
   round, and only replicas where the request fits alone (``s + o <= M_k``). The request joins
   that replica's waiting queue and never moves (routers decide once, at arrival).
3. **Overflow / preemption** and 4. **admission** on every replica with its own instance of the
   per-replica policy (``kv_policy_*``: fcfs, mc-sf, vllm, ...), exactly as kv_rounds.py.
5. ``t += 1``; when nothing runs or waits anywhere, ``t`` jumps to the next arrival.

What a router sees per replica (attributes of ``ReplicaRun``): ``index``, ``id``,
``memory_tokens``; ``n_assigned`` (requests in flight: waiting + running), ``n_running``,
``n_waiting``; ``assigned_tokens`` (prompt + seen output tokens of the requests in flight);
``kv_tokens`` (tokens the running requests hold in round ``t + 1``); ``history`` (the set of
``(depth, key)`` prefix keys of the requests routed there: an approximate, routing-history cache
as in SGLang's router, llm-d's approximate prefix scorer and Dynamo's approximate mode; anchors §4).
Output lengths seen are predictions when the instance has them, else the truth.

Routers: the engine's (simulator/route_*.py: round_robin, random, jsq, least_tokens, power_of_two,
cache_aware with SGLang's defaults 0.3 / 64 / 1.5) and four score rules written here from their
published descriptions (research anchors §4.2-4.5), in the round model's units (one token = one
block; there is no prefill time in the round model, so prompt tokens stand for prefill work):

* ``preble_e2`` (Preble, Srivatsa et al., ICLR 2025, arXiv 2407.00023, §E2): *exploit* when the
  best replica's cached prefix is longer than the request's missing part (among such replicas the
  lowest cost); else *explore*: argmin ``L_k + M_k + P_k`` with load ``L_k`` = outstanding tokens,
  eviction cost ``M_k = 0`` (routing-history caches are unbounded here) and prefill ``P_k`` = missing
  prompt tokens. Preble's post-assignment rebalancing is not modelled.
* ``llm_d`` (llm-d inference scheduler, default weights prefix-cache 3, kv-cache-utilization 2,
  queue 2): argmax ``w_p * matched/len + w_kv * (1 - kv_tokens/M_k) + w_q * (q_max - q_k)/(q_max - q_min)``
  (queue score 1 for all when every queue is equal), ``q`` = waiting requests; ties at random.
* ``dynamo`` (NVIDIA Dynamo KV router): argmin ``overlap_weight * prefill_blocks + decode_blocks``,
  ``prefill_blocks`` = missing prompt tokens, ``decode_blocks`` = ``kv_tokens``; default weight 1,
  temperature 0 (ties: lowest index).
* ``lmetric`` (Zhang et al., arXiv 2603.15202): argmin (missing prompt tokens) x (requests in flight),
  ties by missing tokens, then in-flight count, then index.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field

import numpy as np

from servopt.errors import InputError
from servopt.instances.kv_schedule import Attempt
from servopt.instances.routing import RoutedRequest, RoutingInstance, RoutingSchedule, prefix_keys
from servopt.simulator.kv_rounds import PolicyLivelock, RoundView, RunningRequest, WaitingRequest, make_policy

ENGINE_ROUTERS = ("round_robin", "random", "jsq", "least_tokens", "power_of_two", "cache_aware")
SCORE_ROUTERS = ("preble_e2", "llm_d", "dynamo", "lmetric")
ROUTERS = ENGINE_ROUTERS + SCORE_ROUTERS
DEFAULT_KV_POLICY = "mc-sf"


# ----------------------------------------------------------------------------- score routers

def _matched(keys, history) -> int:
    m = 0
    for d, k in enumerate(keys):
        if (d, k) not in history:
            break
        m += 1
    return m


def _missing_tokens(req, rep) -> float:
    """Prompt tokens not covered by the replica's routing history (keys spread the prompt evenly)."""
    keys = req.prefix
    if not keys:
        return float(req.prompt)
    return req.prompt * (1.0 - _matched(keys, rep.history) / len(keys))


class PrebleE2:
    def route(self, req, replicas, now):
        cached = {r.index: req.prompt - _missing_tokens(req, r) for r in replicas}

        def cost(r):
            return r.assigned_tokens + (req.prompt - cached[r.index])

        exploit = [r for r in replicas if cached[r.index] > req.prompt - cached[r.index]]
        pool = exploit or replicas
        return min(pool, key=lambda r: (cost(r), r.index))


class LlmD:
    def __init__(self, rng, prefix_weight=3.0, kv_weight=2.0, queue_weight=2.0):
        self.rng = rng
        self.w = (float(prefix_weight), float(kv_weight), float(queue_weight))

    def score(self, req, replicas):
        q = [r.n_waiting for r in replicas]
        q_hi, q_lo = max(q), min(q)
        out = []
        for r, qk in zip(replicas, q):
            prefix = _matched(req.prefix, r.history) / len(req.prefix) if req.prefix else 0.0
            kv = 1.0 - r.kv_tokens / r.memory_tokens
            queue = 1.0 if q_hi == q_lo else (q_hi - qk) / (q_hi - q_lo)
            out.append(self.w[0] * prefix + self.w[1] * kv + self.w[2] * queue)
        return out

    def route(self, req, replicas, now):
        s = self.score(req, replicas)
        best = max(s)
        ties = [r for r, v in zip(replicas, s) if v >= best - 1e-12]
        return ties[int(self.rng.integers(len(ties)))] if len(ties) > 1 else ties[0]


class Dynamo:
    def __init__(self, overlap_weight=1.0):
        self.w = float(overlap_weight)

    def route(self, req, replicas, now):
        return min(replicas, key=lambda r: (self.w * _missing_tokens(req, r) + r.kv_tokens, r.index))


class LMetric:
    def route(self, req, replicas, now):
        def key(r):
            miss = _missing_tokens(req, r)
            return (miss * r.n_assigned, miss, r.n_assigned, r.index)

        return min(replicas, key=key)


def make_router(name: str, *, seed: int = 0, **options):
    """A fresh router object; unknown names and options raise InputError (field ``--router``)."""
    key = str(name).strip().lower().replace("-", "_")
    rng = np.random.default_rng(seed)
    try:
        if key in SCORE_ROUTERS:
            if key == "preble_e2":
                if options:
                    raise TypeError(f"preble_e2 takes no options, got {sorted(options)}")
                return PrebleE2()
            if key == "llm_d":
                return LlmD(rng, **options)
            if key == "dynamo":
                return Dynamo(**options)
            if options:
                raise TypeError(f"lmetric takes no options, got {sorted(options)}")
            return LMetric()
        from servopt.simulator import registry

        mods = registry._modules("router")
        if key not in mods or mods[key].NAME not in ENGINE_ROUTERS:
            hint = difflib.get_close_matches(key, list(ROUTERS), n=1)
            extra = f" (did you mean '{hint[0]}'?)" if hint else ""
            raise InputError("--router", f"unknown router '{name}'{extra}; valid: {', '.join(ROUTERS)}")
        mod = mods[key]
        if mod.NAME in ("random", "power_of_two"):
            return mod.make(rng=rng, **options)
        return mod.make(**options)
    except TypeError as exc:
        raise InputError("--router", f"{key}: {exc}") from None


def canonical_router(name: str) -> str:
    key = str(name).strip().lower().replace("-", "_")
    if key in SCORE_ROUTERS:
        return key
    from servopt.simulator import registry

    mods = registry._modules("router")
    if key in mods and mods[key].NAME in ENGINE_ROUTERS:
        return mods[key].NAME
    make_router(name)  # raises the one-line error
    return key


# ----------------------------------------------------------------------------- the simulator

class _Req:
    """What a router sees of a request (the engine routers read ``prefix``)."""

    __slots__ = ("idx", "rid", "arrival", "prompt", "output", "prefix")

    def __init__(self, idx, rid, arrival, prompt, output, prefix):
        self.idx, self.rid, self.arrival, self.prompt, self.output, self.prefix = idx, rid, arrival, prompt, output, prefix


@dataclass
class _State:
    replica: int = -1
    attempts: list = field(default_factory=list)
    finish: int | None = None
    revealed: int = 1


class ReplicaRun:
    """One replica's round state and its per-replica policy (module docstring for the attributes)."""

    def __init__(self, index: int, rid: str, memory_tokens: int, policy: str, params: dict):
        self.index = index
        self.id = rid
        self.memory_tokens = memory_tokens
        self.policy, self.params = make_policy(policy, **params)
        self.policy_name = policy
        self.running: dict[int, int] = {}  # position -> start
        self.waiting: list[int] = []  # positions in (arrival, position) order
        self.n_assigned = 0
        self.assigned_tokens = 0
        self.kv_tokens = 0
        self.history: set = set()

    @property
    def n_running(self) -> int:
        return len(self.running)

    @property
    def n_waiting(self) -> int:
        return len(self.waiting)


def simulate_routing(instance: RoutingInstance, router: str, *, policy: str = DEFAULT_KV_POLICY, seed: int = 0,
                     router_options: dict | None = None, policy_params: dict | None = None,
                     max_rounds: int | None = None) -> RoutingSchedule:
    """Run ``router`` with ``policy`` on every replica (module docstring's order of operations)."""
    rt = make_router(router, seed=seed, **(router_options or {}))
    reqs = instance.requests
    n = len(reqs)
    reps = [ReplicaRun(k, rep.id, rep.memory_tokens, policy, dict(policy_params or {}))
            for k, rep in enumerate(instance.replicas)]
    allowed = [[reps[k] for k in instance.allowed(i)] for i in range(n)]
    views = [_Req(i, r.id, int(r.arrival), r.prompt_tokens, r.output_tokens_seen, prefix_keys(instance, i))
             for i, r in enumerate(reqs)]
    order = sorted(range(n), key=lambda i: (reqs[i].arrival, i))
    state = [_State() for _ in range(n)]
    index = {r.id: i for i, r in enumerate(reqs)}
    next_arrival, done, preemptions = 0, 0, 0
    t = int(reqs[order[0]].arrival)
    if max_rounds is None:
        max_rounds = 50 * (int(max(r.arrival for r in reqs)) + sum(r.output_tokens for r in reqs)) + 1000

    def next_memory(rep):
        return sum(reqs[i].prompt_tokens + t + 1 - p for i, p in rep.running.items())

    def view(rep) -> RoundView:
        w = tuple(WaitingRequest(reqs[i].id, i, int(reqs[i].arrival), reqs[i].prompt_tokens, reqs[i].output_tokens_seen,
                                 reqs[i].output_tokens_interval, len(state[i].attempts), state[i].revealed)
                  for i in rep.waiting)
        rn = tuple(RunningRequest(reqs[i].id, i, int(reqs[i].arrival), reqs[i].prompt_tokens, reqs[i].output_tokens_seen,
                                  reqs[i].output_tokens_interval, p, t - p, len(state[i].attempts), state[i].revealed)
                   for i, p in sorted(rep.running.items(), key=lambda kv: (kv[1], kv[0])))
        return RoundView(t, rep.memory_tokens, w, rn)

    def requeue(rep, i):
        key = (reqs[i].arrival, i)
        pos = 0
        while pos < len(rep.waiting) and (reqs[rep.waiting[pos]].arrival, rep.waiting[pos]) < key:
            pos += 1
        rep.waiting.insert(pos, i)

    while done < n:
        if t > max_rounds:
            raise PolicyLivelock(f"router '{router}' with policy '{policy}' did not finish within {max_rounds} rounds")
        # 1. completions
        for rep in reps:
            for i in [i for i, p in rep.running.items() if p + reqs[i].output_tokens <= t]:
                state[i].finish = rep.running.pop(i) + reqs[i].output_tokens
                rep.n_assigned -= 1
                rep.assigned_tokens -= reqs[i].prompt_tokens + reqs[i].output_tokens_seen
                done += 1
            rep.kv_tokens = next_memory(rep)
        # 2. routing of this round's arrivals
        while next_arrival < n and reqs[order[next_arrival]].arrival <= t:
            i = order[next_arrival]
            choice = rt.route(views[i], allowed[i], t)
            if choice not in allowed[i]:
                raise RuntimeError(f"router '{router}' sent request '{reqs[i].id}' to a replica where it does not fit")
            state[i].replica = choice.index
            requeue(choice, i)
            choice.n_assigned += 1
            choice.assigned_tokens += reqs[i].prompt_tokens + reqs[i].output_tokens_seen
            choice.history.update((d, k) for d, k in enumerate(views[i].prefix))
            next_arrival += 1
        # 3-4. per replica: overflow / preemption, admission (kv_rounds.simulate_rounds, steps 3-4)
        for rep in reps:
            pol = rep.policy
            preempted_now = False
            while rep.running and next_memory(rep) > rep.memory_tokens:
                victims = [index[v] for v in pol.on_overflow(view(rep)) if v in index and index[v] in rep.running]
                if not victims:
                    victims = [max(rep.running, key=lambda i: (rep.running[i], i))]
                for i in victims:
                    if not rep.running or next_memory(rep) <= rep.memory_tokens and getattr(pol, "preempt_only_until_fit", True):
                        break
                    p = rep.running.pop(i)
                    state[i].attempts.append(Attempt(p, t))
                    state[i].revealed = max(state[i].revealed, t - p + 1)
                    requeue(rep, i)
                    preemptions += 1
                    preempted_now = True
            if rep.waiting:
                v = view(rep)
                skip = preempted_now and getattr(pol, "no_admission_after_preemption", False)
                chosen = [] if skip else list(pol.admit(v))
                if not rep.running and not chosen:
                    chosen = [v.waiting[0].id]
                mem = next_memory(rep)
                for rid in chosen:
                    i = index.get(rid)
                    if i is None or i not in rep.waiting:
                        raise RuntimeError(f"policy '{policy}' admitted {rid!r}, which is not waiting on {rep.id} in round {t}")
                    mem += reqs[i].prompt_tokens + 1
                    rep.running[i] = t
                    rep.waiting.remove(i)
                if mem > rep.memory_tokens:
                    raise RuntimeError(f"policy '{policy}' overfilled replica {rep.id} in round {t + 1}")
        # 5. advance
        t += 1
        if next_arrival < n and all(not rep.running and not rep.waiting for rep in reps):
            t = max(t, int(reqs[order[next_arrival]].arrival))
    rows = tuple(RoutedRequest(r.id, int(r.arrival), instance.replicas[state[i].replica].id,
                               state[i].finish - r.output_tokens, state[i].finish, tuple(state[i].attempts))
                 for i, r in enumerate(reqs))
    meta = {"router": canonical_router(router), "policy": policy, "params": reps[0].params, "preemptions": preemptions,
            "router_options": dict(router_options or {}), "seed": seed}
    return RoutingSchedule(rows, objective_name=instance.objective, method=f"router:{canonical_router(router)}/{policy}",
                           meta=meta)


def run_all(instance: RoutingInstance, routers=ROUTERS, *, policy: str = DEFAULT_KV_POLICY, seed: int = 0) -> dict[str, RoutingSchedule]:
    """Every router's schedule, keyed ``router/policy``."""
    return {f"{r}/{policy}": simulate_routing(instance, r, policy=policy, seed=seed) for r in routers}


# ----------------------------------------------------------------------------- the prefix model

class _PrefixReplica:
    """What a router sees of a replica in the prefix model (no rounds: requests are served in order).

    ``n_assigned``: requests routed there; ``assigned_tokens``: their summed service cost so far (the
    load whose maximum is the makespan); ``kv_tokens``: prefix blocks of the routing history, at most
    ``cache_blocks``; ``memory_tokens``: ``cache_blocks`` (so KV utilisation = kv_tokens / capacity)."""

    def __init__(self, index, rid, cache_blocks):
        self.index, self.id = index, rid
        self.memory_tokens = max(1, cache_blocks)
        self.n_assigned = 0
        self.n_waiting = 0
        self.assigned_tokens = 0.0
        self.kv_tokens = 0
        self.history: set = set()


def simulate_prefix_routing(instance: RoutingInstance, router: str, *, eviction: str = "lru", seed: int = 0,
                            router_options: dict | None = None) -> dict:
    """Route the prefix model's requests online (in order) and run ``eviction`` on every replica's cache.

    The router decides from the routing history (approximate caches, unbounded, anchors §4) and the
    loads charged at the *missed* prompt the history predicts; the realised hits and costs come from
    each replica's cache running ``eviction`` (simulator/eviction_replay.py) on its requests.
    Returns ``{"replica_of", "hits", "costs", "objective"}`` (per request in instance order)."""
    from servopt.simulator.eviction_replay import policy_hits

    rt = make_router(router, seed=seed, **(router_options or {}))
    reqs = instance.requests
    reps = [_PrefixReplica(k, rep.id, rep.cache_blocks) for k, rep in enumerate(instance.replicas)]
    order = sorted(range(instance.n), key=lambda j: (reqs[j].arrival, j))
    B = instance.block_tokens
    replica_of = [0] * instance.n
    for j in order:
        r = reqs[j]
        view = _Req(j, r.id, int(r.arrival), len(r.prefix_block_ids) * B, r.output_tokens, tuple(r.prefix_block_ids))
        choice = rt.route(view, reps, int(r.arrival))
        replica_of[j] = choice.index
        matched = _matched(view.prefix, choice.history)
        L = len(view.prefix)
        choice.n_assigned += 1
        choice.assigned_tokens += B * (instance.alpha_hit * matched + instance.alpha_miss * (L - matched)) + r.output_tokens
        choice.history.update((d, k) for d, k in enumerate(view.prefix))
        choice.kv_tokens = min(len(choice.history), instance.replicas[choice.index].cache_blocks)
    hits = [0] * instance.n
    for k, rep in enumerate(instance.replicas):
        members = [j for j in order if replica_of[j] == k]
        if members:
            for j, h in zip(members, policy_hits([reqs[j].prefix_block_ids for j in members], rep.cache_blocks, eviction)):
                hits[j] = int(h)
    costs = [B * (instance.alpha_hit * h + instance.alpha_miss * (len(r.prefix_block_ids) - h)) + r.output_tokens
             for r, h in zip(reqs, hits)]
    per = [sum(c for c, k in zip(costs, replica_of) if k == kk) for kk in range(instance.num_replicas)]
    objective = max(per) if instance.objective == "makespan" else sum(per)
    return {"replica_of": replica_of, "hits": hits, "costs": costs, "objective": float(objective),
            "router": canonical_router(router), "eviction": eviction}
