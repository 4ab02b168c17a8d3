"""Online batching policies on ``batching`` instances, and the replay of a given schedule.

Every policy runs in the same executor, ``run_policy``: at the current time ``t`` (the end of the
last iteration, or the next arrival when nothing can run) the policy picks the next batch from the
requests that have arrived; the iteration starts at ``t`` and lasts ``tau`` of the instance's
linear iteration time (``servopt.instances.batching``). Policies never idle while something can
run, and they never see the future (arrivals after ``t``).

Memory: the model has no preemption, so a started request keeps its KV until it finishes. A policy
admits a new request only if the full footprints (prompt + output - 1 tokens) of all started,
unfinished requests plus its own fit in ``memory_tokens`` -- Orca's rule of reserving the maximum
length (Yu et al., OSDI'22 §4.4), which can never deadlock. The reservation uses the true output
length (the instance's), as an engine with a max_tokens cap would.

Policies (``POLICIES``):

``vllm``     prefill-first (vLLM V0, Kwon et al. SOSP'23 §4.5; research notes costmodel-anchors.md
             §1.3): if a waiting prompt can be admitted, the iteration is prefill-only with whole
             prompts FCFS up to the token budget; else a decode-only iteration of every decoding
             request. A prompt longer than the budget is split (the model forbids more than B
             tokens per iteration) and continues first.
``sarathi``  Sarathi-Serve stall-free batching (Agrawal et al., OSDI'24 §4.2): every decoding
             request first, then the ongoing partial prefills, then new prompts FCFS, chunked to
             fill ``token_budget`` (parameter; default the instance's B, at most B).
``orca``     Orca iteration-level scheduling (Yu et al., OSDI'22 §4.2): decodes plus whole new
             prompts FCFS while they fit the budget (a prompt longer than B is split as in vllm).
``static``   static batching (request-level, e.g. HF generate): up to ``max_batch`` arrived
             requests form a batch that runs to completion (prefill, then decodes) before the next
             batch is formed.
``sjf``      as sarathi, but waiting prompts are admitted by shortest predicted total
             (prompt + predicted output) first.
``srpt``     every iteration orders all arrived, unfinished requests by predicted remaining tokens
             (remaining prompt + remaining predicted outputs) and fills the budget and the batch
             limit in that order: decodes may pause behind shorter work.
             ``predicted_output_tokens`` per request is the prediction (default the truth);
             parameter ``noise`` (relative, uniform, with ``seed``) perturbs it.
``replay``   not a policy: ``replay(instance, batches)`` runs a given batch sequence (e.g. an
             optimal schedule) through the same executor and returns its times.

With ``continuous: true`` every policy includes every started, unfinished request in each
iteration and admits a new one only if that stays possible (batch limit, token budget).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

from servopt.instances.batching import BatchingInstance, BatchSchedule, RequestTimes

POLICIES = ("vllm", "sarathi", "orca", "static", "sjf", "srpt")


@dataclass
class State:
    """What the executor knows at time ``t``; policies read it and return a batch."""

    inst: BatchingInstance
    t: float
    pre: list
    dec: list
    finished: list
    started: list

    def arrived(self):
        return [i for i, r in enumerate(self.inst.requests) if r.arrival_ms <= self.t + 1e-12 and not self.finished[i]]

    def active(self):
        """Started, unfinished requests (they hold KV)."""
        return [i for i in range(self.inst.n) if self.started[i] and not self.finished[i]]

    def reserved(self) -> int:
        return sum(self.inst.requests[i].footprint_tokens for i in self.active())

    def rem_prompt(self, i) -> int:
        return self.inst.requests[i].prompt_tokens - self.pre[i]

    def decoding(self, i) -> bool:
        return self.rem_prompt(i) == 0 and not self.finished[i]


class _Filler:
    """Builds one batch under the budget, batch and memory-reservation limits."""

    def __init__(self, st: State, budget: int):
        self.st = st
        self.budget = budget
        self.slots = st.inst.batch_limit
        self.reserved = st.reserved()
        self.batch = []
        self.used = set()

    def decode(self, i) -> bool:
        if i in self.used or self.budget < 1 or self.slots < 1:
            return False
        self.batch.append((i, "d", 1))
        self.used.add(i)
        self.budget -= 1
        self.slots -= 1
        return True

    def prefill(self, i, whole: bool = False) -> bool:
        """A chunk of i's remaining prompt (whole: only if the entire rest fits, or it exceeds B alone)."""
        st = self.st
        if i in self.used or self.budget < 1 or self.slots < 1:
            return False
        rem = st.rem_prompt(i)
        if whole and rem > self.budget and not (rem > st.inst.token_budget and self.budget == st.inst.token_budget):
            return False
        if not st.started[i]:
            if self.reserved + st.inst.requests[i].footprint_tokens > st.inst.memory_limit:
                return False
            if st.inst.continuous and not self._room_for_new():
                return False
            self.reserved += st.inst.requests[i].footprint_tokens
        c = min(rem, self.budget)
        self.batch.append((i, "p", c))
        self.used.add(i)
        self.budget -= c
        self.slots -= 1
        return True

    def _room_for_new(self) -> bool:
        # continuous: every started request takes part in every iteration, so admitting one more
        # must leave room for all of them (one token and one slot each)
        n_started = len(self.st.active()) + sum(1 for i, k, _ in self.batch if not self.st.started[i])
        return n_started + 1 <= min(self.st.inst.batch_limit, self.st.inst.token_budget)


