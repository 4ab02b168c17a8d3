"""Iteration-level batching instances and schedules (kind ``batching``).

What a continuous-batching engine decides every iteration, as data (the model of
``models/batching.py``; the engines it abstracts: Orca, Yu et al. OSDI'22 §3; vLLM, Kwon et al.
SOSP'23; Sarathi-Serve, Agrawal et al. OSDI'24 §4):

* iterations run one after another: iteration ``k`` starts at ``S_k >= E_{k-1}`` (idling is
  allowed) and ends at ``E_k = S_k + tau_k``;
* a request ``i`` with ``a_i <= S_k`` may take part in iteration ``k`` with a prefill chunk of
  ``c >= 1`` of its remaining prompt tokens or, once its prompt is complete, with one decode token;
  the iteration that completes the prompt also emits output token 1, every further output token
  needs one decode (``o_i - 1`` decodes in all);
* per iteration: ``sum chunks + #decodes <= B`` (``token_budget``), participants ``<= S``
  (``max_batch``), and the memory ``sum`` over started requests not finished before ``k`` of
  (prompt tokens processed through ``k`` + decode tokens through ``k``) ``<= M``
  (``memory_tokens``);
* ``tau_k = fixed + per_prefill_token * sum chunks + per_decode_token * #decodes
  + per_context_token * sum over the decoding requests of their KV tokens before k``
  (KV tokens of a decoding request = its prompt + its earlier decodes);
* a started request need not take part in every iteration (it keeps its KV);
  ``continuous: true`` forces every started, unfinished request into every iteration;
* completion ``C_i`` = end of the iteration with the last output token, first token ``F_i`` =
  end of the prompt-completing iteration, ``TTFT = F_i - a_i``, ``TPOT = (C_i - F_i)/(o_i - 1)``
  (0 when ``o_i = 1``);
* objectives: ``total_latency`` = sum (C_i - a_i), ``makespan`` = max C_i, ``goodput`` = number of
  requests with TTFT <= ttft_ms and TPOT <= tpot_ms (every request still completes; ties broken
  by total latency).

The linear iteration time is the form the cost model's roofline takes over a range where every
operator stays on one side of its roof (research notes costmodel-anchors.md; Ao et al., arXiv
2504.11320 §2.1 fit ``tau = d0 + d1 * KV``). With ``{"llm", "gpu", "tp"}`` the coefficients are
fitted by least squares to ``servopt.costmodel.roofline`` over the instance's range
(``fit_iteration``), and the fit error is reported.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from servopt.errors import InputError
from servopt.instances import fields

KIND = "batching"
OBJECTIVES = ("total_latency", "makespan", "goodput")
TIME_TOL_MS = 1e-6  # times are recomputed in floating point; equal within this


@dataclass(frozen=True)
class IterationTime:
    """``tau = fixed_ms + per_prefill_token_ms*chunks + per_decode_token_ms*decodes + per_context_token_ms*ctx``."""

    fixed_ms: float
    per_prefill_token_ms: float
    per_decode_token_ms: float
    per_context_token_ms: float

    def ms(self, prefill_tokens: int, decodes: int, context_tokens: int) -> float:
        return (self.fixed_ms + self.per_prefill_token_ms * prefill_tokens + self.per_decode_token_ms * decodes
                + self.per_context_token_ms * context_tokens)

    def to_dict(self) -> dict:
        return {"fixed_ms": self.fixed_ms, "per_prefill_token_ms": self.per_prefill_token_ms,
                "per_decode_token_ms": self.per_decode_token_ms, "per_context_token_ms": self.per_context_token_ms}


@dataclass(frozen=True)
class BatchRequest:
    id: str
    arrival_ms: float
    prompt_tokens: int
    output_tokens: int
    predicted_output_tokens: int | None = None  # what length-aware policies see (default: the truth)

    @property
    def predicted_output(self) -> int:
        return self.output_tokens if self.predicted_output_tokens is None else self.predicted_output_tokens

    @property
    def footprint_tokens(self) -> int:
        """KV tokens held in the request's last iteration: prompt + its o_i - 1 decodes."""
        return self.prompt_tokens + self.output_tokens - 1

    def to_dict(self) -> dict:
        out = {"id": self.id, "arrival_ms": self.arrival_ms, "prompt_tokens": self.prompt_tokens,
               "output_tokens": self.output_tokens}
        if self.predicted_output_tokens is not None:
            out["predicted_output_tokens"] = self.predicted_output_tokens
        return out


