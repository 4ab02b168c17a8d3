"""The discrete-event serving simulator: replicas behind a router, optional P/D disaggregation.

Events are arrivals (pulled one at a time from the trace, so memory follows the requests in flight,
not the trace length), replica step ends, and KV transfers between a prefill and a decode pool.
A replica's step is one iteration with prefill work, or a stretch of decode-only iterations
advanced in closed form (``simulator/replica.py``). Arrivals routed to a replica in the middle of
a stretch cut it at the next iteration boundary, so the result is the one stepping every iteration
would give. Ties at one instant: arrivals first, then replica events in replica order; the only
randomness (random and power-of-two routers) comes from ``numpy.random.default_rng(seed)``.

Prefill/decode disaggregation (DistServe, Zhong et al., OSDI'24; Splitwise, Patel et al.,
ISCA'24): the first ``pd[0]`` replicas only prefill; a finished prefill (which emits the first
token) frees its KV there and sends ``KV tokens * kv_bytes_per_token`` bytes over the prefill
replica's link (``link_gb_per_s``, transfers queued FIFO per link) to a decode replica picked by
``decode_router``, where it joins the decode set once its KV blocks fit.
"""
from __future__ import annotations

import heapq
import itertools
import time
from array import array
from dataclasses import dataclass, field

import numpy as np

from servopt.errors import InputError
from servopt.instances.requests import Request
from servopt.simulator import registry
from servopt.simulator.prefix_cache import PrefixCache
from servopt.simulator.replica import DONE, Replica, Req
from servopt.simulator.timing import as_timer

ARRIVAL, TRANSFER, STEP = 0, 1, 2


@dataclass(frozen=True)
class SimConfig:
    kv_tokens: int  # KV capacity per replica, tokens
    replicas: int = 1
    scheduler: str = "sarathi"
    scheduler_options: dict = field(default_factory=dict)
    router: str = "round_robin"
    router_options: dict = field(default_factory=dict)
    block_size: int = 16
    eviction: str | None = None  # prefix cache on when set: a simulator/evict_*.py policy
    eviction_options: dict = field(default_factory=dict)  # the eviction policy's make(**options)
    prefix_block_tokens: int = 512  # tokens per prefix hash id (Mooncake traces: 512)
    kv_bytes_per_token: float = 0.0  # per replica, for swap and P/D transfer times
    pcie_gb_per_s: float = 25.0  # host link for swapping (PCIe 4.0 x16 practical, ~25 GB/s)
    pd: tuple[int, int] | None = None  # (prefill replicas, decode replicas)
    link_gb_per_s: float = 25.0
    decode_router: str = "jsq"
    seed: int = 0
    unservable: str = "error"  # or "drop": report requests that cannot fit an empty replica
    log_iterations: bool = False
    skip_ahead: bool = True  # False: step every iteration (for cross-checks; same results, slower)

    def __post_init__(self):
        if self.kv_tokens < self.block_size:
            raise InputError("--kv-tokens", f"must hold at least one block ({self.block_size} tokens), got {self.kv_tokens}")
        if self.block_size < 1:
            raise InputError("--block-size", f"must be >= 1, got {self.block_size}")
        if self.replicas < 1:
            raise InputError("--replicas", f"must be >= 1, got {self.replicas}")
        if self.pd is not None and (self.pd[0] < 1 or self.pd[1] < 1):
            raise InputError("--pd", f"needs at least one prefill and one decode replica, got {self.pd}")
        if self.unservable not in ("error", "drop"):
            raise InputError("unservable", "must be 'error' or 'drop'")


