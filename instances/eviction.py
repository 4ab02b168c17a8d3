"""Prefix-cache eviction instances (kind ``eviction``): a request sequence of prefix-block hash ids.

The base model (the one ``solvers/eviction_belady.py`` solves exactly):

* requests are served one at a time in list order (arrival times non-decreasing);
* request ``r`` carries the hash ids ``h_r[0..L_r-1]`` of its prompt's ``block_tokens``-token blocks,
  prefix-chained as in Mooncake's traces and vLLM's automatic prefix caching: id ``h_r[d]`` names the
  whole prefix ``h_r[0..d]``, so one id always sits at the same depth ``d`` under the same parent
  ``h_r[d-1]`` (checked on load: a violation is a bad instance);
* ``r`` hits the longest prefix of ``h_r`` wholly in the cache when it arrives (``hit_blocks`` of r);
* after serving ``r`` the cache may become any set of at most ``C`` blocks drawn from the cache before
  ``r`` and r's blocks (keeping none of r's blocks is allowed: "bypass");
* objective ``hit_blocks``: maximise the sum over requests of ``hit_blocks``.

Extensions handled by the general model (``models/eviction.py``):

* ``objective = "saved_prefill_ms"``: a hit on the block at depth ``d`` saves the prefill of that
  block's ``block_tokens`` tokens with ``d * block_tokens`` tokens of context, priced by the GPU cost
  model for ``llm``/``gpu``/``tp``;
* ``pin_running = true``: a request pins ``ceil((input_tokens + output_tokens) / block_tokens)`` blocks
  of the pool while it runs (from ``arrival_s`` for its service time by the cost model), so the cache
  has less room while requests run (engines' lazy caches, research notes §1.1-1.2, §6);
* several caches: ``replicas = R`` and a ``replica`` per request (pre-assigned); each replica has its
  own cache of ``capacity_blocks`` and sees only its requests, in list order.

Sources: Mooncake FAST'25 trace format (Qin et al., FAST'25; kvcache-ai/Mooncake
``FAST25-release/traces``): ``timestamp`` (ms), ``input_length``, ``output_length``, ``hash_ids``.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from servopt.errors import InputError

KIND = "eviction"
OBJECTIVES = ("hit_blocks", "saved_prefill_ms")


@dataclass(frozen=True)
class EvictionRequest:
    id: str
    arrival_s: float
    hash_ids: tuple[int, ...]
    input_tokens: int
    output_tokens: int
    replica: int = 0

    def to_dict(self) -> dict:
        out = {"id": self.id, "arrival_s": self.arrival_s, "hash_ids": list(self.hash_ids),
               "input_tokens": self.input_tokens, "output_tokens": self.output_tokens}
        if self.replica:
            out["replica"] = self.replica
        return out


@dataclass(frozen=True)
class EvictionInstance:
    """Capacity per cache, block size, objective and the request sequence (see the module docstring)."""

    capacity_blocks: int
    requests: tuple[EvictionRequest, ...]
    block_tokens: int = 512
    objective: str = "hit_blocks"
    llm: str | None = None
    gpu: str | None = None
    tp: int = 1
    pin_running: bool = False
    replicas: int = 1
    name: str = ""

    def __post_init__(self):
        validate_instance(self)

    @property
    def n(self) -> int:
        return len(self.requests)

    @property
    def is_base_model(self) -> bool:
        """True when the exact Belady-with-bypass rule applies (unit savings, exogenous capacities)."""
        return self.objective == "hit_blocks"

    def hash_lists(self) -> list[list[int]]:
        return [list(r.hash_ids) for r in self.requests]

    @classmethod
    def from_dict(cls, data: dict) -> "EvictionInstance":
        if not isinstance(data, dict):
            raise InputError("(top level)", "an instance must be a JSON object")
        cap = data.get("capacity_blocks")
        if isinstance(cap, bool) or not isinstance(cap, int):
            raise InputError("capacity_blocks", f"must be a positive integer, got {cap!r}")
        raw = data.get("requests")
        if not isinstance(raw, list) or not raw:
            raise InputError("requests", "must be a non-empty array")
        reqs = []
        for i, r in enumerate(raw):
            where = f"requests[{i}]"
            if not isinstance(r, dict):
                raise InputError(where, "must be an object")
            hashes = r.get("hash_ids")
            if not isinstance(hashes, list) or not hashes:
                raise InputError(f"{where}.hash_ids", "must be a non-empty array of integers")
            if not all(isinstance(h, int) and not isinstance(h, bool) for h in hashes):
                raise InputError(f"{where}.hash_ids", "must contain integers only")
            arrival = r.get("arrival_s", 0.0)
            if isinstance(arrival, bool) or not isinstance(arrival, (int, float)) or not math.isfinite(arrival) or arrival < 0:
                raise InputError(f"{where}.arrival_s", f"must be a finite number >= 0, got {arrival!r}")
            block = data.get("block_tokens", 512)
            inp = r.get("input_tokens", len(hashes) * (block if isinstance(block, int) else 512))
            out = r.get("output_tokens", 1)
            for name, v, lo in (("input_tokens", inp, 1), ("output_tokens", out, 0)):
                if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                    raise InputError(f"{where}.{name}", f"must be an integer >= {lo}, got {v!r}")
            replica = r.get("replica", 0)
            if isinstance(replica, bool) or not isinstance(replica, int) or replica < 0:
                raise InputError(f"{where}.replica", f"must be an integer >= 0, got {replica!r}")
            rid = r.get("id", f"r{i}")
            reqs.append(EvictionRequest(str(rid), float(arrival), tuple(hashes), inp, out, replica))
        name = data.get("name", "")
        return cls(capacity_blocks=cap, requests=tuple(reqs), block_tokens=data.get("block_tokens", 512),
                   objective=data.get("objective", "hit_blocks"), llm=data.get("llm"), gpu=data.get("gpu"),
                   tp=data.get("tp", 1), pin_running=data.get("pin_running", False), replicas=data.get("replicas", 1),
                   name=name if isinstance(name, str) else "")

    def to_dict(self) -> dict:
        out = {"kind": KIND, "capacity_blocks": self.capacity_blocks, "block_tokens": self.block_tokens,
               "objective": self.objective}
        for key in ("llm", "gpu"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        if self.tp != 1:
            out["tp"] = self.tp
        if self.pin_running:
            out["pin_running"] = True
        if self.replicas != 1:
            out["replicas"] = self.replicas
        if self.name:
            out["name"] = self.name
        out["requests"] = [r.to_dict() for r in self.requests]
        return out

    def to_dataframe(self):
        import pandas as pd

        return pd.DataFrame([{**r.to_dict(), "hash_ids": len(r.hash_ids)} for r in self.requests])


def validate_instance(inst: EvictionInstance) -> None:
    """Semantic checks the JSON Schema cannot express; raises InputError naming the field."""
    if isinstance(inst.capacity_blocks, bool) or not isinstance(inst.capacity_blocks, int) or inst.capacity_blocks < 1:
        raise InputError("capacity_blocks", f"must be a positive integer (a cache of 0 blocks holds nothing), "
                                            f"got {inst.capacity_blocks!r}")
    if isinstance(inst.block_tokens, bool) or not isinstance(inst.block_tokens, int) or inst.block_tokens < 1:
        raise InputError("block_tokens", f"must be a positive integer, got {inst.block_tokens!r}")
    if inst.objective not in OBJECTIVES:
        raise InputError("objective", f"must be one of {', '.join(OBJECTIVES)}, got {inst.objective!r}")
    if isinstance(inst.tp, bool) or not isinstance(inst.tp, int) or inst.tp < 1:
        raise InputError("tp", f"must be a positive integer, got {inst.tp!r}")
    if isinstance(inst.replicas, bool) or not isinstance(inst.replicas, int) or inst.replicas < 1:
        raise InputError("replicas", f"must be a positive integer, got {inst.replicas!r}")
    if not isinstance(inst.pin_running, bool):
        raise InputError("pin_running", f"must be true or false, got {inst.pin_running!r}")
    needs_cost = inst.objective == "saved_prefill_ms" or inst.pin_running
    if needs_cost and (not inst.llm or not inst.gpu):
        why = "objective saved_prefill_ms" if inst.objective == "saved_prefill_ms" else "pin_running"
        raise InputError("llm" if not inst.llm else "gpu", f"required with {why} (the GPU cost model prices it)")
    if not inst.requests:
        raise InputError("requests", "must be a non-empty array")
    seen_ids = set()
    where_of: dict[int, tuple[int, int | None]] = {}  # hash id -> (depth, parent id)
    last_arrival = -math.inf
    for i, r in enumerate(inst.requests):
        if r.id in seen_ids:
            raise InputError(f"requests[{i}].id", f"duplicate id '{r.id}'")
        seen_ids.add(r.id)
        if r.arrival_s < last_arrival:
            raise InputError(f"requests[{i}].arrival_s", f"arrivals out of order: {r.arrival_s:g} s after "
                                                         f"{last_arrival:g} s (requests are served in list order)")
        last_arrival = r.arrival_s
        if r.replica >= inst.replicas:
            raise InputError(f"requests[{i}].replica", f"must be < replicas = {inst.replicas}, got {r.replica}")
        if not r.hash_ids:
            raise InputError(f"requests[{i}].hash_ids", "must be a non-empty array of integers")
        parent = None
        for d, h in enumerate(r.hash_ids):
            known = where_of.get(h)
            if known is None:
                where_of[h] = (d, parent)
            elif known != (d, parent):
                kd, kp = known
                raise InputError(f"requests[{i}].hash_ids[{d}]",
                                 f"hash id {h} reused at depth {d} under parent {parent} but first seen at depth {kd} "
                                 f"under parent {kp} (a hash id names one prefix)")
            parent = h


def load_mooncake(path: str | Path, *, capacity_blocks: int, limit: int | None = None, block_tokens: int = 512,
                  objective: str = "hit_blocks", llm: str | None = None, gpu: str | None = None, tp: int = 1,
                  name: str | None = None) -> dict:
    """A Mooncake FAST'25 trace (JSONL: timestamp ms, input_length, output_length, hash_ids) as instance JSON.

    Lines are kept in file order (the traces are sorted by timestamp); ``limit`` keeps the first N.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), "file not found")
    if limit is not None and limit < 1:
        raise InputError("--limit", f"must be >= 1, got {limit}")
    reqs = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            if limit is not None and len(reqs) >= limit:
                break
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path.name}:{lineno}", f"malformed JSON: {exc.msg}") from None
            if not isinstance(row, dict):
                raise InputError(f"{path.name}:{lineno}", "each line must be a JSON object")
            for key in ("timestamp", "input_length", "output_length", "hash_ids"):
                if key not in row:
                    raise InputError(f"{path.name}:{lineno}.{key}", "required field of a Mooncake trace line is missing")
            ts = row["timestamp"]
            if isinstance(ts, bool) or not isinstance(ts, (int, float)):
                raise InputError(f"{path.name}:{lineno}.timestamp", f"must be a number (ms), got {ts!r}")
            reqs.append({"id": f"r{len(reqs)}", "arrival_s": ts / 1000.0, "hash_ids": row["hash_ids"],
                         "input_tokens": row["input_length"], "output_tokens": row["output_length"]})
    if not reqs:
        raise InputError(str(path), "no requests in the trace")
    out = {"kind": KIND, "name": name or path.stem, "capacity_blocks": capacity_blocks, "block_tokens": block_tokens,
           "objective": objective, "source": f"Mooncake trace {path.name} (kvcache-ai/Mooncake FAST25-release, Apache-2.0)"}
    if llm:
        out["llm"] = llm
    if gpu:
        out["gpu"] = gpu
    if tp != 1:
        out["tp"] = tp
    out["requests"] = reqs
    return out


