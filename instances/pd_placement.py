"""Prefill/decode placement on heterogeneous GPUs: the instance and the plan (kind ``pd_placement``).

An instance is a request-size mix served at a total rate by a fleet of GPU types, each GPU type
offering configurations ``(gpu, tp, role)``; ``role`` is ``colocated`` (one engine does prefill
and decode, Mélange), ``prefill`` or ``decode`` (disaggregated serving, DistServe/Splitwise).
A capacity ``rps`` says how many requests per second of one bucket one instance of a configuration
(``tp`` GPUs) sustains while meeting the SLO. Capacities are either given (Mélange's profiled
tables) or derived from the GPU cost model by ``servopt.costmodel.capacities`` (the front door
``servopt.kinds.pd_placement`` fills them in: instances never import the cost model).

Each bucket's rate ``share * rate_rps`` is cut into ``slices`` equal slices (Mélange,
arXiv 2404.14527 §5: "slice factor"). The plan says which traffic goes where: per
(bucket, slice) the configuration(s) serving it and the rate, so that a simulator can replay it.

JSON contract::

    {"kind": "pd_placement", "mode": "colocated" | "disaggregated" | "hybrid",
     "rate_rps": 30.0, "slices": 1,
     "buckets": [{"id": "b0", "share": 0.2, "prompt_tokens": 250, "output_tokens": 100}, ...],
     "gpus": [{"type": "A10G", "usd_per_hour": 1.01, "available": 100}, ...],
     "capacities": [{"gpu": "A10G", "role": "colocated", "bucket": "b0", "rps": 2.0, "tp": 1}, ...],
     "llm": "llama-3.1-8b", "slo": {"ttft_ms": 500, "tpot_ms": 50},
     "objective": "min_cost" | "max_goodput", "budget_usd_per_hour": 20.0,
     "links": [{"from": "A100", "to": "A10G", "gb_per_s": 12.5}], "kv_bytes_per_token": 131072}

``hybrid`` lets every slice choose between one colocated configuration and a prefill + decode pair.
``links`` bound the aggregate KV-cache traffic from prefill instances of one GPU type to decode
instances of another (HexGen-2's prefill→decode edge capacities, arXiv 2502.07903 §3); pairs not
listed are unconstrained; ``gb_per_s: 0`` forbids the pair. A request of bucket b moves
``prompt_tokens * kv_bytes_per_token`` bytes once.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from servopt.errors import InputError
from servopt.instances import fields
from servopt.instances.hardware import SLO, slo_from_dict

MODES = ("colocated", "disaggregated", "hybrid")
ROLES = ("colocated", "prefill", "decode")
OBJECTIVES = ("min_cost", "max_goodput")
SHARE_TOLERANCE = 1e-6
ROLES_OF_MODE = {
    "colocated": ("colocated",),
    "disaggregated": ("prefill", "decode"),
    "hybrid": ("colocated", "prefill", "decode"),
}


@dataclass(frozen=True)
class Bucket:
    id: str
    share: float
    prompt_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class GPUOffer:
    """A GPU type on offer: price of one GPU and how many may be rented (``None``: unlimited).

    ``hardware`` names the catalog GPU behind the offer when ``type`` is a label of its own (two
    offers of one GPU, e.g. on-demand and spot); it defaults to ``type``.
    """

    type: str
    usd_per_hour: float
    available: int | None = None
    hardware: str | None = None

    @property
    def catalog_name(self) -> str:
        return self.hardware or self.type


@dataclass(frozen=True)
class Capacity:
    """Requests/s of ``bucket`` that one instance of (gpu, tp, role) serves within the SLO."""

    gpu: str
    role: str
    bucket: str
    rps: float
    tp: int = 1


@dataclass(frozen=True)
class Link:
    """Aggregate KV-transfer bandwidth from prefill instances on ``src`` to decode instances on ``dst``."""

    src: str
    dst: str
    gb_per_s: float


@dataclass(frozen=True)
class Config:
    """A configuration: ``tp`` GPUs of one type running one role."""

    gpu: str
    tp: int
    role: str

    @property
    def key(self) -> str:
        """The key in ``counts[gpu]``: the role, with ``@tpN`` when more than one GPU per instance."""
        return self.role if self.tp == 1 else f"{self.role}@tp{self.tp}"


@dataclass(frozen=True)
class PDPlacementInstance:
    mode: str
    rate_rps: float
    slices: int
    buckets: tuple[Bucket, ...]
    gpus: tuple[GPUOffer, ...]
    capacities: tuple[Capacity, ...] = ()
    llm: str | None = None
    slo: SLO | None = None
    objective: str = "min_cost"
    budget_usd_per_hour: float | None = None
    links: tuple[Link, ...] = ()
    kv_bytes_per_token: float | None = None
    name: str = ""
    capacities_source: str = "given"  # "given" or "cost model"
    meta: dict = field(default_factory=dict, compare=False)

    # ---- derived views (plain functions of the data; cheap) ----
    @property
    def roles(self) -> tuple[str, ...]:
        return ROLES_OF_MODE[self.mode]

    def bucket_rate_rps(self, bucket: Bucket) -> float:
        return bucket.share * self.rate_rps

    def slice_rate_rps(self, bucket: Bucket) -> float:
        return bucket.share * self.rate_rps / self.slices

    def gpu_offer(self, gpu_type: str) -> GPUOffer:
        return self._offers()[gpu_type]

    def _offers(self) -> dict[str, GPUOffer]:
        return {g.type: g for g in self.gpus}

    def configs(self) -> list[Config]:
        """Configurations of the mode's roles with at least one positive capacity, in a stable order."""
        seen: dict[Config, None] = {}
        for c in self.capacities:
            if c.role in self.roles and c.rps > 0:
                seen.setdefault(Config(c.gpu, c.tp, c.role), None)
        return list(seen)

    def capacity_table(self) -> dict[tuple[Config, str], float]:
        """(config, bucket id) -> rps, positive entries of the mode's roles only."""
        return {(Config(c.gpu, c.tp, c.role), c.bucket): c.rps for c in self.capacities if c.role in self.roles and c.rps > 0}

    def config_usd_per_hour(self, config: Config) -> float:
        return self._offers()[config.gpu].usd_per_hour * config.tp

    def link_table(self) -> dict[tuple[str, str], float]:
        return {(l.src, l.dst): l.gb_per_s for l in self.links}

    def kv_gb_per_request(self, bucket: Bucket) -> float:
        """GB (1e9 bytes) of KV cache one request of the bucket moves from prefill to decode."""
        return bucket.prompt_tokens * (self.kv_bytes_per_token or 0.0) / 1e9

    def with_capacities(self, capacities, *, source: str) -> "PDPlacementInstance":
        return replace(self, capacities=tuple(capacities), capacities_source=source)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "pd_placement",
            "mode": self.mode,
            "rate_rps": self.rate_rps,
            "slices": self.slices,
            "buckets": [asdict(b) for b in self.buckets],
            "gpus": [{k: v for k, v in asdict(g).items() if v is not None} for g in self.gpus],
        }
        if self.capacities:
            out["capacities"] = [asdict(c) for c in self.capacities]
        if self.llm:
            out["llm"] = self.llm
        if self.slo is not None:
            out["slo"] = self.slo.to_dict()
        out["objective"] = self.objective
        if self.budget_usd_per_hour is not None:
            out["budget_usd_per_hour"] = self.budget_usd_per_hour
        if self.links:
            out["links"] = [{"from": l.src, "to": l.dst, "gb_per_s": l.gb_per_s} for l in self.links]
        if self.kv_bytes_per_token is not None:
            out["kv_bytes_per_token"] = self.kv_bytes_per_token
        if self.name:
            out["name"] = self.name
        return out


