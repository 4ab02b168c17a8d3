"""The one place that talks to HiGHS (and to any other Pyomo solver asked for by name).

Every solve carries a time limit and reports the incumbent, the dual bound, the relative gap
and a status from a fixed vocabulary, whatever route it took:

* ``solve(model, ...)``: a Pyomo model through the current ``pyomo.contrib.solver`` HiGHS
  interface (research/pyomo-highs.md §1: ``load_solutions=False`` and
  ``raise_exception_on_nonoptimal_result=False`` always, values loaded only if an incumbent
  exists), or any other Pyomo solver by name through the legacy factory.
* ``solve_highspy(h, ...)``: a model already passed to a ``highspy.Highs`` object by a direct
  array builder (used where Pyomo's ~10 us per nonzero build cost dominates).

Status vocabulary (research/pyomo-highs.md §6.2):

=========================  ================================================================
``optimal``                proven within ``rel_gap`` (the gap reached is recorded)
``feasible``               stopped by a node/iteration limit with an incumbent
``time_limit``             stopped by the time limit; ``has_solution`` says if an incumbent exists
``infeasible``             proven infeasible
``unbounded``              proven unbounded
``error``                  anything else; ``log_tail`` says what HiGHS printed
=========================  ================================================================

Gap, our definition: for minimisation ``(incumbent - bound) / max(|incumbent|, 1e-9)``, for
maximisation ``(bound - incumbent) / max(|incumbent|, 1e-9)``; ``None`` when either is missing
or infinite, or when the incumbent is 0 and the bound is not (a ratio to 0 is no gap). It is never negative beyond round-off.

HiGHS fixes its thread count per process at the first solve (research/pyomo-highs.md §4), so
``threads`` defaults to 1 everywhere and callers should not vary it within one process.

*Presolve and the time limit* (both routes). HiGHS's presolve does not check the time limit
everywhere (ERGO-Code/HiGHS on GitHub, #1278 and #1501, both open). On the KV window programs it ran about
1e-5 s per nonzero whatever the limit: 10.1 s under a 4 s limit at 982k nonzeros (paper-size instance,
2-core machine), where it also reduced nothing; 1.7-4.2 s under a 1 s limit at 0.1-0.3 M nonzeros.
So where ``nonzeros * PRESOLVE_SECONDS_PER_NONZERO`` exceeds ``PRESOLVE_SHARE_OF_LIMIT`` of the
limit, presolve is switched off and the limit holds (a ``presolve`` entry in ``options`` wins).
The Pyomo route hands the model over before the solve and charges that to the limit too.
Presolve stays on where it is cheap against the limit, because it can help: on 6 all-at-0 n = 12
instances at 30 s it certified 3 against 2 without it.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from servopt.errors import InfeasibleError, SolverError

DEFAULT_THREADS = 1
_LOG_TAIL_LINES = 30
PRESOLVE_SECONDS_PER_NONZERO = 1e-5  # measured, module docstring
PRESOLVE_SHARE_OF_LIMIT = 0.25


@dataclass(frozen=True)
class SolveResult:
    """What one solver call produced. Values are loaded into the model iff ``has_solution``."""

    status: str
    has_solution: bool
    objective: float | None
    bound: float | None
    gap: float | None
    sense: str  # "min" or "max"
    wall_seconds: float
    solver_seconds: float | None
    nodes: int | None
    solver: str
    interface: str
    rel_gap_target: float
    time_limit_s: float
    log_tail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def common_fields(self) -> dict[str, Any]:
        """The fields every result JSON carries (ARCHITECTURE.md, "Contracts")."""
        return {
            "status": self.status,
            "objective": _finite_or_none(self.objective),
            "bound": _finite_or_none(self.bound),
            "gap": self.gap,
            "solve_seconds": round(self.wall_seconds, 4),
            "solver": self.solver,
            "solver_seconds": None if self.solver_seconds is None else round(self.solver_seconds, 4),
            "nodes": self.nodes,
        }

    def require_solution(self, what: str = "the instance") -> None:
        """Raise a one-line error unless there is a schedule/plan to report."""
        if self.status == "infeasible":
            raise InfeasibleError(f"{what} is infeasible (proven by {self.solver})")
        if not self.has_solution:
            if self.status == "time_limit":
                raise SolverError(
                    f"time limit of {self.time_limit_s:g} s reached with no feasible solution for {what}"
                    + (f" (dual bound {self.bound:g})" if self.bound is not None and math.isfinite(self.bound) else "")
                )
            raise SolverError(f"{self.solver} returned status '{self.status}' for {what}: {self.last_log_line()}")

    def last_log_line(self) -> str:
        lines = [ln for ln in self.log_tail.splitlines() if ln.strip()]
        return lines[-1].strip() if lines else "no log"


def relative_gap(objective: float | None, bound: float | None, sense: str) -> float | None:
    """The stated gap definition (module docstring)."""
    if objective is None or bound is None or not math.isfinite(objective) or not math.isfinite(bound):
        return None
    diff = (objective - bound) if sense == "min" else (bound - objective)
    if abs(objective) <= 1e-9:  # relative to 0: undefined unless the bound meets it
        return 0.0 if abs(diff) <= 1e-9 else None
    gap = diff / abs(objective)
    return max(gap, 0.0) if gap > -1e-9 else gap


def _finite_or_none(x: float | None) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return float(x)


def _tail(log: str | None) -> str:
    if not log:
        return ""
    return "\n".join(log.splitlines()[-_LOG_TAIL_LINES:])


def _objective_sense(model) -> str:
    import pyomo.environ as pyo

    objectives = list(model.component_data_objects(pyo.Objective, active=True))
    if len(objectives) != 1:
        raise SolverError(f"model must have exactly one active objective, found {len(objectives)}")
    return "max" if objectives[0].sense == pyo.maximize else "min"


def _with_presolve_rule(options: Mapping[str, Any] | None, nonzeros: int, time_limit_s: float) -> dict:
    """``options`` plus ``presolve``: "off" where presolve would overrun the limit (module docstring),
    else HiGHS's default "choose" (set explicitly, so that a re-used ``Highs`` keeps no earlier "off")."""
    options = dict(options or {})
    if "presolve" not in options:
        too_slow = nonzeros * PRESOLVE_SECONDS_PER_NONZERO > PRESOLVE_SHARE_OF_LIMIT * float(time_limit_s)
        options["presolve"] = "off" if too_slow else "choose"
    return options


