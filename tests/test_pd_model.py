"""pd_placement MILP: Mélange's published optimum, brute force on tiny instances, both formulations.

Every plan is also re-verified by the independent checker (analysis/pd_check.py).
"""
from __future__ import annotations

import itertools
import json
import math
import random
from dataclasses import replace
from importlib import resources

import pytest

from servopt.errors import InfeasibleError
from servopt.instances import pd_placement as pdi
from servopt.kinds import pd_placement as pd
from servopt.models import pd_placement as mp

LIMIT = dict(time_limit_s=20)


def _melange() -> dict:
    ref = resources.files("servopt.instances").joinpath("data", "example_pd_melange.json")
    return json.loads(ref.read_text(encoding="utf-8"))


@pytest.mark.parametrize("formulation", ["aggregated", "per_slice"])
def test_melange_published_example_is_exact(formulation):
    inst = pd.load(_melange())
    result = pd.solve(inst, **LIMIT, options={"formulation": formulation, "rel_gap": 0})
    assert result["status"] == "optimal"
    assert result["objective"] == pytest.approx(6.70, abs=1e-9)
    assert result["counts"] == {"A10G": {"colocated": 3}, "A100-80GB": {"colocated": 1}}
    assert pd.check(inst, result) == []
    # Which bucket goes where is forced: the A10Gs take one bucket (3 GPUs each), the A100 the rest.
    on_a10g = [a["bucket"] for a in result["assignment"] if a["gpu"] == "A10G"]
    assert len(on_a10g) == 1


def test_melange_single_type_baselines():
    inst = pd.load(_melange())
    singles = pd.best_single_type(inst, time_limit_s=10)
    # research/placement-anchors.md §2.3: A100-only needs 2 ($7.34), A10G-only 12 ($12.12).
    assert singles["A100-80GB"] == pytest.approx(7.34)
    assert singles["A10G"] == pytest.approx(12.12)


# ---- brute force -------------------------------------------------------------------------------


def _tiny(seed: int, mode: str, *, links: bool = False, goodput: bool = False, avail: bool = False) -> pdi.PDPlacementInstance:
    """2 buckets x 2 slices, 2 GPU types; integer prices and slice rates make objectives exact."""
    rng = random.Random(seed)
    roles = pdi.ROLES_OF_MODE[mode]
    gpus = [{"type": "G0", "usd_per_hour": rng.randint(1, 5)}, {"type": "G1", "usd_per_hour": rng.randint(1, 5)}]
    if avail:
        gpus[0]["available"] = rng.randint(1, 4)
        gpus[1]["available"] = rng.randint(1, 4)
    caps = []
    for g in ("G0", "G1"):
        tp = 2 if (g == "G1" and seed % 3 == 0) else 1
        for role in roles:
            for b in ("b0", "b1"):
                rps = rng.choice([0, 1, 2, 3, 4, 6, 8])
                caps.append({"gpu": g, "role": role, "bucket": b, "rps": rps, "tp": tp})
    data = {
        "kind": "pd_placement", "mode": mode, "rate_rps": 8.0, "slices": 2,
        "buckets": [{"id": "b0", "share": 0.5, "prompt_tokens": 1000, "output_tokens": 10},
                    {"id": "b1", "share": 0.5, "prompt_tokens": 3000, "output_tokens": 10}],
        "gpus": gpus, "capacities": caps,
    }
    if links:
        data["links"] = [{"from": "G0", "to": "G1", "gb_per_s": rng.choice([0, 2.0, 7.0])},
                         {"from": "G1", "to": "G0", "gb_per_s": rng.choice([0, 2.0, 7.0])}]
        data["kv_bytes_per_token"] = 1e6  # 1 MB/token: a b0 slice (2 rps) moves 2 GB/s, a b1 slice 6 GB/s
    if goodput:
        data["objective"] = "max_goodput"
        data["budget_usd_per_hour"] = rng.randint(2, 12)
    return pd.load(data)


