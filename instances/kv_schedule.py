"""KV-memory-constrained scheduling instances and schedules (kind ``kv_schedule``).

The model is the one of Jaillet, Jiang, Mellou, Molinaro, Podimata, Zhou, "Online Scheduling for
LLM Inference with KV Cache Constraints" (arXiv 2502.07115, v4/v5, §2; research notes
scheduling-anchors.md §1.2-1.3):

* one GPU with KV memory ``M = memory_tokens`` tokens; time in integer rounds, one batch per round;
* request ``i`` arrives at round ``a_i`` (``arrival``) with ``s_i`` prompt tokens and ``o_i``
  output tokens; started at round ``p_i >= a_i`` it is non-preemptive, occupies
  ``s_i + (t - p_i)`` tokens in each round ``t = p_i+1 .. p_i+o_i`` and finishes at
  ``f_i = p_i + o_i``;
* in every round the memory of all requests in it is at most ``M``;
* objectives: ``total_latency`` = sum_i (f_i - a_i) (the paper's TEL), ``weighted_latency`` =
  sum_i w_i (f_i - a_i), ``makespan`` = max_i f_i.

Online policies (servopt.simulator.kv_rounds) may preempt: a preempted attempt that started at
round ``p`` and was preempted at round ``q`` (``p < q < p + o_i``) occupied ``s_i + (t - p)``
tokens in rounds ``t = p+1 .. q`` and lost its KV; the request's ``start`` is always the final,
completing start, and its latency still counts from its original arrival.

A request with ``s_i + o_i > M`` can never run (its last round alone overflows): rejected on load.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from servopt.errors import InputError
from servopt.instances import fields
from servopt.instances.requests import Request, request_from_dict

KIND = "kv_schedule"
OBJECTIVES = ("total_latency", "weighted_latency", "makespan")


@dataclass(frozen=True)
class KVScheduleInstance:
    """One GPU's KV memory and the requests to schedule on it, in integer rounds."""

    memory_tokens: int
    requests: tuple[Request, ...]
    objective: str = "total_latency"
    name: str = ""

    def __post_init__(self):
        validate_instance(self)

    @property
    def n(self) -> int:
        return len(self.requests)

    @classmethod
    def from_dict(cls, data: dict) -> "KVScheduleInstance":
        if not isinstance(data, dict):
            raise InputError("(top level)", "an instance must be a JSON object")
        memory = fields.integer(data, "memory_tokens", "", minimum=1)
        objective = fields.string(data, "objective", "", default="total_latency", choices=OBJECTIVES)
        raw = fields.array(data, "requests", "", non_empty=True)
        fields.unique_ids(raw, "requests")
        requests = tuple(
            request_from_dict(r, f"requests[{i}]", integer_arrival=True, default_id=f"r{i}") for i, r in enumerate(raw)
        )
        name = data.get("name", "")
        return cls(memory, requests, objective, name if isinstance(name, str) else "")

    def to_dict(self) -> dict:
        out = {"kind": KIND, "memory_tokens": self.memory_tokens}
        if self.objective != "total_latency":
            out["objective"] = self.objective
        if self.name:
            out["name"] = self.name
        out["requests"] = [r.to_dict() for r in self.requests]
        return out

    def to_dataframe(self):
        import pandas as pd

        return pd.DataFrame([r.to_dict() for r in self.requests])


def validate_instance(instance: KVScheduleInstance) -> None:
    """Semantic checks the JSON Schema cannot state; also guards the Python API."""
    if isinstance(instance.memory_tokens, bool) or not isinstance(instance.memory_tokens, int) or instance.memory_tokens < 1:
        raise InputError("memory_tokens", f"expected a positive integer, got {instance.memory_tokens!r}")
    if instance.objective not in OBJECTIVES:
        raise InputError("objective", f"must be one of {', '.join(OBJECTIVES)}; got '{instance.objective}'")
    if not instance.requests:
        raise InputError("requests", "must not be empty (an instance needs at least one request)")
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
        if r.prompt_tokens + r.output_tokens > instance.memory_tokens:
            raise InputError(
                where,
                f"request '{r.id}' needs prompt_tokens + output_tokens = {r.prompt_tokens + r.output_tokens} tokens "
                f"in its last round, more than memory_tokens = {instance.memory_tokens}: it can never run",
            )
        if instance.objective == "weighted_latency" and not r.weight > 0:
            raise InputError(f"{where}.weight", f"must be > 0, got {r.weight!r}")


