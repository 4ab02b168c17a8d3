"""Static (request-level) batching: a batch is formed only when the replica is empty and runs to its end.

Source: the pre-Orca practice of FasterTransformer / early TGI that Orca (Yu et al., OSDI'22, §2)
and vLLM (Kwon et al., SOSP'23) compare against: up to ``max_batch`` waiting requests (FCFS) are
prefilled together, then decoded until the last one finishes; finished sequences leave but nobody
joins until the batch is empty. Memory for prompt + output of the whole batch is reserved up front.
"""
from servopt.simulator.scheduler import ContinuousBatching

NAME = "static"
ALIASES = ("static_batching", "request_level")


class Static(ContinuousBatching):
    mixed = False
    chunked = False

    def __init__(self, **options):
        options.setdefault("token_budget", 1 << 30)
        options.setdefault("watermark", 0.0)
        super().__init__(**options)

    def plan(self, rep, now):
        if rep.n_dec or rep.prefilling or rep.paused or rep.swapped:
            self.ensure_growth(rep)
            self.swap_in(rep)
            return [], True, None
        chunks, reserved = [], 0
        while len(chunks) < self.max_batch:
            req = self.peek()
            if req is None:
                break
            need = rep.blocks_for(req.prompt + req.seen)
            if reserved + need > rep.total_blocks or not rep.try_admit(req):
                break
            reserved += need
            self.pop()
            chunks.append((req, req.target - req.done_prefill))
        return chunks, False, None


def make(**options):
    return Static(**options)
