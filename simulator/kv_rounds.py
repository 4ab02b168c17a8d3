"""Round-based simulator of online scheduling under a KV-memory limit (kind ``kv_schedule``).

Model: Jaillet et al., arXiv 2502.07115, §2 (instances/kv_schedule.py). A request started in
round ``p`` holds ``s + (t - p)`` tokens in rounds ``t = p+1 .. p+o`` and finishes at ``f = p + o``;
a request started in round ``t`` holds nothing in round ``t`` itself.

Per-round order of operations (the contract another simulator must follow to reproduce these
schedules exactly with a unit-time cost model):

Round ``t = 0, 1, 2, ...``; ``next(t)`` below means the memory that the *running* requests will
hold in round ``t + 1``: ``sum (s_j + t + 1 - p_j)`` over running ``j``.

1. **Completions.** Every running request with ``p + o <= t`` is finished, ``f = p + o``; it is
   removed from the batch (it held memory through round ``f`` and none after).
2. **Arrivals.** Every request with ``a <= t`` not yet seen joins the waiting queue (arrivals of
   round ``t`` are visible and may start in round ``t``). The queue is kept ordered by
   ``(arrival, position in the instance)``; a preempted request goes back to its place in that order.
3. **Overflow / preemption.** If ``next(t) > M`` the policy's ``on_overflow(view)`` names the
   running requests to preempt, in order; they are preempted one by one in that order until
   ``next(t) <= M`` (a clearing policy, ``preempt_only_until_fit = False``, preempts all it
   named). Each loses its KV, its attempt ``(p, preempted_at=t)`` is recorded (it held memory in
   rounds ``p+1 .. t``) and it rejoins the waiting queue. This repeats (with a fresh view) until
   ``next(t) <= M``; if a policy names nobody while memory still overflows the
   simulator preempts the most recently started request (ties: later position in the instance),
   so a run never overflows. Only preemptive policies (vllm, sjf, alpha-threshold, a-min), or any
   policy fed under-estimated predictions, ever reach this step with an overflow.
4. **Admission.** The policy's ``admit(view)`` returns waiting requests to start in round ``t``, in
   order; they start at ``p = t``. The policy must keep ``next(t) + sum (s_i + 1) <= M`` over the
   admitted ``i`` (the simulator verifies it and raises if not). *Progress rule:*
   when the batch is empty after step 3 and the queue is not, a policy admits at least its
   first-ranked waiting request (alone it fits, since ``s + o <= M``); the helper
   ``greedy_prefix`` implements it, and should a policy still return nothing the simulator starts
   the first waiting request in queue order.
5. ``t += 1``; when nothing runs and nothing waits, ``t`` jumps to the next arrival.

What a policy sees (``RoundView``): the round, ``M``, the waiting and running requests with their
ids, arrivals, prompt tokens, predicted output tokens (``predicted_output_tokens`` when given,
else the true length: the paper's synthetic study uses exact lengths), interval predictions, start
round and tokens generated so far (``t - p``) for running ones, the count of earlier
preemptions and the length revealed by earlier attempts (``revealed_min_output_tokens``: an
attempt preempted after ``g`` tokens shows the length is at least ``g + 1``). Waiting requests
are listed in queue order, running ones by (start round, position). It never sees a true output length when a prediction is given, nor future arrivals.
A request still running in round ``t`` has revealed that its length is at least ``t - p + 1``.

Policies are modules ``simulator/kv_policy_<name>.py`` defining ``NAME``, ``PARAMS`` (defaults)
and ``make(**params)``; they are found by module discovery, so adding one needs no change here.
"""
from __future__ import annotations

import bisect
import difflib
import importlib
import pkgutil
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

from servopt.errors import InputError, ServoptError
from servopt.instances.kv_schedule import Attempt, KVSchedule, KVScheduleInstance, ScheduledRequest

_POLICY_PREFIX = "kv_policy_"


class PolicyLivelock(ServoptError):
    """A policy kept preempting without finishing requests (e.g. repeated clearing)."""


@dataclass(frozen=True)
class WaitingRequest:
    id: str
    position: int
    arrival: int
    prompt_tokens: int
    predicted_output_tokens: int
    output_tokens_interval: tuple[int, int] | None
    preemptions: int
    revealed_min_output_tokens: int  # a lower bound on the true length learnt from earlier attempts (>= 1)


@dataclass(frozen=True)
class RunningRequest:
    id: str
    position: int
    arrival: int
    prompt_tokens: int
    predicted_output_tokens: int
    output_tokens_interval: tuple[int, int] | None
    start: int
    generated: int  # t - start: tokens produced so far; the true length is at least generated + 1
    preemptions: int
    revealed_min_output_tokens: int  # lower bound on the true length learnt from earlier attempts (>= 1)


