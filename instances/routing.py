"""Routing across replicas: instances and schedules (kind ``routing``).

Semantics (the default ``"model": "round"``): ``K`` replicas, replica ``k`` with KV memory
``M_k = memory_tokens`` tokens, each the round model of ``kv_schedule`` (Jaillet, Jiang, Mellou,
Molinaro, Podimata, Zhou, arXiv 2502.07115, §2; instances/kv_schedule.py):

* every request ``i`` (arrival round ``a_i``, ``s_i`` prompt and ``o_i`` output tokens) goes to
  exactly one replica ``k(i)`` and starts there at an integer round ``p_i >= a_i``,
  non-preemptively; it holds ``s_i + (t - p_i)`` tokens of ``k(i)`` in rounds
  ``t = p_i+1 .. p_i+o_i`` and finishes at ``f_i = p_i + o_i``;
* in every round, on every replica, the memory of the requests running there is at most ``M_k``;
* objectives: ``total_latency = sum_i (f_i - a_i)``, ``makespan = max_i f_i``.

A request may only go to a replica where it fits alone (``s_i + o_i <= M_k``); one that fits on
no replica is rejected on load. Online routers (simulator/routing_policies.py) may run a
preempting per-replica policy: a preempted attempt is recorded as in ``kv_schedule`` and the
request stays on its replica.

``hash_ids`` (Mooncake's name) or ``prefix_block_ids`` are the prompt's prefix block ids; in the
round model they only steer the cache-aware routers. Requests without them get request-unique
keys, one per prompt token (``prefix_keys``), so a routing-history tree grows with the prompt
tokens routed to a replica (SGLang's tree grows with the characters routed, anchors §4.1).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from servopt.errors import InputError
from servopt.instances import fields
from servopt.instances.kv_schedule import Attempt, KVScheduleInstance
from servopt.instances.requests import Request, request_from_dict

KIND = "routing"
OBJECTIVES = ("total_latency", "makespan")
MODELS = ("round", "prefix")
PREFIX_OBJECTIVES = ("makespan", "total_cost")


@dataclass(frozen=True)
class Replica:
    id: str
    memory_tokens: int = 0  # round model: KV memory M_k
    cache_blocks: int = 0  # prefix model: prefix-cache capacity C_k in blocks

    def to_dict(self) -> dict:
        out = {"id": self.id}
        if self.memory_tokens:
            out["memory_tokens"] = self.memory_tokens
        if self.cache_blocks:
            out["cache_blocks"] = self.cache_blocks
        return out


@dataclass(frozen=True)
class RoutingInstance:
    """Replicas (each a ``kv_schedule`` round model) and the requests to route and schedule."""

    replicas: tuple[Replica, ...]
    requests: tuple[Request, ...]
    objective: str = "total_latency"
    model: str = "round"
    name: str = ""
    alpha_hit: float = 0.1  # prefix model: cost per cached prompt token (Wu, Silwal, Zhang, ICLR 2026)
    alpha_miss: float = 1.0  # prefix model: cost per missed prompt token
    block_tokens: int = 512  # prefix model: tokens per prefix block (Mooncake's hash_ids)

    def __post_init__(self):
        validate_instance(self)

    @property
    def n(self) -> int:
        return len(self.requests)

    @property
    def num_replicas(self) -> int:
        return len(self.replicas)

    def allowed(self, i: int) -> list[int]:
        """Replicas where request ``i`` fits alone."""
        r = self.requests[i]
        return [k for k, rep in enumerate(self.replicas) if r.prompt_tokens + r.output_tokens <= rep.memory_tokens]

    def replica_instance(self, k: int, indices) -> KVScheduleInstance:
        """The ``kv_schedule`` instance of replica ``k`` serving requests ``indices`` (all must fit there)."""
        reqs = tuple(self.requests[i] for i in indices)
        return KVScheduleInstance(self.replicas[k].memory_tokens, reqs, self.objective, f"{self.name}[{self.replicas[k].id}]")

    def pooled_instance(self) -> KVScheduleInstance:
        """One replica with the summed memory: every routing schedule is feasible for it (a relaxation)."""
        return KVScheduleInstance(sum(r.memory_tokens for r in self.replicas), self.requests, self.objective,
                                  f"{self.name}[pooled]")

    @classmethod
    def from_dict(cls, data: dict) -> "RoutingInstance":
        if not isinstance(data, dict):
            raise InputError("(top level)", "an instance must be a JSON object")
        raw_reps = fields.array(data, "replicas", "", non_empty=True)
        replicas = []
        model = fields.string(data, "model", "", default="round", choices=MODELS)
        for k, rep in enumerate(raw_reps):
            where = f"replicas[{k}]"
            if not isinstance(rep, dict):
                raise InputError(where, "expected an object")
            rid = rep.get("id", f"g{k}")
            if not isinstance(rid, str) or not rid:
                raise InputError(f"{where}.id", f"expected a non-empty string, got {rid!r}")
            if model == "prefix":
                replicas.append(Replica(rid, cache_blocks=fields.integer(rep, "cache_blocks", where, minimum=0)))
            else:
                replicas.append(Replica(rid, fields.integer(rep, "memory_tokens", where, minimum=1)))
        objective = fields.string(data, "objective", "", default="makespan" if model == "prefix" else "total_latency",
                                  choices=PREFIX_OBJECTIVES if model == "prefix" else OBJECTIVES)
        prefix_params = {}
        if model == "prefix":
            prefix_params = {"alpha_hit": fields.number(data, "alpha_hit", "", minimum=0, default=0.1),
                             "alpha_miss": fields.number(data, "alpha_miss", "", minimum=0, default=1.0),
                             "block_tokens": fields.integer(data, "block_tokens", "", minimum=1, default=512)}
        raw = fields.array(data, "requests", "", non_empty=True)
        fields.unique_ids(raw, "requests")
        requests = []
        for i, r in enumerate(raw):
            if isinstance(r, dict) and "hash_ids" in r:
                if "prefix_block_ids" in r:
                    raise InputError(f"requests[{i}].hash_ids", "give hash_ids or prefix_block_ids, not both")
                r = {**{k: v for k, v in r.items() if k != "hash_ids"}, "prefix_block_ids": r["hash_ids"]}
            requests.append(request_from_dict(r, f"requests[{i}]", integer_arrival=True, default_id=f"r{i}"))
        name = data.get("name", "")
        return cls(tuple(replicas), tuple(requests), objective, model, name if isinstance(name, str) else "", **prefix_params)

    def to_dict(self) -> dict:
        out = {"kind": KIND, "replicas": [r.to_dict() for r in self.replicas]}
        out["objective"] = self.objective
        if self.model != "round":
            out["model"] = self.model
            out.update(alpha_hit=self.alpha_hit, alpha_miss=self.alpha_miss, block_tokens=self.block_tokens)
        if self.name:
            out["name"] = self.name
        out["requests"] = []
        for r in self.requests:
            d = r.to_dict()
            if "prefix_block_ids" in d:
                d["hash_ids"] = d.pop("prefix_block_ids")
            out["requests"].append(d)
        return out

    def to_dataframe(self):
        import pandas as pd

        return pd.DataFrame([r.to_dict() for r in self.requests])


def validate_instance(instance: RoutingInstance) -> None:
    """Semantic checks the JSON Schema cannot state; also guards the Python API."""
    if not instance.replicas:
        raise InputError("replicas", "must not be empty (an instance needs at least one replica)")
    seen_rep: dict[str, int] = {}
    if instance.model == "prefix":
        validate_prefix_instance(instance)
        return
    for k, rep in enumerate(instance.replicas):
        if rep.id in seen_rep:
            raise InputError(f"replicas[{k}].id", f"duplicate id '{rep.id}' (first at replicas[{seen_rep[rep.id]}])")
        seen_rep[rep.id] = k
        m = rep.memory_tokens
        if isinstance(m, bool) or not isinstance(m, int) or m < 1:
            raise InputError(f"replicas[{k}].memory_tokens", f"expected a positive integer, got {m!r}")
    if instance.objective not in OBJECTIVES:
        raise InputError("objective", f"must be one of {', '.join(OBJECTIVES)}; got '{instance.objective}'")
    if instance.model not in MODELS:
        raise InputError("model", f"must be one of {', '.join(MODELS)}; got '{instance.model}'")
    if not instance.requests:
        raise InputError("requests", "must not be empty (an instance needs at least one request)")
    biggest = max(rep.memory_tokens for rep in instance.replicas)
    seen: dict[str, int] = {}
    for i, r in enumerate(instance.requests):
        where = f"requests[{i}]"
        if r.id in seen:
            raise InputError(f"{where}.id", f"duplicate id '{r.id}' (first at requests[{seen[r.id]}])")
        seen[r.id] = i
        for key in ("arrival", "prompt_tokens", "output_tokens"):
            value = getattr(r, key)
            if isinstance(value, bool) or not float(value).is_integer():
                raise InputError(f"{where}.{key}", f"rounds and tokens are integers, got {value!r}")
        if r.prompt_tokens + r.output_tokens > biggest:
            raise InputError(where, f"request '{r.id}' needs prompt_tokens + output_tokens = "
                                    f"{r.prompt_tokens + r.output_tokens} tokens in its last round, more than the "
                                    f"largest replica's memory_tokens = {biggest}: it can never run")


def validate_prefix_instance(instance: RoutingInstance) -> None:
    """The prefix model (module docstring of solvers/routing_prefix.py): ids, capacities, costs, paths."""
    seen_rep: dict[str, int] = {}
    for k, rep in enumerate(instance.replicas):
        if rep.id in seen_rep:
            raise InputError(f"replicas[{k}].id", f"duplicate id '{rep.id}' (first at replicas[{seen_rep[rep.id]}])")
        seen_rep[rep.id] = k
        if isinstance(rep.cache_blocks, bool) or not isinstance(rep.cache_blocks, int) or rep.cache_blocks < 0:
            raise InputError(f"replicas[{k}].cache_blocks", f"expected a non-negative integer, got {rep.cache_blocks!r}")
    if instance.objective not in PREFIX_OBJECTIVES:
        raise InputError("objective", f"the prefix model minimises {' or '.join(PREFIX_OBJECTIVES)}; got '{instance.objective}'")
    if not 0 <= instance.alpha_hit <= instance.alpha_miss:
        raise InputError("alpha_hit", f"must lie in [0, alpha_miss = {instance.alpha_miss:g}], got {instance.alpha_hit!r}")
    if not instance.requests:
        raise InputError("requests", "must not be empty (an instance needs at least one request)")
    seen: dict[str, int] = {}
    parent: dict[int, tuple[int, int]] = {}
    for i, r in enumerate(instance.requests):
        if r.id in seen:
            raise InputError(f"requests[{i}].id", f"duplicate id '{r.id}' (first at requests[{seen[r.id]}])")
        seen[r.id] = i
        for d, h in enumerate(r.prefix_block_ids):
            key = (d, r.prefix_block_ids[d - 1] if d else -1)
            if parent.setdefault(h, key) != key:
                raise InputError(f"requests[{i}].hash_ids[{d}]", f"block id {h} appears at another depth or under "
                                                                  "another parent: ids must name prefixes")


def prefix_keys(instance: RoutingInstance, i: int) -> tuple:
    """Request ``i``'s prefix keys for cache-aware routers (module docstring)."""
    r = instance.requests[i]
    if r.prefix_block_ids:
        return tuple(r.prefix_block_ids)
    return tuple(("u", i, j) for j in range(max(1, r.prompt_tokens)))