@dataclass
class SimResult:
    """Per-request columns (numpy arrays), per-replica statistics and the run's own wall time."""

    columns: dict
    replicas: list
    wall_s: float
    makespan_s: float
    config: dict
    unserved: list
    max_in_flight: int = 0
    iteration_log: object = None  # pandas DataFrame when SimConfig.log_iterations
    cache: dict | None = None

    def to_dataframe(self):
        import pandas as pd

        cols = dict(self.columns)
        if cols.get("id") is None:
            cols["id"] = cols["request_index"].astype(str).astype(object)
        df = pd.DataFrame(cols)
        df["ttft_s"] = df["first_token_s"] - df["arrival_s"]
        df["e2e_s"] = df["finish_s"] - df["arrival_s"]
        out1 = (df["output_tokens"] - 1).where(df["output_tokens"] > 1)
        df["tpot_s"] = (df["e2e_s"] - df["ttft_s"]) / out1
        return df


class _Columns:
    """Finished requests as typed arrays (about 80 bytes each); ids are stored only when the trace
    has ids other than the request's position (``str(index)``), so a long synthetic trace costs
    no Python objects per request."""

    def __init__(self):
        self.id = None
        self.idx = array("q")
        self.f = {k: array("d") for k in ("arrival_s", "first_token_s", "finish_s")}
        self.i = {k: array("q") for k in ("prompt_tokens", "output_tokens", "replica", "preemptions", "cached_tokens", "swaps", "prefill_replica")}

        f, i = self.f, self.i
        self._appends = (self.idx.append, f["arrival_s"].append, f["first_token_s"].append, f["finish_s"].append,
                         i["prompt_tokens"].append, i["output_tokens"].append, i["replica"].append,
                         i["preemptions"].append, i["cached_tokens"].append, i["swaps"].append,
                         i["prefill_replica"].append)

    def add(self, req: Req, replica: int):
        if self.id is None and req.rid != str(req.idx):
            self.id = [str(i) for i in self.idx]
        if self.id is not None:
            self.id.append(req.rid)
        a_idx, a_arr, a_first, a_fin, a_p, a_o, a_rep, a_pre, a_cached, a_swaps, a_prep = self._appends
        a_idx(req.idx)
        a_arr(req.arrival)
        a_first(req.first_s)
        a_fin(req.finish_s)
        a_p(req.prompt)
        a_o(req.output)
        a_rep(replica)
        a_pre(req.preemptions)
        a_cached(req.cached_tokens)
        a_swaps(req.swaps)
        a_prep(req.prefill_replica)

    def to_dict(self):
        # default ids (the request's position) are made only when a DataFrame is built
        out = {"id": np.array(self.id, dtype=object) if self.id is not None else None,
               "request_index": np.frombuffer(self.idx, dtype=np.int64) if len(self.idx) else np.zeros(0, dtype=np.int64)}
        out.update({k: np.frombuffer(v, dtype=np.float64) if len(v) else np.zeros(0) for k, v in self.f.items()})
        out.update({k: np.frombuffer(v, dtype=np.int64) if len(v) else np.zeros(0, dtype=np.int64) for k, v in self.i.items()})
        return out


def _as_req(idx, r) -> Req:
    if type(r) is Request:  # the common case, without getattr's defaults
        interval = r.output_tokens_interval
        lo, hi = (interval if interval else (None, None))
        return Req(idx, r.id, float(r.arrival), int(r.prompt_tokens), int(r.output_tokens), r.predicted_output_tokens,
                   lo, hi, tuple(r.prefix_block_ids) if r.prefix_block_ids else (), float(r.weight))
    interval = getattr(r, "output_tokens_interval", None)
    lo, hi = (interval if interval else (None, None))
    return Req(idx, r.id, float(r.arrival), int(r.prompt_tokens), int(r.output_tokens),
               getattr(r, "predicted_output_tokens", None), lo, hi, tuple(getattr(r, "prefix_block_ids", ()) or ()),
               float(getattr(r, "weight", 1.0)))