@dataclass(frozen=True)
class RoundView:
    t: int
    memory_tokens: int
    waiting: tuple[WaitingRequest, ...]
    running: tuple[RunningRequest, ...]

    def next_round_memory(self) -> int:
        """Tokens the running requests hold in round t + 1 (all of them are still there then)."""
        return sum(r.prompt_tokens + self.t + 1 - r.start for r in self.running)


def future_peaks_fit(items: Iterable[tuple[int, int, int]], memory_tokens: int) -> bool:
    """True if requests ``(s, p, c)`` (prompt, start, expected completion round) never exceed M.

    Each footprint ``s + t - p`` grows until ``c`` and then drops to zero, so the memory peaks at
    completion rounds; checking ``t in {c}`` is enough (Jaillet et al., MC-SF, Algorithm 1).
    """
    rows = sorted(items, key=lambda x: x[2])
    suffix_base = 0  # sum of (s - p) over items with completion >= current c
    suffix_count = 0
    for s, p, c in reversed(rows):
        suffix_base += s - p
        suffix_count += 1
        if suffix_base + suffix_count * c > memory_tokens:
            return False
    return True


def expected_completion(r: RunningRequest, estimate: int) -> int:
    """A running request's completion under an estimate, refined by what it has revealed."""
    return r.start + max(estimate, r.generated + 1)


def greedy_prefix(view: RoundView, ordered: Sequence[WaitingRequest], fits: Callable[[list[WaitingRequest], WaitingRequest], bool],
                  *, stop_at_first_failure: bool = True) -> list[str]:
    """Admit along ``ordered`` while ``fits(admitted, candidate)``; apply the progress rule."""
    admitted: list[WaitingRequest] = []
    for cand in ordered:
        if fits(admitted, cand):
            admitted.append(cand)
        elif stop_at_first_failure:
            break
    if not admitted and not view.running and ordered:
        admitted.append(ordered[0])
    return [w.id for w in admitted]


def admit_while_future_fits(view: RoundView, ordered: Sequence[WaitingRequest], length_of: Callable) -> list[str]:
    """MC-SF's admission test along ``ordered``: a shortest-first (or any-order) prefix that keeps
    memory <= M at every future completion round, with lengths ``length_of(request)`` (a running
    request is counted at least ``generated + 1`` long, what it has revealed)."""
    base = [(r.prompt_tokens, r.start, expected_completion(r, length_of(r))) for r in view.running]

    def fits(admitted, cand):
        new = [(w.prompt_tokens, view.t, view.t + length_of(w)) for w in admitted + [cand]]
        return future_peaks_fit(base + new, view.memory_tokens)

    return greedy_prefix(view, ordered, fits)


def newest_start_first(view: RoundView) -> list[str]:
    """Fallback preemption order: the most recently started request first (ties: later position)."""
    return [r.id for r in sorted(view.running, key=lambda r: (-r.start, -r.position))]


def next_round_fits(view: RoundView, limit: float | None = None):
    """A ``fits`` test: memory in round t+1 (running + admitted + candidate) stays within ``limit`` (default M)."""
    cap = view.memory_tokens if limit is None else limit
    base = view.next_round_memory()

    def fits(admitted, cand):
        return base + sum(w.prompt_tokens + 1 for w in admitted) + cand.prompt_tokens + 1 <= cap

    return fits


# ---- registry -----------------------------------------------------------------------------------

def available_policies() -> list[str]:
    import servopt.simulator as pkg

    names = []
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.startswith(_POLICY_PREFIX):
            names.append(importlib.import_module(f"servopt.simulator.{info.name}").NAME)
    return sorted(names)


def _alias_target(name: str) -> str:
    """The canonical name for an alias (``mcsf`` -> ``mc-sf``); other names come back unchanged."""
    import servopt.simulator as pkg

    key = str(name).strip().lower().replace("-", "_")
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.startswith(_POLICY_PREFIX):
            mod = importlib.import_module(f"servopt.simulator.{info.name}")
            if key in {a.replace("-", "_") for a in getattr(mod, "ALIASES", ())}:
                return mod.NAME
    return str(name)


def policy_module(name: str):
    name = _alias_target(name)
    module_name = _POLICY_PREFIX + str(name).replace("-", "_")
    import servopt.simulator as pkg

    if not any(info.name == module_name for info in pkgutil.iter_modules(pkg.__path__)):
        names = available_policies()
        hint = difflib.get_close_matches(str(name), names, n=1)
        suffix = f" (did you mean '{hint[0]}'?)" if hint else f" (known: {', '.join(names)})"
        raise InputError("--policy", f"unknown policy '{name}'{suffix}")
    return importlib.import_module(f"servopt.simulator.{module_name}")


