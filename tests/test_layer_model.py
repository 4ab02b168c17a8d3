"""layer_placement models and search against brute force over every layout on tiny clusters."""
from __future__ import annotations

import pytest

from servopt.instances.layer_placement import instance_from_dict
from servopt.models import layer_placement as lp
from servopt.solvers.highs import solve
from servopt.solvers.layer_placement_search import (
    compute_upper_bound,
    saturation_upper_bound,
    solve_layer_placement,
)
from servopt.solvers.maxflow import layout_value

from layer_bruteforce import brute_force_optimum, tiny_instance

EXACT = [dict(seed=s, num_nodes=3, num_layers=4) for s in range(6)] + [
    dict(seed=s, num_nodes=4, num_layers=5, max_k=2) for s in range(10, 13)]
LINKED = [dict(seed=s, num_nodes=3, num_layers=4, binding=True, missing=True) for s in range(20, 24)]


@pytest.mark.parametrize("spec", EXACT + LINKED, ids=lambda s: f"seed{s['seed']}{'-links' if s.get('binding') else ''}")
def test_search_matches_brute_force(spec):
    data = tiny_instance(**spec)
    optimum, _ = brute_force_optimum(data)
    inst = instance_from_dict(data)
    assert lp.boundary_is_exact(inst) == (not spec.get("binding"))
    out = solve_layer_placement(inst, time_limit_s=20, threads=1)
    assert out.status == "optimal", out
    assert round(out.value, 6) == optimum
    assert layout_value(inst, out.layout) == pytest.approx(optimum, abs=1e-9)
    assert out.bound >= optimum - 1e-6
    assert saturation_upper_bound(inst) >= optimum - 1e-9
    assert compute_upper_bound(inst) >= saturation_upper_bound(inst) - 1e-9


@pytest.mark.parametrize("spec", EXACT[:5], ids=lambda s: f"seed{s['seed']}")
def test_boundary_formulation_optimum_is_brute_force(spec):
    data = tiny_instance(**spec)
    optimum, _ = brute_force_optimum(data)
    inst = instance_from_dict(data)
    assert lp.boundary_is_exact(inst)
    m = lp.build(inst, formulation="boundary", upper_bound=saturation_upper_bound(inst))
    res = solve(m, time_limit_s=20, rel_gap=0, threads=1)
    assert res.status == "optimal"
    assert res.objective == pytest.approx(optimum, abs=1e-5)  # HiGHS' feasibility tolerance
    assert round(layout_value(inst, lp.extract(m, inst)), 9) == optimum  # the layout itself: exact


@pytest.mark.parametrize("spec", EXACT[:4], ids=lambda s: f"seed{s['seed']}")
def test_mirror_symmetry_cut_keeps_the_optimum(spec):
    data = tiny_instance(**spec)
    optimum, _ = brute_force_optimum(data)
    inst = instance_from_dict(data)
    m = lp.build(inst, formulation="boundary", upper_bound=saturation_upper_bound(inst), mirror_break=True)
    assert hasattr(m, "mirror")
    res = solve(m, time_limit_s=20, rel_gap=0, threads=1)
    assert res.status == "optimal" and res.objective == pytest.approx(optimum, abs=1e-5)


@pytest.mark.parametrize("spec", (EXACT[:2] + LINKED[:3]), ids=lambda s: f"seed{s['seed']}")
@pytest.mark.parametrize("formulation", ["helix", "helix_capped"])
def test_helix_formulation_optimum_is_brute_force(spec, formulation):
    data = tiny_instance(**spec)
    optimum, _ = brute_force_optimum(data)
    inst = instance_from_dict(data)
    m = lp.build(inst, formulation=formulation, upper_bound=saturation_upper_bound(inst))
    res = solve(m, time_limit_s=20, rel_gap=0, threads=1)
    assert res.status == "optimal"
    assert res.objective == pytest.approx(optimum, abs=1e-5)  # HiGHS' feasibility tolerance
    assert round(layout_value(inst, lp.extract(m, inst)), 9) == optimum  # the layout itself: exact