def _choices(inst, bucket):
    """Every way to serve one slice of ``bucket``: tuples of (gpu, tp, role); () = unserved."""
    table = inst.capacity_table()
    cfgs = [k for (k, b) in table if b == bucket]
    col = [(k,) for k in cfgs if k.role == "colocated"]
    pre = [k for k in cfgs if k.role == "prefill"]
    dec = [k for k in cfgs if k.role == "decode"]
    out = list(col) + [(p, d) for p in pre for d in dec]
    if inst.objective == "max_goodput":
        out.append(())
    return out


def _brute_force(inst):
    """Best (objective, cost) over all slice assignments; counts are the loads rounded up."""
    table = inst.capacity_table()
    slices = [(b, s) for b in inst.buckets for s in range(inst.slices)]
    options = [_choices(inst, b.id) for b, _ in slices]
    price = {g.type: g.usd_per_hour for g in inst.gpus}
    avail = {g.type: g.available for g in inst.gpus}
    links = inst.link_table()
    best = None
    for pick in itertools.product(*options):
        load, traffic, served = {}, {}, 0.0
        for (b, _), cfgs in zip(slices, pick):
            rho = inst.slice_rate_rps(b)
            for k in cfgs:
                load[k] = load.get(k, 0.0) + rho / table[(k, b.id)]
            if cfgs:
                served += rho
            if len(cfgs) == 2:
                pair = (cfgs[0].gpu, cfgs[1].gpu)
                traffic[pair] = traffic.get(pair, 0.0) + rho * inst.kv_gb_per_request(b)
        counts = {k: math.ceil(v - 1e-9) for k, v in load.items()}
        cost = sum(n * k.tp * price[k.gpu] for k, n in counts.items())
        used = {}
        for k, n in counts.items():
            used[k.gpu] = used.get(k.gpu, 0) + n * k.tp
        if any(avail[g] is not None and u > avail[g] for g, u in used.items()):
            continue
        if any(pair in links and t > links[pair] + 1e-9 for pair, t in traffic.items()):
            continue
        if inst.objective == "max_goodput":
            if cost > inst.budget_usd_per_hour + 1e-9:
                continue
            key = (-served, cost)
        else:
            key = (cost,)
        if best is None or key < best:
            best = key
    return best


CASES = [
    (seed, mode, variant)
    for seed in range(6)
    for mode in ("colocated", "disaggregated", "hybrid")
    for variant in ("plain", "availability", "goodput", "links")
    if not (variant == "links" and mode == "colocated")  # links need prefill/decode roles
]


@pytest.mark.parametrize("seed,mode,variant", CASES)
def test_matches_brute_force(seed, mode, variant):
    inst = _tiny(seed, mode, links=variant == "links", goodput=variant == "goodput", avail=variant == "availability")
    best = _brute_force(inst)
    results = {}
    strategies = ("direct", "relax-and-fix") if inst.objective == "min_cost" else ("direct",)
    for formulation in ("aggregated", "per_slice"):
        for strategy in strategies:
            try:
                results[formulation, strategy] = pd.solve(
                    inst, time_limit_s=20, options={"formulation": formulation, "rel_gap": 0, "strategy": strategy})
            except InfeasibleError:
                results[formulation, strategy] = None
    if best is None:
        assert set(results.values()) == {None}
        return
    for formulation, result in results.items():
        assert result is not None, formulation
        assert result["status"] == "optimal"
        assert pd.check(inst, result) == [], formulation
        if inst.objective == "max_goodput":
            assert result["objective"] == -best[0], formulation
            assert result["cost_usd_per_hour"] == best[1], formulation  # lexicographic stage 2
        else:
            assert result["objective"] == best[0], formulation


