"""One replica: an LLM on one GPU group with paged KV memory, stepping batch by batch or skipping ahead.

State of a request (``Req``) on a replica: WAITING (no KV), PREFILL (KV blocks for its prompt held,
chunks being computed), DECODE (in the decode set: one token per decode iteration), PAUSED (KV kept,
not in the batch: FastServe, SRPT, WAIT), SWAPPED (KV in host memory). Token accounting follows
vLLM and Vidur: the iteration that completes a prompt emits the first output token (TTFT), each
decode iteration one more; after ``g`` output tokens the KV holds ``prompt + g - 1`` tokens.
Preemption by recompute (vLLM's default) frees the KV and later re-prefills ``prompt + g`` tokens,
which emits token ``g + 1``; by restart (the round model of Jaillet et al. and Ao et al.) it loses
its output too and starts over; by swap it copies the KV to host memory over PCIe and back, each copy
stalling the replica for ``tokens * kv_bytes_per_token / pcie_bandwidth`` (vLLM V0 swap mode).

The decode set is kept in aggregate so that a stretch of decode-only iterations with an unchanged
batch is advanced in one step: with ``G`` the replica's decode-step counter and ``base_i`` a
request's private KV tokens minus ``G`` at the time it joined, request i holds ``base_i + G`` tokens
(sums of ``base_i`` give the contexts; counts of ``base_i mod block_size`` give the block growth);
the stretch ends at the first of (a) a request finishing (a heap on the step it finishes), (b) the
first step whose KV blocks ``sum_i ceil((base_i + G + k) / block_size)`` would not fit (solved
exactly: for ``k = q * block_size + r`` the sum is ``n * q + S(r)``), (c) a horizon the scheduler
gives (MLFQ quanta, segment boundaries), (d) an arrival routed here, which cuts the stretch at the
first iteration boundary after it.
"""
from __future__ import annotations

import heapq
from collections import deque

import numpy as np

WAITING, PREFILL, DECODE, PAUSED, SWAPPED, DONE = range(6)
MAX_STRETCH = 1 << 15
_accumulate = np.add.accumulate  # = np.cumsum without its Python wrapper


class Req:
    """Mutable per-request simulation state (the input request is a frozen ``Request``)."""

    __slots__ = ("idx", "rid", "arrival", "prompt", "output", "seen", "lo", "hi", "prefix", "weight",
                 "target", "done_prefill", "generated", "shared", "shared_tokens", "priv_blocks", "state",
                 "first_s", "finish_s", "preemptions", "swaps", "admit_seq", "slot", "g_join", "gen_join",
                 "fin_g", "epoch", "replica", "level", "level_start", "cached_tokens", "aux", "prefill_replica",
                 "transfer_s", "enq_seq", "aux_base")

    def __init__(self, idx, rid, arrival, prompt, output, seen=None, lo=None, hi=None, prefix=(), weight=1.0):
        self.idx = idx
        self.rid = rid
        self.arrival = arrival
        self.prompt = prompt
        self.output = output
        self.seen = output if seen is None else seen
        self.lo = lo if lo is not None else self.seen
        self.hi = hi if hi is not None else self.seen
        self.prefix = prefix
        self.weight = weight
        self.target = prompt
        self.done_prefill = 0
        self.generated = 0
        self.shared = ()
        self.shared_tokens = 0
        self.priv_blocks = 0
        self.state = WAITING
        self.first_s = None
        self.finish_s = None
        self.preemptions = 0
        self.swaps = 0
        self.admit_seq = 0
        self.slot = -1
        self.g_join = 0
        self.gen_join = 0
        self.fin_g = 0
        self.epoch = 0
        self.replica = -1
        self.level = 0
        self.level_start = 0
        self.cached_tokens = 0
        self.aux = None
        self.prefill_replica = -1
        self.transfer_s = 0.0
        self.enq_seq = 0
        self.aux_base = 0  # private KV tokens minus the replica's decode step at joining

    @property
    def kv_tokens(self) -> int:
        """Tokens in the KV cache once the prompt is in (prompt + generated - 1)."""
        return self.prompt + self.generated - 1 if self.generated else self.done_prefill