@dataclass(frozen=True)
class BatchingInstance:
    iteration: IterationTime
    token_budget: int
    requests: tuple[BatchRequest, ...]
    max_batch: int | None = None  # None: no limit
    memory_tokens: int | None = None  # None: no limit
    objective: str = "total_latency"
    slo_ttft_ms: float | None = None
    slo_tpot_ms: float | None = None
    continuous: bool = False
    name: str = ""
    fit: dict | None = None  # the cost-model fit when iteration came from {"llm", "gpu", "tp"}

    def __post_init__(self):
        validate_instance(self)

    @property
    def n(self) -> int:
        return len(self.requests)

    @property
    def batch_limit(self) -> int:
        return self.n if self.max_batch is None else min(self.max_batch, self.n)

    @property
    def memory_limit(self) -> int:
        return sum(r.footprint_tokens for r in self.requests) if self.memory_tokens is None else self.memory_tokens

    def meets_slo(self, ttft_ms: float, tpot_ms: float) -> bool:
        ok_ttft = self.slo_ttft_ms is None or ttft_ms <= self.slo_ttft_ms + TIME_TOL_MS
        ok_tpot = self.slo_tpot_ms is None or tpot_ms <= self.slo_tpot_ms + TIME_TOL_MS
        return ok_ttft and ok_tpot

    @classmethod
    def from_dict(cls, data: dict) -> "BatchingInstance":
        if not isinstance(data, dict):
            raise InputError("(top level)", "an instance must be a JSON object")
        budget = fields.integer(data, "token_budget", "", minimum=1)
        max_batch = fields.integer(data, "max_batch", "", minimum=1, default=None, allow_none=True)
        memory = fields.integer(data, "memory_tokens", "", minimum=1, default=None, allow_none=True)
        objective = fields.string(data, "objective", "", default="total_latency", choices=OBJECTIVES)
        continuous = data.get("continuous", False)
        if not isinstance(continuous, bool):
            raise InputError("continuous", f"expected true or false, got {continuous!r}")
        slo = data.get("slo") or {}
        if not isinstance(slo, dict):
            raise InputError("slo", "expected an object with ttft_ms and/or tpot_ms")
        ttft = fields.number(slo, "ttft_ms", "slo", minimum=0, default=None, allow_none=True)
        tpot = fields.number(slo, "tpot_ms", "slo", minimum=0, default=None, allow_none=True)
        raw = fields.array(data, "requests", "", non_empty=True)
        requests = []
        for i, r in enumerate(raw):
            where = f"requests[{i}]"
            if not isinstance(r, dict):
                raise InputError(where, "expected an object")
            rid = r.get("id", f"r{i}")
            if not isinstance(rid, str) or not rid:
                raise InputError(f"{where}.id", f"expected a non-empty string, got {rid!r}")
            requests.append(BatchRequest(
                rid, fields.number(r, "arrival_ms", where, minimum=0, default=0.0),
                fields.integer(r, "prompt_tokens", where, minimum=1), fields.integer(r, "output_tokens", where, minimum=1),
                fields.integer(r, "predicted_output_tokens", where, minimum=1, default=None, allow_none=True)))
        it = data.get("iteration")
        if not isinstance(it, dict):
            raise InputError("iteration", "expected an object: the four linear coefficients, or {llm, gpu, tp}")
        fit = None
        if "llm" in it or "gpu" in it:
            iteration, fit = fit_iteration(it, budget, max_batch or len(requests), memory or
                                           sum(r.prompt_tokens + r.output_tokens - 1 for r in requests),
                                           max(r.prompt_tokens + r.output_tokens for r in requests))
        else:
            iteration = IterationTime(*(fields.number(it, k, "iteration", minimum=0) for k in
                                        ("fixed_ms", "per_prefill_token_ms", "per_decode_token_ms", "per_context_token_ms")))
        name = data.get("name", "")
        return cls(iteration, budget, tuple(requests), max_batch, memory, objective, ttft, tpot, continuous,
                   name if isinstance(name, str) else "", fit)

    def to_dict(self) -> dict:
        out = {"kind": KIND, "iteration": self.iteration.to_dict(), "token_budget": self.token_budget}
        if self.max_batch is not None:
            out["max_batch"] = self.max_batch
        if self.memory_tokens is not None:
            out["memory_tokens"] = self.memory_tokens
        out["objective"] = self.objective
        if self.slo_ttft_ms is not None or self.slo_tpot_ms is not None:
            out["slo"] = {k: v for k, v in (("ttft_ms", self.slo_ttft_ms), ("tpot_ms", self.slo_tpot_ms)) if v is not None}
        if self.continuous:
            out["continuous"] = True
        if self.name:
            out["name"] = self.name
        out["requests"] = [r.to_dict() for r in self.requests]
        return out

    def to_dataframe(self):
        import pandas as pd

        return pd.DataFrame([r.to_dict() for r in self.requests])