def test_relaxation_bound_below_optimum_falls_back_to_full_milp():
    """Relaxed slices make y = (A: 1, C: 1) look feasible at $13; no integral split exists (hand-computed):
    one slice per instance of A (0.6 each, two = 1.2), C needs 2.5 instances per slice. Options: both on C
    5 x $3 = $15, A + C $10 + 3 x $3 = $19, both on A 2 x $10 = $20. Optimum $15."""
    data = {
        "kind": "pd_placement", "mode": "colocated", "rate_rps": 6.0, "slices": 2,
        "buckets": [{"id": "b", "share": 1.0}],
        "gpus": [{"type": "A", "usd_per_hour": 10}, {"type": "C", "usd_per_hour": 3}],
        "capacities": [{"gpu": "A", "role": "colocated", "bucket": "b", "rps": 5.0},
                       {"gpu": "C", "role": "colocated", "bucket": "b", "rps": 1.2}],
    }
    inst = pd.load(data)
    assert _brute_force(inst) == (15,)
    result = pd.solve(inst, **LIMIT, options={"rel_gap": 0})
    assert result["objective"] == 15 and result["status"] == "optimal"
    assert result["counts"] == {"C": {"colocated": 5}}
    assert [st["stage"] for st in result["stages"]][0].startswith("relaxation")
    assert result["stages"][0]["objective"] == 13
    assert result["stages"][-1]["stage"] == "full MILP with the relaxation bound"
    assert pd.check(inst, result) == []


def test_dominated_configurations_are_pruned_without_changing_the_optimum():
    from servopt.models import pd_placement as mp

    pruned_somewhere = 0
    for seed in range(12):
        for mode in ("colocated", "hybrid"):
            inst = _tiny(seed, mode)
            if pd.unservable_buckets(inst):
                continue
            pruned_somewhere += len(mp.dominated_configs(inst))
            costs = []
            for prune in (True, False):
                from servopt.solvers.highs import solve

                m = mp.build(inst, prune=prune)
                res = solve(m, time_limit_s=20, rel_gap=0)
                costs.append(res.objective)
            assert costs[0] == costs[1], (seed, mode)
    assert pruned_somewhere > 0


def test_disaggregated_pairs_prefill_and_decode_per_slice():
    inst = _tiny(1, "disaggregated")
    if pd.unservable_buckets(inst):
        pytest.skip("seed gives an unservable bucket")
    result = pd.solve(inst, **LIMIT, options={})
    roles = {}
    for a in result["assignment"]:
        roles.setdefault((a["bucket"], a["slice"]), []).append(a["role"])
    assert sorted(roles) == [("b0", 0), ("b0", 1), ("b1", 0), ("b1", 1)]
    assert all(sorted(r) == ["decode", "prefill"] for r in roles.values())


def test_hybrid_never_costs_more_than_either_pure_mode():
    for seed in range(6):
        costs = {}
        for mode in ("colocated", "disaggregated", "hybrid"):
            # same capacities for every role in all three modes: build the hybrid instance and filter roles
            inst = _tiny(seed, "hybrid")
            inst = replace(inst, mode=mode)
            try:
                costs[mode] = pd.solve(inst, **LIMIT, options={"rel_gap": 0})["objective"]
            except InfeasibleError:
                costs[mode] = math.inf
        assert costs["hybrid"] <= min(costs["colocated"], costs["disaggregated"]) + 1e-9, (seed, costs)


# ---- infeasibility reasons ------------------------------------------------------------------------


def test_unservable_bucket_is_named():
    data = _melange()
    data["capacities"] = [c for c in data["capacities"] if c["bucket"] != "in0_out1"]
    inst = pd.load(data)
    with pytest.raises(InfeasibleError, match=r"buckets\[1\]: bucket 'in0_out1'"):
        pd.solve(inst, **LIMIT, options={})


def test_availability_shortfall_is_quantified():
    data = _melange()
    data["gpus"][0]["available"] = 2  # A10G: no bucket fits on 2 (each needs 3)
    data["gpus"][1]["available"] = 1  # one A100 takes at most 3 of the 4 buckets: 27 rps (hand-computed)
    with pytest.raises(InfeasibleError, match=r"at most 27 of 30 rps .*short by 3 rps, 10%"):
        pd.solve(pd.load(data), **LIMIT, options={})


