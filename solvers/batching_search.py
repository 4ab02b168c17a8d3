"""Exhaustive search over batch sequences for tiny ``batching`` instances: the exact reference.

Enumerates every sequence of non-empty iterations (every participant set, every chunk size
1..min(remaining, B), every decode choice) that obeys the budget, batch, memory and continuous
rules of ``servopt.instances.batching``, so it needs no horizon and shares no code with the MILP
(``models/batching.py``).

* total_latency / makespan: times are the earliest ones (a later start never lowers either
  objective), so a depth-first branch-and-bound with two safe prunings finds the optimum:
  (1) a lower bound: every unfinished request still needs ``ceil(rem_prompt / B) + rem_decodes``
  iterations of its own, each at least ``fixed`` plus its own token and context costs, starting
  no earlier than ``max(E_prev, a_i)``; (2) dominance: two partial sequences that reach the same
  progress vector, one with an earlier or equal end and lower or equal cost so far, the later
  one cannot do better (the rest of the problem only depends on the progress and on E_prev,
  monotonically).
* goodput: every complete sequence is timed with ``best_timing`` (the least ends meeting the
  largest SLO set, over all subsets). Pruning uses only what idling cannot undo: a request whose
  first token is (or must be, at the least times) later than ``a_i + ttft`` is lost, which bounds
  the goodput still reachable; at equal goodput, the total latency at the least times plus the
  bound of (1) must beat the incumbent's.

``max_nodes`` and ``deadline`` bound the work; exceeding either raises ``SearchTooLarge`` (never a
silent answer), which carries the best batch sequence found so far (an incumbent, not a proof).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import product

from servopt.instances.batching import BatchingInstance, BatchSchedule, best_timing, timed_schedule


class SearchTooLarge(RuntimeError):
    """The search stopped early; ``best`` is the best complete batch sequence it had (or None)."""

    def __init__(self, message: str, best=None):
        super().__init__(message)
        self.best = best


@dataclass(frozen=True)
class SearchResult:
    schedule: BatchSchedule
    objective: float
    nodes: int


def _own_remaining_ms(inst: BatchingInstance, i: int, pre: int, dec: int) -> float:
    r = inst.requests[i]
    it = inst.iteration
    rem_p = r.prompt_tokens - pre
    rem_d = r.output_tokens - 1 - dec
    iters = math.ceil(rem_p / inst.token_budget) + rem_d
    ctx = sum(r.prompt_tokens + j for j in range(dec, r.output_tokens - 1))
    return iters * it.fixed_ms + it.per_prefill_token_ms * rem_p + it.per_decode_token_ms * rem_d + it.per_context_token_ms * ctx


class _RemainingTable:
    """Per request and progress (pre, dec): (own iterations left, tokens left, variable work left),
    computed in closed form on first use and kept (the search asks for the same ones again and again)."""

    def __init__(self, inst: BatchingInstance):
        self.inst = inst
        self.memo: dict = {}

    def get(self, i: int, pre: int, dec: int):
        key = (i, pre, dec)
        hit = self.memo.get(key)
        if hit is None:
            inst = self.inst
            it = inst.iteration
            r = inst.requests[i]
            rem_p = r.prompt_tokens - pre
            rem_d = max(0, r.output_tokens - 1 - dec)
            # contexts of the remaining decodes: sum_{j = dec}^{o - 2} (P + j)
            ctx = rem_d * r.prompt_tokens + rem_d * (dec + r.output_tokens - 2) / 2
            w = it.per_prefill_token_ms * rem_p + it.per_decode_token_ms * rem_d + it.per_context_token_ms * ctx
            hit = (math.ceil(rem_p / inst.token_budget) + rem_d, rem_p + rem_d, w)
            self.memo[key] = hit
        return hit


def _remaining_tables(inst: BatchingInstance) -> _RemainingTable:
    return _RemainingTable(inst)


def _remaining_bound(inst: BatchingInstance, pre, dec, finished, e_prev: float, makespan: bool, tables=None) -> float:
    """A lower bound on what the unfinished requests still add (module docstring, pruning (1)).

    Per request: ``C_i >= max(E_prev, a_i) + own_i``. Jointly: the j-th of them to finish does so
    no earlier than ``E_prev`` plus ``fixed`` times the iterations needed (at least the j-th smallest
    own iteration count, the j smallest token counts over B, and the j smallest own iteration
    counts over S, each iteration holding at most S participants) plus the j smallest
    variable works; the j-th smallest completion is also at least the j-th smallest own bound.
    For makespan only the largest of these matters.
    """
    fixed = inst.iteration.fixed_ms
    B = inst.token_budget
    tables = tables or _remaining_tables(inst)
    reqs = inst.requests
    own, iters, tokens, works = [], [], [], []
    arrivals = 0.0
    for i in range(inst.n):
        if finished[i]:
            continue
        m, tok, w = tables.get(i, pre[i], dec[i])
        a = reqs[i].arrival_ms
        arrivals += a
        own.append((e_prev if e_prev > a else a) + m * fixed + w)
        iters.append(m)
        tokens.append(tok)
        works.append(w)
    if not own:
        return 0.0
    own.sort()
    iters.sort()
    tokens.sort()
    works.sort()
    S = inst.batch_limit
    total = 0.0
    cum_tok = cum_it = 0
    cum_w = 0.0
    last = 0.0
    for j in range(len(own)):
        cum_tok += tokens[j]
        cum_it += iters[j]
        cum_w += works[j]
        need = -(-cum_tok // B)
        by_slots = -(-cum_it // S)
        if by_slots > need:
            need = by_slots
        if iters[j] > need:
            need = iters[j]
        joint = e_prev + fixed * need + cum_w
        last = joint if joint > own[j] else own[j]
        total += last
    if makespan:
        return max(last, own[-1])
    return total - arrivals


def _options(inst: BatchingInstance, i: int, pre: int, dec: int):
    r = inst.requests[i]
    opts = []  # taking part first: full batches reach good incumbents and dominating states early
    if pre < r.prompt_tokens:
        opts += [("p", c) for c in range(min(r.prompt_tokens - pre, inst.token_budget), 0, -1)]
    elif dec < r.output_tokens - 1:
        opts.append(("d", 1))
    return opts + [None]


def _batches(inst: BatchingInstance, pre, dec, finished):
    """All admissible non-empty batches from a progress state."""
    n = inst.n
    B, S, M = inst.token_budget, inst.batch_limit, inst.memory_limit
    reqs = inst.requests
    per = []
    for i in range(n):
        if finished[i]:
            per.append([None])
            continue
        opts = _options(inst, i, pre[i], dec[i])
        if inst.continuous and pre[i] > 0:
            opts = [o for o in opts if o is not None]
        per.append(opts)
    for combo in product(*per):
        tokens = 0
        count = 0
        for o in combo:
            if o is not None:
                tokens += o[1]
                count += 1
        if count == 0 or tokens > B or count > S:
            continue
        mem = 0
        for i in range(n):
            if finished[i]:
                continue
            p = pre[i] + (combo[i][1] if combo[i] and combo[i][0] == "p" else 0)
            d = dec[i] + (1 if combo[i] and combo[i][0] == "d" else 0)
            if p > 0:
                mem += p + d
        if mem > M:
            continue
        yield tuple((i, o[0], o[1]) for i, o in enumerate(combo) if o is not None), reqs


def exhaustive(instance: BatchingInstance, *, max_nodes: int = 2_000_000, deadline: float | None = None,
               incumbent: BatchSchedule | None = None) -> SearchResult:
    """The optimum by exhaustive search (module docstring); ``deadline`` is a ``time.perf_counter()`` value.

    ``incumbent`` (total_latency / makespan): a known schedule whose value prunes from the start; it
    is returned when nothing beats it.
    """
    import time

    inst = instance
    n = inst.n
    reqs = inst.requests
    it = inst.iteration
    goodput = inst.objective == "goodput"
    makespan = inst.objective == "makespan"
    best = {"value": math.inf, "key": None, "batches": None}
    if incumbent is not None and not goodput:
        best["value"], best["batches"] = incumbent.objective_value(inst) + 1e-9, list(incumbent.batches)
    if incumbent is not None and goodput:
        best["key"] = (-incumbent.objective_value(inst), incumbent.total_latency_ms(inst))
        best["batches"], best["sched"] = list(incumbent.batches), incumbent
    ttft = inst.slo_ttft_ms
    B = inst.token_budget

    def ttft_lost(pre, first_end, e_prev) -> int:
        """Requests that can no longer meet the TTFT SLO: times here are the least possible ones
        (idling only delays), so a first token already too late, or one that cannot come in time
        even if the rest of its prompt ran alone from now, is lost for good."""
        if ttft is None:
            return 0
        lost = 0
        for i, r in enumerate(reqs):
            if first_end[i] is not None:
                lost += first_end[i] - r.arrival_ms > ttft + 1e-9
            else:
                rem = r.prompt_tokens - pre[i]
                earliest = max(e_prev, r.arrival_ms) + math.ceil(rem / B) * it.fixed_ms + it.per_prefill_token_ms * rem
                lost += earliest - r.arrival_ms > ttft + 1e-9
        return lost
    nodes = 0
    seen: dict[tuple, list[tuple[float, float]]] = {}
    tables = _remaining_tables(inst)

    def advance(pre, dec, kv, finished, batch):
        pre, dec, kv, finished = list(pre), list(dec), list(kv), list(finished)
        events = []
        for i, kind, tok in batch:
            r = reqs[i]
            if kind == "p":
                pre[i] += tok
                kv[i] += tok
                if pre[i] == r.prompt_tokens and r.output_tokens == 1:
                    finished[i] = True
                    events.append(i)
            else:
                dec[i] += 1
                kv[i] += 1
                if dec[i] == r.output_tokens - 1:
                    finished[i] = True
                    events.append(i)
        return pre, dec, kv, finished, events

    def dfs(pre, dec, kv, finished, e_prev, cost, seq, first_end):
        nonlocal nodes
        nodes += 1
        if nodes > max_nodes:
            raise SearchTooLarge(f"more than {max_nodes} search nodes", best.get("batches"))
        if deadline is not None and nodes % 512 == 0 and time.perf_counter() > deadline:
            raise SearchTooLarge(f"deadline reached after {nodes} search nodes", best.get("batches"))
        if goodput and best["key"] is not None:
            # prune: at most n - lost requests can meet the SLOs; at equal goodput, total latency
            # at the least times plus the order-statistic bound cannot beat the incumbent's
            upper = n - ttft_lost(pre, first_end, e_prev)
            if upper < -best["key"][0]:
                return
            if upper == -best["key"][0]:
                rest = _remaining_bound(inst, pre, dec, finished, e_prev, False, tables) if not all(finished) else 0.0
                if cost + rest >= best["key"][1] - 1e-9:
                    return
        if all(finished):
            if goodput:
                sched = best_timing(inst, seq)
                key = (-sched.objective_value(inst), sched.total_latency_ms(inst))
                if best["key"] is None or key < best["key"]:
                    best["key"], best["batches"], best["sched"] = key, list(seq), sched
            elif cost < best["value"] - 1e-9:
                best["value"], best["batches"] = cost, list(seq)
            return
        if not goodput:
            state = (tuple(pre), tuple(dec))
            kept = seen.setdefault(state, [])
            for e, c in kept:
                if e <= e_prev + 1e-12 and c <= cost + 1e-12:
                    return
            kept[:] = [(e, c) for e, c in kept if not (e_prev <= e and cost <= c)]
            kept.append((e_prev, cost))
            rest = _remaining_bound(inst, pre, dec, finished, e_prev, makespan, tables)
            lb = max(cost, rest) if makespan else cost + rest
            if lb >= best["value"] - 1e-9:
                return
        for batch, _ in _batches(inst, pre, dec, finished):
            start = max([e_prev] + [reqs[i].arrival_ms for i, _, _ in batch])
            ctx = sum(kv[i] for i, kind, _ in batch if kind == "d")
            chunks = sum(tok for _, kind, tok in batch if kind == "p")
            decs = sum(1 for _, kind, _ in batch if kind == "d")
            end = start + it.ms(chunks, decs, ctx)
            pre2, dec2, kv2, fin2, events = advance(pre, dec, kv, finished, batch)
            if makespan:
                cost2 = max([cost] + [end for _ in events])
            else:
                cost2 = cost + sum(end - reqs[i].arrival_ms for i in events)
            first2 = first_end
            if goodput:
                first2 = list(first_end)
                for i, kind, _ in batch:
                    if kind == "p" and pre2[i] == reqs[i].prompt_tokens:
                        first2[i] = end
            seq.append(batch)
            dfs(pre2, dec2, kv2, fin2, end, cost2, seq, first2)
            seq.pop()

    dfs([0] * n, [0] * n, [0] * n, [False] * n, 0.0, 0.0, [], [None] * n)
    if goodput:
        sched = best["sched"]
    else:
        sched = timed_schedule(inst, best["batches"], method="exhaustive")
    sched = BatchSchedule(sched.starts_ms, sched.ends_ms, sched.batches, sched.requests, "exhaustive", {"nodes": nodes})
    return SearchResult(sched, sched.objective_value(inst), nodes)
