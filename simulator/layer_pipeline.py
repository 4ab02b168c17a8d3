"""Serving simulation of a layer layout: requests through pipelines of nodes over network links.

A discrete-event simulation of how Helix serves a layout (Helix, ASPLOS'25, §5 and its event
simulator as described in the paper; the code here is ours):

* **Routing.** Each request gets one path source -> v_1 -> ... -> sink when it arrives: every
  sender picks its next hop by interleaved weighted round-robin over the routing weights of the
  layout's maximum flow (Helix §5.1; "smooth" WRR: add each weight to its counter, pick the largest
  counter, subtract the total from it). The request's prefill and all its decode steps follow that
  path (its KV cache lives on those nodes).
* **Nodes.** Each node runs continuous batching: when idle, it takes everything queued (up to
  ``max_batch_tokens`` prompt tokens and ``max_batch_seqs`` sequences) as one iteration. The
  iteration time is the cost model's per-layer time times the layers the node holds:
  ``iteration_ms(batch) * k_i / L_model`` from ``costmodel.roofline`` for the node's GPU type
  (``cost="roofline"``; types A100 -> a100-40g, L4, T4, V100, "T4x4" = 4 GPUs in tensor
  parallel), or, where the type is unknown (``cost="throughput"``), a batch of b tokens takes
  ``b / T_i(k_i)`` seconds plus a fixed 5 ms per iteration.
* **Links.** A hop u -> v moves the batch's activations: each link is a FIFO server of
  ``tokens_per_s`` (the instance's capacity) plus a propagation latency (per link from
  ``reference.link_latency_ms``, else ``default_latency_ms``).
* **Tokens.** A request's prefill goes through its path; the first token appears when it reaches
  the sink (TTFT). Each later token is one decode step through the whole path again (the token
  goes back to the first node over the sink -> source return, modelled as one more hop with the
  source link's latency). TPOT = (finish - first token) / (output tokens - 1).

Reports decode throughput (output tokens / time from first arrival to last finish), TTFT and TPOT
(mean, p50, p90, p99) and per-node utilisation.
"""
from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass, field

from servopt.instances.layer_placement import SINK, SOURCE, LayerPlacementInstance, Layout

GPU_NAMES = {"a100": ("a100-40g", 1), "l4": ("l4", 1), "t4": ("t4", 1), "v100": ("v100", 1), "h100": ("h100-sxm", 1),
             "a10g": ("a10g", 1), "l40s": ("l40s", 1)}


@dataclass(frozen=True)
class Workload:
    """``num_requests`` requests of ``prompt_tokens`` / ``output_tokens``; Poisson arrivals at
    ``rate_per_s`` (0: all arrive at time 0, an offline batch as in Helix's offline runs)."""

    num_requests: int = 200
    prompt_tokens: int = 512
    output_tokens: int = 64
    rate_per_s: float = 0.0
    seed: int = 0


@dataclass
class PipelineSimResult:
    decode_throughput_tokens_per_s: float
    ttft_ms: dict
    tpot_ms: dict
    makespan_s: float
    completed: int
    num_paths: int
    mean_path_nodes: float
    node_utilization: dict = field(default_factory=dict)
    cost: str = "roofline"

    def to_dict(self) -> dict:
        return {"decode_throughput_tokens_per_s": self.decode_throughput_tokens_per_s, "ttft_ms": self.ttft_ms,
                "tpot_ms": self.tpot_ms, "makespan_s": self.makespan_s, "completed": self.completed,
                "num_paths": self.num_paths, "mean_path_nodes": self.mean_path_nodes,
                "node_utilization": self.node_utilization, "cost": self.cost}

    def to_dataframe(self):
        import pandas as pd

        return pd.DataFrame([{"node": k, "utilization": v} for k, v in sorted(self.node_utilization.items())])