def _objects(data: dict, key: str, *, non_empty: bool = True):
    """(JSON path, object) for each entry of the array ``data[key]``; a non-object entry is an error."""
    for i, item in enumerate(fields.array(data, key, "", non_empty=non_empty, default=... if non_empty else [])):
        if not isinstance(item, dict):
            raise InputError(f"{key}[{i}]", "expected an object")
        yield f"{key}[{i}]", item


def from_dict(data: dict) -> PDPlacementInstance:
    """Build and validate an instance; every error names its JSON path. Capacities may be absent."""
    if not isinstance(data, dict):
        raise InputError("(top level)", "an instance must be a JSON object")
    mode = fields.string(data, "mode", "", choices=MODES)
    rate = fields.number(data, "rate_rps", "", exclusive_minimum=0)
    slices = fields.integer(data, "slices", "", minimum=1, maximum=10_000, default=1)
    objective = fields.string(data, "objective", "", choices=OBJECTIVES, default="min_cost")
    budget = fields.number(data, "budget_usd_per_hour", "", exclusive_minimum=0, default=None, allow_none=True)
    if objective == "max_goodput" and budget is None:
        raise InputError("budget_usd_per_hour", "required when objective is max_goodput")

    buckets = []
    for path, b in _objects(data, "buckets"):
        bid = fields.string(b, "id", path)
        share = fields.number(b, "share", path, minimum=0, maximum=1)
        prompt = fields.integer(b, "prompt_tokens", path, minimum=1, default=1)
        output = fields.integer(b, "output_tokens", path, minimum=1, default=1)
        buckets.append(Bucket(bid, share, prompt, output))
    fields.unique_ids(buckets, "buckets")
    total = math.fsum(b.share for b in buckets)
    if abs(total - 1.0) > SHARE_TOLERANCE:
        raise InputError("buckets[].share", f"shares sum to {total:.6g}, expected 1 (off by {total - 1:+.6g})")

    gpus = []
    for path, g in _objects(data, "gpus"):
        gtype = fields.string(g, "type", path)
        price = fields.number(g, "usd_per_hour", path, exclusive_minimum=0, default=None, allow_none=True)
        available = fields.integer(g, "available", path, minimum=0, default=None, allow_none=True)
        hardware = fields.string(g, "hardware", path, default=None)
        gpus.append(GPUOffer(gtype, price, available, hardware))  # a missing price is filled from the catalog by the front door
    fields.unique_ids(gpus, "gpus", key="type")

    gpu_types = {g.type for g in gpus}
    bucket_ids = {b.id for b in buckets}
    capacities = []
    seen_cap: dict[tuple, int] = {}
    for i, (path, c) in enumerate(_objects(data, "capacities", non_empty=False)):
        gpu = fields.string(c, "gpu", path)
        if gpu not in gpu_types:
            raise InputError(f"{path}.gpu", f"'{gpu}' is not one of gpus[].type ({', '.join(sorted(gpu_types))})")
        role = fields.string(c, "role", path, choices=ROLES)
        bucket = fields.string(c, "bucket", path)
        if bucket not in bucket_ids:
            raise InputError(f"{path}.bucket", f"'{bucket}' is not one of buckets[].id")
        rps = fields.number(c, "rps", path, minimum=0)
        tp = fields.integer(c, "tp", path, minimum=1, maximum=64, default=1)
        key = (gpu, tp, role, bucket)
        if key in seen_cap:
            raise InputError(path, f"duplicate capacity for {gpu} tp{tp} {role} {bucket} (first at capacities[{seen_cap[key]}])")
        seen_cap[key] = i
        capacities.append(Capacity(gpu, role, bucket, rps, tp))

    llm = fields.string(data, "llm", "", default=None)
    slo = slo_from_dict(data["slo"], "slo") if data.get("slo") is not None else None
    if not capacities:
        if llm is None:
            raise InputError("llm", "required when capacities are not given (they are derived from the cost model)")
        if slo is None or slo.ttft_ms is None or slo.tpot_ms is None:
            raise InputError("slo", "ttft_ms and tpot_ms are required when capacities are not given")

    links = []
    seen_link: dict[tuple, int] = {}
    for i, (path, l) in enumerate(_objects(data, "links", non_empty=False)):
        src = fields.string(l, "from", path)
        dst = fields.string(l, "to", path)
        for key, value in (("from", src), ("to", dst)):
            if value not in gpu_types:
                raise InputError(f"{path}.{key}", f"'{value}' is not one of gpus[].type")
        bw = fields.number(l, "gb_per_s", path, minimum=0)
        if (src, dst) in seen_link:
            raise InputError(path, f"duplicate link {src} -> {dst} (first at links[{seen_link[(src, dst)]}])")
        seen_link[(src, dst)] = i
        links.append(Link(src, dst, bw))
    if links and mode == "colocated":
        raise InputError("links", "links bound prefill->decode KV traffic; they need mode disaggregated or hybrid")
    kv = fields.number(data, "kv_bytes_per_token", "", exclusive_minimum=0, default=None, allow_none=True)
    if links and kv is None and llm is None:
        raise InputError("kv_bytes_per_token", "required when links are given and no llm is named")
    name = data.get("name", "")
    return PDPlacementInstance(
        mode=mode, rate_rps=rate, slices=slices, buckets=tuple(buckets), gpus=tuple(gpus),
        capacities=tuple(capacities), llm=llm, slo=slo, objective=objective, budget_usd_per_hour=budget,
        links=tuple(links), kv_bytes_per_token=kv, name=name if isinstance(name, str) else "",
        capacities_source="given" if capacities else "cost model",
    )