@dataclass(frozen=True)
class CachePlan:
    """A cache plan and its hits, in request order (of one cache or of several, merged).

    ``admit[r]``: blocks of request ``r`` not cached before ``r`` and cached after it;
    ``evict[r]``: blocks cached before ``r`` and not after it. ``S_r = (S_{r-1} - evict[r]) | admit[r]``.
    """

    hits: tuple[int, ...]
    admit: tuple[tuple[int, ...], ...]
    evict: tuple[tuple[int, ...], ...]
    method: str = "belady"
    meta: dict = field(default_factory=dict)

    @property
    def hit_blocks(self) -> int:
        return sum(self.hits)

    def to_dict(self) -> dict:
        return {"method": self.method, "hit_blocks": self.hit_blocks,
                "requests": [{"hit_blocks": h, "admit": list(a), "evict": list(e)}
                             for h, a, e in zip(self.hits, self.admit, self.evict)]}

    def to_dataframe(self):
        import pandas as pd

        return pd.DataFrame({"hit_blocks": self.hits, "admitted": [len(a) for a in self.admit],
                             "evicted": [len(e) for e in self.evict]})


def next_uses(hash_lists: Sequence[Sequence[int]]) -> list[list[int]]:
    """``out[r][d]`` = index of the next request after ``r`` whose path contains ``hash_lists[r][d]`` (``n`` if none)."""
    n = len(hash_lists)
    seen: dict[int, int] = {}
    out: list[list[int]] = [None] * n  # type: ignore[list-item]
    for r in range(n - 1, -1, -1):
        hs = hash_lists[r]
        row = [seen.get(h, n) for h in hs]
        for h in hs:
            seen[h] = r
        out[r] = row
    return out


def replica_indices(instance) -> list[list[int]]:
    """Global request indices per replica, in list order."""
    groups: list[list[int]] = [[] for _ in range(instance.replicas)]
    for i, r in enumerate(instance.requests):
        groups[r.replica].append(i)
    return groups
