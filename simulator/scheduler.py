"""The replica scheduler every batching policy builds on: continuous batching over paged KV memory.

Each iteration ``plan(replica, now)`` returns ``(chunks, decode, horizon)``: the prefill chunks
``[(req, tokens)]`` of the batch, whether the decode set runs, and how many decode-only iterations
the decision stays valid for without an event (None: until a request finishes, memory runs out or
a request arrives; the replica works those out itself).

What the knobs mean (the policies in ``simulator/sched_*.py`` set them):

``mixed``         prefill chunks and decodes share an iteration (Sarathi, vLLM V1, Orca); otherwise
                  an iteration is prefill-only when anything can be admitted, decode-only otherwise
                  (vLLM V0, prefill-first).
``chunked``       long prompts are split to fit ``token_budget`` (Sarathi-Serve, Agrawal et al.,
                  OSDI'24); otherwise a prompt goes in whole.
``token_budget``  tokens per iteration, one per decode sequence plus the chunk tokens (Vidur's
                  ``chunk_size`` counts decodes too, research/costmodel-anchors.md §1.3).
``max_batch``     sequences in the batch (vLLM ``max_num_seqs``; Vidur ``batch_size_cap`` = 128).
``watermark``     fraction of the KV blocks a new request must leave free (vLLM and Vidur: 0.01).
``preempt_mode``  ``recompute`` (vLLM's default) or ``swap``.

Preemption happens when the decode set's next step needs blocks that are not there: victims are
taken by ``victim_key`` (largest first; default the most recently admitted, vLLM's LIFO rule) and
requeued at the front of the waiting queue. The waiting order is ``order_key`` (smallest first;
default FCFS by arrival).
"""
from __future__ import annotations

import heapq
from collections import deque

from servopt.simulator.replica import DECODE, PAUSED, PREFILL


class ContinuousBatching:
    mixed = True
    chunked = True
    fcfs = True

    def __init__(self, *, token_budget: int = 512, max_batch: int = 128, watermark: float = 0.01,
                 preempt_mode: str = "recompute", **unknown):
        if unknown:
            raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
        self.token_budget = int(token_budget)
        self.max_batch = int(max_batch)
        self.watermark = float(watermark)
        self.preempt_mode = preempt_mode
        self._fifo: deque = deque()
        self._heap: list = []
        self._enq = 0

    # ---------------------------------------------------------------- waiting queue
    def order_key(self, req):
        return req.arrival

    def victim_key(self, req):
        return req.admit_seq

    def enqueue(self, rep, req) -> None:
        if self.fcfs:
            self._fifo.append(req)
        else:
            self._enq += 1
            heapq.heappush(self._heap, (self.order_key(req), self._enq, req))

    def requeue(self, rep, req) -> None:
        if self.fcfs:
            self._fifo.appendleft(req)
        else:
            self._enq += 1
            heapq.heappush(self._heap, (self.order_key(req), -self._enq, req))

    def n_waiting(self) -> int:
        return len(self._fifo) if self.fcfs else len(self._heap)

    def peek(self):
        if self.fcfs:
            return self._fifo[0] if self._fifo else None
        return self._heap[0][2] if self._heap else None

    def pop(self):
        return self._fifo.popleft() if self.fcfs else heapq.heappop(self._heap)[2]

    def waiting_list(self) -> list:
        return list(self._fifo) if self.fcfs else [e[2] for e in sorted(self._heap)]

    # ---------------------------------------------------------------- pieces
    def running(self, rep) -> int:
        return rep.n_dec + len(rep.prefilling)

    def admit(self, rep, req) -> bool:
        return rep.try_admit(req, watermark_blocks=int(self.watermark * rep.total_blocks))

    def victims(self, rep) -> list:
        return list(rep.d_req) + list(rep.prefilling)

    def ensure_growth(self, rep) -> None:
        """Preempt (largest ``victim_key`` first) until the decode set's next step fits."""
        while rep.n_dec and not rep.growth_fits():
            cands = self.victims(rep)
            if not cands:
                return
            victim = max(cands, key=self.victim_key)
            rep.preempt(victim, self.preempt_mode)

    def swap_in(self, rep) -> None:
        while rep.swapped and self.running(rep) < self.max_batch:
            if not rep.try_swap_in(rep.swapped[0]):
                return

    def fill_prefill(self, rep, budget: int) -> list:
        """Continue running prefills, then admit waiting requests while budget, batch and memory allow."""
        chunks = []
        if not rep.prefilling and not self.n_waiting():  # the common decode-boundary case
            return chunks
        for req in rep.prefilling:
            if budget <= 0:
                break
            rest = req.target - req.done_prefill
            c = min(rest, budget) if self.chunked else rest
            if c > budget and chunks:
                break
            chunks.append((req, c))
            budget -= c
        while budget > 0 and self.running(rep) < self.max_batch:
            req = self.peek()
            if req is None:
                break
            if not self.chunked and req.target > budget and (chunks or rep.n_dec):
                break
            if not self.admit(rep, req):
                break
            self.pop()
            if req.state == DECODE:  # arrived with its KV (P/D): straight into the decode set
                continue
            rest = req.target - req.done_prefill
            c = min(rest, budget) if self.chunked else rest
            chunks.append((req, c))
            budget -= c
        return chunks

    # ---------------------------------------------------------------- the iteration
    def plan(self, rep, now):
        if self.mixed:
            if rep.n_dec and not rep.growth_fits():
                self.ensure_growth(rep)
            if rep.swapped:
                self.swap_in(rep)
            chunks = self.fill_prefill(rep, self.token_budget - rep.n_dec)
            return chunks, True, None
        # prefill-first (vLLM V0): a prefill-only iteration whenever something can be admitted
        if not rep.swapped:
            chunks = self.fill_prefill(rep, self.token_budget)
            if chunks:
                return chunks, False, None
        self.ensure_growth(rep)
        self.swap_in(rep)
        return [], True, None


