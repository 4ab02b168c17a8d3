"""The completion-count rows (formulation ``aggregated-count``) and the prefix finish bounds
behind them, against brute force on tiny instances; the conflict-clique separation and extra
exclusive-window levels (measured candidates that did not lift the bound) stay valid."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from kv_bruteforce import brute_force_optimum
from servopt.analysis.kv_check import check_result
from servopt.instances.kv_generators import synthetic
from servopt.instances.kv_schedule import KVScheduleInstance
from servopt.instances.requests import Request
from servopt.models import kv_schedule_aggregated as aggregated
from servopt.solvers.kv_schedule_certify import certify
from servopt.solvers.kv_schedule_direct import build_direct, conflict_clique_cuts, solve_direct


def _instance(rows, M, objective="total_latency"):
    reqs = tuple(Request(f"r{i}", a, s, o) for i, (a, s, o) in enumerate(rows))
    return KVScheduleInstance(M, reqs, objective)


def _random_instance(seed, *, all_at_zero=False, same_prompt=False, n_max=6):
    rng = np.random.default_rng(seed)
    M = int(rng.integers(6, 13))
    n = int(rng.integers(3, n_max + 1))
    s0 = int(rng.integers(0, 3))
    rows = []
    for _ in range(n):
        s = s0 if same_prompt else int(rng.integers(0, 3))
        o = int(rng.integers(1, min(6, M - s) + 1))
        rows.append((0 if all_at_zero else int(rng.integers(0, 4)), s, o))
    return _instance(rows, M)


def _true_prefix_finishes(inst) -> list[float]:
    """min over feasible schedules of the k-th smallest finish = min over k-sets of their makespan alone."""
    reqs = inst.requests
    out = []
    for k in range(1, len(reqs) + 1):
        best = min(brute_force_optimum(KVScheduleInstance(inst.memory_tokens, subset, "makespan"))[0]
                   for subset in itertools.combinations(reqs, k))
        out.append(best)
    return out


def _lp(inst, formulation, **kw):
    res, _ = solve_direct(build_direct(inst, formulation=formulation, relax=True, **kw), time_limit_s=20, rel_gap=0)
    assert res.status == "optimal"
    return res.objective


@pytest.mark.parametrize("seed", range(12))
def test_prefix_finish_bounds_never_exceed_the_true_prefix_finishes(seed):
    inst = _random_instance(500 + seed, all_at_zero=seed % 3 == 0, same_prompt=seed % 2 == 0, n_max=5)
    bounds = aggregated.prefix_finish_lower_bounds(inst)
    truth = _true_prefix_finishes(inst)
    assert len(bounds) == inst.n
    assert all(b1 <= b2 for b1, b2 in zip(bounds, bounds[1:]))
    for k, (b, t) in enumerate(zip(bounds, truth), start=1):
        assert b <= t, (seed, k, bounds, truth)


def test_prefix_finish_bounds_hand_example():
    # M = 5, two s=1, o=3 requests at 0 (peak 4 > 5/2, head-room 0): the second can start only when the
    # first has finished, so the finishes are 3 and 6; volume gives ceil(9/5)=2 and ceil(18/5)=4, the
    # chain gives 3 and 3 + 3 = 6 (bounds 3 and 4 of the module docstring): C = [3, 6], tight.
    inst = _instance([(0, 1, 3), (0, 1, 3)], 5)
    assert aggregated.prefix_finish_lower_bounds(inst) == [3, 6]
    assert aggregated.completion_count_rows(inst) == [(5, 1)]


def test_dominance_chain_is_used_only_with_a_dominance_order():
    # all at 0, one s: the first k by output length are the cheapest k-set (bound 4 applies)
    a0 = _instance([(0, 2, o) for o in (2, 6, 7, 7)], 12)
    assert aggregated.prefix_finish_lower_bounds(a0) == _true_prefix_finishes(a0)
    # a short request arriving late breaks the order (a falls while o rises): bound 4 must not apply,
    # and the rest must still be valid
    mixed = _instance([(3, 2, 2), (0, 2, 6), (0, 2, 7), (0, 2, 7)], 12)
    bounds = aggregated.prefix_finish_lower_bounds(mixed)
    assert all(b <= t for b, t in zip(bounds, _true_prefix_finishes(mixed)))


@pytest.mark.parametrize("seed", range(20))
def test_count_lp_is_a_valid_bound_between_window_lp_and_optimum(seed):
    inst = _random_instance(700 + seed, all_at_zero=seed % 2 == 0, same_prompt=seed % 3 != 0)
    oracle, _ = brute_force_optimum(inst)
    window = _lp(inst, "aggregated-window")
    count = _lp(inst, "aggregated-count")
    prefix = sum(aggregated.prefix_finish_lower_bounds(inst)) - sum(r.arrival for r in inst.requests)
    assert window - 1e-6 <= count <= oracle + 1e-6, (seed, window, count, oracle)
    assert count >= prefix - 1e-6  # every row present: the LP is at least the prefix bound
    res = certify(inst, formulation="aggregated-count", time_limit_s=20, rel_gap=0, heuristic_seconds=0)
    assert res.status == "optimal" and res.objective == oracle
    assert check_result(inst, res.to_dict(inst)) == []


def test_count_rows_lift_the_window_lp_on_a_paper_shaped_instance():
    # scaled-down member of the paper's family (all at 0, one s); measured: window LP 140.44,
    # count LP 142.90, optimum 145 (the chain of the three o=15 requests binds the prefixes)
    inst = KVScheduleInstance.from_dict(synthetic(10, n=8, memory_tokens=19, prompt_tokens=1))
    oracle, _ = brute_force_optimum(inst)
    window = _lp(inst, "aggregated-window")
    count = _lp(inst, "aggregated-count")
    assert oracle == 145
    assert count > window + 2.0 and count <= oracle + 1e-6
    dm = build_direct(inst, formulation="aggregated-count", relax=True)
    assert dm.size["count_rows"] >= 1


@pytest.mark.parametrize("seed", range(10))
def test_more_window_levels_stay_valid(seed):
    inst = _random_instance(900 + seed, same_prompt=True)
    oracle, _ = brute_force_optimum(inst)
    two = _lp(inst, "aggregated-window")
    four = _lp(inst, "aggregated-window", window_levels=(1, 2, 3, 4))
    assert two - 1e-6 <= four <= oracle + 1e-6


def _conflict(inst, a, b, pa, pb):
    """Independent check: requests a, b started at pa, pb overflow memory in some common round."""
    ra, rb = inst.requests[a], inst.requests[b]
    for u in range(max(pa, pb) + 1, min(pa + ra.output_tokens, pb + rb.output_tokens) + 1):
        if ra.prompt_tokens + u - pa + rb.prompt_tokens + u - pb > inst.memory_tokens:
            return True
    return False


@pytest.mark.parametrize("seed", range(10))
def test_conflict_cliques_are_cliques_and_keep_the_lp_below_the_optimum(seed):
    inst = _random_instance(1100 + seed, all_at_zero=seed % 2 == 0, same_prompt=True)
    oracle, _ = brute_force_optimum(inst)
    dm = build_direct(inst, formulation="time-indexed", relax=True)
    res, _ = solve_direct(dm, time_limit_s=20, rel_gap=0)
    values = np.array(dm.highs.getSolution().col_value)
    before = res.objective
    for _ in range(10):
        cuts = conflict_clique_cuts(dm, values)
        if not cuts:
            break
        for weight, cols in cuts:
            assert weight > 1
            for c, d in itertools.combinations(cols, 2):
                i, j = int(dm.col_group[c]), int(dm.col_group[d])
                # two starts of one request exclude each other anyway; otherwise they must conflict
                assert i == j or _conflict(inst, i, j, int(dm.col_start[c]), int(dm.col_start[d]))
            dm.highs.addRow(-np.inf, 1.0, len(cols), np.array(cols, dtype=np.int32), np.ones(len(cols)))
        res, _ = solve_direct(dm, time_limit_s=20, rel_gap=0)
        values = np.array(dm.highs.getSolution().col_value)
    assert before - 1e-6 <= res.objective <= oracle + 1e-6


def test_conflict_cliques_cut_the_plain_lp_of_the_hand_example():
    # two s=1, o=3 requests, M=5: any overlap overflows; the plain LP overlaps them fractionally
    inst = _instance([(0, 1, 3), (0, 1, 3)], 5)
    dm = build_direct(inst, formulation="time-indexed", relax=True)
    res, _ = solve_direct(dm, time_limit_s=20, rel_gap=0)
    assert res.objective < 9 - 1e-6
    assert conflict_clique_cuts(dm, dm.highs.getSolution().col_value)
