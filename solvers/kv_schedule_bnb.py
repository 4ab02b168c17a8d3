r"""Exact combinatorial branch-and-bound for ``kv_schedule`` (n <= 12 proven in seconds).

No LP: a depth-first search over *start rounds in chronological order* (time-indexed branching),
with a memo of visited states, a symmetry rule, and a memory-volume bound on the unstarted
requests. Semantics as in ``models/kv_schedule.py``: request ``i`` started at ``p_i >= a_i``
holds ``s_i + (t - p_i)`` tokens in rounds ``t = p_i+1 .. p_i+o_i``, total per round ``<= M``.

Why not branch over serial-SGS orders
-------------------------------------
For constant demands the left-shift argument says some optimum is an *active* schedule, reached
by the serial SGS from some order. It does not carry over to these ramps: moving a start from
``p`` to ``p-1`` raises the request's demand by one token in every round ``p .. p+o-1`` (it is one
round older there), so a left shift can break feasibility in rounds the request already covered.
We have no proof that SGS orders contain an optimum, so the search branches on start rounds.

Search (all symbols as in the code)
-----------------------------------
A node is a *decision round* ``t``, the set ``U`` of unstarted requests, the load ``load[t']`` that
the started requests hold in every round ``t' > t``, and the cost ``cost`` of the started requests
(their finishes are fixed: ``f_i = p_i + o_i``). At round ``t`` the candidates are the unstarted
requests whose ramp fits on top of ``load`` when started at ``t``; the search takes them one by one
(``candidate_order``: longest output first by default) and branches *start at t* / *not at t*. After the last candidate it jumps to
the next decision round ``t' = min_{j in U} e_j``, where ``e_j`` is the earliest round ``>= t+1``
(and ``>= a_j``) at which ``j``'s ramp fits on top of ``load``.

*Completeness.* Every feasible schedule is reached: its starts at round ``t`` are a subset of the
candidates (a request that starts at ``t`` in a feasible schedule fits on top of a subset of the
other requests' load, hence on top of the load of those started before ``t``), and no request
starts in a skipped round ``t < t'' < t'``: loads only grow as requests are added, so a ramp that
does not fit on top of ``load`` in round ``t''`` fits on top of no completion either.

*Symmetry.* Call requests with equal ``(s, o, w)`` twins. In any feasible schedule, handing the twins'
start rounds out again in (arrival, index) order keeps every round's memory (twins have equal ramps)
and the cost (the same finishes, the same arrivals; equal weights), and stays feasible: the k-th
smallest start is at least the k-th smallest arrival because every twin starts after its own arrival.
So the search only lets a request start when every twin before it in (arrival, index) order has
started (at an earlier round, or earlier at the same round).

*Justified deferrals* (total and weighted latency; ``justify_deferrals``). When the search takes
the "not at t" branch for a candidate ``j`` (it fits on the current load at ``t``), it records the
deferral ``(j, t)``. If in the finished schedule ``j``'s ramp still fits at ``t`` on top of the *other*
requests' load, moving ``j`` alone to ``t`` is feasible (every round is checked, so the ramp argument
against left shifts above does not apply) and lowers the cost by ``w_j (p_j - t) > 0``. So every
optimal schedule has every deferral *blocked*: some round ``r`` in ``t+1 .. t+o_j`` holds more than
``M - s_j - (r - t)`` tokens of the others. Blocking only grows as requests start, and at a decision
round ``t'`` the rounds ``<= t'`` are final (later starts are ``>= t'``). At every decision round the
search drops the blocked deferrals and prunes the node when one can no longer be blocked: all its
rounds are ``<= t'``, or even the most load the unstarted requests could still add in round ``r``
(``sum_k min(s_k + r - t', s_k + o_k)`` over the unstarted ``k != j``) leaves it unblocked. The rule
removes only schedules that a single move improves strictly, so no optimal schedule is lost; the
memo below stays valid because the schedule it maps an optimum to is optimal too, hence justified.
Makespan is excluded (an earlier finish need not lower it).

*Measured* (git history: benchmarks/results/kv_schedule_exact_order.md: device host, 16 solves at a time, 60 s,
12 seeds per n and arrival model, LP policy ``root``): with the deferral rule and candidates longest
output first, n = 12 all at 0: 12 of 12 proven (median 5.1 s, slowest 33.6 s); Poisson: 10 of 12
(median 7.1 s). Shortest first without the rule (twin order by arrival on in both): 10 of 12
(median 15.1 s) and 10 of 12 (16.1 s). Why longest first wins is not measured; a plausible reason is
that starting a long ramp fixes memory for many rounds, so the two branches' bounds part sooner.

*Dominance memo.* For every set ``U`` the search keeps up to ``memo_per_set`` fully explored decision
nodes ``(t_A, load_A, cost_A)``. A new node ``(t_B, U, load_B, cost_B)`` is dropped when a kept one has
``t_A <= t_B``, ``cost_A <= cost_B`` and ``load_A[r] <= load_B[r]`` for every round ``r > t_B``: any
completion of B (all its starts ``>= t_B``, so only rounds ``> t_B`` matter) is feasible from A at
the same added cost, and A's subtree was searched completely (or pruned against an incumbent no
worse than what it held), so B holds nothing better than the incumbent. A node is kept only after
its subtree is done: otherwise an ancestor would prune its own all-deferred branch, which reaches
the same ``U`` and load at a later round (the tiny brute-force tests caught exactly that).

Lower bound at a node (memory-time volume on the residual; after analysis/kv_bounds.py)
---------------------------------------------------------------------------------------
Each unstarted ``j`` finishes at ``f_j >= L_j = e_j + o_j`` (``e_j`` as above, with ``e_j >= t`` for
a candidate not yet decided at ``t``). Its volume ``v_j = s_j o_j + o_j (o_j + 1) / 2`` lies in rounds
``t+1 .. f_j``, where the free capacity is ``free[t'] = M - load[t']``. So the k unstarted requests
that finish first need the k smallest volumes ``V_k`` within rounds ``t+1 .. f_(k)``:
``f_(k) >= tau_k``, the first round at which the cumulative free capacity reaches ``V_k``; and
``f_(k) >= L_(k)``, the k-th smallest ``L`` (the first k to finish include one with ``L >= L_(k)``).
Hence (the same argument as the volume bound of Jaillet et al. arXiv 2502.07115 Lemmas 4.4-4.7
used in analysis/kv_bounds.py, here on the residual capacity):

    total latency    >= cost + sum_k max(tau_k, L_(k)) - sum_{j in U} a_j   (by_volume; see below),
    makespan         >= max(cost, tau_|U|, max_j L_j),
    weighted latency >= cost + sum_{j in U} w_j (L_j - a_j).

*Chain bounds* (total latency; the chain bound of solvers/kv_schedule_certify.py, proved there,
applied to the residual). Let ``B = {j in U : 2 P_j > M}`` with peak ``P_j = s_j + o_j``, ``b = |B| >= 2``,
``h_j = max(0, M - P_j - s_min)`` with ``s_min = min_{j in B} s_j``, ``x_j = o_j - h_j`` and
``e_min = min_{j in B} e_j``. Claim 1 there (for ``f_i <= f_j``: ``f_j - f_i >= o_j - h_i``) holds in
every feasible schedule and only uses that ``j`` has ``s_j >= s_min``. Order ``B`` by finish ``pi(1..b)``:
``f_pi(1) >= e_min + o_pi(1)`` and ``f_pi(k) >= f_pi(k-1) + o_pi(k) - h_pi(k-1)``, so

    by_chain    = b e_min + sum_{j in B} h_j + sum_m (b-m+1) x_(m) + sum_{j in U \ B} L_j
                  (x ascending; the rearrangement step of certify's Claim 2, shifted by e_min);
    by_position = sum_{j in U \ B} L_j + sum_k max(e_min + O_k - H_{k-1}, L^B_(k)),

where ``O_k`` is the sum of the k smallest ``o`` in ``B``, ``H_{k-1}`` the sum of the k-1 largest ``h``
in ``B`` and ``L^B_(k)`` the k-th smallest ``L`` in ``B``: the chain gives
``f_pi(k) >= e_min + sum_{m<=k} o_pi(m) - sum_{m<k} h_pi(m) >= e_min + O_k - H_{k-1}`` whatever the
order, and ``f_pi(k) >= L^B_(k)`` as for the volume bound. The total-latency bound is
``cost + max(by_volume, by_chain, by_position) - sum_{j in U} a_j``.

*LP and Lagrangian bounds* (``lp_policy``; class ``_NodeLP``, proofs there). ``root`` (default) solves
the LP relaxation of the ``aggregated-window`` program (models/kv_schedule_aggregated.py) over the
root's box and, at every node, evaluates the Lagrangian bound with the root's row duals in O(n);
``decision`` re-solves the node LP at every decision round (and passes its duals down);
``shallow`` only at the decision rounds of nodes with at most half of the requests started,
``quarter`` with at most a quarter; ``always`` at every node; ``none`` uses the combinatorial bounds only. Measured on 6+6 instances of
n = 10 and 12 (git history: benchmarks/results/kv_schedule_exact_lp.md, 60 s): the LP bounds shrink the gap left
at the time limit (n = 12 Poisson mean 10.1 % -> 4.4 %) but prove no more instances than ``none``;
the remaining n = 12 instances are limited by the incumbent as much as by the bound (Poisson seed 1:
start 560-564, optimum 540, proven by ``decision`` in 279 s on the device host). Starting from
improved incumbents (``improve_seconds``) did not change which n = 12 instances are proven
(git history: benchmarks/results/kv_schedule_exact_lp_improve.md): there the bound is the limit.

A node is pruned when its bound (rounded up for integer objectives) is not below the incumbent.
The incumbent starts from the caller's schedule (SGS + local search and the online policies of
``solvers/kv_schedule_certify.best_heuristic_schedule``). When the search finishes, the incumbent
is optimal. At the time limit the reported bound is the smallest bound over what is left
unexplored: the pending "not at t" branches up the search stack (each bounded by its node's bound,
which covers both branches) and the node being searched; everything else was searched or pruned
against an incumbent no worse than the final one. It is never below the root's bound.
"""
from __future__ import annotations