@pytest.mark.parametrize("seed", range(4))
def test_threshold_cuts_keep_every_layout_at_or_above_the_threshold(seed):
    """The threshold model at F_t = optimum must stay feasible (the cuts cut off no optimal layout);
    just above the optimum it must be infeasible."""
    data = tiny_instance(seed, num_nodes=3, num_layers=4)
    optimum, _ = brute_force_optimum(data)
    inst = instance_from_dict(data)
    U = saturation_upper_bound(inst)
    at = lp.build(inst, formulation="boundary", upper_bound=U, threshold=optimum * (1 - 1e-9), cover_orders=(2, 3, 4, 6))
    res = solve(at, time_limit_s=20, rel_gap=0, threads=1)
    assert res.status == "optimal" and res.objective == pytest.approx(optimum, abs=1e-5)
    above = lp.build(inst, formulation="boundary", upper_bound=U, threshold=optimum * (1 + 1e-6), cover_orders=(2, 3, 4, 6))
    assert solve(above, time_limit_s=20, rel_gap=0, threads=1).status == "infeasible"


def test_threshold_weight_function():
    # phi_r(a) = min(r, 1 + floor((r-1) a)), a = min(T / F_t, 1)
    assert lp.threshold_weight(10, 10, 2) == 2
    assert lp.threshold_weight(9.99, 10, 2) == 1
    assert lp.threshold_weight(5, 10, 3) == 2
    assert lp.threshold_weight(4.99, 10, 3) == 1
    assert lp.threshold_weight(50, 10, 4) == 4
    # subadditivity on a grid: phi(x) + phi(y) >= phi(x + y)
    for r in (2, 3, 4, 6):
        for x in range(0, 21):
            for y in range(0, 21):
                a, b = x / 20, y / 20
                assert lp.threshold_weight(a, 1, r) + lp.threshold_weight(b, 1, r) >= lp.threshold_weight(a + b, 1, r)


def test_generator_is_deterministic_and_valid():
    from servopt.instances.layer_placement import random_cluster

    a = random_cluster(3, num_nodes=6, num_types=2, num_layers=12)
    assert a == random_cluster(3, num_nodes=6, num_types=2, num_layers=12)
    inst = instance_from_dict(a)
    assert len(inst.nodes) == 6 and lp.boundary_is_exact(inst)
    geo = instance_from_dict(random_cluster(3, num_nodes=6, num_types=2, num_layers=12, regions=2))
    assert len(geo.nodes) == 6


@pytest.mark.parametrize("num_layers,thr,source_cap,expected", [
    (4, [5, 3], 9, "num_layers"),  # the only node holds at most 2 of 4 layers: no layout serves the model
    (1, [5, 3, 2], 9, 5.0),        # throughput list longer than the model: clipped to L
    (2, [5, 3], 0, "links"),       # zero-capacity source link: no path carries flow
])
def test_degenerate_instances(num_layers, thr, source_cap, expected):
    from servopt.errors import InputError
    from servopt.kinds import layer_placement as kind

    data = {"kind": "layer_placement", "num_layers": num_layers,
            "nodes": [{"id": "a", "throughput_tokens_per_s": thr}],
            "links": [{"from": "source", "to": "a", "tokens_per_s": source_cap}, {"from": "a", "to": "sink", "tokens_per_s": 9}]}
    inst = kind.load(data)
    if isinstance(expected, str):  # impossible: an error naming the field, never "optimal 0"
        with pytest.raises(InputError) as err:
            kind.solve(inst, time_limit_s=5, options={})
        assert err.value.field == expected
        return
    result = kind.solve(inst, time_limit_s=5, options={})
    assert result["status"] == "optimal" and result["objective"] == expected and result["bound"] == expected
    assert kind.check(inst, result) == []