def make_policy(name: str, **params):
    module = policy_module(name)
    unknown = sorted(set(params) - set(module.PARAMS))
    if unknown:
        known = ", ".join(module.PARAMS) or "none"
        raise InputError(f"--param {unknown[0]}", f"policy '{name}' has no parameter '{unknown[0]}' (its parameters: {known})")
    merged = {**module.PARAMS, **params}
    return module.make(**merged), merged


# ---- the simulator ------------------------------------------------------------------------------

@dataclass
class _State:
    start: int | None = None
    attempts: list = field(default_factory=list)
    finish: int | None = None
    revealed: int = 1


class PolicyTimeUp(ServoptError):
    """A policy's simulation passed the caller's ``deadline`` (a solve charging it to its time limit)."""


def simulate_rounds(instance: KVScheduleInstance, policy: str, *, max_rounds: int | None = None,
                    deadline: float | None = None, **params) -> KVSchedule:
    """Run ``policy`` on ``instance`` with the order of operations of the module docstring.

    ``deadline``: a ``time.perf_counter()`` value; past it the run stops with ``PolicyTimeUp``.
    Policies with a static priority (module attribute ``static_priority``) take the fast path
    ``simulate_static_priority`` whenever no prediction under-estimates a length: the same
    schedule, request for request (tests/test_kv_policies.py checks both paths agree).
    """
    module = policy_module(policy)
    policy = module.NAME  # an alias (mcsf) runs and is recorded under the canonical name (mc-sf)
    if (hasattr(module, "static_priority") and not params and max_rounds is None
            and all(r.output_tokens_seen >= r.output_tokens for r in instance.requests)):
        make_policy(policy)  # the same parameter checks as the general path
        return simulate_static_priority(instance, policy, module.static_priority, deadline=deadline)
    pol, used_params = make_policy(policy, **params)
    reqs = instance.requests
    M = instance.memory_tokens
    n = len(reqs)
    order = sorted(range(n), key=lambda i: (reqs[i].arrival, i))
    state = [_State() for _ in range(n)]
    index = {r.id: i for i, r in enumerate(reqs)}
    running: dict[int, int] = {}  # position -> start
    waiting: list[int] = []  # positions, kept in (arrival, position) order
    next_arrival = 0
    done = 0
    preemptions = 0
    t = int(reqs[order[0]].arrival)
    if max_rounds is None:
        # generous: serial processing needs at most max a + sum o rounds; preemptive policies redo work
        max_rounds = 50 * (int(max(r.arrival for r in reqs)) + sum(r.output_tokens for r in reqs)) + 1000

    def seen_length(i):
        return reqs[i].output_tokens_seen

    waiting_views: dict[int, WaitingRequest] = {}  # rebuilt only when a request is (re)queued: views are O(queue)

    def waiting_view(i) -> WaitingRequest:
        return WaitingRequest(reqs[i].id, i, int(reqs[i].arrival), reqs[i].prompt_tokens, seen_length(i),
                              reqs[i].output_tokens_interval, len(state[i].attempts), state[i].revealed)

    def view() -> RoundView:
        w = tuple(map(waiting_views.__getitem__, waiting))
        rn = tuple(RunningRequest(reqs[i].id, i, int(reqs[i].arrival), reqs[i].prompt_tokens, seen_length(i),
                                  reqs[i].output_tokens_interval, p, t - p, len(state[i].attempts), state[i].revealed)
                   for i, p in sorted(running.items(), key=lambda kv: (kv[1], kv[0])))
        return RoundView(t, M, w, rn)

    def next_memory() -> int:
        return sum(reqs[i].prompt_tokens + t + 1 - p for i, p in running.items())

    def requeue(i):
        waiting_views[i] = waiting_view(i)
        key = (reqs[i].arrival, i)
        pos = 0
        while pos < len(waiting) and (reqs[waiting[pos]].arrival, waiting[pos]) < key:
            pos += 1
        waiting.insert(pos, i)

    while done < n:
        if deadline is not None and (t & 255) == 0 and time.perf_counter() > deadline:
            raise PolicyTimeUp(f"policy '{policy}' passed its deadline at round {t} ({done} of {n} requests done)")
        if t > max_rounds:
            raise PolicyLivelock(f"policy '{policy}' did not finish within {max_rounds} rounds "
                                 f"({done} of {n} requests done, {preemptions} preemptions): it keeps preempting")
        # 1. completions
        for i in [i for i, p in running.items() if p + reqs[i].output_tokens <= t]:
            state[i].finish = running.pop(i) + reqs[i].output_tokens
            done += 1
        # 2. arrivals
        while next_arrival < n and reqs[order[next_arrival]].arrival <= t:
            requeue(order[next_arrival])
            next_arrival += 1
        # 3. overflow / preemption
        preempted_now = False
        while running and next_memory() > M:
            victims = list(pol.on_overflow(view()))
            victims = [index[v] for v in victims if v in index and index[v] in running]
            if not victims:
                victims = [max(running, key=lambda i: (running[i], i))]
            for i in victims:
                if not running or next_memory() <= M and getattr(pol, "preempt_only_until_fit", True):
                    break
                p = running.pop(i)
                state[i].attempts.append(Attempt(p, t))
                state[i].revealed = max(state[i].revealed, t - p + 1)
                requeue(i)
                preemptions += 1
                preempted_now = True
        # 4. admission
        if waiting:
            v = view()
            chosen = list(pol.admit(v)) if not (preempted_now and getattr(pol, "no_admission_after_preemption", False)) else []
            if not running and not chosen:
                chosen = [v.waiting[0].id]  # progress rule (module docstring, step 4)
            waiting_set = set(waiting)
            mem = next_memory()
            for rid in chosen:
                i = index.get(rid)
                if i is None or i not in waiting_set:
                    raise RuntimeError(f"policy '{policy}' admitted {rid!r}, which is not waiting in round {t}")
                mem += reqs[i].prompt_tokens + 1
                running[i] = t
                waiting.remove(i)
                waiting_set.discard(i)
            if mem > M:
                raise RuntimeError(f"policy '{policy}' overfilled round {t + 1}: {mem} > {M} tokens")
        # 5. advance
        t += 1
        if not running and not waiting and next_arrival < n:
            t = max(t, int(reqs[order[next_arrival]].arrival))
    rows = tuple(ScheduledRequest(r.id, int(r.arrival), state[i].finish - r.output_tokens, state[i].finish,
                                  tuple(state[i].attempts)) for i, r in enumerate(reqs))
    meta = {"policy": policy, "params": used_params, "preemptions": preemptions,
            "rounds": max(s.finish for s in state)}
    return KVSchedule(rows, objective_name=instance.objective, method=f"policy:{policy}", meta=meta)


