"""Nested WAIT: segment thresholds over decode progress when output lengths are unknown (Ao et al.).

Source: "Optimizing LLM Inference: Fluid-Guided Online Scheduling with Memory Constraints",
arXiv 2504.11320, §Nested WAIT (research/scheduling-anchors.md §2.4). Decode progress is cut into
segments by ``boundaries`` l'_1 < ... < l'_m (tokens generated); segment k has threshold n_k
(``thresholds``). A request that has generated exactly l'_(k-1) tokens waits at the entry of
segment k (KV kept). Each iteration: K = the largest k such that every segment k' <= k has at
least n_k' requests at its entry (segment 1's entry is the prefill queue); the batch takes
min(n_k', count) requests from the entry and from every decode stage of segments 1..K; the rest
pause. Beyond l'_m requests run to completion (last segment unbounded). When the trace has ended
thresholds are dropped so that everything finishes.
"""
import bisect
from collections import defaultdict

from servopt.simulator.replica import DECODE, PAUSED
from servopt.simulator.scheduler import ContinuousBatching

NAME = "nested_wait"
ALIASES = ("nested-wait",)


class NestedWAIT(ContinuousBatching):
    fcfs = True
    chunked = False

    def __init__(self, boundaries=(64, 256, 1024), thresholds=(16, 8, 4), **options):
        options.setdefault("token_budget", 1 << 30)
        super().__init__(**options)
        self.bounds = [int(b) for b in boundaries]
        self.n = [int(x) for x in thresholds]
        if len(self.bounds) != len(self.n) or not self.bounds or sorted(set(self.bounds)) != self.bounds:
            raise ValueError("boundaries must be increasing and as many as thresholds")
        if any(x < 1 for x in self.n):
            raise ValueError("thresholds must be >= 1")
        self.arrivals_done = False

    def _segment(self, g):
        """(segment index k >= 0, at_entry): g tokens generated (1 after prefill)."""
        k = bisect.bisect_left(self.bounds, g)  # first boundary >= g
        if k < len(self.bounds) and g == self.bounds[k]:
            return k + 1, True  # finished segment k: waits at the entry of segment k + 1
        return k, False

    def plan(self, rep, now):
        m = len(self.bounds)
        residents = list(rep.d_req) + list(rep.paused)
        entry = defaultdict(list)
        stages = defaultdict(list)
        for r in residents:
            g = rep.sync_generated(r)
            k, at_entry = self._segment(g)
            if k >= m:
                stages[(m, g)].append(r)
            elif at_entry:
                entry[k].append(r)
            else:
                stages[(k, g)].append(r)
        q1 = self.n_waiting()
        counts = [q1] + [len(entry[k]) for k in range(1, m)]
        K = 0
        for k in range(m):
            if counts[k] >= self.n[k] or (self.arrivals_done and (counts[k] or k > 0)):
                K = k + 1
            else:
                break
        active = set()
        for k in range(1, K):
            for r in sorted(entry[k], key=lambda r: r.admit_seq)[: self.n[k]]:
                active.add(r)
        for (k, _), rs in stages.items():
            if k < K or k >= m:
                cap = self.n[k] if k < m else len(rs)
                for r in sorted(rs, key=lambda r: r.admit_seq)[:cap]:
                    active.add(r)
        if not active and K == 0 and not q1 and residents:
            active = set(residents)  # nothing can ever fill the thresholds again: drain
        for r in residents:
            if r in active and r.state == PAUSED:
                rep.resume(r)
            elif r not in active and r.state == DECODE:
                rep.pause(r)
        self.ensure_growth(rep)
        self.swap_in(rep)
        chunks = []
        if K >= 1:
            for _ in range(min(self.n[0], q1)):
                req = self.peek()
                if req is None or not self.admit(rep, req):
                    break
                self.pop()
                chunks.append((req, req.target - req.done_prefill))
        h = None
        for r in rep.d_req:
            g = rep.sync_generated(r)
            nxt = bisect.bisect_right(self.bounds, g)
            if nxt < m:
                left = self.bounds[nxt] - g
                h = left if h is None else min(h, left)
        if rep.paused:  # a paused request may get a freed stage slot after any step
            h = 1
        return chunks, True, h


def make(**options):
    return NestedWAIT(**options)
