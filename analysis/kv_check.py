"""Independent re-verification of any ``kv_schedule`` result, whoever produced it.

It re-derives everything from the instance and the result JSON with its own arithmetic and
imports neither the model nor the simulator (so a bug there cannot hide itself here). The rules
are the model's semantics (arXiv 2502.07115, §2; instances/kv_schedule.py):

1. every request of the instance appears exactly once, and nothing else does;
2. start, finish and attempt rounds are integers; ``start >= arrival``; ``finish == start + o_i``;
   a row's optional ``arrival`` and ``latency`` equal the instance's arrival and ``finish - arrival``;
3. each preempted attempt has ``arrival <= start < preempted_at < start + o_i`` (it did not
   complete), attempts are in time order and do not overlap each other or the final run
   (a new attempt starts no earlier than the round the previous one was preempted);
4. in every round ``t`` the memory ``sum (s_i + t - p)`` over every run or attempt holding memory
   in ``t`` (``p < t <= p + o_i`` for the final run, ``p < t <= preempted_at`` for an attempt)
   is at most ``M``;
5. the reported ``objective`` equals the objective recomputed from the finishes, and a reported
   dual ``bound`` does not exceed it (minimisation).

``check_result`` returns a list of human-readable violations; ``[]`` means valid.
"""
from __future__ import annotations

import math

from servopt.instances.kv_schedule import KVScheduleInstance

_TOL = 1e-6


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) or (isinstance(v, float) and v.is_integer())


def recompute_objective(instance: KVScheduleInstance, finish_by_id: dict) -> float:
    if instance.objective == "makespan":
        return float(max(finish_by_id[r.id] for r in instance.requests))
    weighted = instance.objective == "weighted_latency"
    return float(sum((r.weight if weighted else 1.0) * (finish_by_id[r.id] - r.arrival) for r in instance.requests))


def memory_profile(instance: KVScheduleInstance, rows: list[dict]) -> dict[int, int]:
    """Tokens held in each round by the runs and attempts in ``rows`` (assumed well-formed)."""
    by_id = {r.id: r for r in instance.requests}
    load: dict[int, int] = {}
    for row in rows:
        req = by_id[row["id"]]
        spans = [(int(a["start"]), int(a["preempted_at"])) for a in row.get("attempts", []) or []]
        spans.append((int(row["start"]), int(row["start"]) + req.output_tokens))
        for p, last in spans:
            for t in range(p + 1, last + 1):
                load[t] = load.get(t, 0) + req.prompt_tokens + (t - p)
    return load


def check_result(instance: KVScheduleInstance, result: dict) -> list[str]:
    """All violations of the rules in the module docstring."""
    problems: list[str] = []
    rows = result.get("requests") if isinstance(result, dict) else None
    if not isinstance(rows, list):
        return ["result has no 'requests' array"]
    by_id = {r.id: r for r in instance.requests}
    seen: set[str] = set()
    good_rows = []
    for n, row in enumerate(rows):
        if not isinstance(row, dict):
            problems.append(f"requests[{n}] is not an object")
            continue
        rid = row.get("id")
        if rid not in by_id:
            problems.append(f"requests[{n}]: id {rid!r} is not a request of the instance")
            continue
        if rid in seen:
            problems.append(f"request '{rid}' appears more than once")
            continue
        seen.add(rid)
        req = by_id[rid]
        start, finish = row.get("start"), row.get("finish")
        if not _is_int(start) or not _is_int(finish):
            problems.append(f"request '{rid}': start and finish must be integer rounds, got {start!r}, {finish!r}")
            continue
        start, finish = int(start), int(finish)
        ok = True
        # arrival and latency are optional conveniences in a result row; when present they must agree
        if "arrival" in row and row["arrival"] != req.arrival:
            problems.append(f"request '{rid}': arrival {row['arrival']!r} != the instance's arrival {req.arrival}")
            ok = False
        if "latency" in row and row["latency"] != finish - req.arrival:
            problems.append(f"request '{rid}': latency {row['latency']!r} != finish {finish} - arrival {req.arrival}")
            ok = False
        if start < req.arrival:
            problems.append(f"request '{rid}' starts at round {start}, before its arrival at round {req.arrival}")
            ok = False
        if finish != start + req.output_tokens:
            problems.append(f"request '{rid}': finish {finish} != start {start} + output_tokens {req.output_tokens}")
            ok = False
        attempts = row.get("attempts", []) or []
        if not isinstance(attempts, list):
            problems.append(f"request '{rid}': attempts must be an array")
            continue
        previous_end = None
        for j, a in enumerate(attempts):
            if not isinstance(a, dict) or not _is_int(a.get("start")) or not _is_int(a.get("preempted_at")):
                problems.append(f"request '{rid}' attempt {j}: needs integer start and preempted_at")
                ok = False
                continue
            p, q = int(a["start"]), int(a["preempted_at"])
            if p < req.arrival:
                problems.append(f"request '{rid}' attempt {j} starts at round {p}, before its arrival at round {req.arrival}")
                ok = False
            if not p < q < p + req.output_tokens:
                problems.append(f"request '{rid}' attempt {j}: preempted_at {q} must lie in ({p}, {p + req.output_tokens}) "
                                "(after its start, before it would have completed)")
                ok = False
            if previous_end is not None and p < previous_end:
                problems.append(f"request '{rid}' attempt {j} starts at {p}, before attempt {j - 1} was preempted at {previous_end}")
                ok = False
            previous_end = q
        if previous_end is not None and start < previous_end:
            problems.append(f"request '{rid}': final start {start} is before its last attempt was preempted at {previous_end}")
            ok = False
        if ok:
            good_rows.append(row)
    for r in instance.requests:
        if r.id not in seen:
            problems.append(f"request '{r.id}' is missing from the schedule")
    load = memory_profile(instance, good_rows)
    for t in sorted(load):
        if load[t] > instance.memory_tokens:
            problems.append(f"round {t}: memory {load[t]} tokens > memory_tokens {instance.memory_tokens}")
    if problems:
        return problems
    finish = {row["id"]: int(row["finish"]) for row in rows}
    value = recompute_objective(instance, finish)
    reported = result.get("objective")
    if reported is not None:
        if not isinstance(reported, (int, float)) or isinstance(reported, bool) or not math.isfinite(reported):
            problems.append(f"objective {reported!r} is not a finite number")
        elif abs(float(reported) - value) > _TOL * max(1.0, abs(value)):
            problems.append(f"reported objective {reported} != recomputed {instance.objective} {value:g}")
    bound = result.get("bound")
    if isinstance(bound, (int, float)) and not isinstance(bound, bool) and math.isfinite(bound):
        if bound > value + _TOL * max(1.0, abs(value)):
            problems.append(f"reported bound {bound} exceeds the schedule's {instance.objective} {value:g} (minimisation)")
    return problems


def peak_memory(instance: KVScheduleInstance, result: dict) -> int:
    load = memory_profile(instance, result["requests"])
    return max(load.values()) if load else 0