def solve(
    model,
    *,
    time_limit_s: float,
    rel_gap: float = 1e-4,
    threads: int = DEFAULT_THREADS,
    seed: int = 0,
    node_limit: int | None = None,
    warm_start=None,
    solver: str = "highs",
    options: Mapping[str, Any] | None = None,
    tee: bool = False,
) -> SolveResult:
    """Solve a Pyomo model; load the incumbent into it if there is one.

    ``warm_start`` is a ``pyomo.common.collections.ComponentMap`` (or an iterable of
    ``(var, value)`` pairs) giving a full or partial MIP start.
    With HiGHS it is passed to ``Highs.setSolution`` on the instance the interface builds; the
    pyomo 6.10 contrib interface has no public option for it (research/pyomo-highs.md §1.3), so
    this goes through its ``_solver_model`` attribute, right before the solve, with no model
    change in between (the case where the start is known to be kept).
    """
    if time_limit_s is None or not (time_limit_s > 0):
        raise SolverError("a positive time limit is required for every solve")
    sense = _objective_sense(model)
    if solver.lower() == "highs":
        return _solve_contrib_highs(
            model,
            sense=sense,
            time_limit_s=time_limit_s,
            rel_gap=rel_gap,
            threads=threads,
            seed=seed,
            node_limit=node_limit,
            warm_start=warm_start,
            options=options,
            tee=tee,
        )
    return _solve_legacy(model, sense=sense, solver=solver, time_limit_s=time_limit_s, rel_gap=rel_gap, options=options, tee=tee)