def reqs_in_state(rep, state) -> list:
    if state == DECODE:
        return list(rep.d_req)
    if state == PREFILL:
        return list(rep.prefilling)
    return []


class PriorityPreemptive(ContinuousBatching):
    """Each iteration the ``max_batch`` best requests by ``priority`` (smallest first) run; residents
    that fall out are paused with their KV kept, and a better waiting request that lacks memory
    preempts worse residents (``preempt_mode``). ``horizon(rep)`` bounds how many decode-only
    iterations the ranking stays valid without an event (MLFQ quanta)."""

    fcfs = False
    mixed = True
    chunked = True

    def priority(self, req):
        raise NotImplementedError

    def order_key(self, req):
        return self.priority(req)

    def victim_key(self, req):
        return self.priority(req)

    def horizon(self, rep):
        return None

    def plan(self, rep, now):
        self.before_plan(rep)
        residents = list(rep.d_req) + list(rep.prefilling) + list(rep.paused)
        for r in rep.d_req:
            r.generated = rep.sync_generated(r)
        residents.sort(key=self.priority)
        active = residents[: self.max_batch]
        for r in residents[self.max_batch:]:
            if r.state == DECODE:
                rep.pause(r)
        for r in active:
            if r.state == PAUSED:
                rep.resume(r)
        self.ensure_growth(rep)
        # waiting and swapped-out requests, best first, take the place (and, when memory is short,
        # the KV) of worse residents
        swapped = sorted(rep.swapped, key=self.priority)
        while True:
            head = self.peek()
            if swapped and (head is None or self.priority(swapped[0]) <= self.priority(head)):
                cand, from_swap = swapped[0], True
            elif head is not None:
                cand, from_swap = head, False
            else:
                break
            key = self.priority(cand)
            running = list(rep.d_req) + list(rep.prefilling)
            worst = max(running, key=self.priority) if running else None
            if len(running) >= self.max_batch:
                if worst is None or self.priority(worst) <= key:
                    break
                if worst.state == DECODE:
                    rep.pause(worst)
                else:
                    rep.preempt(worst, self.preempt_mode)
                continue
            if from_swap:
                if rep.try_swap_in(cand):
                    swapped.pop(0)
                    continue
            elif rep.try_admit(cand, watermark_blocks=int(self.watermark * rep.total_blocks)):
                self.pop()
                continue
            victims = [r for r in list(rep.paused) + running if self.priority(r) > key]
            if not victims:
                break
            rep.preempt(max(victims, key=self.priority), self.preempt_mode)
            swapped = sorted(rep.swapped, key=self.priority)
        self.ensure_growth(rep)
        budget = self.token_budget - rep.n_dec
        chunks = []
        for req in sorted(rep.prefilling, key=self.priority):
            if budget <= 0:
                break
            c = min(req.target - req.done_prefill, budget)
            chunks.append((req, c))
            budget -= c
        # while anything waits or sits outside the batch, the ranking against memory can change at
        # any step (blocks fill up), so re-plan every iteration; otherwise only events change it
        contended = self.n_waiting() or rep.swapped or rep.paused
        return chunks, True, (1 if contended else self.horizon(rep))

    def before_plan(self, rep):
        pass