def _continuous_first(st: State, f: _Filler) -> None:
    if st.inst.continuous:
        for i in st.active():
            if st.decoding(i):
                f.decode(i)
        for i in st.active():
            if not st.decoding(i):
                f.prefill(i)


def _fcfs(st: State, ids):
    return sorted(ids, key=lambda i: (st.inst.requests[i].arrival_ms, i))


def policy_vllm(st: State, params) -> list:
    f = _Filler(st, st.inst.token_budget)
    _continuous_first(st, f)
    if st.inst.continuous and f.batch:
        # decodes and prefills of started requests are forced; newcomers join by the prefill-first rule
        for i in _fcfs(st, [i for i in st.arrived() if not st.started[i]]):
            if not f.prefill(i, whole=True):
                break
        return f.batch
    partial = [i for i in st.active() if 0 < st.pre[i] < st.inst.requests[i].prompt_tokens]
    waiting = _fcfs(st, [i for i in st.arrived() if not st.started[i]])
    for i in partial:
        f.prefill(i)
    for i in waiting:
        if not f.prefill(i, whole=True):
            break
    if f.batch:
        return f.batch
    for i in _fcfs(st, st.active()):
        if st.decoding(i):
            f.decode(i)
    return f.batch


def _chunked(st: State, params, order) -> list:
    budget = int(params.get("token_budget", st.inst.token_budget))
    f = _Filler(st, min(budget, st.inst.token_budget))
    _continuous_first(st, f)
    for i in _fcfs(st, st.active()):
        if st.decoding(i):
            f.decode(i)
    for i in _fcfs(st, st.active()):
        if not st.decoding(i):
            f.prefill(i)
    for i in order(st, [i for i in st.arrived() if not st.started[i]]):
        if not f.prefill(i):
            break  # head-of-line: a prompt that cannot be admitted blocks those behind it
    return f.batch


def policy_sarathi(st: State, params) -> list:
    return _chunked(st, params, _fcfs)


def _predicted(st: State, params, i) -> float:
    r = st.inst.requests[i]
    noise = float(params.get("noise", 0.0))
    if not noise:
        return r.predicted_output
    rng = random.Random(hash((int(params.get("seed", 0)), i)) & 0xFFFFFFFF)
    return max(1.0, r.predicted_output * (1.0 + rng.uniform(-noise, noise)))


def policy_sjf(st: State, params) -> list:
    def order(st_, ids):
        return sorted(ids, key=lambda i: (st_.inst.requests[i].prompt_tokens + _predicted(st_, params, i),
                                          st_.inst.requests[i].arrival_ms, i))

    return _chunked(st, params, order)


def policy_srpt(st: State, params) -> list:
    budget = int(params.get("token_budget", st.inst.token_budget))
    f = _Filler(st, min(budget, st.inst.token_budget))
    _continuous_first(st, f)

    def remaining(i):
        r = st.inst.requests[i]
        return st.rem_prompt(i) + max(0.0, _predicted(st, params, i) - 1 - st.dec[i])

    for i in sorted(st.arrived(), key=lambda i: (remaining(i), st.inst.requests[i].arrival_ms, i)):
        if st.decoding(i):
            f.decode(i)
        else:
            f.prefill(i)
    return f.batch


def policy_orca(st: State, params) -> list:
    f = _Filler(st, st.inst.token_budget)
    _continuous_first(st, f)
    for i in _fcfs(st, st.active()):
        if st.decoding(i):
            f.decode(i)
    for i in _fcfs(st, st.active()):
        if not st.decoding(i):
            f.prefill(i)
    for i in _fcfs(st, [i for i in st.arrived() if not st.started[i]]):
        if not f.prefill(i, whole=True):
            break
    return f.batch


def policy_static(st: State, params) -> list:
    cohort = params.setdefault("_cohort", [])
    if not any(not st.finished[i] for i in cohort):
        cohort.clear()
        f = _Filler(st, st.inst.token_budget)
        reserved = 0
        for i in _fcfs(st, [i for i in st.arrived() if not st.started[i]]):
            fp = st.inst.requests[i].footprint_tokens
            if len(cohort) >= st.inst.batch_limit or reserved + fp > st.inst.memory_limit:
                break
            if st.inst.continuous and len(cohort) >= st.inst.token_budget:
                break
            cohort.append(i)
            reserved += fp
        if not cohort:
            return []
    f = _Filler(st, st.inst.token_budget)
    live = [i for i in cohort if not st.finished[i]]
    prefilling = [i for i in live if not st.decoding(i)]
    if prefilling:
        if st.inst.continuous:
            for i in live:
                if st.decoding(i):
                    f.decode(i)
        for i in prefilling:
            f.prefill(i)
        return f.batch
    for i in live:
        f.decode(i)
    return f.batch