def _solve_contrib_highs(model, *, sense, time_limit_s, rel_gap, threads, seed, node_limit, warm_start, options, tee):
    from pyomo.contrib.solver.common.factory import SolverFactory
    from pyomo.contrib.solver.common.results import SolutionStatus, TerminationCondition

    opt = SolverFactory("highs")
    if not opt.available():
        raise SolverError("HiGHS is not available: install highspy (pip install 'highspy>=1.15,<1.16')")
    solver_options = {"random_seed": seed}
    if node_limit is not None:
        solver_options["mip_max_nodes"] = int(node_limit)
    wall0 = time.perf_counter()
    # build the HiGHS model here, before the solve (which then finds it in place): the presolve rule
    # needs its size and the warm start its columns
    opt.set_instance(model)
    # the hand-over counts against the limit: about 3.7 s for the 1M-nonzero reference KV program
    left = max(float(time_limit_s) - (time.perf_counter() - wall0), 0.05)
    solver_options = _with_presolve_rule(dict(solver_options, **(options or {})), opt._solver_model.getNumNz(), left)
    if warm_start:
        var_map = opt._pyomo_var_to_solver_var_map  # id(var) -> column index
        cols, vals = [], []
        pairs = warm_start.items() if hasattr(warm_start, "items") else warm_start
        for var, value in pairs:
            col = var_map.get(id(var))
            if col is not None and value is not None:
                cols.append(int(col))
                vals.append(float(value))
        if cols:
            import numpy as np

            opt._solver_model.setSolution(len(cols), np.asarray(cols, dtype=np.int32), np.asarray(vals, dtype=float))
    res = opt.solve(
        model,
        time_limit=left,
        rel_gap=float(rel_gap),
        abs_gap=0.0 if rel_gap == 0 else None,
        threads=int(threads),
        tee=tee,
        load_solutions=False,
        raise_exception_on_nonoptimal_result=False,
        solver_options=solver_options,
    )
    wall = time.perf_counter() - wall0
    tc = res.termination_condition
    has_solution = res.incumbent_objective is not None and res.solution_status in (
        SolutionStatus.feasible,
        SolutionStatus.optimal,
    )
    if tc == TerminationCondition.convergenceCriteriaSatisfied:
        status = "optimal"
    elif tc == TerminationCondition.maxTimeLimit:
        status = "time_limit"
    elif tc in (TerminationCondition.provenInfeasible, TerminationCondition.locallyInfeasible):
        status = "infeasible"
    elif tc == TerminationCondition.unbounded:
        status = "unbounded"
    elif tc == TerminationCondition.infeasibleOrUnbounded:
        status = "infeasible"
    elif tc in (TerminationCondition.iterationLimit, TerminationCondition.objectiveLimit):
        status = "feasible" if has_solution else "error"
    else:
        status = "feasible" if has_solution else "error"
    if has_solution:
        res.solution_loader.load_vars()
    objective = res.incumbent_objective if has_solution else None
    bound = res.objective_bound
    if bound is not None and not math.isfinite(bound):
        bound = None
    if status == "optimal" and bound is None:
        bound = objective  # LPs report no bound object; at optimality the bound equals the value
    nodes = None
    try:
        nodes = int(res.extra_info.mip_node_count)
        if nodes < 0:
            nodes = None
    except (AttributeError, TypeError, ValueError):
        nodes = None
    solver_seconds = None
    try:
        solver_seconds = float(res.timing_info.highs_time)
    except (AttributeError, TypeError, ValueError):
        pass
    log = res.solver_log if isinstance(getattr(res, "solver_log", None), str) else ""
    extra = {}
    if warm_start:
        extra["warm_start_accepted"] = "MIP start solution is feasible" in log
    return SolveResult(
        status=status,
        has_solution=has_solution,
        objective=objective,
        bound=bound,
        gap=relative_gap(objective, bound, sense),
        sense=sense,
        wall_seconds=wall,
        solver_seconds=solver_seconds,
        nodes=nodes,
        solver="highs",
        interface="pyomo.contrib.solver.highs",
        rel_gap_target=float(rel_gap),
        time_limit_s=float(time_limit_s),
        log_tail=_tail(log),
        extra=extra,
    )


def _solve_legacy(model, *, sense, solver, time_limit_s, rel_gap, options, tee):
    """Any solver Pyomo's legacy factory knows (cbc, glpk, gurobi, ...), mapped to our statuses."""
    import pyomo.environ as pyo
    from pyomo.opt import SolverStatus, TerminationCondition as TC

    opt = pyo.SolverFactory(solver)
    if opt is None or not opt.available(exception_flag=False):
        raise SolverError(f"solver '{solver}' is not available on this machine (try --solver highs)")
    wall0 = time.perf_counter()
    try:
        res = opt.solve(model, timelimit=float(time_limit_s), load_solutions=False, tee=tee, options=dict(options or {}))
    except TypeError:
        res = opt.solve(model, load_solutions=False, tee=tee, options={"sec": float(time_limit_s), **dict(options or {})})
    wall = time.perf_counter() - wall0
    tc = res.solver.termination_condition
    has_solution = len(res.solution) > 0
    if tc == TC.optimal:
        status = "optimal"
    elif tc in (TC.maxTimeLimit,):
        status = "time_limit"
    elif tc in (TC.infeasible, TC.infeasibleOrUnbounded):
        status = "infeasible"
    elif tc == TC.unbounded:
        status = "unbounded"
    elif has_solution and res.solver.status in (SolverStatus.ok, SolverStatus.aborted, SolverStatus.warning):
        status = "feasible"
    else:
        status = "error"
    objective = bound = None
    if has_solution:
        model.solutions.load_from(res)
        obj = next(model.component_data_objects(pyo.Objective, active=True))
        objective = float(pyo.value(obj))
    lb, ub = res.problem.lower_bound, res.problem.upper_bound
    raw_bound = lb if sense == "min" else ub
    if raw_bound is not None and math.isfinite(float(raw_bound)):
        bound = float(raw_bound)
    if status == "optimal" and bound is None:
        bound = objective
    return SolveResult(
        status=status,
        has_solution=has_solution,
        objective=objective,
        bound=bound,
        gap=relative_gap(objective, bound, sense),
        sense=sense,
        wall_seconds=wall,
        solver_seconds=None,
        nodes=None,
        solver=solver,
        interface="pyomo.legacy",
        rel_gap_target=float(rel_gap),
        time_limit_s=float(time_limit_s),
    )