@dataclass(frozen=True)
class Attempt:
    """An earlier, preempted run of a request: it held memory in rounds start+1 .. preempted_at."""

    start: int
    preempted_at: int

    def to_dict(self) -> dict:
        return {"start": self.start, "preempted_at": self.preempted_at}


@dataclass(frozen=True)
class ScheduledRequest:
    id: str
    arrival: int
    start: int
    finish: int
    attempts: tuple[Attempt, ...] = ()

    @property
    def latency(self) -> int:
        return self.finish - self.arrival

    def to_dict(self) -> dict:
        # arrival and latency (finish - arrival) save users a join with the instance; the checker
        # verifies both when present
        out = {"id": self.id, "arrival": self.arrival, "start": self.start, "finish": self.finish, "latency": self.latency}
        if self.attempts:
            out["attempts"] = [a.to_dict() for a in self.attempts]
        return out


@dataclass(frozen=True)
class KVSchedule:
    """A complete schedule: per request its final start, its finish and its preempted attempts."""

    requests: tuple[ScheduledRequest, ...]
    objective_name: str = "total_latency"
    method: str = ""
    meta: dict = field(default_factory=dict)

    def objective_value(self, instance: KVScheduleInstance) -> float:
        return objective_value(instance, {r.id: r.finish for r in self.requests})

    @property
    def preemptions(self) -> int:
        return sum(len(r.attempts) for r in self.requests)

    def to_dict(self) -> dict:
        return {"requests": [r.to_dict() for r in self.requests]}

    def to_dataframe(self):
        import pandas as pd

        rows = []
        for r in self.requests:
            rows.append({"id": r.id, "arrival": r.arrival, "start": r.start, "finish": r.finish,
                         "latency": r.latency, "preemptions": len(r.attempts)})
        return pd.DataFrame(rows, columns=["id", "arrival", "start", "finish", "latency", "preemptions"])


def objective_value(instance: KVScheduleInstance, finish_by_id: dict[str, int]) -> float:
    """The instance's objective for given finish rounds (module docstring)."""
    reqs = instance.requests
    if instance.objective == "makespan":
        return float(max(finish_by_id[r.id] for r in reqs))
    if instance.objective == "weighted_latency":
        return float(sum(r.weight * (finish_by_id[r.id] - r.arrival) for r in reqs))
    return float(sum(finish_by_id[r.id] - r.arrival for r in reqs))


def schedule_from_result(instance: KVScheduleInstance, result: dict) -> KVSchedule:
    """Read the ``requests`` part of a result JSON back into a KVSchedule (shape errors raise InputError)."""
    rows = result.get("requests") if isinstance(result, dict) else None
    if not isinstance(rows, list):
        raise InputError("requests", "the result has no 'requests' array")
    arrival = {r.id: int(r.arrival) for r in instance.requests}
    out = []
    for i, row in enumerate(rows):
        where = f"requests[{i}]"
        if not isinstance(row, dict):
            raise InputError(where, "expected an object")
        rid = row.get("id")
        start = fields.integer(row, "start", where)
        finish = fields.integer(row, "finish", where)
        attempts = []
        for j, a in enumerate(row.get("attempts", []) or []):
            if not isinstance(a, dict):
                raise InputError(f"{where}.attempts[{j}]", "expected an object")
            attempts.append(Attempt(fields.integer(a, "start", f"{where}.attempts[{j}]"),
                                    fields.integer(a, "preempted_at", f"{where}.attempts[{j}]")))
        out.append(ScheduledRequest(str(rid), arrival.get(rid, 0), start, finish, tuple(attempts)))
    return KVSchedule(tuple(out), objective_name=instance.objective, method=str(result.get("method", "")))
