r"""Capacities for placement: requests/s one instance of (GPU, TP, role) serves within TTFT/TPOT SLOs.

A capacity μ is what Mélange profiles on real GPUs ("maximum throughput of a GPU for a request
size while meeting the TPOT SLO", arXiv 2404.14527 §5.1); here it is derived from the roofline cost
model (``servopt.costmodel.roofline``) with the queueing model below. A bucket is one request size:
prompt ``P`` tokens, output ``O`` tokens. ``t(B)`` is the cost model's decode iteration time for
``B`` sequences at the mean decode context ``c̄ = P + O/2`` (the attention work is linear in the
summed context, so a steady-state mix of ages costs what ``B`` sequences at the mean cost);
``D = prefill_ms(P)`` is one prompt prefilled alone; ``steps = max(O - 1, 1)`` decode iterations
per request (the first token comes from the prefill). ``R`` = SLO ``ttft_ms``, ``τ`` = SLO
``tpot_ms``; both are bounds on the *mean* TTFT / TPOT.

**prefill** (disaggregated prefill instance; DistServe, OSDI'24 §3.1, eq. 1): prompts are served
one at a time, first come first served, as an M/D/1 queue: mean TTFT ``= D + λ D² / (2 (1 - λ D))``.
The largest λ with mean TTFT ≤ R is ``λ = 2 (R - D) / (D (2 R - D))`` (0 when ``D ≥ R``). The prompt's
KV must fit (``P ≤ kv_capacity_tokens``). KV-transfer time to the decode instance is not counted
in TTFT (DistServe §4.3: hidden behind NVLink/InfiniBand; links constrain bandwidth in the MILP).
Batching several short prompts per iteration would raise this capacity: the figure is
conservative for short prompts.

**decode** (disaggregated decode instance): continuous batching of ``B`` sequences; by Little's law
``B = λ · steps · t(B) / 1000`` (each request holds a slot for ``steps`` iterations). The SLO needs
``t(B) ≤ τ`` and the KV of the batch must fit for the worst age, ``B (P + O) ≤ kv_capacity_tokens``.
Since ``B / t(B)`` increases with ``B`` (every operator's time is affine or a max of affine terms
with non-negative intercepts, plus a fixed overhead), the capacity is reached at the largest
feasible integer ``B``: ``λ = 1000 B / (steps · t(B))``. This is the fluid (at-capacity) value,
like Mélange's profiled maximum throughput.

**colocated** (one engine does both, prefill-prioritising continuous batching without chunking,
as vLLM 0.2 in Mélange's profiling): a share ``ρ_p = λ D / 1000`` of GPU time goes to prefill
iterations, which stall the decode batch, so the mean TPOT is ``t(B) / (1 - ρ_p)`` and Little's law
gives ``B = λ · steps · t(B) / (1000 (1 - ρ_p))``, i.e. ``λ = c / (1 + c D / 1000)`` with
``c = 1000 B / (steps · t(B))``. Mean TTFT = the M/D/1 wait of the prefill stream plus one decode
iteration in flight: ``D + λ D² / (2 (1000 - λ D)) + t(B)`` (ms, λ in 1/s). Constraints: mean TPOT ≤ τ,
mean TTFT ≤ R, KV ``B (P + O) ≤ kv_capacity_tokens``; TPOT, TTFT and λ all grow with ``B``, so the
capacity is λ at the largest feasible integer ``B``.

Configurations: TP degrees in ``tp_options`` (default 1, 2, 4, 8) for which the LLM's weights fit
(``CostModel.weights_fit``) and the query heads split evenly; a capacity is per instance of ``tp``
GPUs. ``memory_fraction`` (default 0.9, vLLM's ``gpu_memory_utilization``) is passed to
``kv_capacity_tokens``. A capacity of 0 means the configuration cannot meet the SLO for that bucket.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache

from servopt.errors import InputError

ROLES = ("colocated", "prefill", "decode")
DEFAULT_TP_OPTIONS = (1, 2, 4, 8)


@dataclass(frozen=True)
class CapacityAssumptions:
    memory_fraction: float = 0.9
    tp_options: tuple[int, ...] = DEFAULT_TP_OPTIONS
    profile: str | None = None  # None: the cost model's default profile for each GPU


@dataclass(frozen=True)
class CapacityRow:
    """One derived capacity with the operating point that produced it (for tables and checks)."""

    gpu: str
    tp: int
    role: str
    prompt_tokens: int
    output_tokens: int
    rps: float
    batch: int  # decode batch at capacity (0 for prefill)
    ttft_ms: float | None  # mean TTFT at capacity (None for decode)
    tpot_ms: float | None  # mean TPOT at capacity (None for prefill)
    limited_by: str  # "tpot", "ttft", "kv", "slo-unmet" (0 rps) or "weights"

    def to_dict(self) -> dict:
        return asdict(self)


@lru_cache(maxsize=512)
def _cost_model(llm: str, gpu: str, tp: int, profile: str | None):
    from servopt.costmodel.roofline import make_cost_model

    return make_cost_model(llm, gpu, tp=tp, profile=profile)


def tp_options_for(llm: str, gpu: str, assumptions: CapacityAssumptions = CapacityAssumptions()) -> list[int]:
    """TP degrees whose weight shard fits one GPU and that split the query heads evenly."""
    from servopt.instances.catalog import get_llm

    heads = get_llm(llm).num_heads
    out = []
    for tp in assumptions.tp_options:
        if heads % tp:
            continue
        cm = _cost_model(llm, gpu, tp, assumptions.profile)
        if cm.weights_fit() and cm.kv_capacity_tokens(assumptions.memory_fraction) > 0:
            out.append(tp)
    return out


def _decode_ms(cm, batch: float, context: float) -> float:
    return cm.iteration_ms_totals(decode_seqs=batch, decode_context_tokens=batch * context, sampled_seqs=batch)


def prefill_capacity(cm, prompt_tokens: int, ttft_ms: float, kv_tokens: int) -> tuple[float, float | None, str]:
    """M/D/1 (DistServe eq. 1): (rps, mean TTFT at capacity, limiting factor)."""
    if prompt_tokens > kv_tokens:
        return 0.0, None, "kv"
    D = cm.prefill_ms(prompt_tokens)
    if D >= ttft_ms:
        return 0.0, D, "slo-unmet"
    lam = 2.0 * (ttft_ms - D) / (D * (2.0 * ttft_ms - D)) * 1000.0  # per second
    return lam, ttft_ms, "ttft"


def _largest_feasible(hi: int, feasible) -> int:
    """Largest integer B in [1, hi] with feasible(B), given feasibility is monotone decreasing; 0 if none."""
    if hi < 1 or not feasible(1):
        return 0
    lo = 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if feasible(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def decode_capacity(cm, prompt_tokens: int, output_tokens: int, tpot_ms: float, kv_tokens: int):
    """Little's law at the largest batch meeting TPOT whose worst-age KV fits: (rps, batch, tpot, limit)."""
    steps = max(output_tokens - 1, 1)
    ctx = prompt_tokens + output_tokens / 2.0
    b_kv = kv_tokens // (prompt_tokens + output_tokens)
    B = _largest_feasible(b_kv, lambda b: _decode_ms(cm, b, ctx) <= tpot_ms)
    if B == 0:
        return 0.0, 0, None, ("kv" if b_kv < 1 else "slo-unmet")
    t = _decode_ms(cm, B, ctx)
    return 1000.0 * B / (steps * t), B, t, ("kv" if B == b_kv else "tpot")