def solve_highspy(
    h,
    *,
    time_limit_s: float,
    rel_gap: float = 1e-4,
    threads: int = DEFAULT_THREADS,
    seed: int = 0,
    node_limit: int | None = None,
    warm_start=None,
    options: Mapping[str, Any] | None = None,
    sense: str = "min",
    log_to_console: bool = False,
) -> tuple[SolveResult, Any]:
    """Run a ``highspy.Highs`` that already holds a model; return the result and the column values.

    ``warm_start`` is a full column vector (numpy array). Column values are ``None`` when there is
    no incumbent.
    """
    import numpy as np

    if time_limit_s is None or not (time_limit_s > 0):
        raise SolverError("a positive time limit is required for every solve")
    h.setOptionValue("output_flag", True)
    h.setOptionValue("log_to_console", bool(log_to_console))
    h.setOptionValue("time_limit", float(time_limit_s))
    h.setOptionValue("mip_rel_gap", float(rel_gap))
    if rel_gap == 0:
        h.setOptionValue("mip_abs_gap", 0.0)
    h.setOptionValue("threads", int(threads))
    h.setOptionValue("random_seed", int(seed))
    if node_limit is not None:
        h.setOptionValue("mip_max_nodes", int(node_limit))
    for key, value in _with_presolve_rule(options, h.getNumNz(), time_limit_s).items():
        h.setOptionValue(key, value)
    if warm_start is not None:
        x0 = np.asarray(warm_start, dtype=float)
        h.setSolution(len(x0), np.arange(len(x0), dtype=np.int32), x0)
    wall0 = time.perf_counter()
    h.run()
    wall = time.perf_counter() - wall0
    import highspy

    model_status = h.getModelStatus()
    info = h.getInfo()
    has_solution = info.primal_solution_status == 2  # kSolutionStatusFeasible
    MS = highspy.HighsModelStatus
    if model_status == MS.kOptimal:
        status = "optimal"
    elif model_status == MS.kTimeLimit:
        status = "time_limit"
    elif model_status == MS.kInfeasible:
        status = "infeasible"
    elif model_status in (MS.kUnbounded, MS.kUnboundedOrInfeasible):
        status = "unbounded" if model_status == MS.kUnbounded else "infeasible"
    elif has_solution:
        status = "feasible"
    else:
        status = "error"
    objective = float(info.objective_function_value) if has_solution else None
    is_mip = info.mip_node_count >= 0
    bound = float(info.mip_dual_bound) if is_mip else (objective if status == "optimal" else None)
    if bound is not None and not math.isfinite(bound):
        bound = None
    values = np.asarray(h.getSolution().col_value) if has_solution else None
    return (
        SolveResult(
            status=status,
            has_solution=has_solution,
            objective=objective,
            bound=bound,
            gap=relative_gap(objective, bound, sense),
            sense=sense,
            wall_seconds=wall,
            solver_seconds=float(h.getRunTime()),
            nodes=int(info.mip_node_count) if is_mip else None,
            solver="highs",
            interface="highspy",
            rel_gap_target=float(rel_gap),
            time_limit_s=float(time_limit_s),
        ),
        values,
    )


def write_model(model, path: str) -> str:
    """Export a Pyomo model as LP or MPS (by the file's suffix), with readable names."""
    suffix = str(path).rsplit(".", 1)[-1].lower()
    if suffix not in ("lp", "mps"):
        raise SolverError(f"export file must end in .lp or .mps, got '{path}'")
    import sys
    from pathlib import Path

    import pyomo.environ as pyo

    model.write(str(path), io_options={"symbolic_solver_labels": True})
    n_vars = sum(1 for _ in model.component_data_objects(pyo.Var, active=True))
    n_cons = sum(1 for _ in model.component_data_objects(pyo.Constraint, active=True))
    legend = _export_legend(model)
    if legend and suffix == "lp":
        # Symbolic labels name components, but indices such as y(3) still need a key: the model may
        # provide one (``model._export_legend``), written as LP comments after the first line.
        text = Path(path).read_text(encoding="utf-8")
        first, _, rest = text.partition("\n")
        block = "".join(f"\\ {line}\n" for line in legend)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(first + "\n" + block + rest)
    print(f"wrote {path} ({n_vars} variables, {n_cons} constraints)", file=sys.stderr)
    return str(path)


def _export_legend(model) -> list[str]:
    """Lines explaining the model's names: each component's doc string, then the model's own key."""
    import pyomo.environ as pyo

    lines = []
    for comp in model.component_objects((pyo.Var, pyo.Constraint), active=True, descend_into=True):
        if comp.doc:
            lines.append(f"{comp.name}: {comp.doc}")
    lines.extend(getattr(model, "_export_legend", None) or [])
    return lines