def test_max_goodput_under_budget_melange():
    data = _melange()
    data["objective"] = "max_goodput"
    data["budget_usd_per_hour"] = 3.67  # one A100: best subset of buckets within load 1 is 27 rps (as above)
    inst = pd.load(data)
    result = pd.solve(inst, **LIMIT, options={"rel_gap": 0})
    assert result["objective"] == pytest.approx(27.0)
    assert result["cost_usd_per_hour"] == pytest.approx(3.67)
    assert len(result["unserved"]) == 1 and result["unserved"][0]["bucket"] == "in0_out1"
    assert pd.check(inst, result) == []


# ---- checker catches violations -------------------------------------------------------------------


@pytest.fixture
def melange_solved():
    inst = pd.load(_melange())
    return inst, pd.solve(inst, **LIMIT, options={})


def _mutate(result, fn):
    out = json.loads(json.dumps(result))
    fn(out)
    return out


def test_checker_catches_unserved_slice(melange_solved):
    inst, result = melange_solved
    bad = _mutate(result, lambda r: r["assignment"].pop())
    assert any("is not served" in v for v in pd.check(inst, bad))


def test_checker_catches_overloaded_config(melange_solved):
    inst, result = melange_solved

    def fn(r):
        r["counts"]["A10G"]["colocated"] = 2
        r["objective"] -= 1.01
        r.pop("cost_usd_per_hour")
    assert any("exceeds count" in v for v in pd.check(inst, _mutate(result, fn)))


def test_checker_recomputes_cost(melange_solved):
    inst, result = melange_solved
    assert any("recomputed cost" in v for v in pd.check(inst, _mutate(result, lambda r: r.update(objective=6.0))))


def test_checker_catches_availability(melange_solved):
    _, result = melange_solved
    data = _melange()
    data["gpus"][0]["available"] = 2
    inst = pd.load(data)
    assert any("3 GPUs used > 2 available" in v for v in pd.check(inst, result))


def test_checker_catches_config_without_capacity(melange_solved):
    inst, result = melange_solved
    bad = _mutate(result, lambda r: r["assignment"][0].update(role="prefill"))
    assert any("not allowed in mode colocated" in v for v in pd.check(inst, bad))
    bad = _mutate(result, lambda r: r["assignment"][0].update(gpu="H100"))
    assert any("no capacity" in v for v in pd.check(inst, bad))


def test_checker_catches_double_service(melange_solved):
    inst, result = melange_solved
    bad = _mutate(result, lambda r: r["assignment"].append(dict(r["assignment"][0])))
    assert any("expected [colocated] or [prefill, decode]" in v for v in pd.check(inst, bad))


def test_checker_catches_link_overload():
    data = {
        "kind": "pd_placement", "mode": "disaggregated", "rate_rps": 4.0, "slices": 2,
        "buckets": [{"id": "b", "share": 1.0, "prompt_tokens": 1000, "output_tokens": 10}],
        "gpus": [{"type": "G0", "usd_per_hour": 1}, {"type": "G1", "usd_per_hour": 1}],
        "capacities": [{"gpu": "G0", "role": "prefill", "bucket": "b", "rps": 4},
                       {"gpu": "G0", "role": "decode", "bucket": "b", "rps": 1},
                       {"gpu": "G1", "role": "decode", "bucket": "b", "rps": 4}],
        "links": [{"from": "G0", "to": "G1", "gb_per_s": 1.0}],
        "kv_bytes_per_token": 1e6,  # a slice (2 rps x 1000 tokens) moves 2 GB/s
    }
    inst = pd.load(data)
    result = pd.solve(inst, **LIMIT, options={"rel_gap": 0})
    # G1 decode is cheaper (1 instance instead of 4) but the link forbids it: 1 G0 prefill + 4 G0 decode.
    assert result["objective"] == 5
    assert result["counts"] == {"G0": {"prefill": 1, "decode": 4}}
    assert pd.check(inst, result) == []

    def fn(r):
        for row in r["assignment"]:
            if row["role"] == "decode":
                row["gpu"] = "G1"
        r["counts"] = {"G0": {"prefill": 1}, "G1": {"decode": 1}}
        r["objective"] = r["cost_usd_per_hour"] = 2
    assert any("link G0 -> G1: KV traffic 4 GB/s > 1 GB/s" in v for v in pd.check(inst, _mutate(result, fn)))
    inst_wide = pd.load({**data, "links": [{"from": "G0", "to": "G1", "gb_per_s": 4.0}]})
    assert pd.solve(inst_wide, **LIMIT, options={"rel_gap": 0})["objective"] == 2