def colocated_capacity(cm, prompt_tokens: int, output_tokens: int, ttft_ms: float, tpot_ms: float, kv_tokens: int):
    """Prefill-prioritising continuous batching (module docstring): (rps, batch, ttft, tpot, limit)."""
    steps = max(output_tokens - 1, 1)
    ctx = prompt_tokens + output_tokens / 2.0
    D = cm.prefill_ms(prompt_tokens)
    b_kv = kv_tokens // (prompt_tokens + output_tokens)

    def point(B):
        t = _decode_ms(cm, B, ctx)
        c = 1000.0 * B / (steps * t)
        lam = c / (1.0 + c * D / 1000.0)
        rho = lam * D / 1000.0
        tpot = t / (1.0 - rho)
        ttft = D + lam * D * D / (2.0 * (1000.0 - lam * D)) + t
        return lam, tpot, ttft

    def feasible(B):
        _, tpot, ttft = point(B)
        return tpot <= tpot_ms and ttft <= ttft_ms

    B = _largest_feasible(b_kv, feasible)
    if B == 0:
        return 0.0, 0, None, None, ("kv" if b_kv < 1 else "slo-unmet")
    lam, tpot, ttft = point(B)
    if B == b_kv:
        limit = "kv"
    else:
        _, tpot_next, ttft_next = point(B + 1)
        limit = "tpot" if tpot_next > tpot_ms else "ttft"
    return lam, B, ttft, tpot, limit


