"""Any round-model policy of ``simulator/kv_policy_*.py`` (MC-SF, FCFS, vLLM-style, SJF, alpha-threshold, A_min) on the engine.

Source: the round model and its per-round order of operations in ``simulator/kv_rounds.py``
(Jaillet et al., arXiv 2502.07115, §2): completions, arrivals, overflow (the policy's
``on_overflow`` names victims, which restart from scratch), admission (the policy's ``admit``,
with the progress rule). On the engine the round model is: block size 1, a unit-time cost model
whose prefill-only iterations are free (``UnitTimer(prefill_cost=False)``), output lengths one
longer than the round model's (the free prefill emits a token the round model does not count)
and ``preempt_mode='restart'``; with these the engine reproduces ``simulate_rounds`` exactly
(tests/test_sim_engine.py). Options: ``policy`` (a kv_rounds policy name) and its parameters.
"""
from servopt.simulator.replica import DECODE
from servopt.simulator.scheduler import ContinuousBatching

NAME = "kv_rounds"
ALIASES = ("round_policy",)


class RoundPolicy(ContinuousBatching):
    fcfs = False
    mixed = False

    def __init__(self, policy="mc-sf", output_offset=1, **params):
        from servopt.simulator import kv_rounds

        super().__init__(token_budget=1 << 30, max_batch=1 << 30, watermark=0.0, preempt_mode="restart")
        self.kv_rounds = kv_rounds
        self.pol, _ = kv_rounds.make_policy(policy, **params)
        self.policy = policy
        self.offset = int(output_offset)
        self.decided_at = None
        self.revealed: dict = {}  # request index -> lower bound on its length learnt from preemptions

    def order_key(self, req):
        return (req.arrival, req.idx)

    def _view(self, rep, now):
        k = self.kv_rounds
        t = int(round(now))
        waiting = tuple(k.WaitingRequest(r.rid, r.idx, int(r.arrival), r.prompt, r.seen - self.offset, None, r.preemptions,
                                         self.revealed.get(r.idx, 1))
                        for r in self.waiting_list())
        running = []
        for r in rep.d_req:
            p = r.aux
            running.append(k.RunningRequest(r.rid, r.idx, int(r.arrival), r.prompt, r.seen - self.offset, None, p, t - p,
                                            r.preemptions, self.revealed.get(r.idx, 1)))
        running.sort(key=lambda x: (x.start, x.position))
        return k.RoundView(t, rep.total_blocks * rep.bs, waiting, tuple(running))

    def plan(self, rep, now):
        t = int(round(now))
        if self.decided_at == t:  # second call in the same round: the admitted prompts are in, decode
            return [], True, 1
        self.decided_at = t
        by_id = {r.rid: r for r in rep.d_req}
        preempted = False
        while rep.n_dec and not rep.growth_fits():
            victims = [by_id[v] for v in self.pol.on_overflow(self._view(rep, now)) if v in by_id and by_id[v].state == DECODE]
            if not victims:
                victims = [max(rep.d_req, key=lambda r: (r.aux, r.idx))]
            for v in victims:
                if not rep.n_dec or (rep.growth_fits() and getattr(self.pol, "preempt_only_until_fit", True)):
                    break
                self.revealed[v.idx] = max(self.revealed.get(v.idx, 1), t - v.aux + 1)
                rep.preempt(v, "restart")
                preempted = True
        chunks = []
        if self.n_waiting():
            view = self._view(rep, now)
            chosen = [] if (preempted and getattr(self.pol, "no_admission_after_preemption", False)) else list(self.pol.admit(view))
            if not rep.n_dec and not chosen:
                chosen = [view.waiting[0].id]
            wanted = set(chosen)
            keep = []
            picked = {}
            while self.n_waiting():
                r = self.pop()
                (picked.__setitem__(r.rid, r) if r.rid in wanted else keep.append(r))
            for r in keep:
                self.enqueue(rep, r)
            for rid in chosen:
                r = picked[rid]
                if not rep.try_admit(r):
                    raise RuntimeError(f"round policy admitted {rid} but its prompt does not fit")
                r.aux = t
                chunks.append((r, r.target - r.done_prefill))
        if chunks:
            return chunks, False, None
        return [], True, 1


def make(**options):
    return RoundPolicy(**options)