import math
import time

import numpy as np
from dataclasses import dataclass, field

from servopt.errors import InputError
from servopt.instances.kv_schedule import KVSchedule, KVScheduleInstance, ScheduledRequest

FORMULATIONS = ("branch-and-bound",)
# none: combinatorial bounds only; root: plus the root LP and the Lagrangian bound with its duals at
# every node; decision: re-solve the node LP at every decision round; shallow: at the decision rounds
# of nodes with at most half of the requests started; quarter: at most a quarter; always: at every node
LP_POLICIES = ("none", "root", "decision", "shallow", "quarter", "always")
CANDIDATE_ORDERS = ("longest-first", "shortest-first")
# auto: the compiled search (solvers/kv_schedule_bnb_kernel.py) where it applies, else the Python one
ENGINES = ("auto", "compiled", "python")


class _TimeUp(Exception):
    pass


class _NodeLP:
    """LP and Lagrangian bounds of a search node from the ``aggregated-window`` relaxation.

    *Node box.* Column ``(g, p)`` (type g started in round p) gets lower bound = the number of started
    members of g at p and upper bound = that plus the number of unstarted members of g whose earliest
    start ``e_j <= p``. Every completion of the node is an integer point of this box (started requests
    keep their rounds; an unstarted request starts at some ``p >= e_j``), so the LP over the box is a
    lower bound on every completion.

    *Lagrangian bound (cheap, O(n) per node).* Write the relaxation as ``min c z`` over the assignment
    rows and the box, plus the rows ``A z <= b`` (memory and exclusive-window rows). For any ``u >= 0``
    (here: minus the row duals of the last LP solved on an ancestor)

        L(u) = -u b + sum_j min_{p allowed for j} rc(g_j, p),    rc = c + A^T u,

    where a started request's only allowed p is its start and an unstarted one may take any
    ``p >= max(e_j, lo_g)`` in its window. ``L(u)`` is the Lagrangian dual function (the members choose
    their columns independently: the box's upper bounds count exactly the members allowed there), so
    ``L(u) <=`` the node's LP value ``<=`` every completion (weak duality; Geoffrion 1974), with equality to
    the LP value when ``u`` is optimal for this node. Suffix minima of ``rc`` per type make each node O(n).
    """

    def __init__(self, instance, cutoff: float):
        from scipy.sparse import csc_matrix, csr_matrix

        from servopt.solvers.kv_schedule_direct import build_direct

        self.dm = build_direct(instance, formulation="aggregated-window", cutoff=cutoff, relax=True)
        g = self.dm.groups
        self.h = self.dm.highs
        self.h.setOptionValue("output_flag", False)
        self.h.setOptionValue("threads", 1)
        self.ncol = self.dm.num_columns
        self.idx = np.arange(self.ncol, dtype=np.int32)
        lengths = np.array([hi - lo + 1 for lo, hi in g.windows], dtype=np.int64)
        self.offset = np.cumsum(lengths) - lengths
        self.lo = [lo for lo, _ in g.windows]
        self.hi = [hi for _, hi in g.windows]
        self.group_of = {}
        for k, members in enumerate(g.members):
            for j in members:
                self.group_of[j] = k
        lp = self.h.getLp()
        a = lp.a_matrix_
        self.groups = len(lengths)
        import highspy

        make = csc_matrix if a.format_ == highspy.MatrixFormat.kColwise else csr_matrix
        full = make((np.asarray(a.value_), np.asarray(a.index_), np.asarray(a.start_)),
                    shape=(lp.num_row_, lp.num_col_)).tocsr()
        self.rows_t = full[self.groups:, :].T.tocsr()  # A^T of the <= rows (assignment rows come first)
        self.rhs = np.asarray(lp.row_upper_)[self.groups:]
        self.cost = np.asarray(lp.col_cost_)
        self.status = highspy.HighsModelStatus  # looked up once: ``solve`` runs at many nodes
        self.solves = 0

    def _box(self, starts, unstarted, e):
        lb = np.zeros(self.ncol)
        ub = np.zeros(self.ncol)
        for j, p in enumerate(starts):
            if p < 0:
                continue
            k = self.group_of[j]
            if not self.lo[k] <= p <= self.hi[k]:
                return None
            c = self.offset[k] + p - self.lo[k]
            lb[c] += 1
            ub[c] += 1
        for j in unstarted:
            k = self.group_of[j]
            first = max(e[j], self.lo[k])
            if first > self.hi[k]:
                return None
            ub[self.offset[k] + first - self.lo[k]: self.offset[k] + self.hi[k] - self.lo[k] + 1] += 1
        return lb, ub

    def solve(self, starts, unstarted, e, time_limit_s: float = math.inf):
        """Re-solve the node's LP: (LP value, multipliers for ``lagrangian``); value inf if the box is
        empty, -inf (no bound) if HiGHS stops at ``time_limit_s`` (the search's time left)."""
        box = self._box(starts, unstarted, e)
        if box is None:
            return math.inf, None
        self.h.changeColsBounds(self.ncol, self.idx, box[0], box[1])
        self.h.setOptionValue("time_limit", float(max(time_limit_s, 1e-3)))
        self.h.run()
        self.solves += 1
        status = self.h.getModelStatus()
        if status == self.status.kInfeasible:
            return math.inf, None
        if status != self.status.kOptimal:
            return -math.inf, None  # no verdict from the LP: no bound, keep the ancestor's multipliers
        u = np.maximum(-np.asarray(self.h.getSolution().row_dual)[self.groups:], 0.0)
        rc = self.cost + self.rows_t @ u
        suffix_min = []
        for k in range(self.groups):
            seg = rc[self.offset[k]: self.offset[k] + self.hi[k] - self.lo[k] + 1]
            suffix_min.append(np.minimum.accumulate(seg[::-1])[::-1])
        multipliers = (float(-u @ self.rhs), rc, suffix_min)
        return float(self.h.getInfo().objective_function_value), multipliers

    def lagrangian(self, multipliers, starts, unstarted, e):
        """``L(u)`` of the class docstring for the node; inf when some request has no allowed column."""
        const, rc, suffix_min = multipliers
        total = const
        for j, p in enumerate(starts):
            if p < 0:
                continue
            k = self.group_of[j]
            if not self.lo[k] <= p <= self.hi[k]:
                return math.inf
            total += rc[self.offset[k] + p - self.lo[k]]
        for j in unstarted:
            k = self.group_of[j]
            first = max(e[j], self.lo[k])
            if first > self.hi[k]:
                return math.inf
            total += suffix_min[k][first - self.lo[k]]
        return float(total)