def capacity(llm: str, gpu: str, tp: int, role: str, prompt_tokens: int, output_tokens: int, *, ttft_ms: float,
             tpot_ms: float, assumptions: CapacityAssumptions = CapacityAssumptions()) -> CapacityRow:
    """The capacity of one configuration for one request size (module docstring for the model)."""
    if role not in ROLES:
        raise InputError("role", f"must be one of {', '.join(ROLES)}; got '{role}'")
    cm = _cost_model(llm, gpu, tp, assumptions.profile)
    if not cm.weights_fit():
        return CapacityRow(cm.gpu.name, tp, role, prompt_tokens, output_tokens, 0.0, 0, None, None, "weights")
    kv = cm.kv_capacity_tokens(assumptions.memory_fraction)
    if role == "prefill":
        rps, ttft, limit = prefill_capacity(cm, prompt_tokens, ttft_ms, kv)
        return CapacityRow(cm.gpu.name, tp, role, prompt_tokens, output_tokens, rps, 0, ttft, None, limit)
    if role == "decode":
        rps, B, tpot, limit = decode_capacity(cm, prompt_tokens, output_tokens, tpot_ms, kv)
        return CapacityRow(cm.gpu.name, tp, role, prompt_tokens, output_tokens, rps, B, None, tpot, limit)
    rps, B, ttft, tpot, limit = colocated_capacity(cm, prompt_tokens, output_tokens, ttft_ms, tpot_ms, kv)
    return CapacityRow(cm.gpu.name, tp, role, prompt_tokens, output_tokens, rps, B, ttft, tpot, limit)


def operating_point(llm: str, gpu: str, tp: int, role: str, prompt_tokens: int, output_tokens: int, rps: float, *,
                    assumptions: CapacityAssumptions = CapacityAssumptions()) -> dict:
    """Mean TTFT / TPOT (ms) of one instance serving ``rps`` requests/s of one size: the models above
    evaluated below capacity instead of at it (for explaining a plan at its utilisation).

    prefill: the M/D/1 mean TTFT ``D + λ D² / (2 (1000 - λ D))``; decode: the batch ``B`` solving Little's
    law ``B = λ · steps · t(B) / 1000`` (fixed-point iteration; ``t`` grows slowly in ``B``) and TPOT
    ``t(B)``; colocated: ``c = λ / (1 - λ D / 1000)`` decode-only rate, ``B = c · steps · t(B) / 1000``,
    TPOT ``t(B) / (1 - ρ_p)``, TTFT ``D + λ D² / (2 (1000 - λ D)) + t(B)``. ``None`` where the role has no
    such latency; ``inf`` when ``rps`` is beyond what the instance can sustain at all.
    """
    cm = _cost_model(llm, gpu, tp, assumptions.profile)
    steps = max(output_tokens - 1, 1)
    ctx = prompt_tokens + output_tokens / 2.0
    out = {"ttft_ms": None, "tpot_ms": None, "batch": None}
    lam = max(float(rps), 0.0)
    D = cm.prefill_ms(prompt_tokens)
    if role in ("prefill", "colocated"):
        if lam * D >= 1000.0:
            return {**out, "ttft_ms": math.inf, "tpot_ms": math.inf if role == "colocated" else None}
        out["ttft_ms"] = D + lam * D * D / (2.0 * (1000.0 - lam * D))
        if role == "prefill":
            return out
    rate = lam if role == "decode" else lam / (1.0 - lam * D / 1000.0)
    B = rate * steps * _decode_ms(cm, 1.0, ctx) / 1000.0
    for _ in range(200):
        nxt = rate * steps * _decode_ms(cm, max(B, 1e-9), ctx) / 1000.0
        if abs(nxt - B) <= 1e-9 * max(1.0, B):
            B = nxt
            break
        B = nxt
        if B > 1e7:
            return {**out, "tpot_ms": math.inf, "ttft_ms": math.inf if role == "colocated" else None}
    t = _decode_ms(cm, max(B, 1e-9), ctx)
    out["batch"] = B
    if role == "decode":
        out["tpot_ms"] = t
    else:
        out["tpot_ms"] = t / (1.0 - lam * D / 1000.0)
        out["ttft_ms"] += t
    return out


