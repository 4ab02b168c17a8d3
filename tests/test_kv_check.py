"""The independent checker (analysis/kv_check.py) catches hand-made violations and accepts valid schedules."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from servopt.analysis.kv_check import check_result, memory_profile
from servopt.instances.kv_schedule import KVScheduleInstance
from servopt.instances.requests import Request

# M = 7; r0 (s=1, o=3) and r1 (s=2, o=2), both at round 0, r2 (s=0, o=1) at round 2.
INST = KVScheduleInstance(7, (Request("r0", 0, 1, 3), Request("r1", 0, 2, 2), Request("r2", 2, 0, 1)))


def _result(rows, objective=None, bound=None):
    return {"kind": "kv_schedule", "objective": objective, "bound": bound, "requests": rows}


# r1 started at 1 next to r0: round 2 holds 3 + 3 = 6, round 3 holds 4 + 4 = 8 > 7 (one overflowing round)
OVERFLOW_ROWS = [{"id": "r0", "start": 0, "finish": 3}, {"id": "r1", "start": 1, "finish": 3}, {"id": "r2", "start": 3, "finish": 4}]


def test_memory_profile_by_hand():
    rows = [{"id": "r0", "start": 0, "finish": 3}, {"id": "r1", "start": 3, "finish": 5}, {"id": "r2", "start": 2, "finish": 3}]
    assert memory_profile(INST, rows) == {1: 2, 2: 3, 3: 4 + 1, 4: 3, 5: 4}


def test_valid_schedule_passes_with_objective():
    rows = [{"id": "r0", "start": 0, "finish": 3}, {"id": "r1", "start": 3, "finish": 5}, {"id": "r2", "start": 2, "finish": 3}]
    assert check_result(INST, _result(rows, objective=3 + 5 + 1, bound=8)) == []


def test_memory_overflow_in_one_round_is_caught():
    problems = check_result(INST, _result(OVERFLOW_ROWS))
    assert problems == ["round 3: memory 8 tokens > memory_tokens 7"]


def test_start_before_arrival_is_caught():
    rows = [{"id": "r0", "start": 0, "finish": 3}, {"id": "r1", "start": 3, "finish": 5}, {"id": "r2", "start": 1, "finish": 2}]
    assert any("before its arrival" in p for p in check_result(INST, _result(rows)))


def test_wrong_finish_is_caught():
    rows = [{"id": "r0", "start": 0, "finish": 2}, {"id": "r1", "start": 3, "finish": 5}, {"id": "r2", "start": 2, "finish": 3}]
    assert any("finish 2 != start 0 + output_tokens 3" in p for p in check_result(INST, _result(rows)))


def test_wrong_objective_and_bound_are_caught():
    rows = [{"id": "r0", "start": 0, "finish": 3}, {"id": "r1", "start": 3, "finish": 5}, {"id": "r2", "start": 2, "finish": 3}]
    assert any("recomputed" in p for p in check_result(INST, _result(rows, objective=8)))
    assert any("bound" in p for p in check_result(INST, _result(rows, objective=9, bound=10)))


def test_missing_duplicate_and_unknown_requests_are_caught():
    rows = [{"id": "r0", "start": 0, "finish": 3}, {"id": "r0", "start": 0, "finish": 3}, {"id": "zz", "start": 0, "finish": 1}]
    problems = check_result(INST, _result(rows))
    assert any("more than once" in p for p in problems)
    assert any("'zz'" in p for p in problems)
    assert any("'r1' is missing" in p for p in problems)
    assert any("'r2' is missing" in p for p in problems)


def test_attempt_memory_counts_and_bad_attempts_are_caught():
    # r0 ran rounds 1..2 (2, 3 tokens) in an attempt started at 0 and preempted at 2, then restarted at 2.
    ok = [{"id": "r0", "start": 2, "finish": 5, "attempts": [{"start": 0, "preempted_at": 2}]},
          {"id": "r1", "start": 5, "finish": 7}, {"id": "r2", "start": 2, "finish": 3}]
    assert check_result(INST, _result(ok)) == []
    assert memory_profile(INST, ok)[2] == 3  # the attempt's 1 + 2; r0's and r2's runs start holding in round 3
    # the attempt's memory counts: with M = 6 it overflows round 2 next to r1, the same runs without it do not
    small = KVScheduleInstance(6, INST.requests)
    runs = [{"id": "r0", "start": 2, "finish": 5}, {"id": "r1", "start": 0, "finish": 2}, {"id": "r2", "start": 5, "finish": 6}]
    assert check_result(small, _result(runs)) == []
    runs[0]["attempts"] = [{"start": 0, "preempted_at": 2}]
    assert check_result(small, _result(runs)) == ["round 2: memory 7 tokens > memory_tokens 6"]
    never_preempted = [{"id": "r0", "start": 4, "finish": 7, "attempts": [{"start": 0, "preempted_at": 3}]},
                       {"id": "r1", "start": 7, "finish": 9}, {"id": "r2", "start": 2, "finish": 3}]
    assert any("before it would have completed" in p for p in check_result(INST, _result(never_preempted)))
    restart_too_early = [{"id": "r0", "start": 1, "finish": 4, "attempts": [{"start": 0, "preempted_at": 2}]},
                         {"id": "r1", "start": 7, "finish": 9}, {"id": "r2", "start": 4, "finish": 5}]
    assert any("final start 1" in p for p in check_result(INST, _result(restart_too_early)))


def test_checker_is_independent_of_model_and_simulator():
    src = Path(__file__).resolve().parents[1] / "analysis" / "kv_check.py"
    imported = set()
    for node in ast.walk(ast.parse(src.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
        elif isinstance(node, ast.Import):
            imported.update(a.name for a in node.names)
    assert not any("models" in m or "simulator" in m or "solvers" in m for m in imported), imported
