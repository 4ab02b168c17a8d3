"""The ``mip-window-big`` bound of benchmarks/kv_bounds_paper.py: valid against brute force,
at least the window LP, and exact when every type is big (then every column is integer)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kv_bruteforce import brute_force_optimum
from servopt.instances.kv_schedule import KVScheduleInstance
from servopt.instances.requests import Request

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from kv_bounds_paper import _lp, _mip_big  # noqa: E402


def _instance(rows, M):
    return KVScheduleInstance(M, tuple(Request(f"r{i}", a, s, o) for i, (a, s, o) in enumerate(rows)), "total_latency")


@pytest.mark.parametrize("M, rows, optimum", [
    # found by search: all four / five requests are big (2 (s + o) > M) and the window LP is below the optimum
    (11, [(1, 1, 5), (1, 1, 6), (1, 1, 7), (1, 1, 5)], 36),
    (9, [(1, 0, 9), (2, 0, 5), (2, 0, 9), (2, 0, 5), (2, 0, 8)], 73),
])
def test_all_big_types_make_the_full_program(M, rows, optimum):
    inst = _instance(rows, M)
    assert brute_force_optimum(inst)[0] == optimum
    assert _lp(inst, "aggregated-window", optimum)["value"] < optimum - 0.5  # so the integrality is what closes it
    assert _mip_big(inst, optimum, 20)["value"] == pytest.approx(optimum, abs=1e-6)


@st.composite
def small_instances(draw):
    M = draw(st.integers(6, 14))
    s = draw(st.integers(0, 3))
    rows = [(draw(st.integers(0, 3)), s, draw(st.integers(1, M - s))) for _ in range(draw(st.integers(2, 5)))]
    return _instance(rows, M)


@settings(max_examples=25, deadline=None)
@given(small_instances())
def test_bound_between_the_window_lp_and_the_optimum(inst):
    optimum, _ = brute_force_optimum(inst)
    lp = _lp(inst, "aggregated-window", optimum)["value"]
    big = _mip_big(inst, optimum, 20)["value"]
    assert lp - 1e-6 <= big <= optimum + 1e-6