# ----------------------------------------------------------------------------- schedules

@dataclass(frozen=True)
class RoutedRequest:
    id: str
    arrival: int
    replica: str
    start: int
    finish: int
    attempts: tuple[Attempt, ...] = ()

    @property
    def latency(self) -> int:
        return self.finish - self.arrival

    def to_dict(self) -> dict:
        out = {"id": self.id, "replica": self.replica, "start": self.start, "finish": self.finish}
        if self.attempts:
            out["attempts"] = [a.to_dict() for a in self.attempts]
        return out


@dataclass(frozen=True)
class RoutingSchedule:
    """Per request its replica, its final start and finish (and preempted attempts, online only)."""

    requests: tuple[RoutedRequest, ...]
    objective_name: str = "total_latency"
    method: str = ""
    meta: dict = field(default_factory=dict)

    def objective_value(self, instance: RoutingInstance) -> float:
        return objective_value(instance, {r.id: r.finish for r in self.requests})

    def replica_index(self, instance: RoutingInstance) -> list[int]:
        """Per request of the instance (in instance order) the index of its replica."""
        index = {rep.id: k for k, rep in enumerate(instance.replicas)}
        by_id = {r.id: r.replica for r in self.requests}
        return [index[by_id[r.id]] for r in instance.requests]

    def starts(self, instance: RoutingInstance) -> list[int]:
        by_id = {r.id: r.start for r in self.requests}
        return [by_id[r.id] for r in instance.requests]

    @property
    def preemptions(self) -> int:
        return sum(len(r.attempts) for r in self.requests)

    def to_dict(self) -> dict:
        return {"requests": [r.to_dict() for r in self.requests]}

    def to_dataframe(self):
        import pandas as pd

        cols = ["id", "replica", "arrival", "start", "finish", "latency", "preemptions"]
        return pd.DataFrame([{"id": r.id, "replica": r.replica, "arrival": r.arrival, "start": r.start,
                              "finish": r.finish, "latency": r.latency, "preemptions": len(r.attempts)}
                             for r in self.requests], columns=cols)