def simulate(requests, cost, config: SimConfig, *, progress=None) -> SimResult:
    """Run ``requests`` (an iterable of ``Request``, sorted by arrival) through the cluster.

    ``cost`` is a timer (``simulator/timing.py``) or a cost model with ``iteration_ms_totals``.
    ``progress(done_requests)`` is called every few thousand finished requests.
    """
    t_wall = time.perf_counter()
    timer = as_timer(cost)
    bs = config.block_size
    total_blocks = config.kv_tokens // bs
    swap_s_per_token = config.kv_bytes_per_token / (config.pcie_gb_per_s * 1e9) if config.pcie_gb_per_s > 0 else 0.0
    cols = _Columns()
    unserved: list = []
    finished = [0]
    in_flight = [0, 0]  # now, peak: requests arrived and not finished (what the engine's memory follows)

    def on_finish(req, rep):
        cols.add(req, rep.index)
        finished[0] += 1
        in_flight[0] -= 1
        if progress is not None and finished[0] % 2000 == 0:
            progress(finished[0])

    heap: list = []
    heappush, heappop = heapq.heappush, heapq.heappop
    seq = itertools.count(1)  # ties at one instant and kind: first pushed, first served

    def push(t, kind, a, b=0):
        heappush(heap, (t, kind, next(seq), a, b))

    link_free: dict = {}

    def on_handoff(req, rep, now):
        start = max(now, link_free.get(rep.index, 0.0))
        dur = req.kv_tokens * config.kv_bytes_per_token / (config.link_gb_per_s * 1e9) if config.link_gb_per_s > 0 else 0.0
        link_free[rep.index] = start + dur
        req.prefill_replica = rep.index
        req.transfer_s = dur
        push(start + dur, TRANSFER, req)

    n_rep = config.replicas if config.pd is None else config.pd[0] + config.pd[1]
    prefix_lists = None  # the whole trace's prefix ids, for offline eviction policies (their ``prepare``)
    reps = []
    for i in range(n_rep):
        role = "both" if config.pd is None else ("prefill" if i < config.pd[0] else "decode")
        sched = registry.make("scheduler", config.scheduler, config.scheduler_options, "--scheduler")
        cache = None
        if config.eviction:
            policy = registry.make("eviction", config.eviction, dict(config.eviction_options), "--eviction")
            cache = PrefixCache(policy, block_tokens=config.prefix_block_tokens,
                                kv_blocks_per_entry=-(-config.prefix_block_tokens // bs))
            if hasattr(policy, "prepare"):  # offline: it reads the whole trace (one cache, trace order)
                if n_rep > 1:
                    raise InputError("--eviction", f"{config.eviction} plans one cache from the whole trace; "
                                                   "run it with one replica")
                if prefix_lists is None:
                    requests = list(requests)
                    T = config.prefix_block_tokens
                    prefix_lists = [tuple(getattr(r, "prefix_block_ids", ()) or ())[: int(r.prompt_tokens) // T]
                                    for r in requests]
                policy.prepare(prefix_lists, capacity_blocks=total_blocks // cache.kv_blocks_per_entry)
        reps.append(Replica(i, total_blocks=total_blocks, block_size=bs, timer=timer, scheduler=sched, cache=cache,
                            swap_s_per_token=swap_s_per_token, role=role, on_finish=on_finish,
                            on_handoff=on_handoff, log_iterations=config.log_iterations,
                            skip_ahead=config.skip_ahead))
    front = reps if config.pd is None else reps[: config.pd[0]]
    back = reps[config.pd[0]:] if config.pd is not None else None
    rng = np.random.default_rng(config.seed)
    router = registry.make("router", config.router, {**config.router_options, "rng": rng}, "--router")
    decode_router = (registry.make("router", config.decode_router, {"rng": rng}, "--decode-router")
                     if back is not None else None)
    watermark = getattr(reps[0].sched, "watermark", 0.0)
    fit_blocks = total_blocks - int(watermark * total_blocks)

    def wake(rep, t):
        if rep.step is None and not rep.busy:
            rep.busy = True
            rep.version += 1
            push(t, STEP, rep.index, rep.version)
        elif rep.step is not None:
            end = rep.cut(t)
            if end is not None:
                rep.version += 1
                push(end, STEP, rep.index, rep.version)

    def assign(rep, req, t):
        req.replica = rep.index
        rep.n_assigned += 1
        rep.assigned_tokens += req.prompt + req.seen
        rep.sched.enqueue(rep, req)
        wake(rep, t)

    it = iter(requests)
    idx = [0]
    last_arrival = [0.0]

    def next_arrival():
        for r in it:
            i = idx[0]
            idx[0] += 1
            req = _as_req(i, r)
            if req.arrival < last_arrival[0]:
                raise InputError(f"requests[{i}].arrival", f"trace is not sorted by arrival ({req.arrival} after {last_arrival[0]})")
            last_arrival[0] = req.arrival
            peak = req.prompt + req.output - 1  # the last output token's KV is never written
            if -(-peak // bs) > fit_blocks:
                if config.unservable == "error":
                    raise InputError(f"requests[{i}]", f"request '{req.rid}' needs {peak} KV tokens, more than an empty replica holds ({fit_blocks * bs}); raise --kv-tokens or drop it")
                unserved.append(req.rid)
                continue
            push(req.arrival, ARRIVAL, req)
            return
        for rep in reps:  # policies that hold requests back until a threshold (WAIT) now drain
            rep.sched.arrivals_done = True
            if rep.step is not None or rep.sched.n_waiting() or rep.paused:
                wake(rep, last_arrival[0])

    next_arrival()
    now = 0.0
    route = router.route
    while heap:
        now, kind, _, a, b = heappop(heap)
        if kind == STEP:
            rep = reps[a]
            if b != rep.version:
                continue
            if rep.step is not None:
                rep.end_step(now)
            end = rep.start_step(now)
            if end is not None:
                rep.version = v = rep.version + 1
                heappush(heap, (end, STEP, next(seq), a, v))
        elif kind == ARRIVAL:
            in_flight[0] += 1
            if in_flight[0] > in_flight[1]:
                in_flight[1] = in_flight[0]
            assign(route(a, front, now), a, now)
            next_arrival()
        else:  # TRANSFER: the KV has reached the decode pool
            assign(decode_router.route(a, back, now), a, now)

    for rep in reps:  # whatever is left could never be scheduled: report, do not spin
        for req in rep.sched.waiting_list() + list(rep.prefilling) + list(rep.paused) + list(rep.swapped) + list(rep.d_req):
            if req.state != DONE:
                unserved.append(req.rid)

    data = cols.to_dict()
    makespan = float(data["finish_s"].max()) if len(data["finish_s"]) else 0.0
    rep_stats = []
    for rep in reps:
        rep_stats.append({
            "replica": rep.index, "role": rep.role, "iterations": rep.iterations, "busy_s": rep.busy_s,
            "kv_blocks": rep.total_blocks, "peak_kv_blocks": rep.peak_blocks,
            "kv_utilization": rep.kv_block_seconds / (rep.total_blocks * makespan) if makespan > 0 else 0.0,
            "preemptions": rep.preemptions,
            "cache_hit_blocks": rep.cache.hit_blocks if rep.cache else 0,
            "cache_lookup_blocks": rep.cache.lookup_blocks if rep.cache else 0,
            "cache_evictions": rep.cache.evictions if rep.cache else 0,
        })
    log = None
    if config.log_iterations:
        import pandas as pd

        cols_log = ["start_s", "end_s", "iterations", "prefill_tokens", "decode_tokens", "kv_blocks_used", "decode_seqs", "prefill_seqs"]
        frames = [pd.DataFrame(rep.log, columns=cols_log).assign(replica=rep.index) for rep in reps]
        log = pd.concat(frames, ignore_index=True) if frames else None
    cfg = {k: v for k, v in config.__dict__.items()}
    return SimResult(columns=data, replicas=rep_stats, wall_s=time.perf_counter() - t_wall, makespan_s=makespan,
                     config=cfg, unserved=unserved, max_in_flight=in_flight[1], iteration_log=log)