class _SmoothWRR:
    def __init__(self, weights: dict):
        self.weights = {k: float(v) for k, v in weights.items() if v > 0}
        self.total = sum(self.weights.values())
        self.current = {k: 0.0 for k in self.weights}

    def pick(self):
        for k, w in self.weights.items():
            self.current[k] += w
        best = max(self.current, key=lambda k: (self.current[k], k))
        self.current[best] -= self.total
        return best


def _stats(values: list[float]) -> dict:
    if not values:
        return {"mean": None, "p50": None, "p90": None, "p99": None}
    v = sorted(values)

    def q(p):
        return v[min(len(v) - 1, int(math.ceil(p * len(v))) - 1)]

    return {"mean": sum(v) / len(v), "p50": q(0.5), "p90": q(0.9), "p99": q(0.99)}


def _node_timer(instance: LayerPlacementInstance, layout: Layout, llm: str, cost: str):
    """node id -> f(prefill_tokens, decode_seqs, mean_context) -> seconds for one iteration."""
    timers = {}
    models = {}
    if cost == "roofline":
        from servopt.costmodel.roofline import make_cost_model
        from servopt.instances.catalog import get_llm

        model_layers = get_llm(llm).num_layers
    for n in instance.nodes:
        s, e = layout.ranges[n.id]
        k = e - s
        key = n.type.lower()
        tp = 1
        if "x" in key and key.rsplit("x", 1)[1].isdigit():
            key, tp = key.rsplit("x", 1)[0], int(key.rsplit("x", 1)[1])
        if cost == "roofline" and key in GPU_NAMES:
            if (key, tp) not in models:
                models[(key, tp)] = make_cost_model(llm, GPU_NAMES[key][0], tp=tp)
            cm = models[(key, tp)]
            share = k / model_layers

            def f(p, d, ctx, cm=cm, share=share):
                ms = cm.iteration_ms_totals(prefill_tokens=p, prefill_attention_pairs=p * (p + 1) / 2,
                                            decode_seqs=d, decode_context_tokens=d * ctx, sampled_seqs=0)
                return ms * share / 1000.0
        else:
            thr = n.throughput(k)

            def f(p, d, ctx, thr=thr):
                return 0.005 + (p + d) / thr
        timers[n.id] = f
    return timers