@dataclass
class BnBResult:
    """The outcome of ``branch_and_bound``; ``to_dict`` is the kind's result JSON."""

    status: str
    objective: float
    bound: float
    gap: float
    schedule: KVSchedule
    solve_seconds: float
    search_seconds: float
    heuristic_seconds: float
    nodes: int
    memo_hits: int
    incumbent_source: str
    horizon: int
    heuristics: dict = field(default_factory=dict)
    deferral_prunes: int = 0  # nodes pruned by the justified-deferral rule (module docstring)
    notes: list = field(default_factory=list)  # what the search left out to stay within its limits

    def to_dict(self, instance: KVScheduleInstance) -> dict:
        out = {
            "kind": "kv_schedule",
            "method": "branch-and-bound",
            "formulation": "branch-and-bound",
            "objective_name": instance.objective,
            "status": self.status,
            "objective": self.objective,
            "bound": self.bound,
            "bound_source": "branch-and-bound",
            "gap": self.gap,
            "solve_seconds": round(self.solve_seconds, 4),
            "solver": "servopt-bnb",
            "solver_seconds": round(self.search_seconds, 4),
            "nodes": self.nodes,
            "memo_hits": self.memo_hits,
            "deferral_prunes": self.deferral_prunes,
            "horizon": self.horizon,
            "horizon_is_proven": True,
            "heuristic_seconds": round(self.heuristic_seconds, 4),
            "incumbent_source": self.incumbent_source,
            "heuristics": self.heuristics,
            "warm_start": {"used": True, "source": self.incumbent_source},
            "model_size": {},
        }
        out["requests"] = self.schedule.to_dict()["requests"]
        return out

    def to_dataframe(self):
        return self.schedule.to_dataframe()