def simulate_static_priority(instance: KVScheduleInstance, policy: str, priority: Callable, *,
                             deadline: float | None = None) -> KVSchedule:
    """The schedule of a policy that admits waiting requests along a fixed priority order while
    memory fits at every future completion round (``admit_while_future_fits``), stopping at the
    first that does not fit: MC-SF (shortest predicted output first) and FCFS (arrival order).

    Why a second path: the general loop rebuilds the whole queue view every round, which is
    O(n) per round and took 115 s for MC-SF at n = 5,000. Here the queue is a sorted list of
    ``priority(request, position)`` keys kept with ``bisect`` and a round costs O(running
    requests) unless it admits. It is exact only when no prediction under-estimates a length:
    then a running request's predicted completion ``p + o~`` is never passed before it finishes,
    admission keeps every future round within M, and nothing is ever preempted, so the steps of
    the module docstring reduce to completions, arrivals and this admission.
    """
    reqs = instance.requests
    M = instance.memory_tokens
    n = len(reqs)
    order = sorted(range(n), key=lambda i: (reqs[i].arrival, i))
    seen = [r.output_tokens_seen for r in reqs]
    start = [0] * n
    waiting: list[tuple] = []  # (priority key, position), sorted
    running: list[int] = []
    next_arrival = done = 0
    t = int(reqs[order[0]].arrival)
    while done < n:
        if deadline is not None and (t & 255) == 0 and time.perf_counter() > deadline:
            raise PolicyTimeUp(f"policy '{policy}' passed its deadline at round {t} ({done} of {n} requests done)")
        finished = [i for i in running if start[i] + reqs[i].output_tokens <= t]
        if finished:
            running = [i for i in running if start[i] + reqs[i].output_tokens > t]
            done += len(finished)
        while next_arrival < n and reqs[order[next_arrival]].arrival <= t:
            i = order[next_arrival]
            bisect.insort(waiting, (priority(reqs[i], i), i))
            next_arrival += 1
        if waiting:
            items = [(reqs[i].prompt_tokens, start[i], start[i] + seen[i]) for i in running]
            taken = 0
            for _, i in waiting:
                candidate = items + [(reqs[i].prompt_tokens, t, t + seen[i])]
                if not future_peaks_fit(candidate, M) and (running or taken):
                    break  # the progress rule admits the first-ranked request into an empty batch
                items = candidate
                start[i] = t
                running.append(i)
                taken += 1
            del waiting[:taken]
        t += 1
        if not running and not waiting and next_arrival < n:
            t = max(t, int(reqs[order[next_arrival]].arrival))
    rows = tuple(ScheduledRequest(r.id, int(r.arrival), start[i], start[i] + r.output_tokens)
                 for i, r in enumerate(reqs))
    meta = {"policy": policy, "params": {}, "preemptions": 0,
            "rounds": max(row.finish for row in rows)}
    return KVSchedule(rows, objective_name=instance.objective, method=f"policy:{policy}", meta=meta)