def objective_value(instance: RoutingInstance, finish_by_id: dict[str, int]) -> float:
    if instance.objective == "makespan":
        return float(max(finish_by_id[r.id] for r in instance.requests))
    return float(sum(finish_by_id[r.id] - r.arrival for r in instance.requests))


def make_schedule(instance: RoutingInstance, replica_of, starts, *, method: str, meta: dict | None = None) -> RoutingSchedule:
    """A non-preemptive schedule from per-request replica indices and start rounds (instance order)."""
    rows = tuple(RoutedRequest(r.id, int(r.arrival), instance.replicas[int(k)].id, int(p), int(p) + r.output_tokens)
                 for r, k, p in zip(instance.requests, replica_of, starts))
    return RoutingSchedule(rows, objective_name=instance.objective, method=method, meta=dict(meta or {}))


def schedule_from_result(instance: RoutingInstance, result: dict) -> RoutingSchedule:
    """Read a result JSON's ``requests`` back into a RoutingSchedule (shape errors raise InputError)."""
    rows = result.get("requests") if isinstance(result, dict) else None
    if not isinstance(rows, list):
        raise InputError("requests", "the result has no 'requests' array")
    arrival = {r.id: int(r.arrival) for r in instance.requests}
    out = []
    for i, row in enumerate(rows):
        where = f"requests[{i}]"
        if not isinstance(row, dict):
            raise InputError(where, "expected an object")
        attempts = tuple(Attempt(fields.integer(a, "start", f"{where}.attempts[{j}]"),
                                 fields.integer(a, "preempted_at", f"{where}.attempts[{j}]"))
                         for j, a in enumerate(row.get("attempts", []) or []))
        out.append(RoutedRequest(str(row.get("id")), arrival.get(row.get("id"), 0), str(row.get("replica")),
                                 fields.integer(row, "start", where), fields.integer(row, "finish", where), attempts))
    return RoutingSchedule(tuple(out), objective_name=instance.objective, method=str(result.get("method", "")))


