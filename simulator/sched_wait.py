"""WAIT: threshold batching by request type with known output lengths (Ao, Luo, Simchi-Levi, Wang).

Source: "Optimizing LLM Inference: Fluid-Guided Online Scheduling with Memory Constraints",
arXiv 2504.11320, §WAIT (research/scheduling-anchors.md §2.3). Requests are typed by output
length: ``types`` = [[max_output_tokens, n], ...] (ascending bounds; a request is of the first type
whose bound covers its known or predicted length). Type j is eligible once n_j of its requests wait
for prefill; then min(n_j, queue) of them start together, and at most n_j requests of type j run
at any decode stage (extra ones pause with KV kept). Whole prompts are prefilled in the batch.
When the trace has ended the thresholds are dropped so that the last requests finish. The
fluid-guided thresholds of the paper are n_j = B * rho_j / (l'_j + 1) for a batch size B.
"""
from collections import defaultdict

from servopt.simulator.replica import DECODE, PAUSED
from servopt.simulator.scheduler import ContinuousBatching

NAME = "wait"


class WAIT(ContinuousBatching):
    fcfs = False
    chunked = False

    def __init__(self, types=((1 << 30, 8),), **options):
        options.setdefault("token_budget", 1 << 30)
        super().__init__(**options)
        self.types = sorted((int(b), int(n)) for b, n in types)
        if not self.types or any(n < 1 for _, n in self.types):
            raise ValueError("types must be [[max_output_tokens, threshold >= 1], ...]")
        self.arrivals_done = False

    def type_of(self, req):
        for j, (bound, _) in enumerate(self.types):
            if req.seen <= bound:
                return j
        return len(self.types) - 1

    def order_key(self, req):
        return (req.arrival, req.idx)

    def plan(self, rep, now):
        # at most n_j requests of type j per decode stage: pause extras (latest admitted), resume others
        groups = defaultdict(list)
        for r in list(rep.d_req) + list(rep.paused):
            groups[(self.type_of(r), rep.sync_generated(r))].append(r)
        for (j, _), rs in groups.items():
            rs.sort(key=lambda r: r.admit_seq)
            n = self.types[j][1]
            for k, r in enumerate(rs):
                if k < n and r.state == PAUSED:
                    rep.resume(r)
                elif k >= n and r.state == DECODE:
                    rep.pause(r)
        self.ensure_growth(rep)
        self.swap_in(rep)
        queues = defaultdict(list)
        for r in self.waiting_list():
            queues[self.type_of(r)].append(r)
        chunks = []
        for j, reqs in sorted(queues.items()):
            n = self.types[j][1]
            if len(reqs) < n and not self.arrivals_done:
                continue
            for r in reqs[:n]:
                if not self.admit(rep, r):
                    break
                self._remove_waiting(r)
                chunks.append((r, r.target - r.done_prefill))
        return chunks, True, (1 if rep.paused else None)

    def _remove_waiting(self, req):
        self._heap = [e for e in self._heap if e[2] is not req]
        import heapq

        heapq.heapify(self._heap)


def make(**options):
    return WAIT(**options)
