"""Orca: iteration-level scheduling, whole prompts batched with decodes, memory reserved for the full output.

Source: Yu et al., "Orca: A Distributed Serving System for Transformer-Based Generative Models",
OSDI'22: the batch is re-formed every iteration (selective batching), a new request joins with its
whole prompt, and it is admitted only if the KV slots for its maximum length (prompt + output) can
be reserved, so running requests are never preempted. The output length reserved is the one the
policy sees (the prediction when the trace has one, else the true length).
"""
from servopt.simulator.replica import DONE, WAITING
from servopt.simulator.scheduler import ContinuousBatching

NAME = "orca"


class Orca(ContinuousBatching):
    mixed = True
    chunked = False

    def __init__(self, **options):
        options.setdefault("token_budget", 1 << 30)
        options.setdefault("watermark", 0.0)
        super().__init__(**options)
        self.reserved = 0
        self._held = set()  # requests holding a reservation

    def _reserve(self, rep, req):
        return rep.blocks_for(req.prompt + max(req.seen, req.generated + 1))

    def admit(self, rep, req):
        need = self._reserve(rep, req)
        if self.reserved + need > rep.total_blocks:
            return False
        if not rep.try_admit(req):
            return False
        req.aux = need
        self.reserved += need
        self._held.add(req)
        return True

    def release(self, req):
        if req.aux:
            self.reserved -= req.aux
            req.aux = None

    def plan(self, rep, now):
        # requests that left since the last plan give their reservation back
        for r in [r for r in self._held if r.state in (WAITING, DONE)]:  # preempted or finished
            self.release(r)
            self._held.discard(r)
        return super().plan(rep, now)


def make(**options):
    return Orca(**options)
