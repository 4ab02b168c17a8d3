"""The eviction MILP's root strengthening: capacity covers and presolve never cut off an optimum.

Against the exhaustive optimum (tests/eviction_bruteforce.py) on tiny instances whose savings grow with
depth, where the LP relaxation is fractional and covers are found.
"""
from __future__ import annotations

import random

from eviction_bruteforce import brute_force, random_paths
from servopt.instances.eviction import EvictionInstance, EvictionRequest
from servopt.models import eviction as model
from servopt.solvers import eviction_milp

WEIGHTS = [1, 2, 4, 8, 16]


def _instance(paths, capacity):
    reqs = tuple(EvictionRequest(f"r{i}", float(i), tuple(p), 512 * len(p), 1, 0) for i, p in enumerate(paths))
    return EvictionInstance(capacity, reqs)


def _cases(count, seed):
    rng = random.Random(seed)
    for _ in range(count):
        paths = random_paths(rng, rng.randint(5, 8), 5, 2)
        yield paths, rng.randint(1, 4)


def test_covers_are_valid_and_the_milp_with_them_is_exact():
    total_cuts = tightened = 0
    for paths, C in _cases(60, seed=4):
        inst = _instance(paths, C)
        caps = [C] * len(paths)
        best = brute_force(paths, caps, WEIGHTS)
        prog = model.interval_program(inst, caps, WEIGHTS)
        bound, x, cuts, first, _ = eviction_milp.strengthen_lp(prog, inst, caps, time_limit_s=30)
        assert bound >= best - 1e-6, (paths, C)
        assert first >= bound - 1e-6
        tightened += bound < first - 1e-6
        total_cuts += len(cuts)
        res, prog, xm = eviction_milp.solve_direct(inst, caps=caps, weights=WEIGHTS, time_limit_s=60, rel_gap=0,
                                                   prog=prog, cuts=cuts)
        assert res.status == "optimal" and round(-res.objective) == best, (paths, C)
        assert sum(sum(WEIGHTS[:h]) for h in model.hits_from_x(prog, xm)) == best
    assert total_cuts > 0 and tightened > 0  # the covers did something on this family


def test_separated_covers_are_violated_and_hold_for_the_optimal_plan():
    seen = 0
    for paths, C in _cases(40, seed=9):
        inst = _instance(paths, C)
        caps = [C] * len(paths)
        prog = model.interval_program(inst, caps, WEIGHTS)
        lp, _, x = eviction_milp.solve_direct(inst, caps=caps, weights=WEIGHTS, time_limit_s=30, relax=True, prog=prog)
        opt, _, xo = eviction_milp.solve_direct(inst, caps=caps, weights=WEIGHTS, time_limit_s=30, rel_gap=0, prog=prog)
        for cols, violation in eviction_milp.CoverSeparator(prog, inst, caps).separate(x):
            seen += 1
            assert abs(sum(x[k] for k in cols) - (len(cols) - 1) - violation) < 1e-9 and violation > 0
            assert sum(round(xo[k]) for k in cols) <= len(cols) - 1
    assert seen > 0


def test_presolve_keeps_the_lp_bound_and_the_optimum():
    fixed = 0
    for paths, C in _cases(40, seed=13):
        inst = _instance(paths, C)
        caps = [C] * len(paths)
        raw = model.interval_program(inst, caps, WEIGHTS, presolve=False)
        red = model.interval_program(inst, caps, WEIGHTS)
        fixed += sum(v == 1.0 for v in red.col_lower[:red.K])
        lp_raw = eviction_milp.solve_direct(inst, caps=caps, weights=WEIGHTS, time_limit_s=30, relax=True, prog=raw)[0]
        lp_red = eviction_milp.solve_direct(inst, caps=caps, weights=WEIGHTS, time_limit_s=30, relax=True, prog=red)[0]
        assert abs(lp_raw.objective - lp_red.objective) < 1e-6
        res = eviction_milp.solve_direct(inst, caps=caps, weights=WEIGHTS, time_limit_s=30, rel_gap=0, prog=red,
                                         warm_hits=[0] * len(paths))[0]
        assert round(-res.objective) == brute_force(paths, caps, WEIGHTS)
    assert fixed > 0


def test_solve_tightens_the_bound_with_covers_when_the_milp_stops_open(monkeypatch):
    from servopt.analysis.eviction_check import check_result
    from servopt.kinds import eviction as kind

    # a MILP that stops at its root, so that the covers step runs
    monkeypatch.setattr(kind, "MILP_OPTIONS", {"mip_max_nodes": 0, "mip_heuristic_effort": 0.0})
    rng = random.Random(21)
    covered = 0
    for _ in range(30):
        paths = random_paths(rng, rng.randint(6, 9), 5, 2)
        C = rng.randint(2, 4)
        reqs = tuple(EvictionRequest(f"r{i}", float(i), tuple(p), 512 * len(p), 1, 0) for i, p in enumerate(paths))
        inst = EvictionInstance(C, reqs, objective="saved_prefill_ms", llm="llama-3.1-8b", gpu="h100")
        weights = model.weights_for(inst)
        best = brute_force(paths, C, weights)
        res = kind.solve(inst, time_limit_s=30, options={"formulation": "milp"})  # auto searches runs instead
        assert res["objective"] <= best + 1e-6 <= res["bound"] + 2e-6, (paths, C)
        assert check_result(inst, res) == []
        if res["cover_cuts"]:
            covered += 1
            assert res["bound"] <= res["cover_bound"] + 1e-9
    assert covered > 0