def simulate_layout(instance: LayerPlacementInstance, layout: Layout, routing_weights: dict, *,
                    workload: Workload = Workload(), llm: str = "llama-2-70b", cost: str = "roofline",
                    activation_bytes_per_token: float | None = None, default_latency_ms: float = 1.0,
                    max_batch_tokens: int = 4096, max_batch_seqs: int = 256) -> PipelineSimResult:
    """Run ``workload`` through ``layout`` (see the module docstring)."""
    rng = random.Random(workload.seed)
    latency = (instance.reference or {}).get("link_latency_ms", {}) if isinstance(instance.reference, dict) else {}
    caps = instance.link_capacity()
    timers = _node_timer(instance, layout, llm, cost)
    wrr = {u: _SmoothWRR(w) for u, w in routing_weights.items()}
    if SOURCE not in wrr or not wrr[SOURCE].weights:
        raise ValueError("the layout carries no flow: nothing to route")

    def route():
        path, u = [], SOURCE
        while True:
            v = wrr[u].pick()
            if v == SINK:
                return path
            path.append(v)
            u = v
            if len(path) > len(instance.nodes):
                raise ValueError("routing weights form a cycle")

    def hop_time(u, v, tokens):
        cap = caps.get((u, v))
        lat = latency.get(f"{u}->{v}", default_latency_ms) / 1000.0
        return lat, (tokens / cap if cap else 0.0)

    # request state
    W = workload
    t_arr = []
    t = 0.0
    for _ in range(W.num_requests):
        if W.rate_per_s > 0:
            t += rng.expovariate(W.rate_per_s)
        t_arr.append(t)
    paths = [route() for _ in range(W.num_requests)]
    first_token = [None] * W.num_requests
    finish = [None] * W.num_requests
    produced = [0] * W.num_requests
    events = []  # (time, seq, kind, payload)
    seq = 0

    def push(time_s, kind, payload):
        nonlocal seq
        seq += 1
        heapq.heappush(events, (time_s, seq, kind, payload))

    link_free: dict = {}

    def send(now, u, v, item):
        # FIFO link: transmission after the link is free, then propagation
        lat, tx = hop_time(u, v, item["tokens"])
        start = max(now, link_free.get((u, v), 0.0))
        link_free[(u, v)] = start + tx
        push(start + tx + lat, "arrive", (v, item))

    queues = {n.id: [] for n in instance.nodes}
    busy = {n.id: False for n in instance.nodes}
    busy_time = {n.id: 0.0 for n in instance.nodes}

    def start_iteration(now, nid):
        q = queues[nid]
        if busy[nid] or not q:
            return
        batch, p_tok, d_seq = [], 0, 0
        rest = []
        for item in q:
            if len(batch) >= max_batch_seqs or (item["tokens"] > 1 and p_tok + item["tokens"] > max_batch_tokens and batch):
                rest.append(item)
                continue
            batch.append(item)
            if item["tokens"] > 1:
                p_tok += item["tokens"]
            else:
                d_seq += 1
        queues[nid] = rest
        ctx = sum(it["context"] for it in batch if it["tokens"] == 1) / max(d_seq, 1)
        dt = timers[nid](p_tok, d_seq, ctx)
        busy[nid] = True
        busy_time[nid] += dt
        push(now + dt, "done", (nid, batch))

    for r in range(W.num_requests):
        push(t_arr[r], "inject", {"req": r, "hop": 0, "tokens": W.prompt_tokens, "context": 0})
    now = 0.0
    while events:
        now, _, kind, payload = heapq.heappop(events)
        if kind == "inject":
            item = payload
            send(now, SOURCE, paths[item["req"]][0], item)
        elif kind == "arrive":
            nid, item = payload
            if nid == SINK:
                r = item["req"]
                produced[r] += 1
                if first_token[r] is None:
                    first_token[r] = now
                if produced[r] >= W.output_tokens:
                    finish[r] = now
                    continue
                nxt = {"req": r, "hop": 0, "tokens": 1, "context": W.prompt_tokens + produced[r]}
                # the new token goes back to the first node (sink -> source return: the source link's latency)
                lat, _ = hop_time(SOURCE, paths[r][0], 1)
                push(now + lat, "inject", nxt)
                continue
            queues[nid].append(item)
            start_iteration(now, nid)
        else:  # done
            nid, batch = payload
            busy[nid] = False
            for item in batch:
                path = paths[item["req"]]
                h = item["hop"]
                nxt = path[h + 1] if h + 1 < len(path) else SINK
                send(now, nid, nxt, {**item, "hop": h + 1})
            start_iteration(now, nid)
    done = [r for r in range(W.num_requests) if finish[r] is not None]
    t0 = min(t_arr) if t_arr else 0.0
    makespan = max((finish[r] for r in done), default=0.0) - t0
    tokens = sum(produced)
    ttft = [(first_token[r] - t_arr[r]) * 1000 for r in done]
    tpot = [(finish[r] - first_token[r]) * 1000 / (W.output_tokens - 1) for r in done if W.output_tokens > 1]
    distinct = {tuple(p) for p in paths}
    return PipelineSimResult(
        decode_throughput_tokens_per_s=tokens / makespan if makespan > 0 else 0.0,
        ttft_ms=_stats(ttft), tpot_ms=_stats(tpot), makespan_s=makespan, completed=len(done),
        num_paths=len(distinct), mean_path_nodes=sum(len(p) for p in paths) / max(len(paths), 1),
        node_utilization={k: (v / makespan if makespan > 0 else 0.0) for k, v in busy_time.items() if v > 0},
        cost=cost)