_TABLE = {"vllm": policy_vllm, "sarathi": policy_sarathi, "orca": policy_orca, "static": policy_static,
          "sjf": policy_sjf, "srpt": policy_srpt}


def run_policy(instance: BatchingInstance, choose, params=None, *, method: str = "") -> BatchSchedule:
    """The executor (module docstring): ``choose(state, params) -> batch`` every iteration."""
    inst = instance
    n = inst.n
    params = dict(params or {})
    st = State(inst, 0.0, [0] * n, [0] * n, [False] * n, [False] * n)
    kv = [0] * n
    starts, ends, batches = [], [], []
    first = [math.nan] * n
    last = [math.nan] * n
    guard = 0
    limit = 4 * sum(r.prompt_tokens + r.output_tokens for r in inst.requests) + 10
    while not all(st.finished):
        guard += 1
        if guard > limit:
            raise RuntimeError(f"policy {method} made no progress")
        batch = choose(st, params)
        if not batch:
            later = [r.arrival_ms for i, r in enumerate(inst.requests) if not st.finished[i] and r.arrival_ms > st.t + 1e-12]
            if not later:
                raise RuntimeError(f"policy {method} stalled with work left at t = {st.t}")
            st.t = min(later)
            continue
        chunks = sum(tok for _, k, tok in batch if k == "p")
        decs = sum(1 for _, k, _ in batch if k == "d")
        ctx = sum(kv[i] for i, k, _ in batch if k == "d")
        start = max([st.t] + [inst.requests[i].arrival_ms for i, _, _ in batch])
        end = start + inst.iteration.ms(chunks, decs, ctx)
        for i, k, tok in batch:
            r = inst.requests[i]
            kv[i] += tok
            st.started[i] = True
            if k == "p":
                st.pre[i] += tok
                if st.pre[i] == r.prompt_tokens:
                    first[i] = end
                    if r.output_tokens == 1:
                        last[i] = end
                        st.finished[i] = True
            else:
                st.dec[i] += 1
                if st.dec[i] == r.output_tokens - 1:
                    last[i] = end
                    st.finished[i] = True
        starts.append(start)
        ends.append(end)
        batches.append(tuple(sorted(batch)))
        st.t = end
    times = []
    for i, r in enumerate(inst.requests):
        tpot = (last[i] - first[i]) / (r.output_tokens - 1) if r.output_tokens > 1 else 0.0
        times.append(RequestTimes(r.id, first[i], last[i], first[i] - r.arrival_ms, tpot))
    public = {k: v for k, v in params.items() if not k.startswith("_")}
    return BatchSchedule(tuple(starts), tuple(ends), tuple(batches), tuple(times), method, {"params": public})


def simulate(instance: BatchingInstance, policy: str, **params) -> BatchSchedule:
    from servopt.errors import InputError

    if policy not in _TABLE:
        import difflib

        hint = difflib.get_close_matches(policy, POLICIES, n=1)
        raise InputError("--policy", f"unknown batching policy '{policy}'" + (f" (did you mean '{hint[0]}'?)" if hint else
                                                                            f" (known: {', '.join(POLICIES)})"))
    known = {"sarathi": {"token_budget"}, "sjf": {"token_budget", "noise", "seed"}, "srpt": {"token_budget", "noise", "seed"}}
    for key, value in params.items():
        if key not in known.get(policy, set()):
            raise InputError(f"--param {key}", f"policy '{policy}' takes {', '.join(sorted(known.get(policy, ()))) or 'no parameters'}")
        if key == "token_budget" and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= instance.token_budget):
            raise InputError("--param token_budget", f"must be an integer in 1..{instance.token_budget} (the instance's B), got {value!r}")
        if key == "noise" and (not isinstance(value, (int, float)) or not 0 <= value < 1):
            raise InputError("--param noise", f"must be in [0, 1), got {value!r}")
    return run_policy(instance, _TABLE[policy], params, method=policy)


def replay(instance: BatchingInstance, batches) -> BatchSchedule:
    """Run a given batch sequence through the executor (earliest times, as every policy)."""
    script = [list(b) for b in batches]

    def scripted(st, params):
        k = params.setdefault("_k", 0)
        if k >= len(script):
            return []
        params["_k"] = k + 1
        return script[k]  # the executor starts it at max(t, its participants' arrivals)

    return run_policy(instance, scripted, {}, method="replay")


def best_policy(instance: BatchingInstance, policies=POLICIES) -> tuple[str, BatchSchedule]:
    """The policy whose schedule has the best objective (goodput: most, then least latency)."""
    best = None
    for name in policies:
        sched = simulate(instance, name)
        val = sched.objective_value(instance)
        key = (-val, sched.total_latency_ms(instance)) if instance.objective == "goodput" else (val,)
        if best is None or key < best[0]:
            best = (key, name, sched)
    return best[1], best[2]