def _gap(objective: float, bound: float) -> float:
    return 0.0 if objective <= bound + 1e-9 else (objective - bound) / max(abs(objective), 1e-9)


def _kernel_mode(engine: str, lp_policy: str, objective: str) -> str:
    """``all``: the compiled search (solvers/kv_schedule_bnb_kernel.py) runs the whole tree (LP policies
    none and root, every objective); ``none``: the Python search does.

    Tried and dropped: handing the subtrees below the LP-re-solving nodes of ``quarter`` to the compiled
    search with the ancestor LP's multipliers. On Poisson n = 12 seeds 0 and 1 (2-core machine, optimal
    incumbents given) it proved seed 1 in 15.0 s and left seed 0 open after 100 s (6.1 M nodes), where
    the compiled ``root`` search proves them from its own incumbents in 5.7 s and 34.5 s: the fresher
    multipliers did not pay for the LP solves and the per-subtree hand-over."""
    if engine == "python":
        return "none"
    if engine == "auto":
        import importlib.util

        if importlib.util.find_spec("numba") is None:  # a dependency, but keep working without it
            return "none"
        from servopt.solvers import kv_schedule_bnb_kernel as kernel

        if lp_policy in ("none", "root") and not kernel.compiled_on_disk():
            # compiling takes 15-45 s, more than most limits: search in Python this time (same tree,
            # ~25x fewer nodes per second) while a detached process compiles for the next solve
            kernel.start_background_warm_up()
            return "none"
    if lp_policy in ("none", "root"):
        return "all"
    if engine == "compiled":
        raise InputError("engine", f"the compiled search runs LP policies none and root, not '{lp_policy}'; "
                                   "use engine='python'")
    return "none"