# ----------------------------------------------------------------------------------------------
# The plan
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SliceAssignment:
    """Slice ``slice`` of ``bucket`` (rate ``rate_rps``) runs its ``role`` phase on (gpu, tp)."""

    bucket: str
    slice: int
    gpu: str
    tp: int
    role: str
    rate_rps: float


@dataclass(frozen=True)
class ConfigUse:
    gpu: str
    tp: int
    role: str
    count: int
    load: float  # instances' worth of work assigned (sum over slices of rate / capacity)
    usd_per_hour: float  # count * tp * price of one GPU

    @property
    def utilisation(self) -> float:
        return self.load / self.count if self.count else 0.0


@dataclass
class PDPlan:
    assignments: list[SliceAssignment]
    configs: list[ConfigUse]
    served_rate_rps: float
    cost_usd_per_hour: float
    unserved: list[dict] = field(default_factory=list)  # max_goodput: slices left out, {"bucket", "slice"}

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for c in self.configs:
            if c.count > 0:
                key = Config(c.gpu, c.tp, c.role).key
                out.setdefault(c.gpu, {})[key] = c.count
        return out

    def cost_breakdown(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for c in self.configs:
            if c.count > 0:
                out[c.gpu] = out.get(c.gpu, 0.0) + c.usd_per_hour
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "counts": self.counts(),
            "assignment": [asdict(a) for a in self.assignments],
            "configs": [
                {**asdict(c), "gpus": c.count * c.tp, "utilisation": round(c.utilisation, 6)} for c in self.configs if c.count > 0
            ],
            "cost_usd_per_hour": self.cost_usd_per_hour,
            "cost_breakdown_usd_per_hour": self.cost_breakdown(),
            "served_rate_rps": self.served_rate_rps,
            "unserved": list(self.unserved),
        }

    def to_dataframe(self):
        import pandas as pd

        return pd.DataFrame([asdict(a) for a in self.assignments])