# ----------------------------------------------------------------------------- generators

def synthetic(seed=0, *, n: int = 8, memories=(12, 18), prompt_max: int = 3, output_max: int = 6,
              arrival_horizon: int = 4, objective: str = "total_latency", name: str = "") -> dict:
    """Small random instances for exact studies and tests (a plain dict in the instance JSON format).

    Prompts ``U{1..prompt_max}``, outputs ``U{1..output_max}`` (redrawn until the request fits the
    largest replica), arrivals ``U{0..arrival_horizon-1}`` sorted; replica memories as given.
    """
    import numpy as np

    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    biggest = max(memories)
    reqs = []
    arrivals = sorted(int(x) for x in rng.integers(0, max(1, arrival_horizon), size=n))
    for i, a in enumerate(arrivals):
        while True:
            s = int(rng.integers(1, prompt_max + 1))
            o = int(rng.integers(1, output_max + 1))
            if s + o <= biggest:
                break
        reqs.append({"id": f"r{i}", "arrival": a, "prompt_tokens": s, "output_tokens": o})
    out = {"kind": KIND, "name": name or f"synthetic-{n}x{len(memories)}",
           "replicas": [{"id": f"g{k}", "memory_tokens": int(m)} for k, m in enumerate(memories)],
           "requests": reqs}
    if objective != "total_latency":
        out["objective"] = objective
    return out