def _integral(instance: KVScheduleInstance) -> bool:
    return instance.objective in ("total_latency", "makespan") or all(float(r.weight).is_integer() for r in instance.requests)


# Measured on the dev machine (2 cores; paper family, n = 60 and 200): building the aggregated-window
# LP and its transposes costs 2-2.3e-6 s per estimated nonzero and ~200 bytes of resident memory.
NODE_LP_SECONDS_PER_NONZERO = 3e-6
NODE_LP_MAX_NONZEROS = 5_000_000  # ~1 GB resident: keeps every solve under the 2 GB ceiling


def estimated_nonzeros(instance: KVScheduleInstance, cutoff: float) -> int:
    """Nonzeros of the time-indexed model within the cut-off windows: each start column of request j
    touches the o_j memory rows of its run. The aggregated models merge twins, so this is an upper
    bound for them (measured: 0.4-1.0 of the real count for aggregated-window)."""
    from servopt.models.kv_schedule import start_windows

    _, _, windows = start_windows(instance, cutoff=cutoff)
    return int(sum(max(0, hi - lo + 1) * r.output_tokens for (lo, hi), r in zip(windows, instance.requests)))


def node_lp_affordable(instance: KVScheduleInstance, cutoff: float, seconds_left: float) -> tuple[bool, str]:
    """Whether building the root LP fits in a quarter of the time left and under the memory ceiling;
    decided before anything is built (a 200-request build took 16 s and 1.5 GB)."""
    nonzeros = estimated_nonzeros(instance, cutoff)
    if nonzeros > NODE_LP_MAX_NONZEROS:
        return False, f"~{nonzeros:,} nonzeros exceed the memory ceiling of {NODE_LP_MAX_NONZEROS:,}"
    if nonzeros * NODE_LP_SECONDS_PER_NONZERO > 0.25 * seconds_left:
        return False, f"~{nonzeros:,} nonzeros would take ~{nonzeros * NODE_LP_SECONDS_PER_NONZERO:.1f} s to build, " \
                      f"over a quarter of the {seconds_left:.1f} s left"
    return True, ""