THREE_TYPE_CASES = [(s, "disaggregated") for s in range(6)] + [(0, "hybrid"), (1, "hybrid")]


def _three_types(seed: int, mode: str) -> pdi.PDPlacementInstance:
    """Three types, a link only from G0 to G0: cross-type pruning may swap between G1 and G2 only."""
    rng = random.Random(100 + seed)
    caps = []
    for g in ("G0", "G1", "G2"):
        for role in pdi.ROLES_OF_MODE[mode]:
            for b in ("b0", "b1"):
                caps.append({"gpu": g, "role": role, "bucket": b, "rps": rng.choice([1, 2, 3, 4, 6, 8])})
    return pd.load({
        "kind": "pd_placement", "mode": mode, "rate_rps": 8.0, "slices": 2,
        "buckets": [{"id": "b0", "share": 0.5, "prompt_tokens": 1000, "output_tokens": 10},
                    {"id": "b1", "share": 0.5, "prompt_tokens": 3000, "output_tokens": 10}],
        "gpus": [{"type": "G0", "usd_per_hour": rng.randint(1, 5), "available": rng.randint(1, 3)},
                 {"type": "G1", "usd_per_hour": rng.randint(1, 5)}, {"type": "G2", "usd_per_hour": rng.randint(1, 5)}],
        "capacities": caps,
        "links": [{"from": "G0", "to": "G0", "gb_per_s": rng.choice([0, 2.0, 6.0])}],
        "kv_bytes_per_token": 1e6,
    })


@pytest.mark.parametrize("seed,mode", THREE_TYPE_CASES)
def test_links_with_unlinked_types_match_brute_force(seed, mode):
    inst = _three_types(seed, mode)
    best = _brute_force(inst)
    result = pd.solve(inst, **LIMIT, options={"rel_gap": 0})
    assert result["objective"] == best[0]
    assert pd.check(inst, result) == []


def test_unlinked_cases_exercise_cross_type_pruning():
    pruned = [k for seed, mode in THREE_TYPE_CASES for k in mp.dominated_configs(_three_types(seed, mode))]
    assert any(k.gpu in ("G1", "G2") for k in pruned)
    assert all(k.gpu != "G0" or k.tp > 1 for k in pruned)  # G0 is linked: never swapped across types


def test_bucket_without_traffic_needs_no_capacity():
    inst = pd.load({
        "kind": "pd_placement", "mode": "colocated", "rate_rps": 10, "slices": 2,
        "buckets": [{"id": "a", "share": 1.0}, {"id": "idle", "share": 0.0}],
        "gpus": [{"type": "X", "usd_per_hour": 1.0}],
        "capacities": [{"gpu": "X", "role": "colocated", "bucket": "a", "rps": 4}],
    })
    result = pd.solve(inst, **LIMIT, options={"rel_gap": 0})
    assert result["counts"] == {"X": {"colocated": 3}}  # 2 slices x 5 rps / 4 rps = 2.5 instances
    assert {a["bucket"] for a in result["assignment"]} == {"a"}
    assert pd.check(inst, result) == []