def trace(seed=0, *, n: int = 400, memories=(128, 128, 96, 96), source: str = "azure_conv", tokens_per_unit: int = 64,
          rate: float = 1.5, name: str = "") -> dict:
    """A trace-scale instance: ``n`` consecutive requests' lengths from a shipped trace
    (instances/kv_generators.trace_lengths: Azure LLM inference conversation trace 2023 or ShareGPT),
    coarsened to units of ``tokens_per_unit`` tokens (one round = that many decode steps;
    instances/kv_generators.py), Poisson(``rate``) arrivals per round, replicas of the given memories
    in units. Requests longer than the largest replica are clipped to fit (counted in ``meta``)."""
    import numpy as np

    from servopt.instances.kv_generators import trace_lengths

    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    rows = trace_lengths(source)
    offset = int(rng.integers(0, max(1, len(rows) - n)))
    chosen = [rows[(offset + j) % len(rows)] for j in range(n)]
    gaps = rng.exponential(1.0 / rate, size=n)
    arrivals = np.floor(np.cumsum(gaps) - gaps[0]).astype(int)
    biggest = max(memories)
    clipped = 0
    reqs = []
    for i, ((_, s_tok, o_tok), a) in enumerate(zip(chosen, arrivals)):
        s = max(0, math.ceil(s_tok / tokens_per_unit))
        o = max(1, math.ceil(o_tok / tokens_per_unit))
        if s + o > biggest:
            clipped += 1
            s = min(s, biggest // 2)
            o = min(o, biggest - s)
        reqs.append({"id": f"r{i}", "arrival": int(a), "prompt_tokens": int(s), "output_tokens": int(o)})
    return {"kind": KIND, "name": name or f"trace-{source}-{n}x{len(memories)}",
            "source": f"lengths: {source} (instances/data/kv_trace_lengths.csv), {tokens_per_unit} tokens per unit; "
                      f"Poisson arrivals {rate}/round",
            "meta": {"generator": "routing.trace", "seed": seed if isinstance(seed, int) else None, "clipped": clipped},
            "replicas": [{"id": f"g{k}", "memory_tokens": int(m)} for k, m in enumerate(memories)],
            "requests": reqs}


def mooncake(seed=0, *, n: int = 200, memories=(160, 160, 128, 128), tokens_per_unit: int = 256, rate: float = 2.0,
             name: str = "") -> dict:
    """Requests from the shipped Mooncake conversation sample (instances/data/trace_mooncake_conv_sample.jsonl,
    the first 200 lines of kvcache-ai/Mooncake FAST25-release/traces/conversation_trace.jsonl, Apache-2.0;
    Qin et al., FAST'25) with their ``hash_ids`` (512-token prefix blocks), lengths in units of
    ``tokens_per_unit`` tokens, Poisson(``rate``) arrivals per round in trace order. ``n`` above 200
    cycles the sample (ids stay unique; the hash ids repeat, as a repeated conversation would)."""
    import json

    import numpy as np
    from importlib import resources

    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    ref = resources.files("servopt.instances").joinpath("data", "trace_mooncake_conv_sample.jsonl")
    rows = [json.loads(line) for line in ref.read_text(encoding="utf-8").splitlines() if line.strip()]
    gaps = rng.exponential(1.0 / rate, size=n)
    arrivals = np.floor(np.cumsum(gaps) - gaps[0]).astype(int)
    biggest = max(memories)
    reqs, clipped = [], 0
    for i in range(n):
        row = rows[i % len(rows)]
        s = max(0, math.ceil(row["input_length"] / tokens_per_unit))
        o = max(1, math.ceil(row["output_length"] / tokens_per_unit))
        if s + o > biggest:
            clipped += 1
            s, o = min(s, biggest - 1), 1 if s >= biggest - 1 else min(o, biggest - s)
        reqs.append({"id": f"m{i}", "arrival": int(arrivals[i]), "prompt_tokens": int(s), "output_tokens": int(o),
                     "hash_ids": [int(h) for h in row["hash_ids"]]})
    return {"kind": KIND, "name": name or f"mooncake-conv-{n}x{len(memories)}",
            "source": f"Mooncake conversation sample, {tokens_per_unit} tokens per unit; Poisson arrivals {rate}/round",
            "meta": {"generator": "routing.mooncake", "clipped": clipped},
            "replicas": [{"id": f"g{k}", "memory_tokens": int(m)} for k, m in enumerate(memories)],
            "requests": reqs}


MOONCAKE_SLICES = {"conversation": "eviction_mooncake_conversation_1000.jsonl",
                   "synthetic": "eviction_mooncake_synthetic_500.jsonl",
                   "conversation_sample": "trace_mooncake_conv_sample.jsonl"}


def mooncake_prefix(*, source: str = "conversation", n: int = 500, replicas: int = 4, cache_blocks: int = 500,
                    alpha_hit: float = 0.1, alpha_miss: float = 1.0, objective: str = "makespan", name: str = "") -> dict:
    """A prefix-model instance (``"model": "prefix"``) from a shipped Mooncake slice (instances/data/
    eviction_SOURCES.txt and trace_SOURCES.txt: kvcache-ai/Mooncake FAST25-release traces, Apache-2.0):
    the first ``n`` requests in trace order with their ``hash_ids`` (512-token blocks), ``replicas``
    replicas of ``cache_blocks`` blocks each; costs ``alpha_hit`` / ``alpha_miss`` per prompt token
    (Wu, Silwal, Zhang, ICLR 2026)."""
    import json
    from importlib import resources

    ref = resources.files("servopt.instances").joinpath("data", MOONCAKE_SLICES[source])
    rows = [json.loads(line) for line in ref.read_text(encoding="utf-8").splitlines() if line.strip()][:n]
    t0 = rows[0]["timestamp"]
    reqs = [{"id": f"m{i}", "arrival": int(row["timestamp"] - t0) // 1000, "prompt_tokens": int(row["input_length"]),
             "output_tokens": max(1, int(row["output_length"])), "hash_ids": [int(h) for h in row["hash_ids"]]}
            for i, row in enumerate(rows)]
    return {"kind": KIND, "model": "prefix", "objective": objective, "name": name or f"mooncake-{source}-{n}x{replicas}",
            "source": f"Mooncake {source} slice ({MOONCAKE_SLICES[source]}), arrival in seconds",
            "alpha_hit": alpha_hit, "alpha_miss": alpha_miss, "block_tokens": 512,
            "replicas": [{"id": f"g{k}", "cache_blocks": int(cache_blocks)} for k in range(replicas)],
            "requests": reqs}