def branch_and_bound(instance: KVScheduleInstance, *, time_limit_s: float, incumbent: KVSchedule | None = None,
                     incumbent_source: str = "given", heuristic_seconds: float = 0.5,
                     memo_limit: int = 3_000_000, memo_per_set: int = 64, lp_policy: str = "root",
                     improve_seconds: float = 0.0, quick_seconds: float = 1.0,
                     justify_deferrals: bool = True, candidate_order: str = "longest-first",
                     engine: str = "auto") -> BnBResult:
    """Exact optimum by the search of the module docstring (incumbent and a valid bound at the limit).

    ``incumbent``: a feasible non-preemptive schedule to start from; when None, the SGS and
    local-search heuristics of ``solvers/kv_schedule_certify`` provide one (within ``heuristic_seconds``).
    ``improve_seconds > 0``: when a first search of ``quick_seconds`` does not finish, spend that long
    improving its incumbent (ILS + MIP-LNS, solvers/kv_schedule_improve.py) and search again from it
    with the time left. A better incumbent prunes more: at n = 12 the starting schedules were 1-4 %
    above the optimum (git history: benchmarks/results/kv_schedule_exact_lp.md).
    """
    from servopt.solvers.kv_schedule_certify import best_heuristic_schedule

    t0 = time.perf_counter()
    if improve_seconds > 0 and time_limit_s > quick_seconds:
        from servopt.solvers.kv_schedule_improve import improve_schedule

        first = branch_and_bound(instance, time_limit_s=quick_seconds, incumbent=incumbent,
                                 incumbent_source=incumbent_source, heuristic_seconds=heuristic_seconds,
                                 memo_limit=memo_limit, memo_per_set=memo_per_set, lp_policy=lp_policy,
                                 justify_deferrals=justify_deferrals, candidate_order=candidate_order, engine=engine)
        if first.status == "optimal":
            return first
        improved, _ = improve_schedule(instance, first.schedule, seconds=improve_seconds)
        left = max(0.0, time_limit_s - (time.perf_counter() - t0))
        second = branch_and_bound(instance, time_limit_s=left, incumbent=improved, incumbent_source="improved",
                                  heuristic_seconds=0.0, memo_limit=memo_limit, memo_per_set=memo_per_set,
                                  lp_policy=lp_policy, justify_deferrals=justify_deferrals,
                                  candidate_order=candidate_order, engine=engine)
        if second.bound < first.bound:  # both bounds are valid: report the larger
            second.bound = first.bound
            second.gap = _gap(second.objective, second.bound)
            if second.gap == 0.0:
                second.status = "optimal"
        second.solve_seconds = time.perf_counter() - t0
        second.nodes += first.nodes
        second.deferral_prunes += first.deferral_prunes
        second.heuristic_seconds += first.heuristic_seconds + improve_seconds
        return second
    reqs = instance.requests
    n = len(reqs)
    obj = instance.objective
    M = int(instance.memory_tokens)
    a = [int(r.arrival) for r in reqs]
    s = [int(r.prompt_tokens) for r in reqs]
    o = [int(r.output_tokens) for r in reqs]
    w = [float(r.weight) if obj == "weighted_latency" else 1.0 for r in reqs]
    vol = [s[j] * o[j] + o[j] * (o[j] + 1) // 2 for j in range(n)]
    peak = [s[j] + o[j] for j in range(n)]
    integral = _integral(instance)

    name, sched, cost, tried = best_heuristic_schedule(
        instance, warm_starts={incumbent_source: incumbent} if incumbent is not None else None,
        heuristic_seconds=heuristic_seconds)
    heur_s = time.perf_counter() - t0
    by_id = {r.id: r.start for r in sched.requests}
    best_cost = [float(cost)]
    best_starts = [[int(by_id[r.id]) for r in reqs]]
    best_source = [name]

    horizon = max(a) + sum(o)
    H = horizon + max(o) + 2
    load = [0] * (H + 1)
    # cap[j][k-1] = most load the other requests may hold in the k-th round of j's run
    cap = [[M - s[j] - k for k in range(1, o[j] + 1)] for j in range(n)]
    twin_before = [[] for _ in range(n)]  # twins of j that come first in (arrival, index) order (module docstring, Symmetry)
    twins_so_far: dict = {}
    for j in sorted(range(n), key=lambda j: (a[j], j)):
        earlier = twins_so_far.setdefault((s[j], o[j], w[j]), [])
        twin_before[j] = list(earlier)
        earlier.append(j)
    # candidates branch in this order at a decision round; longest first measured better (module docstring)
    order = sorted(range(n), key=lambda j: (-o[j] if candidate_order == "longest-first" else o[j], a[j], j))
    starts = [-1] * n

    def fits(j, p):
        c = cap[j]
        for k in range(o[j]):
            if load[p + 1 + k] > c[k]:
                return False
        return True

    def earliest(j, lo):
        p = max(lo, a[j])
        while not fits(j, p):
            p += 1
        return p

    def add(j, p, sign):
        for k in range(o[j]):
            load[p + 1 + k] += sign * (s[j] + k + 1)

    def finish_cost(j, p):
        return p + o[j] if obj == "makespan" else w[j] * (p + o[j] - a[j])

    def combine(c, v):
        return max(c, v) if obj == "makespan" else c + v

    def bound(t, unstarted, e, cost_so_far):
        """Module docstring bound; ``e[j]`` are valid earliest starts of the unstarted requests."""
        if not unstarted:
            return cost_so_far
        L = sorted(e[j] + o[j] for j in unstarted)
        if obj == "weighted_latency":
            return cost_so_far + sum(w[j] * (e[j] + o[j] - a[j]) for j in unstarted)
        vols = sorted(vol[j] for j in unstarted)
        taus = []
        need_idx, need = 0, vols[0]
        acc, tt = 0, t
        while need_idx < len(vols):
            tt += 1
            acc += M - load[tt] if tt <= H else M
            while need_idx < len(vols) and acc >= need:
                taus.append(tt)
                need_idx += 1
                if need_idx < len(vols):
                    need += vols[need_idx]
        if obj == "makespan":
            return max(cost_so_far, taus[-1], L[-1])
        sum_a = sum(a[j] for j in unstarted)
        by_volume = sum(max(tk, lk) for tk, lk in zip(taus, L))
        big = [j for j in unstarted if 2 * peak[j] > M]
        if len(big) < 2:
            return cost_so_far + by_volume - sum_a
        s_min = min(s[j] for j in big)
        head = {j: max(0, M - peak[j] - s_min) for j in big}
        x = sorted(o[j] - head[j] for j in big)
        b = len(big)
        e_min = min(e[j] for j in big)
        rest = sum(e[j] + o[j] for j in unstarted if 2 * peak[j] <= M)
        by_chain = b * e_min + sum(head.values()) + sum((b - m) * x[m] for m in range(b)) + rest
        # per position: the k-th big finisher waits for k ramps less k-1 head-rooms, and for its release
        o_up = sorted(o[j] for j in big)
        h_down = sorted(head.values(), reverse=True)
        L_big = sorted(e[j] + o[j] for j in big)
        by_position, o_acc, h_acc = rest, 0, 0
        for k in range(b):
            o_acc += o_up[k]
            if k:
                h_acc += h_down[k - 1]
            by_position += max(e_min + o_acc - h_acc, L_big[k])
        return cost_so_far + max(by_volume, by_chain, by_position) - sum_a

    def prunes(b):
        if b == math.inf:  # the node LP's box is empty: no completion lies inside the cut-off windows
            return True
        if integral:
            return math.ceil(b - 1e-6) >= best_cost[0] - 1e-9
        return b >= best_cost[0] - 1e-9

    node_lp = None
    if engine not in ENGINES:
        raise InputError("engine", f"unknown engine '{engine}' (known: {', '.join(ENGINES)})")
    if candidate_order not in CANDIDATE_ORDERS:
        raise InputError("candidate_order", f"unknown candidate order '{candidate_order}' (known: {', '.join(CANDIDATE_ORDERS)})")
    if lp_policy not in LP_POLICIES:
        raise InputError("lp_policy", f"unknown LP policy '{lp_policy}' (known: {', '.join(LP_POLICIES)})")
    notes: list[str] = []
    if lp_policy != "none" and obj != "makespan" and n > 1:
        affordable, why = node_lp_affordable(instance, best_cost[0], time_limit_s - (time.perf_counter() - t0))
        if not affordable:
            notes.append(f"root LP skipped ({why}); the bound is the combinatorial one")
        else:
            try:
                node_lp = _NodeLP(instance, cutoff=best_cost[0])
            except InputError:
                node_lp = None  # cut-off windows empty for some request: nothing can beat the incumbent
    memo: dict = {}
    stats = {"nodes": 0, "memo_hits": 0, "memo_size": 0, "unjustified": 0}
    # deferrals (j, t0) not yet blocked; only for objectives that an earlier finish strictly improves
    justify = justify_deferrals and obj != "makespan"
    waits: list = [[]]
    pending: list[float] = []

    def resolve_lp(idx, lp_parent, unstarted):
        if lp_parent is None or lp_policy == "always":
            return True
        if lp_policy == "shallow":
            return idx == 0 and 2 * (n - len(unstarted)) <= n
        if lp_policy == "quarter":
            return idx == 0 and 4 * (n - len(unstarted)) <= n
        return lp_policy == "decision" and idx == 0  # root: the root LP's multipliers serve every node
    deadline = t0 + time_limit_s

    def refresh(unstarted, e, lo_of):
        return {j: earliest(j, max(e[j], lo_of(j))) for j in unstarted}

    def unjustified(t, unstarted):
        """Drop the deferrals now blocked; True when one can no longer be blocked (module docstring)."""
        live = []
        add_max = None
        for j, t0 in waits[0]:
            p = starts[j]
            c = cap[j]
            blocked = False
            for k in range(o[j]):
                r = t0 + 1 + k
                others = load[r] - (s[j] + r - p if p >= 0 and p < r <= p + o[j] else 0)
                if others > c[k]:
                    blocked = True
                    break
            if blocked:
                continue
            if t0 + o[j] <= t:
                return True  # rounds <= t are final: j fits at t0 in every completion
            if add_max is None:
                add_max = [0] * (max(o) + 2)  # most load the unstarted may still add d rounds after t
                for i in unstarted:
                    for d in range(1, len(add_max)):
                        add_max[d] += min(s[i] + d, peak[i])
            can_block = False
            for r in range(t + 1, t0 + o[j] + 1):
                others = load[r] - (s[j] + r - p if p >= 0 and p < r <= p + o[j] else 0)
                extra = add_max[r - t] - (min(s[j] + r - t, peak[j]) if j in unstarted else 0)
                if others + extra > c[r - t0 - 1]:
                    can_block = True
                    break
            if not can_block:
                return True
            live.append((j, t0))
        waits[0] = live
        return False

    def decision_round(t, unstarted, e, cost_so_far, lp_parent):
        # e: valid earliest starts (>= t) of the unstarted on the current load; t = min e
        if justify:
            saved = waits[0]
            try:
                if unjustified(t, unstarted):
                    stats["unjustified"] += 1
                    return
                visit_round(t, unstarted, e, cost_so_far, lp_parent)
            finally:
                waits[0] = saved
        else:
            visit_round(t, unstarted, e, cost_so_far, lp_parent)

    def visit_round(t, unstarted, e, cost_so_far, lp_parent):
        key = frozenset(unstarted)
        here = np.asarray(load, dtype=np.int32)
        kept = memo.get(key)
        if kept is not None:
            for t_seen, load_seen, cost_seen in kept:
                if t_seen <= t and cost_seen <= cost_so_far + 1e-9 and np.all(load_seen[t + 1:] <= here[t + 1:]):
                    stats["memo_hits"] += 1
                    return
        else:
            kept = memo[key] = []
        cands = [j for j in order if j in unstarted and e[j] == t]
        choose(t, cands, 0, set(unstarted), e, cost_so_far, lp_parent)
        # kept only once its subtree is done: an ancestor still being explored must not prune its
        # own descendants (the all-deferred branch reaches the same U and load at a later round)
        if stats["memo_size"] < memo_limit:
            # drop the kept states that this one dominates (same test, the other way round)
            kept[:] = [k for k in kept if not (t <= k[0] and cost_so_far <= k[2] + 1e-9
                                                and np.all(here[k[0] + 1:] <= k[1][k[0] + 1:]))]
            kept.append((t, here, cost_so_far))
            if len(kept) > memo_per_set:
                kept.pop(0)
            stats["memo_size"] += 1

    def choose(t, cands, idx, unstarted, e, cost_so_far, lp_parent):
        stats["nodes"] += 1
        if stats["nodes"] % 512 == 0 and time.perf_counter() > deadline:
            # what is left unexplored: the "not at t" branches still pending up the stack, and this node
            stats["open_bound"] = min(pending + [bound(t, unstarted, e, cost_so_far)]) if unstarted else cost_so_far
            raise _TimeUp
        if not unstarted:
            if cost_so_far < best_cost[0] - 1e-9:
                best_cost[0], best_starts[0], best_source[0] = cost_so_far, list(starts), "branch-and-bound"
            return
        b = bound(t, unstarted, e, cost_so_far)
        if prunes(b):
            return
        lp_here = lp_parent
        if node_lp is not None:
            if lp_parent is not None:
                b = max(b, node_lp.lagrangian(lp_parent, starts, unstarted, e))
                if prunes(b):
                    return
            if resolve_lp(idx, lp_parent, unstarted):
                lp_value, multipliers = node_lp.solve(starts, unstarted, e, deadline - time.perf_counter())
                b = max(b, lp_value)
                if prunes(b):
                    return
                if multipliers is not None:
                    lp_here = multipliers
        if idx == len(cands):
            e2 = {j: earliest(j, max(e[j], t + 1)) for j in unstarted}
            decision_round(min(e2.values()), unstarted, e2, cost_so_far, lp_here)
            return
        j = cands[idx]
        twin_waiting = any(i in unstarted for i in twin_before[j])
        if not twin_waiting and fits(j, t):
            add(j, t, 1)
            starts[j] = t
            unstarted.discard(j)
            try:
                e2 = {i: earliest(i, e[i]) for i in unstarted}
                pending.append(b)
                choose(t, cands, idx + 1, unstarted, e2, combine(cost_so_far, finish_cost(j, t)), lp_here)
            finally:
                pending.pop()
                unstarted.add(j)
                starts[j] = -1
                add(j, t, -1)
        e3 = dict(e)
        e3[j] = earliest(j, t + 1)
        if justify:
            waits[0].append((j, t))  # j fits at t on the current load: some later start must block it
        try:
            choose(t, cands, idx + 1, unstarted, e3, cost_so_far, lp_here)
        finally:
            if justify:
                waits[0].pop()

    mode = _kernel_mode(engine, lp_policy, obj)
    if mode == "none" and engine == "auto" and lp_policy in ("none", "root"):
        notes.append("searched in Python: the compiled search is not on disk yet (a background process compiles "
                     "it for later solves)")

    all_req = set(range(n))
    e0 = {j: earliest(j, 0) for j in all_req}
    root_bound = bound(min(e0.values()), all_req, e0, 0.0)  # no request starts before min e0
    root_multipliers = None
    if node_lp is not None:
        root_value, root_multipliers = node_lp.solve(starts, all_req, e0, deadline - time.perf_counter())
        root_bound = max(root_bound, root_value)
    status = "optimal"
    t1 = time.perf_counter()
    if mode == "all":
        from servopt.solvers import kv_schedule_bnb_kernel as kernel

        twin_matrix = np.zeros((n, n), dtype=bool)
        for j, before in enumerate(twin_before):
            twin_matrix[j, before] = True
        lp = None
        if root_multipliers is not None:
            const, rc, suffix_min = root_multipliers
            lp = (const, rc, np.concatenate(suffix_min), [node_lp.group_of[j] for j in range(n)],
                  node_lp.lo, node_lp.hi, node_lp.offset)
        prep = kernel.prepare(M=M, a=a, s=s, o=o, w=w, objective=obj, integral=integral, justify=justify,
                              order=order, twin_before=twin_matrix, lp=lp)
        out = kernel.search(prep, kernel.root_node(prep), best_cost=best_cost[0], best_starts=best_starts[0],
                            deadline=deadline, memo_entries=memo_limit)
        if out.improved:
            best_cost[0], best_starts[0], best_source[0] = out.best_cost, out.best_starts, "branch-and-bound"
        stats.update(nodes=out.nodes, unjustified=out.deferral_prunes, memo_hits=out.memo_hits)
        if not out.finished:
            status = "time_limit"
            stats["open_bound"] = out.open_bound
    else:
        try:
            decision_round(min(e0.values()), all_req, e0, 0.0, None)
        except _TimeUp:
            status = "time_limit"
    search_s = time.perf_counter() - t1
    if status == "optimal":
        final_bound = best_cost[0]
    else:
        final_bound = min(best_cost[0], max(root_bound, stats.get("open_bound", root_bound)))
        if integral:
            final_bound = min(best_cost[0], float(math.ceil(final_bound - 1e-6)))
    starts_final = best_starts[0]
    rows = tuple(ScheduledRequest(r.id, int(r.arrival), int(p), int(p) + int(r.output_tokens))
                 for r, p in zip(reqs, starts_final))
    schedule = KVSchedule(rows, objective_name=obj, method=f"branch-and-bound({best_source[0]})")
    objective = schedule.objective_value(instance)
    gap = _gap(objective, final_bound)
    if gap == 0.0:
        status = "optimal"
    tried = dict(tried)
    return BnBResult(status=status, objective=objective, bound=float(final_bound), gap=gap, schedule=schedule,
                     solve_seconds=time.perf_counter() - t0, search_seconds=search_s, heuristic_seconds=heur_s,
                     nodes=stats["nodes"], memo_hits=stats["memo_hits"], incumbent_source=best_source[0],
                     deferral_prunes=stats["unjustified"],
                     horizon=horizon, heuristics=tried, notes=notes)
