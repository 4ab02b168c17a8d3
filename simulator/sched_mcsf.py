"""MC-SF (Memory-Constrained Shortest First) adapted to paged KV memory and real iteration times.

Source: Jaillet, Jiang, Mellou, Molinaro, Podimata, Zhou, "Online Scheduling for LLM Inference
with KV Cache Constraints", arXiv 2502.07115, Algorithm 1 (research/scheduling-anchors.md §1.4):
waiting requests in increasing predicted output length are admitted as a prefix while the whole
batch stays within memory at every future step, checked at the predicted completions (footprints
grow one token per step and drop to zero at completion, so the peaks are there). Adaptation:
memory is counted in KV tokens of the replica's blocks, with one block of rounding slack per
request; a running request that outlives its prediction counts as finishing after its next token;
prefill is chunked Sarathi-style and, like the original, running requests are not preempted unless
predictions under-estimate (then vLLM's newest-first recompute applies).
"""
from servopt.simulator.scheduler import ContinuousBatching

NAME = "mc-sf"  # one spelling across commands (the round-model policy is "mc-sf" too)
ALIASES = ("mcsf", "mc_sf")


def peaks_fit(items, capacity: float) -> bool:
    """``items`` = (tokens now, steps until completion); footprints grow by 1 per step until then."""
    base = 0
    count = 0
    for k, d in sorted(items, key=lambda x: -x[1]):
        base += k
        count += 1
        if base + count * d > capacity:
            return False
    return True


class MCSF(ContinuousBatching):
    fcfs = False

    def estimate(self, req):
        return req.seen

    def order_key(self, req):
        return (self.estimate(req), req.arrival)

    def admit(self, rep, req):
        items = []
        for r in list(rep.d_req) + list(rep.paused):
            g = rep.sync_generated(r)
            items.append((r.prompt + g - 1, max(self.estimate(r) - g, 1)))
        for r in rep.prefilling:
            items.append((r.target, max(self.estimate(r) - r.generated, 1)))
        items.append((req.target, max(self.estimate(req) - req.generated, 1)))
        capacity = (rep.total_blocks - int(self.watermark * rep.total_blocks)) * rep.bs - rep.bs * len(items)
        if rep.cache:
            capacity -= rep.cache.blocks * rep.bs - rep.cache.evictable_blocks * rep.bs
        if not peaks_fit(items, capacity):
            return False
        return super().admit(rep, req)

    def plan(self, rep, now):
        chunks, decode, horizon = super().plan(rep, now)
        # a waiting request may start fitting at any later step as running ones near completion
        return chunks, decode, (1 if self.n_waiting() else horizon)


def make(**options):
    return MCSF(**options)
