"""Requests and workloads: the data every scheduling, routing and simulation problem starts from."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from servopt.errors import InputError
from servopt.instances import fields


@dataclass(frozen=True)
class Request:
    """One inference request.

    ``arrival`` is in the instance's time unit (integer rounds for ``kv_schedule``, seconds for
    traces). ``predicted_output_tokens`` is what a length-aware policy may see instead of the
    truth; ``output_tokens_interval`` is an interval prediction ``(lo, hi)`` (A_min, arXiv
    2508.14544). ``prefix_block_ids`` are hash ids of the prompt's KV blocks (Mooncake's
    ``hash_ids``), for prefix caching.
    """

    id: str
    arrival: float
    prompt_tokens: int
    output_tokens: int
    predicted_output_tokens: int | None = None
    output_tokens_interval: tuple[int, int] | None = None
    prefix_block_ids: tuple[int, ...] = ()
    weight: float = 1.0

    def __post_init__(self):
        if self.prompt_tokens < 0:
            raise InputError(f"request {self.id}.prompt_tokens", f"must be >= 0, got {self.prompt_tokens}")
        if self.output_tokens < 1:
            raise InputError(f"request {self.id}.output_tokens", f"must be >= 1, got {self.output_tokens}")
        if self.arrival < 0:
            raise InputError(f"request {self.id}.arrival", f"must be >= 0, got {self.arrival}")

    @property
    def output_tokens_seen(self) -> int:
        """What a length-aware online policy uses: the prediction when given, else the truth."""
        return self.predicted_output_tokens if self.predicted_output_tokens is not None else self.output_tokens

    def to_dict(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if v not in (None, ())}
        if self.weight == 1.0:
            out.pop("weight", None)
        if self.output_tokens_interval is not None:
            out["output_tokens_interval"] = list(self.output_tokens_interval)
        if self.prefix_block_ids:
            out["prefix_block_ids"] = list(self.prefix_block_ids)
        return out


def request_from_dict(data: dict, path: str, *, integer_arrival: bool = False, default_id: str | None = None) -> Request:
    if not isinstance(data, dict):
        raise InputError(path, "expected an object")
    rid = data.get("id", default_id)
    if not isinstance(rid, str) or not rid:
        raise InputError(f"{path}.id", f"expected a non-empty string, got {rid!r}")
    if integer_arrival:
        arrival = fields.integer(data, "arrival", path, minimum=0)
    else:
        arrival = fields.number(data, "arrival", path, minimum=0)
    prompt = fields.integer(data, "prompt_tokens", path, minimum=0)
    output = fields.integer(data, "output_tokens", path, minimum=1)
    predicted = fields.integer(data, "predicted_output_tokens", path, minimum=1, default=None, allow_none=True)
    interval = data.get("output_tokens_interval")
    if interval is not None:
        if (not isinstance(interval, list) or len(interval) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in interval)
                or not 1 <= interval[0] <= interval[1]):
            raise InputError(f"{path}.output_tokens_interval", f"expected [lo, hi] integers with 1 <= lo <= hi, got {interval!r}")
        interval = (interval[0], interval[1])
    blocks = data.get("prefix_block_ids", [])
    if not isinstance(blocks, list) or not all(isinstance(b, int) and not isinstance(b, bool) for b in blocks):
        raise InputError(f"{path}.prefix_block_ids", "expected an array of integers")
    weight = fields.number(data, "weight", path, exclusive_minimum=0, default=1.0)
    return Request(rid, arrival, prompt, output, predicted, interval, tuple(blocks), weight)


@dataclass(frozen=True)
class Workload:
    """An ordered collection of requests (sorted by arrival, ties by input order)."""

    requests: tuple[Request, ...]
    name: str = ""
    source: str = ""
    time_unit: str = "s"  # "s" for traces, "round" for the round-based scheduling model
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.requests)

    def to_dataframe(self):
        import pandas as pd

        return pd.DataFrame([r.to_dict() for r in self.requests])