class Replica:
    def __init__(self, index, *, total_blocks: int, block_size: int, timer, scheduler, cache=None,
                 swap_s_per_token: float = 0.0, role: str = "both", on_finish=None, on_handoff=None,
                 log_iterations: bool = False, skip_ahead: bool = True):
        self.index = index
        self.total_blocks = int(total_blocks)
        self.bs = int(block_size)
        self.timer = timer
        self.sched = scheduler
        self.cache = cache
        self.swap_s_per_token = swap_s_per_token
        self.role = role
        self.on_finish = on_finish
        self.on_handoff = on_handoff
        self.prefilling: list[Req] = []
        self.paused: list[Req] = []
        self.swapped: deque[Req] = deque()
        self._res_count = [0] * self.bs  # decode members by (private KV - G) mod block size
        self._dec_blocks = 0
        self.d_req: list[Req] = []
        self.n_dec = 0
        self.sum_base = 0
        self.sum_shared = 0
        self.G = 0
        self.fin_heap: list = []
        self.dec_version = 0
        self.other_blocks = 0  # private blocks of PREFILL and PAUSED requests
        self.stall_s = 0.0
        self.step = None
        self.busy = False
        self.now = 0.0
        self.seq = 0
        self.version = 0
        # statistics
        self.n_assigned = 0
        self.assigned_tokens = 0
        self.iterations = 0
        self.busy_s = 0.0
        self.kv_block_seconds = 0.0
        self.peak_blocks = 0
        self.preemptions = 0
        self.log = [] if log_iterations else None
        self.skip_ahead = skip_ahead
        self._chunk_stretch = skip_ahead and bool(getattr(scheduler, "chunk_stretch", False))

    # ---------------------------------------------------------------- memory
    def decode_blocks(self) -> int:
        """KV blocks the decode set holds at the current step (kept up to date incrementally)."""
        return self._dec_blocks

    def used_blocks(self) -> int:
        cache = self.cache.blocks if self.cache else 0
        return self.other_blocks + self.decode_blocks() + cache

    def free_blocks(self) -> int:
        return self.total_blocks - self.used_blocks()

    def available_blocks(self) -> int:
        """Free blocks plus cached blocks no running request pins (evicted on demand)."""
        return self.free_blocks() + (self.cache.evictable_blocks if self.cache else 0)

    def _make_room(self, blocks: int) -> None:
        short = blocks - self.free_blocks()
        if short > 0 and self.cache:
            self.cache.evict(short)

    def decode_growth_blocks(self) -> int:
        """New blocks the decode set needs for its next step: members whose KV sits on a block
        boundary, i.e. with ``base + G = 0 (mod block_size)`` (a count per residue class)."""
        return self._res_count[-self.G % self.bs]

    def _growth_over(self, k: int) -> int:
        """Blocks the decode set gains over its next ``k`` steps."""
        bs, cnt, g = self.bs, self._res_count, self.G
        s = -g % bs
        if k == 1:
            return cnt[s]
        q, r = divmod(k, bs)
        # residues s, s-1, ..., s-r+1 (mod bs): one or two slices of the count list
        lo = s - r + 1
        part = sum(cnt[lo:s + 1]) if lo >= 0 else sum(cnt[:s + 1]) + sum(cnt[lo + bs:])
        return q * self.n_dec + part

    def _advance(self, k: int) -> None:
        self._dec_blocks += self._growth_over(k)
        self.G += k

    def growth_fits(self) -> bool:
        """Whether the decode set's next step fits (cheap when at least one block per sequence is free)."""
        avail = self.total_blocks - self.other_blocks - self._dec_blocks
        cache = self.cache
        if cache:
            avail -= cache.blocks - cache.evictable_blocks
        return avail >= self.n_dec or self._res_count[-self.G % self.bs] <= avail

    def blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.bs)

    # ---------------------------------------------------------------- decode set
    def _dec_add(self, req: Req) -> None:
        priv = req.kv_tokens - req.shared_tokens
        base = priv - self.G
        req.aux_base = base
        self._res_count[base % self.bs] += 1
        self._dec_blocks += -(-priv // self.bs)
        self.dec_version += 1
        req.slot = self.n_dec
        self.d_req.append(req)
        self.n_dec += 1
        self.sum_base += base
        self.sum_shared += req.shared_tokens
        req.g_join = self.G
        req.gen_join = req.generated
        req.epoch += 1
        req.fin_g = self.G + (req.output - req.generated)
        req.state = DECODE
        heapq.heappush(self.fin_heap, (req.fin_g, req.epoch, req.admit_seq, req))

    def _dec_remove(self, req: Req) -> None:
        req.generated = req.gen_join + (self.G - req.g_join)
        i = req.slot
        last = self.n_dec - 1
        base = req.aux_base
        if i != last:
            moved = self.d_req[last]
            self.d_req[i] = moved
            moved.slot = i
        self.d_req.pop()
        self.dec_version += 1
        self._res_count[base % self.bs] -= 1
        self._dec_blocks -= -(-(base + self.G) // self.bs)
        self.n_dec -= 1
        self.sum_base -= base
        self.sum_shared -= req.shared_tokens
        req.slot = -1
        req.epoch += 1

    def sync_generated(self, req: Req) -> int:
        if req.state == DECODE:
            return req.gen_join + (self.G - req.g_join)
        return req.generated

    def decode_context_tokens(self) -> int:
        """Tokens the decode set attends in its next step (KV held plus the new token)."""
        return self.sum_base + self.n_dec * (self.G + 1) + self.sum_shared

    # ---------------------------------------------------------------- transitions
    def try_admit(self, req: Req, *, watermark_blocks: int = 0, reserve_blocks: int | None = None) -> bool:
        """Allocate KV for ``req``'s (re)prefill, reusing cached prefix blocks; False if it does not fit."""
        hit = 0
        T = self.cache.block_tokens if self.cache else 0
        if self.cache and req.prefix and req.generated == 0 and req.done_prefill < req.target:
            limit = min(len(req.prefix), (req.target - 1) // T)
            hit = self.cache.match(req.prefix, limit)
        cached_tokens = hit * T
        if req.done_prefill >= req.target:  # KV arrives from elsewhere (P/D): all of it is private
            need = self.blocks_for(req.kv_tokens)
            watermark_blocks += self.blocks_for(req.kv_tokens + 1) - need  # and its next token
        else:
            need = self.blocks_for(req.target - cached_tokens)
        want = need if reserve_blocks is None else max(need, reserve_blocks)
        avail = self.available_blocks()
        if hit:  # hit blocks that were evictable stop being so once pinned
            avail -= sum(self.cache.kv_blocks_per_entry for k in req.prefix[:hit] if self.cache.entries[k].refs == 0)
        if want + watermark_blocks > avail:
            return False
        if hit:
            keys = req.prefix[:hit]
            self.cache.pin(keys, req.idx)
            req.shared = tuple(keys)
            req.shared_tokens = cached_tokens
            req.cached_tokens = max(req.cached_tokens, cached_tokens)
            req.done_prefill = cached_tokens
        self._make_room(need)
        self.seq += 1
        req.admit_seq = self.seq
        req.priv_blocks = need
        if req.done_prefill >= req.target:
            self._dec_add(req)
            return True
        self.other_blocks += need
        req.state = PREFILL
        self.prefilling.append(req)
        return True

    def _prefill_complete(self, req: Req, now: float) -> None:
        self.prefilling.remove(req)
        self.other_blocks -= req.priv_blocks
        req.generated += 1
        if req.first_s is None:
            req.first_s = now
        if self.cache and req.prefix and req.generated == 1:
            full = min(len(req.prefix), req.prompt // self.cache.block_tokens)
            start = len(req.shared)
            if full > start:
                new = req.prefix[start:full]
                added = self.cache.insert_pinned(new, start, req.idx)
                # only an unbroken run of newly inserted blocks moves from private KV into the cache
                run = 0
                for k in new:
                    if k in added:
                        run += 1
                    else:
                        break
                if run:
                    req.shared = tuple(req.prefix[: start + run])
                    req.shared_tokens = len(req.shared) * self.cache.block_tokens
                for k in added[run:]:
                    self.cache.unpin([k])  # a later block whose parent was already cached: keep, unpinned
        if req.generated >= req.output:
            self._release(req)
            self._done(req, now)
            return
        if self.role == "prefill":
            self._release(req)
            req.state = WAITING
            req.done_prefill = req.target
            self.n_assigned -= 1
            self.assigned_tokens -= req.prompt + req.seen
            self.on_handoff(req, self, now)
            return
        self._dec_add(req)

    def _release(self, req: Req) -> None:
        """Drop the request's KV (private blocks freed, shared prefix blocks unpinned)."""
        if self.cache and req.shared:
            self.cache.unpin(req.shared)
        req.shared = ()
        req.shared_tokens = 0
        req.priv_blocks = 0

    def _done(self, req: Req, now: float) -> None:
        req.state = DONE
        req.finish_s = now
        self.n_assigned -= 1
        self.assigned_tokens -= req.prompt + req.seen
        self.on_finish(req, self)

    def remove_running(self, req: Req) -> None:
        """Take a resident request out of whatever set holds it (its KV stays allocated)."""
        if req.state == DECODE:
            self._dec_remove(req)
            self.other_blocks += self.blocks_for(req.kv_tokens - req.shared_tokens)
        elif req.state == PREFILL:
            self.prefilling.remove(req)
        elif req.state == PAUSED:
            self.paused.remove(req)
        req.state = PAUSED

    def preempt(self, req: Req, mode: str = "recompute") -> None:
        """Evict a resident request: recompute (KV dropped, re-prefilled later), restart, or swap to host."""
        was_prefill = req.state == PREFILL
        self.remove_running(req)  # syncs the output count; its blocks are now in other_blocks
        priv = req.priv_blocks if was_prefill else self.blocks_for(req.kv_tokens - req.shared_tokens)
        self.other_blocks -= priv
        req.preemptions += 1
        self.preemptions += 1
        if mode == "swap" and req.generated > 0:
            tokens = req.kv_tokens
            self._release(req)
            self.stall_s += tokens * self.swap_s_per_token
            req.swaps += 1
            req.state = SWAPPED
            self.swapped.append(req)
            return
        self._release(req)
        if mode == "restart":  # the round model's preemption: all output is lost and redone
            req.generated = 0
        req.target = req.prompt + req.generated
        req.done_prefill = 0
        req.state = WAITING
        self.sched.requeue(self, req)

    def try_swap_in(self, req: Req) -> bool:
        need = self.blocks_for(req.kv_tokens)
        if self.blocks_for(req.kv_tokens + 1) > self.available_blocks():  # room for its next token too
            return False
        self._make_room(need)
        self.swapped.remove(req)
        self.stall_s += req.kv_tokens * self.swap_s_per_token
        self._dec_add(req)
        return True

    def pause(self, req: Req) -> None:
        if req.state == DECODE:
            self.remove_running(req)
            self.paused.append(req)

    def resume(self, req: Req) -> None:
        if req.state == PAUSED:
            self.paused.remove(req)
            self.other_blocks -= self.blocks_for(req.kv_tokens - req.shared_tokens)
            self._dec_add(req)

    # ---------------------------------------------------------------- stepping
    def _mem_steps(self, horizon: int) -> int:
        """Largest k <= horizon such that decode steps 1..k all fit in memory."""
        n = self.n_dec
        avail = self.total_blocks - self.other_blocks - (self.cache.blocks - self.cache.evictable_blocks if self.cache else 0)
        bs = self.bs
        # quick exit: even the worst case (every sequence opening a block every bs steps) fits
        worst = self.decode_blocks() + n * (-(-horizon // bs) + 1)
        if worst <= avail:
            return horizon
        # blocks after k = q*bs + r steps: now + q*n + (growth over the first r steps)
        cnt, g = self._res_count, self.G
        S, acc = [], self._dec_blocks
        for j in range(bs):
            S.append(acc)
            acc += cnt[(-(g + j)) % bs]
        best = horizon
        for rr in range(bs):
            slack = avail - S[rr]
            if slack < 0:
                q = 0
            else:
                q = slack // n + 1
            k_bad = q * bs + rr
            if k_bad == 0:
                continue
            best = min(best, k_bad - 1)
        return max(0, best)

    def _clean_fin_top(self):
        h = self.fin_heap
        while h:
            fin_g, epoch, _, req = h[0]
            if req.state == DECODE and req.epoch == epoch and req.fin_g == fin_g:
                return fin_g
            heapq.heappop(h)
        return None

    def start_step(self, now: float):
        """Plan the next step at ``now``; returns its end time, or None when idle."""
        self.now = now
        chunks, decode, horizon = self.sched.plan(self, now)
        if chunks:  # requests that arrived with their KV (P/D) went straight into the decode set
            chunks = [(r, c) for r, c in chunks if r.state == PREFILL and c > 0]
            if not chunks:
                decode = True
        n_dec = self.n_dec
        if decode and n_dec and not self.growth_fits():  # a late admission ate the decode set's room
            self.sched.ensure_growth(self)
            chunks = [(r, c) for r, c in chunks if r.state == PREFILL]
            n_dec = self.n_dec
        decode = decode and n_dec > 0
        if not chunks and not decode:
            self.busy = False
            self.step = None
            if self.stall_s:
                self.stall_s = 0.0
            return None
        self.busy = True
        stall = self.stall_s
        if stall:
            self.stall_s = 0.0
        if chunks:
            if horizon != 1 and self._chunk_stretch and len(chunks) == 1:
                end = self._start_chunk_stretch(now, chunks[0], decode, horizon, stall)
                if end is not None:
                    return end
        elif horizon != 1 and self.skip_ahead:
            return self._start_decode_stretch(now, horizon, stall)
        if decode:
            ctx = self.sum_base + n_dec * (self.G + 1) + self.sum_shared  # decode_context_tokens()
        else:
            ctx = n_dec = 0
        dur = self.timer.mixed_s([(c, r.done_prefill) for r, c in chunks], n_dec, ctx) + stall
        self.step = ("mixed", chunks, decode, now, dur)
        return now + dur

    def _start_decode_stretch(self, now, horizon, stall):
        fin = self._clean_fin_top()
        k = MAX_STRETCH if fin is None else fin - self.G
        if horizon is not None and horizon < k:
            k = horizon
        k = self._mem_steps(k if k > 1 else 1)
        if k < 1:
            raise RuntimeError(f"replica {self.index}: the decode batch does not fit in memory (scheduler bug)")
        n = self.n_dec
        durs = self.timer.decode_s(n, self.sum_base + n * (self.G + 1) + self.sum_shared, k)
        cum = _accumulate(durs)  # the iterations' end times, summed left to right as stepping would
        if stall:
            cum += stall
        self.step = ("decode", k, cum, now, None, 0, True)
        return now + float(cum[-1])

    def _start_chunk_stretch(self, now, chunk, decode, horizon, stall):
        """Several iterations of one long prompt's full-budget chunks next to an unchanged decode set.

        While one prompt is being prefilled and its chunk fills the token budget, nothing else can
        join the batch, so the next iterations repeat it (chunk c, context growing by c; decode
        contexts growing by one) until the prompt's last chunk, a finish, memory or an arrival.
        """
        req, c = chunk
        rest = req.target - req.done_prefill
        n = self.n_dec if decode else 0
        if (len(self.prefilling) != 1 or self.swapped or self.paused or c >= rest
                or c != self.sched.token_budget - n):
            return None
        k = (rest - 1) // c  # full chunks that leave at least one token for the completing iteration
        fin = self._clean_fin_top() if n else None
        if fin is not None:
            k = min(k, fin - self.G)
        if horizon is not None:
            k = min(k, horizon)
        if n:
            k = self._mem_steps(k)
        if k < 2:
            return None
        ctx = self.decode_context_tokens() if n else 0
        durs = self.timer.chunk_run_s(c, req.done_prefill, n, ctx, k)
        cum = _accumulate(durs)
        if stall:
            cum += stall
        self.step = ("decode", k, cum, now, req, c, bool(n))
        return now + float(cum[-1])

    def cut(self, t: float):
        """An arrival at ``t``: end a decode stretch at the first iteration boundary >= t."""
        st = self.step
        if st is None or st[0] != "decode" or st[1] <= 1:
            return None
        _, k, cum, t0, preq, c, dec = st
        j = int(cum.searchsorted(t - t0))  # side="left": the first boundary at or after t
        if j >= k - 1:
            return None
        self.step = ("decode", j + 1, cum, t0, preq, c, dec)
        return t0 + float(cum[j])

    def end_step(self, now: float) -> None:
        st = self.step
        self.step = None
        if st[0] == "mixed":
            _, chunks, decode, t0, dur = st
            n_iter = 1
            if decode:
                self._dec_blocks += self._res_count[-self.G % self.bs]  # _advance(1)
                self.G += 1
            cache = self.cache
            if cache:
                self._evict_overflow()
            used = self.other_blocks + self._dec_blocks + (cache.blocks if cache else 0)
            if self.log is None:
                self.busy_s += now - t0
                self.kv_block_seconds += used * (now - t0)
                if used > self.peak_blocks:
                    self.peak_blocks = used
            else:
                self._account(t0, now, used, 1, sum(c for _, c in chunks), self.n_dec if decode else 0)
            h = self.fin_heap
            if h and h[0][0] <= self.G:
                self._pop_finished(now)
            for req, c in chunks:
                req.done_prefill += c
                if req.done_prefill >= req.target:
                    self._prefill_complete(req, now)
        else:
            _, k, cum, t0, preq, c, dec = st
            n_iter = k
            if dec:
                self._advance(k)
            cache = self.cache
            if cache:
                self._evict_overflow()
            used = self.other_blocks + self._dec_blocks + (cache.blocks if cache else 0)  # used_blocks()
            if self.log is None:  # _account() without the log
                self.busy_s += now - t0
                self.kv_block_seconds += used * (now - t0)
                if used > self.peak_blocks:
                    self.peak_blocks = used
            else:
                self._account(t0, now, used, k, k * c, self.n_dec * k if dec else 0)
            h = self.fin_heap
            if h and h[0][0] <= self.G:
                self._pop_finished(now)
            if preq is not None:
                preq.done_prefill += k * c  # never completes the prompt (the stretch stops short)
        self.iterations += n_iter

    def _evict_overflow(self) -> None:
        if self.cache:
            over = self.used_blocks() - self.total_blocks
            if over > 0:
                self.cache.evict(over)

    def _account(self, t0, t1, used_blocks, iterations, prefill_tokens, decode_tokens):
        self.busy_s += t1 - t0
        self.kv_block_seconds += used_blocks * (t1 - t0)
        if used_blocks > self.peak_blocks:
            self.peak_blocks = used_blocks
        if self.log is not None:
            # blocks are logged at the step's end, where a stretch peaks (KV only grows inside it)
            self.log.append((t0, t1, iterations, prefill_tokens, decode_tokens, used_blocks, self.n_dec, len(self.prefilling)))

    def _pop_finished(self, now: float) -> None:
        while True:
            fin = self._clean_fin_top()
            if fin is None or fin > self.G:
                return
            _, _, _, req = heapq.heappop(self.fin_heap)
            self._dec_remove(req)
            self._release(req)
            self._done(req, now)