def capacity_table(llm: str, gpus: list[str], buckets: list[tuple[int, int]], *, ttft_ms: float, tpot_ms: float,
                   roles=ROLES, assumptions: CapacityAssumptions = CapacityAssumptions()) -> list[CapacityRow]:
    """Every (gpu, tp, role, bucket) capacity; TP degrees where the weights do not fit are left out."""
    rows = []
    for gpu in gpus:
        for tp in tp_options_for(llm, gpu, assumptions):
            for role in roles:
                for p, o in buckets:
                    rows.append(capacity(llm, gpu, tp, role, p, o, ttft_ms=ttft_ms, tpot_ms=tpot_ms, assumptions=assumptions))
    return rows


def capacities_for_instance(inst, assumptions: CapacityAssumptions | None = None) -> list:
    """Capacities of a ``pd_placement`` instance from its ``llm`` and ``slo``, for the mode's roles.

    Each GPU offer's ``type`` (or ``hardware``) must be a catalog GPU (name or alias). Entries with
    0 rps are kept (they say "cannot meet the SLO"). An offer on which the weights fit at no TP degree
    gets no capacities (the MILP cannot use it); if that holds for every offer, it is an error.
    """
    from servopt.instances.catalog import get_gpu, get_llm
    from servopt.instances.pd_placement import Capacity

    assumptions = assumptions or CapacityAssumptions()
    llm = get_llm(inst.llm, field="llm").name
    out = []
    unusable = []
    rps_of: dict[tuple, float] = {}  # offers of the same hardware (spot, reserved, ...) share the capacities
    for i, offer in enumerate(inst.gpus):
        field = f"gpus[{i}].hardware" if offer.hardware else f"gpus[{i}].type"
        gpu = get_gpu(offer.catalog_name, field=field).name
        tps = tp_options_for(llm, gpu, assumptions)
        if not tps:
            unusable.append(offer.type)
            continue
        for tp in tps:
            for role in inst.roles:
                for b in inst.buckets:
                    key = (gpu, tp, role, b.prompt_tokens, b.output_tokens)
                    if key not in rps_of:
                        rps_of[key] = _round_down(capacity(llm, gpu, tp, role, b.prompt_tokens, b.output_tokens,
                                                           ttft_ms=inst.slo.ttft_ms, tpot_ms=inst.slo.tpot_ms,
                                                           assumptions=assumptions).rps)
                    out.append(Capacity(offer.type, role, b.id, rps_of[key], tp))
    if len(unusable) == len(inst.gpus):
        raise InputError("gpus", f"{llm} weights fit on none of the offered GPUs ({', '.join(unusable)}) at any TP degree in "
                                 f"{list(assumptions.tp_options)}")
    return out


def _round_down(x: float, digits: int = 6) -> float:
    """Round to ``digits`` significant digits, downwards, so that JSON round-trips never add capacity."""
    if x <= 0 or not math.isfinite(x):
        return 0.0
    scale = 10 ** (digits - 1 - math.floor(math.log10(x)))
    return math.floor(x * scale) / scale


def kv_bytes_per_token(llm: str) -> int:
    from servopt.instances.catalog import get_llm

    return get_llm(llm, field="llm").kv_bytes_per_token()
