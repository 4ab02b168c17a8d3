r"""Iteration-level batching as a MILP (kind ``batching``): chunked prefill, decodes, SLO goodput.

Semantics: ``servopt.instances.batching`` (module docstring); the decisions are those of a
continuous-batching engine (Orca, Yu et al. OSDI'22 §3.1 iteration-level scheduling; Sarathi-Serve,
Agrawal et al. OSDI'24 §4.1-4.2 chunked prefill under a token budget). The time-indexed form over
iteration slots follows the classical positional-date scheduling MILPs (Queyranne & Schulz,
"Polyhedral approaches to machine scheduling", 1994, §3), with iterations as positions.

Sets: requests :math:`i \in I`, iteration slots :math:`k = 0..K-1` (``horizon``).
Data: arrival :math:`a_i`, prompt :math:`P_i`, output :math:`o_i`, token budget :math:`B`, batch
limit :math:`S`, memory :math:`M`, iteration coefficients :math:`t_0, t_p, t_d, t_c`.

Variables (binary unless said): :math:`u_k` slot used; :math:`x_{ik}` prefill chunk of i in k;
:math:`c_{ik} \in \mathbb Z_{\ge 0}` its size; :math:`d_{ik}` decode of i in k; :math:`f_{ik}` the
prompt of i completes in k; :math:`h_{ik}` i emits its last token in k; :math:`q_{ik} \ge 0` KV
context of i charged in k; :math:`S_k, E_k \ge 0` start and end; :math:`F_i, C_i` first-token and
completion times; :math:`m_i` (goodput) i meets both SLOs.
Cumulative sums: :math:`\mathrm{cum}_{ik} = \sum_{l\le k} c_{il}`, :math:`D_{ik} = \sum_{l \le k} d_{il}`,
:math:`g_{ik} = \sum_{l\le k} f_{il}`, :math:`\mathrm{done}_{ik} = \sum_{l\le k} h_{il}`, each a variable with one
defining row (``cum_def``, ``D_def``, ``g_def``, ``done_def``: ``cum[i,k] = cum[i,k-1] + c[i,k]``), so the
model has O(nK) nonzeros.

.. math::

    &\sum_k c_{ik} = P_i,\quad x_{ik} \le c_{ik} \le \min(P_i,B)\,x_{ik}            &(\text{prompt, chunk})\\
    &P_i\,g_{ik} \le \mathrm{cum}_{ik} \le P_i - 1 + g_{ik},\quad \sum_k f_{ik} = 1   &(\text{prompt complete})\\
    &d_{ik} \le g_{i,k-1},\quad \sum_k d_{ik} = o_i - 1,\quad x_{ik}+d_{ik} \le 1     &(\text{decode})\\
    &\sum_k h_{ik} = 1,\quad (P_i+o_i-1)\,\mathrm{done}_{ik} \le \mathrm{cum}_{ik} + D_{ik} &(\text{finish})\\
    &\sum_i (c_{ik}+d_{ik}) \le B u_k,\ \sum_i (x_{ik}+d_{ik}) \le S u_k,\
      u_k \le \sum_i (x_{ik}+d_{ik}),\ u_k \le u_{k-1}                                  &(\text{budget, batch, slots})\\
    &\sum_i \big(\mathrm{cum}_{ik} + D_{ik} - (P_i+o_i-1)\,\mathrm{done}_{i,k-1}\big) \le M &(\text{memory})\\
    &q_{ik} \ge P_i + D_{i,k-1} - (P_i+o_i-1)(1-d_{ik})                                  &(\text{context})\\
    &S_k \ge E_{k-1},\ S_k \ge a_i x_{ik},\
      E_k = S_k + t_0 u_k + t_p \textstyle\sum_i c_{ik} + t_d \sum_i d_{ik} + t_c \sum_i q_{ik},\ E_k \le H &(\text{time})\\
    &F_i \ge E_k - H g_{i,k-1},\quad C_i \ge E_k - H\,\mathrm{done}_{i,k-1}              &(\text{events})\\
    &\text{continuous: } x_{ik}+d_{ik} \ge s_{i,k-1} - \mathrm{done}_{i,k-1} - (1-u_k),\
      \mathrm{cum}_{ik} \le P_i s_{ik},\ s_{ik} \le \mathrm{cum}_{ik}                    &(\text{optional})

The memory row is exact without big-M: a started request holds
:math:`\mathrm{cum}_{ik} + D_{ik}` tokens, and once finished that sum is its full footprint
:math:`P_i + o_i - 1`, which ``done`` subtracts from the next slot on. ``h`` may only be declared
late (then memory and :math:`C_i` only grow), never early (finish row), so the honest encoding is
optimal. :math:`C_i \ge E_k - H\,\mathrm{done}_{i,k-1}` states :math:`C_i \ge E_k` for every slot up
to the last token, i.e. :math:`C_i \ge E_{\text{finish}}`; the same for :math:`F_i`.

Objectives: ``total_latency`` :math:`\min \sum_i (C_i - a_i)`; ``makespan`` :math:`\min Z,\ Z \ge C_i`;
``goodput`` lexicographic: first :math:`\max \sum_i m_i` with
:math:`F_i \le E_k + H(1-f_{ik})` (pins :math:`F_i`), :math:`F_i - a_i \le \mathrm{ttft} + H(1-m_i)`,
:math:`C_i - F_i \le \mathrm{tpot}(o_i-1) + H(1-m_i)`; then, with :math:`\sum_i m_i \ge G^*`,
:math:`\min \sum_i (C_i - a_i)` (``solve_lexicographic`` in the kind module runs both stages).

**Big-M** ``H`` (:func:`time_horizon_ms`): :math:`H = \max_i a_i + K t_0 + W`, where
:math:`W = t_p \sum_i P_i + t_d \sum_i (o_i-1) + t_c \sum_i \sum_{j=0}^{o_i-2}(P_i + j)` is the
variable work, the same in every schedule (every prompt token, decode and context token is
charged exactly once). *Claim: some optimal schedule has every end* :math:`\le H`. For
total_latency and makespan take an optimal schedule with earliest times
(:math:`S_k = \max(E_{k-1}, \max a_i)` over participants; later times never lower these
objectives): after the last arrival there is no idling, so :math:`E_{last} \le \max_i a_i +
\sum_k \tau_k \le \max_i a_i + K t_0 + W`. For goodput, fix an optimal discrete schedule and its
set of SLO-meeting requests; its ends satisfy difference constraints (forward
:math:`E_k - E_{k-1} \ge \tau_k`, arrival lower bounds, TTFT upper bounds, TPOT
:math:`E_{F_i} \ge E_{C_i} - \mathrm{tpot}(o_i-1)` whose weight is :math:`\le 0`); the least
solution (it exists: solutions are closed under componentwise min) meets the same set with the
least total latency, and each of its ends is a longest path whose positive arcs are forward arcs,
each used at most once, so again :math:`E_k \le \max_i a_i + \sum_k \tau_k \le H`.

**Horizon** ``K`` (:func:`safe_horizon`): :math:`K = \sum_i (P_i + o_i - 1)`. *Claim: it keeps an
optimum.* Take any optimal schedule. An iteration with no participant can be replaced by idling
for its duration (every other time unchanged, all constraints still hold: memory and budget rows
of the others do not involve it), so some optimal schedule has only non-empty iterations. Request
i takes part in at most :math:`P_i` prefill iterations (each chunk has :math:`\ge 1` token) and
:math:`o_i - 1` decode iterations, so the number of non-empty iterations is at most
:math:`\sum_i (P_i + o_i - 1) = K`; its iterations fill slots :math:`0..K'-1` with :math:`K' \le K`,
which is a feasible point of the MILP (slots :math:`K'..K-1` unused). Hence the MILP optimum over
K slots equals the true optimum, and its dual bound is a valid bound on it. A user-given smaller
horizon keeps the MILP exact only over schedules with at most that many iterations; its bound is
then reported as such, not as a bound on the optimum.

Valid fixings (as upper bounds 0, not Pyomo fixes: a fixed variable makes the HiGHS interface
rebuild the model and drop the MIP start): the prompt of i cannot complete before slot
:math:`\lceil P_i/B\rceil - 1` and its last token not before slot :math:`\lceil P_i/B\rceil + o_i - 2`
(each slot carries at most B of its tokens and one decode).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from servopt.instances.batching import BatchingInstance

FORMULATIONS = ("time-indexed",)


def safe_horizon(instance: BatchingInstance) -> int:
    """K = sum_i (P_i + o_i - 1) slots: keeps an optimum (module docstring, proof)."""
    return sum(r.prompt_tokens + r.output_tokens - 1 for r in instance.requests)


def variable_work_ms(instance: BatchingInstance) -> float:
    """W: the part of sum_k tau_k that is the same in every schedule."""
    it = instance.iteration
    w = 0.0
    for r in instance.requests:
        o1 = r.output_tokens - 1
        w += it.per_prefill_token_ms * r.prompt_tokens + it.per_decode_token_ms * o1
        w += it.per_context_token_ms * (o1 * r.prompt_tokens + o1 * (o1 - 1) / 2)
    return w


def time_horizon_ms(instance: BatchingInstance, horizon: int) -> float:
    """The big-M H = max a_i + K t_0 + W (module docstring, proof)."""
    return max(r.arrival_ms for r in instance.requests) + horizon * instance.iteration.fixed_ms + variable_work_ms(instance) + 1.0


@dataclass(frozen=True)
class ModelInfo:
    horizon: int
    horizon_proven: bool
    big_m_ms: float
    objective: str
    stage: str


def build(instance: BatchingInstance, *, formulation: str = "time-indexed", horizon: int | None = None,
          stage: str | None = None, cutoff: float | None = None, lower_bound: float | None = None):
    """The Pyomo MILP of the module docstring.

    ``stage`` (goodput only): ``"goodput"`` maximises the number of SLO-meeting requests,
    ``"latency"`` minimises total latency subject to ``model.goodput_floor`` (a mutable Param,
    default 0). Other objectives ignore it.
    """
    import pyomo.environ as pyo

    if formulation not in FORMULATIONS:
        from servopt.errors import InputError

        raise InputError("--formulation", f"batching formulations: {', '.join(FORMULATIONS)}; got '{formulation}'")
    inst = instance
    safe = safe_horizon(inst)
    K = safe if horizon is None else int(horizon)
    n = inst.n
    B, S, M = inst.token_budget, inst.batch_limit, inst.memory_limit
    it = inst.iteration
    H = time_horizon_ms(inst, K)
    P = [r.prompt_tokens for r in inst.requests]
    O = [r.output_tokens for r in inst.requests]
    A = [r.arrival_ms for r in inst.requests]
    objective = inst.objective
    stage = stage or ("goodput" if objective == "goodput" else objective)

    m = pyo.ConcreteModel(name="batching")
    m.I = pyo.RangeSet(0, n - 1)
    m.K = pyo.RangeSet(0, K - 1)
    m.u = pyo.Var(m.K, domain=pyo.Binary)
    m.x = pyo.Var(m.I, m.K, domain=pyo.Binary)
    m.c = pyo.Var(m.I, m.K, domain=pyo.NonNegativeIntegers, bounds=lambda _, i, k: (0, min(P[i], B)))
    m.d = pyo.Var(m.I, m.K, domain=pyo.Binary)
    m.f = pyo.Var(m.I, m.K, domain=pyo.Binary)
    m.h = pyo.Var(m.I, m.K, domain=pyo.Binary)
    m.S = pyo.Var(m.K, bounds=(0, H))
    m.E = pyo.Var(m.K, bounds=(0, H))
    m.F = pyo.Var(m.I, bounds=(0, H))
    # C_i >= a_i + own_i: request i alone needs ceil(P_i/B) prefill and o_i - 1 decode iterations
    own = [A[i] + math.ceil(P[i] / B) * it.fixed_ms + it.per_prefill_token_ms * P[i]
           + (O[i] - 1) * (it.fixed_ms + it.per_decode_token_ms)
           + it.per_context_token_ms * ((O[i] - 1) * P[i] + (O[i] - 1) * (O[i] - 2) / 2) for i in range(n)]
    m.C = pyo.Var(m.I, bounds=lambda _, i: (min(own[i], H), H))

    first_slot = [math.ceil(P[i] / B) - 1 for i in range(n)]
    for i in range(n):
        for k in range(K):
            if k < first_slot[i]:
                m.f[i, k].setub(0)
            if k < first_slot[i] + O[i] - 1:
                m.h[i, k].setub(0)
            if k <= first_slot[i] or O[i] == 1:
                m.d[i, k].setub(0)

    # running sums as variables with one defining row each: O(n K) nonzeros, where sums written out
    # would be O(n K^2) and nested Pyomo expressions overflow Python's recursion limit at K ~ 300
    m.cum = pyo.Var(m.I, m.K, bounds=lambda _, i, k: (0, P[i]))
    m.Dsum = pyo.Var(m.I, m.K, bounds=lambda _, i, k: (0, O[i] - 1))
    m.gsum = pyo.Var(m.I, m.K, bounds=(0, 1))
    m.donesum = pyo.Var(m.I, m.K, bounds=(0, 1))
    m.cum_def = pyo.Constraint(m.I, m.K, rule=lambda _, i, k: m.cum[i, k] == (m.cum[i, k - 1] if k else 0) + m.c[i, k])
    m.D_def = pyo.Constraint(m.I, m.K, rule=lambda _, i, k: m.Dsum[i, k] == (m.Dsum[i, k - 1] if k else 0) + m.d[i, k])
    m.g_def = pyo.Constraint(m.I, m.K, rule=lambda _, i, k: m.gsum[i, k] == (m.gsum[i, k - 1] if k else 0) + m.f[i, k])
    m.done_def = pyo.Constraint(m.I, m.K, rule=lambda _, i, k: m.donesum[i, k] == (m.donesum[i, k - 1] if k else 0) + m.h[i, k])

    def prev(expr, i, k):
        return expr[i, k - 1] if k > 0 else 0

    m.prompt_total = pyo.Constraint(m.I, rule=lambda _, i: sum(m.c[i, k] for k in m.K) == P[i])
    m.chunk_lo = pyo.Constraint(m.I, m.K, rule=lambda _, i, k: m.c[i, k] >= m.x[i, k])
    m.chunk_hi = pyo.Constraint(m.I, m.K, rule=lambda _, i, k: m.c[i, k] <= min(P[i], B) * m.x[i, k])
    m.complete_lo = pyo.Constraint(m.I, m.K, rule=lambda _, i, k: m.cum[i, k] >= P[i] * m.gsum[i, k])
    m.complete_hi = pyo.Constraint(m.I, m.K, rule=lambda _, i, k: m.cum[i, k] <= P[i] - 1 + m.gsum[i, k])
    m.complete_once = pyo.Constraint(m.I, rule=lambda _, i: sum(m.f[i, k] for k in m.K) == 1)
    m.decode_after_prompt = pyo.Constraint(m.I, m.K, rule=lambda _, i, k: m.d[i, k] <= prev(m.gsum, i, k))
    m.decode_total = pyo.Constraint(m.I, rule=lambda _, i: sum(m.d[i, k] for k in m.K) == O[i] - 1)
    m.one_role = pyo.Constraint(m.I, m.K, rule=lambda _, i, k: m.x[i, k] + m.d[i, k] <= 1)
    m.finish_once = pyo.Constraint(m.I, rule=lambda _, i: sum(m.h[i, k] for k in m.K) == 1)
    m.finish_after_tokens = pyo.Constraint(
        m.I, m.K, rule=lambda _, i, k: (P[i] + O[i] - 1) * m.donesum[i, k] <= m.cum[i, k] + m.Dsum[i, k])
    m.budget = pyo.Constraint(m.K, rule=lambda _, k: sum(m.c[i, k] + m.d[i, k] for i in m.I) <= B * m.u[k])
    m.batch = pyo.Constraint(m.K, rule=lambda _, k: sum(m.x[i, k] + m.d[i, k] for i in m.I) <= S * m.u[k])
    m.nonempty = pyo.Constraint(m.K, rule=lambda _, k: m.u[k] <= sum(m.x[i, k] + m.d[i, k] for i in m.I))
    m.slot_prefix = pyo.Constraint(m.K, rule=lambda _, k: m.u[k] <= m.u[k - 1] if k > 0 else pyo.Constraint.Skip)
    if M < sum(P[i] + O[i] - 1 for i in range(n)):
        m.memory = pyo.Constraint(m.K, rule=lambda _, k: sum(
            m.cum[i, k] + m.Dsum[i, k] - (P[i] + O[i] - 1) * prev(m.donesum, i, k) for i in m.I) <= M)
    ctx_terms = 0
    if it.per_context_token_ms > 0:
        m.q = pyo.Var(m.I, m.K, domain=pyo.NonNegativeReals)
        m.context = pyo.Constraint(m.I, m.K, rule=lambda _, i, k: (
            m.q[i, k] >= P[i] + prev(m.Dsum, i, k) - (P[i] + O[i] - 1) * (1 - m.d[i, k]) if O[i] > 1
            else pyo.Constraint.Skip))
        ctx_terms = 1

    def tau(k):
        e = it.fixed_ms * m.u[k] + it.per_prefill_token_ms * sum(m.c[i, k] for i in m.I) \
            + it.per_decode_token_ms * sum(m.d[i, k] for i in m.I)
        if ctx_terms:
            e = e + it.per_context_token_ms * sum(m.q[i, k] for i in m.I)
        return e

    m.chain = pyo.Constraint(m.K, rule=lambda _, k: m.S[k] >= m.E[k - 1] if k > 0 else pyo.Constraint.Skip)
    m.arrival = pyo.Constraint(m.I, m.K, rule=lambda _, i, k: m.S[k] >= A[i] * m.x[i, k] if A[i] > 0 else pyo.Constraint.Skip)
    m.end = pyo.Constraint(m.K, rule=lambda _, k: m.E[k] == m.S[k] + tau(k))
    m.first_token = pyo.Constraint(m.I, m.K, rule=lambda _, i, k: m.F[i] >= m.E[k] - H * prev(m.gsum, i, k))
    m.completion = pyo.Constraint(m.I, m.K, rule=lambda _, i, k: m.C[i] >= m.E[k] - H * prev(m.donesum, i, k))

    if inst.continuous:
        m.s = pyo.Var(m.I, m.K, domain=pyo.Binary)
        m.started_hi = pyo.Constraint(m.I, m.K, rule=lambda _, i, k: m.cum[i, k] <= P[i] * m.s[i, k])
        m.started_lo = pyo.Constraint(m.I, m.K, rule=lambda _, i, k: m.s[i, k] <= m.cum[i, k])
        m.continuous = pyo.Constraint(m.I, m.K, rule=lambda _, i, k: (
            m.x[i, k] + m.d[i, k] >= m.s[i, k - 1] - m.donesum[i, k - 1] - (1 - m.u[k]) if k > 0 else pyo.Constraint.Skip))

    latency = sum(m.C[i] - A[i] for i in m.I)
    if objective == "goodput":
        m.met = pyo.Var(m.I, domain=pyo.Binary)
        m.first_token_pin = pyo.Constraint(m.I, m.K, rule=lambda _, i, k: m.F[i] <= m.E[k] + H * (1 - m.f[i, k]))
        if inst.slo_ttft_ms is not None:
            m.slo_ttft = pyo.Constraint(m.I, rule=lambda _, i: m.F[i] - A[i] <= inst.slo_ttft_ms + H * (1 - m.met[i]))
        if inst.slo_tpot_ms is not None:
            m.slo_tpot = pyo.Constraint(m.I, rule=lambda _, i: (
                m.C[i] - m.F[i] <= inst.slo_tpot_ms * (O[i] - 1) + H * (1 - m.met[i]) if O[i] > 1 else pyo.Constraint.Skip))
        m.goodput_floor = pyo.Param(mutable=True, initialize=0)
        if stage == "goodput":
            m.obj = pyo.Objective(expr=sum(m.met[i] for i in m.I), sense=pyo.maximize)
        else:
            m.floor = pyo.Constraint(expr=sum(m.met[i] for i in m.I) >= m.goodput_floor)
            m.obj = pyo.Objective(expr=latency, sense=pyo.minimize)
    elif objective == "makespan":
        m.Z = pyo.Var(bounds=(0, H))
        m.makespan_def = pyo.Constraint(m.I, rule=lambda _, i: m.Z >= m.C[i])
        m.obj = pyo.Objective(expr=m.Z, sense=pyo.minimize)
    else:
        m.obj = pyo.Objective(expr=latency, sense=pyo.minimize)
    if cutoff is not None:
        tol = 1e-6 * max(1.0, abs(cutoff))
        m.cutoff = pyo.Constraint(expr=m.obj.expr >= cutoff - tol if m.obj.sense == pyo.maximize else m.obj.expr <= cutoff + tol)
    if lower_bound is not None and m.obj.sense == pyo.minimize and stage != "latency":
        m.lower_bound = pyo.Constraint(expr=m.obj.expr >= lower_bound - 1e-6 * max(1.0, abs(lower_bound)))
    m._info = ModelInfo(K, K >= safe, H, objective, stage)
    m._instance = inst
    return m


def extract(model) -> list[tuple]:
    """The batch sequence of the loaded solution: per used slot, entries (i, "p", c) or (i, "d", 1)."""
    import pyomo.environ as pyo

    batches = []
    for k in model.K:
        batch = []
        for i in model.I:
            c = int(round(pyo.value(model.c[i, k])))
            if c > 0:
                batch.append((i, "p", c))
            elif pyo.value(model.d[i, k]) > 0.5:
                batch.append((i, "d", 1))
        if batch:
            batches.append(tuple(batch))
    return batches


def warm_start(model, instance: BatchingInstance, batches, ends_ms=None):
    """A full MIP start (ComponentMap) from a batch sequence that fits within the model's horizon."""
    from pyomo.common.collections import ComponentMap

    from servopt.instances.batching import event_iterations, timed_schedule

    K = model._info.horizon
    if len(batches) > K:
        return None
    sched = timed_schedule(instance, batches, ends_ms)
    first, last = event_iterations(instance, batches)
    n = instance.n
    ws = ComponentMap()
    kv = [0] * n
    pre_run = [0] * n
    dec_run = [0] * n
    for k in range(K):
        used = k < len(batches)
        ws[model.u[k]] = 1 if used else 0
        entries = {i: (kind, tok) for i, kind, tok in batches[k]} if used else {}
        for i in range(n):
            kind, tok = entries.get(i, (None, 0))
            ws[model.x[i, k]] = 1 if kind == "p" else 0
            ws[model.c[i, k]] = tok if kind == "p" else 0
            ws[model.d[i, k]] = 1 if kind == "d" else 0
            ws[model.f[i, k]] = 1 if first[i] == k else 0
            ws[model.h[i, k]] = 1 if last[i] == k else 0
            if hasattr(model, "q"):
                ws[model.q[i, k]] = kv[i] if kind == "d" else 0
            if hasattr(model, "s"):
                ws[model.s[i, k]] = 1 if (kv[i] + (tok if kind else 0)) > 0 else 0
        for i, kind, tok in (batches[k] if used else ()):
            kv[i] += tok
            if kind == "p":
                pre_run[i] += tok
            else:
                dec_run[i] += 1
        for i in range(n):
            ws[model.cum[i, k]] = pre_run[i]
            ws[model.Dsum[i, k]] = dec_run[i]
            ws[model.gsum[i, k]] = 1 if 0 <= first[i] <= k else 0
            ws[model.donesum[i, k]] = 1 if 0 <= last[i] <= k else 0
        if used:
            ws[model.S[k]] = sched.starts_ms[k]
            ws[model.E[k]] = sched.ends_ms[k]
        else:
            ws[model.S[k]] = sched.ends_ms[-1]
            ws[model.E[k]] = sched.ends_ms[-1]
    for i, t in enumerate(sched.requests):
        ws[model.F[i]] = t.first_token_ms
        ws[model.C[i]] = t.finish_ms
    if hasattr(model, "Z"):
        ws[model.Z] = max(t.finish_ms for t in sched.requests)
    if hasattr(model, "met"):
        for i, t in enumerate(sched.requests):
            ws[model.met[i]] = 1 if instance.meets_slo(t.ttft_ms, t.tpot_ms) else 0
    return ws
