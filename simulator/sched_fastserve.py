"""FastServe: skip-join multi-level feedback queue with preemption at iteration granularity.

Source: Wu et al., "Fast Distributed Inference Serving for Large Language Models" (FastServe,
arXiv 2305.05920): priority queues with quanta growing by ``ratio`` per level; a new job skips to
the highest-priority level whose quantum covers its first (prefill) iteration; a job that uses up
its quantum at a level is demoted; each iteration the highest-priority jobs run; preempted jobs'
KV is moved to host memory (proactive swapping), so ``preempt_mode`` defaults to ``swap``.
Quanta are counted in decode iterations here: level k has ``base_quantum * ratio**k`` (the last
level is unbounded); the skip-join compares the prefill time of the prompt with that many decode
iterations of one sequence under the cost model.
"""
from servopt.simulator.replica import DECODE
from servopt.simulator.scheduler import PriorityPreemptive

NAME = "fastserve"
ALIASES = ("mlfq", "skip_join_mlfq")


class FastServe(PriorityPreemptive):
    def __init__(self, base_quantum=4, ratio=2, levels=8, **options):
        options.setdefault("preempt_mode", "swap")
        super().__init__(**options)
        if base_quantum < 1 or ratio < 1 or levels < 1:
            raise ValueError("base_quantum, ratio and levels must be >= 1")
        self.quanta = [int(base_quantum * ratio ** k) for k in range(int(levels))]
        self._timer = None

    def _join_level(self, rep, req):
        t_pre = rep.timer.mixed_s([(req.prompt, 0)], 0, 0)
        t_dec = rep.timer.mixed_s([], 1, req.prompt + 1) or 1e-9
        for k, q in enumerate(self.quanta):
            if q * t_dec >= t_pre:
                return k
        return len(self.quanta) - 1

    def enqueue(self, rep, req):
        if req.aux is None:
            req.level = self._join_level(rep, req)
            req.level_start = 0
            req.aux = True
        super().enqueue(rep, req)

    def priority(self, req):
        return (req.level, req.arrival)

    def before_plan(self, rep):
        last = len(self.quanta) - 1
        for r in rep.d_req:
            g = rep.sync_generated(r)
            while r.level < last and g - r.level_start >= self.quanta[r.level]:
                r.level_start += self.quanta[r.level]
                r.level += 1

    def horizon(self, rep):
        last = len(self.quanta) - 1
        h = None
        for r in rep.d_req:
            if r.state == DECODE and r.level < last:
                left = self.quanta[r.level] - (rep.sync_generated(r) - r.level_start)
                h = left if h is None else min(h, left)
        return None if h is None else max(1, h)


def make(**options):
    return FastServe(**options)