def validate_instance(inst: BatchingInstance) -> None:
    """Semantic checks the JSON Schema cannot state; also guards the Python API."""
    if inst.objective not in OBJECTIVES:
        raise InputError("objective", f"must be one of {', '.join(OBJECTIVES)}; got '{inst.objective}'")
    for key in ("token_budget", "max_batch", "memory_tokens"):
        v = getattr(inst, key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise InputError(key, f"expected a positive integer, got {v!r}")
    for key, v in inst.iteration.to_dict().items():
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise InputError(f"iteration.{key}", f"expected a finite number >= 0, got {v!r}")
    if inst.objective == "goodput" and inst.slo_ttft_ms is None and inst.slo_tpot_ms is None:
        raise InputError("slo", "objective 'goodput' needs slo.ttft_ms and/or slo.tpot_ms")
    if not inst.requests:
        raise InputError("requests", "must not be empty (an instance needs at least one request)")
    seen: dict[str, int] = {}
    for i, r in enumerate(inst.requests):
        where = f"requests[{i}]"
        if r.id in seen:
            raise InputError(f"{where}.id", f"duplicate id '{r.id}' (first at requests[{seen[r.id]}])")
        seen[r.id] = i
        if not (math.isfinite(r.arrival_ms) and r.arrival_ms >= 0):
            raise InputError(f"{where}.arrival_ms", f"expected a finite number >= 0, got {r.arrival_ms!r}")
        for key in ("prompt_tokens", "output_tokens"):
            v = getattr(r, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InputError(f"{where}.{key}", f"expected a positive integer, got {v!r}")
        if inst.memory_tokens is not None and r.footprint_tokens > inst.memory_tokens:
            raise InputError(where, f"request '{r.id}' holds prompt_tokens + output_tokens - 1 = {r.footprint_tokens} "
                                    f"KV tokens in its last iteration, more than memory_tokens = {inst.memory_tokens}: "
                                    "it can never run")
    if inst.continuous and inst.batch_limit < 1:
        raise InputError("max_batch", "must be >= 1")


# ---------------------------------------------------------------------------- cost-model fit
def fit_iteration(spec: dict, token_budget: int, max_batch: int, memory_tokens: int, longest_request: int):
    """Least-squares fit of the linear iteration time to the roofline cost model over the instance's range.

    Sample points: prefill tokens 0..B, decodes 0..min(S, B), context 0..min(M, decodes * longest
    request) on a grid; a prefill chunk is costed as one fresh chunk (attention pairs p(p+1)/2). The
    coefficients are kept non-negative (scipy's NNLS). Returns ``(IterationTime, fit dict)`` with
    the maximum absolute and relative errors over the sample.
    """
    import numpy as np

    from servopt.costmodel.roofline import make_cost_model

    for key in ("llm", "gpu"):
        if not isinstance(spec.get(key), str):
            raise InputError(f"iteration.{key}", "required (a catalog name) when the iteration time comes from the cost model")
    tp = fields.integer(spec, "tp", "iteration", minimum=1, default=1)
    unknown = set(spec) - {"llm", "gpu", "tp", "profile"}
    if unknown:
        raise InputError("iteration", f"unknown field(s) with llm/gpu: {', '.join(sorted(unknown))}")
    try:
        cm = make_cost_model(spec["llm"], spec["gpu"], tp, spec.get("profile"))
    except InputError as exc:  # name the field as it sits in the instance
        raise InputError(f"iteration.{exc.field}", exc.message) from None
    if not cm.weights_fit():
        raise InputError("iteration.tp", f"{spec['llm']} does not fit on {tp} x {spec['gpu']}")
    dmax = max(0, min(max_batch, token_budget))
    rows, ys = [], []
    for p in np.unique(np.linspace(0, token_budget, 9).round().astype(int)):
        for d in np.unique(np.linspace(0, dmax, 7).round().astype(int)):
            if p + d == 0 or p + d > token_budget:
                continue
            cmax = min(memory_tokens, d * longest_request)
            for ctx in np.unique(np.linspace(d, max(cmax, d), 5).round().astype(int)) if d else [0]:
                t = cm.iteration_ms_totals(prefill_tokens=float(p), prefill_attention_pairs=p * (p + 1) / 2.0,
                                           decode_seqs=float(d), decode_context_tokens=float(ctx),
                                           sampled_seqs=float(d + (1 if p else 0)))
                rows.append([1.0, p, d, ctx])
                ys.append(t)
    A, y = np.asarray(rows, dtype=float), np.asarray(ys, dtype=float)
    try:
        from scipy.optimize import nnls

        coef, _ = nnls(A, y)
    except ImportError:  # scipy is a dependency of the cost model's calibration; keep a plain fallback
        coef = np.clip(np.linalg.lstsq(A, y, rcond=None)[0], 0, None)
    pred = A @ coef
    err = np.abs(pred - y)
    it = IterationTime(*(float(round(c, 12)) for c in coef))
    fit = {"llm": cm.llm.name, "gpu": cm.gpu.name, "tp": tp, "points": int(len(y)), "coefficients": it.to_dict(),
           "max_abs_error_ms": float(err.max()), "rms_error_ms": float(np.sqrt((err ** 2).mean())),
           "max_rel_error": float((err / np.maximum(y, 1e-12)).max()),
           "range": {"prefill_tokens": [0, token_budget], "decodes": [0, dmax], "context_tokens": [0, memory_tokens]}}
    return it, fit


# ---------------------------------------------------------------------------- schedules
# A batch is a tuple of entries (request index, "p" | "d", tokens); "d" always has tokens = 1.
Entry = tuple


@dataclass(frozen=True)
class RequestTimes:
    id: str
    first_token_ms: float
    finish_ms: float
    ttft_ms: float
    tpot_ms: float

    def to_dict(self) -> dict:
        return {"id": self.id, "first_token_ms": self.first_token_ms, "finish_ms": self.finish_ms,
                "ttft_ms": self.ttft_ms, "tpot_ms": self.tpot_ms}


@dataclass(frozen=True)
class BatchSchedule:
    """Iterations (start, end, batch) in order, and the per-request times they give."""

    starts_ms: tuple[float, ...]
    ends_ms: tuple[float, ...]
    batches: tuple[tuple[Entry, ...], ...]
    requests: tuple[RequestTimes, ...]
    method: str = ""
    meta: dict = field(default_factory=dict)

    def objective_value(self, instance: BatchingInstance) -> float:
        return objective_value(instance, self.requests)

    def total_latency_ms(self, instance: BatchingInstance) -> float:
        return sum(t.finish_ms - r.arrival_ms for t, r in zip(self.requests, instance.requests))

    def iterations_to_dict(self, instance: BatchingInstance) -> list[dict]:
        out = []
        for s, e, batch in zip(self.starts_ms, self.ends_ms, self.batches):
            items = []
            for i, kind, tok in batch:
                rid = instance.requests[i].id
                items.append({"id": rid, "prefill_tokens": tok} if kind == "p" else {"id": rid, "decode_tokens": 1})
            out.append({"start_ms": s, "end_ms": e, "batch": items})
        return out

    def to_dict(self, instance: BatchingInstance) -> dict:
        return {"iterations": self.iterations_to_dict(instance), "requests": [t.to_dict() for t in self.requests]}

    def to_dataframe(self):
        import pandas as pd

        return pd.DataFrame([t.to_dict() for t in self.requests])


def objective_value(instance: BatchingInstance, times) -> float:
    if instance.objective == "makespan":
        return max(t.finish_ms for t in times)
    if instance.objective == "goodput":
        return float(sum(1 for t in times if instance.meets_slo(t.ttft_ms, t.tpot_ms)))
    return sum(t.finish_ms - r.arrival_ms for t, r in zip(times, instance.requests))


def iteration_ms(instance: BatchingInstance, batch, kv_before: list[int]) -> float:
    """``tau`` of one batch; ``kv_before[i]`` = KV tokens of request i before this iteration."""
    chunks = sum(tok for _, kind, tok in batch if kind == "p")
    decodes = sum(1 for _, kind, _ in batch if kind == "d")
    ctx = sum(kv_before[i] for i, kind, _ in batch if kind == "d")
    return instance.iteration.ms(chunks, decodes, ctx)


def durations(instance: BatchingInstance, batches) -> list[float]:
    """``tau_k`` of each batch of a sequence (KV counts follow the sequence itself)."""
    kv = [0] * instance.n
    out = []
    for batch in batches:
        out.append(iteration_ms(instance, batch, kv))
        for i, _, tok in batch:
            kv[i] += tok
    return out


def event_iterations(instance: BatchingInstance, batches) -> tuple[list[int], list[int]]:
    """Per request: index of its prompt-completing iteration and of its last-token iteration (-1: never)."""
    prompt = [0] * instance.n
    decodes = [0] * instance.n
    first = [-1] * instance.n
    last = [-1] * instance.n
    for k, batch in enumerate(batches):
        for i, kind, tok in batch:
            r = instance.requests[i]
            if kind == "p":
                prompt[i] += tok
                if prompt[i] == r.prompt_tokens:
                    first[i] = k
                    if r.output_tokens == 1:
                        last[i] = k
            else:
                decodes[i] += 1
                if decodes[i] == r.output_tokens - 1:
                    last[i] = k
    return first, last


def timed_schedule(instance: BatchingInstance, batches, ends_ms=None, *, method: str = "", meta=None) -> BatchSchedule:
    """Attach times to a batch sequence: the earliest ones (no idling beyond arrivals), or given ends.

    Earliest: ``S_k = max(E_{k-1}, max arrival of k's participants)``. With ``ends_ms`` given
    (e.g. from ``least_times_meeting``), ``S_k = E_k - tau_k``.
    """
    batches = tuple(tuple(b) for b in batches)
    taus = durations(instance, batches)
    starts, ends = [], []
    prev = 0.0
    for k, batch in enumerate(batches):
        if ends_ms is None:
            s = max([prev] + [instance.requests[i].arrival_ms for i, _, _ in batch])
            e = s + taus[k]
        else:
            e = float(ends_ms[k])
            s = e - taus[k]
        starts.append(s)
        ends.append(e)
        prev = e
    first, last = event_iterations(instance, batches)
    times = []
    for i, r in enumerate(instance.requests):
        if first[i] < 0 or last[i] < 0:
            raise ValueError(f"request {r.id} is not completed by the batch sequence")
        f_ms, c_ms = ends[first[i]], ends[last[i]]
        tpot = (c_ms - f_ms) / (r.output_tokens - 1) if r.output_tokens > 1 else 0.0
        times.append(RequestTimes(r.id, f_ms, c_ms, f_ms - r.arrival_ms, tpot))
    return BatchSchedule(tuple(starts), tuple(ends), batches, tuple(times), method, dict(meta or {}))


def least_times_meeting(instance: BatchingInstance, batches, targets) -> list[float] | None:
    """The least iteration ends under which every request in ``targets`` meets both SLOs, or None.

    The constraints are differences between ends: ``E_k >= E_{k-1} + tau_k``, ``E_k >= a_i + tau_k``
    for participants, ``E_{F_i} >= E_{C_i} - tpot*(o_i-1)`` (TPOT) and ``E_{F_i} <= a_i + ttft``
    (TTFT) for targets. The solutions of a system of difference constraints are closed under
    componentwise minimum, so a least solution exists when any does; it minimises every end at
    once, hence the total latency among schedules meeting ``targets``. Found by Bellman-Ford
    relaxation from the lower bounds; a growth past the sum of all durations means a positive cycle
    (no solution).
    """
    taus = durations(instance, batches)
    first, last = event_iterations(instance, batches)
    K = len(batches)
    lower = [max([0.0] + [instance.requests[i].arrival_ms for i, _, _ in b]) + taus[k] for k, b in enumerate(batches)]
    back = []  # (from c, to f, weight): E_f >= E_c - w
    for i in targets:
        r = instance.requests[i]
        if instance.slo_tpot_ms is not None and r.output_tokens > 1:
            back.append((last[i], first[i], instance.slo_tpot_ms * (r.output_tokens - 1)))
    E = list(lower)
    cap = max(lower) + sum(taus) + 1.0
    for _ in range(K + 2):
        changed = False
        for k in range(1, K):
            v = E[k - 1] + taus[k]
            if v > E[k] + 1e-12:
                E[k] = v
                changed = True
        for c, f, w in back:
            v = E[c] - w
            if v > E[f] + 1e-12:
                E[f] = v
                changed = True
        if not changed:
            break
        if max(E) > cap:
            return None
    else:
        return None
    for i in targets:
        r = instance.requests[i]
        if instance.slo_ttft_ms is not None and E[first[i]] > r.arrival_ms + instance.slo_ttft_ms + TIME_TOL_MS:
            return None
    return E


def best_timing(instance: BatchingInstance, batches, *, method: str = "", meta=None) -> BatchSchedule:
    """Times for a batch sequence: earliest for total_latency/makespan; for goodput the least times
    meeting the largest set of SLOs (ties: least total latency), searched over subsets when n <= 12,
    else the earliest times."""
    base = timed_schedule(instance, batches, method=method, meta=meta)
    if instance.objective != "goodput" or instance.n > 12:
        return base
    from itertools import combinations

    best = base
    best_key = (-base.objective_value(instance), base.total_latency_ms(instance))
    for size in range(instance.n, int(best_key[0] * -1), -1):
        found = None
        for targets in combinations(range(instance.n), size):
            ends = least_times_meeting(instance, batches, targets)
            if ends is None:
                continue
            cand = timed_schedule(instance, batches, ends, method=method, meta=meta)
            key = (-cand.objective_value(instance), cand.total_latency_ms(instance))
            if found is None or key < found[0]:
                found = (key, cand)
        if found is not None:
            if found[0] < best_key:
                best_key, best = found
            break
    return best


def schedule_from_result(instance: BatchingInstance, result: dict) -> BatchSchedule:
    """Read ``iterations`` of a result JSON back into a BatchSchedule (reported times kept)."""
    rows = result.get("iterations") if isinstance(result, dict) else None
    if not isinstance(rows, list):
        raise InputError("iterations", "the result has no 'iterations' array")
    index = {r.id: i for i, r in enumerate(instance.requests)}
    batches, ends = [], []
    for k, row in enumerate(rows):
        where = f"iterations[{k}]"
        if not isinstance(row, dict) or not isinstance(row.get("batch"), list):
            raise InputError(where, "expected an object with start_ms, end_ms and batch")
        ends.append(fields.number(row, "end_ms", where))
        batch = []
        for j, item in enumerate(row["batch"]):
            w = f"{where}.batch[{j}]"
            if not isinstance(item, dict) or item.get("id") not in index:
                raise InputError(f"{w}.id", f"unknown request id {item.get('id') if isinstance(item, dict) else item!r}")
            if "prefill_tokens" in item:
                batch.append((index[item["id"]], "p", fields.integer(item, "prefill_tokens", w, minimum=1)))
            else:
                fields.integer(item, "decode_tokens", w, minimum=1, maximum=1)
                batch.append((index[item["id"]], "d", 1))
        batches.append(tuple(batch))
    return timed_schedule(instance, batches, ends, method=str(result.get("method", "")))


# ---------------------------------------------------------------------------- generators
def random_instance(n: int, *, seed: int = 0, prompt_range=(50, 900), output_range=(5, 120), token_budget: int = 512,
                    max_batch: int | None = None, memory_tokens: int | None = None, rate_per_s: float = 20.0,
                    iteration: IterationTime | None = None, objective: str = "total_latency",
                    slo_ttft_ms: float | None = None, slo_tpot_ms: float | None = None,
                    continuous: bool = False) -> BatchingInstance:
    """Poisson arrivals (``rate_per_s``), uniform prompt and output lengths; a plain RNG, no Pyomo.

    The default iteration time is an A100-class Llama-2-7B-like linear fit (8 ms fixed, 0.08 ms
    per prefill token, 0.02 ms per decode, 5e-5 ms per context token; the form of Ao et al.,
    arXiv 2504.11320 §2.1, rounded).
    """
    import random

    rng = random.Random(seed)
    t = 0.0
    reqs = []
    for i in range(n):
        reqs.append(BatchRequest(f"r{i}", round(t, 3), rng.randint(*prompt_range), rng.randint(*output_range)))
        t += rng.expovariate(rate_per_s) * 1000.0
    it = iteration or IterationTime(8.0, 0.08, 0.02, 5e-5)
    return BatchingInstance(it, token_budget, tuple(reqs), max_batch, memory_tokens, objective, slo_ttft_ms, slo_tpot_ms,
                            continuous, f"random n={n} seed={seed}")
