r"""Prefill/decode placement on heterogeneous GPUs: the cost-minimal fleet under SLOs, as a MILP.

Sources. The colocated min-cost model is Mélange's ILP (Griggs et al., arXiv 2404.14527, §5.2:
buckets, slices, load = rate / profiled max throughput, integer GPU counts; its
``melange/config/example.json`` optimum is $6.70/h = 1 A100 + 3 A10G). The disaggregated and
hybrid variants give every slice a prefill and a decode configuration (DistServe, OSDI'24 §4;
Splitwise, ISCA'24 §5: separate prefill and token machines, possibly of different GPU types),
with the prefill→decode KV traffic bounded by link bandwidth (HexGen-2, arXiv 2502.07903 §3,
edge capacities of its max-flow) and the GPU mix and availability chosen jointly
(arXiv 2502.00722, §3: budget and availability constraints). The max-goodput variant is the dual
question of arXiv 2502.00722 (max throughput under a $/hour budget).

Symbols (code names in brackets).

* buckets b ∈ B [``B``]; slices per bucket S [``S``]; slice rate ρ_b = share_b · R / S [``rho``].
* configurations k = (g, tp, role) ∈ K [``K``]: tp GPUs of type g running one role;
  price p_k = tp · usd_per_hour_g [``price``].
* capacity μ_{k,b} > 0 (requests/s one instance of k sustains under the SLO); K_b^r = configs of
  role r with μ_{k,b} > 0; load of one slice a_{b,k} = ρ_b / μ_{k,b} [``load``].
* availability A_g (GPUs of type g, optional); budget U ($/hour, max-goodput only).
* links: bandwidth W_{g,h} GB/s from prefill type g to decode type h (optional); one request of
  bucket b moves κ_b GB of KV cache [``kv_gb``].

Formulation ``aggregated`` (default). Slices of one bucket are identical, so instead of a binary
per (slice, config) we count slices per (bucket, config); this removes the S! symmetry of the
per-slice model and is exact (any integer counts can be turned back into a slice assignment).

    y_k ∈ Z≥0                      instances of configuration k                       [y]
    n_{b,k} ∈ {0..S}               slices of b whose role(k) phase runs on k          [n]
    s_b ∈ {0..S}                   slices of b served (= S for min_cost)              [served]
    u_b ∈ {0..S}                   slices of b split into prefill + decode (hybrid)   [split]

    min Σ_k p_k y_k                                    (min_cost)
    max Σ_b ρ_b s_b                                    (max_goodput, s.t. Σ_k p_k y_k ≤ U) [_budget_rule]
    Σ_{k∈K_b^colocated} n_{b,k} = s_b − u_b          ∀b                                  [_colocated_demand_rule]
    Σ_{k∈K_b^prefill} n_{b,k} = u_b                   ∀b                                  [_prefill_demand_rule]
    Σ_{k∈K_b^decode}  n_{b,k} = u_b                   ∀b                                  [_decode_demand_rule]
    Σ_b a_{b,k} n_{b,k} ≤ y_k                         ∀k                                  [_load_rule]
    Σ_{k: g(k)=g} tp_k y_k ≤ A_g                      ∀g with A_g given                   [_availability_rule]

with u_b ≡ 0 in mode ``colocated`` and u_b ≡ s_b in mode ``disaggregated``. With links, the
slices' prefill and decode types are paired by integer transport variables

    m_{b,g,h} ∈ Z≥0 : Σ_h m_{b,g,h} = Σ_{k∈K_b^prefill, g(k)=g} n_{b,k},
                      Σ_g m_{b,g,h} = Σ_{k∈K_b^decode,  g(k)=h} n_{b,k}              [_pair_out_rule, _pair_in_rule]
    Σ_b ρ_b κ_b m_{b,g,h} ≤ W_{g,h}                   ∀ listed (g,h)                      [_link_rule]

(m must be integer here: a fractional pairing could meet the link bound that no slice-level
pairing meets.)

Formulation ``per_slice`` (Mélange's own, §5.2): binaries x_{q,k} per slice q and config k, the
same rows per slice (Σ_k x_{q,k} = served_q − split_q etc.) and the load row
Σ_q a_{b(q),k} x_{q,k} ≤ y_k. With links, pairing variables z_{q,g,h} ∈ [0,1] are continuous: a
slice's prefill and decode picks are one-hot, so the transport polytope with those marginals has
the single point z = x^prefill ⊗ x^decode. Kept for cross-checking and for the scale benchmark.

Exact preprocessing: dominated configurations [``dominated_configs``]. Configuration k of role r
is dropped when another configuration k' of the same role can take over every instance of k at no
extra cost and with at least the capacity for every bucket: m copies of k' with
m · p_{k'} ≤ p_k and m · μ_{k',b} ≥ μ_{k,b} ∀b. Because loads pool over the instances of a
configuration, replacing y_k instances of k by m·y_k of k' keeps every row feasible. Within one GPU
type, m = tp_k / tp_{k'} (same GPUs, same price: availability unchanged); across types only when k'
has unlimited availability and neither type appears in a link (a swap changes the types a KV
transfer joins).
A dominated configuration is only dropped when its dominator itself is kept.

Solution strategy ``relax-and-fix`` (min_cost; in ``servopt.kinds.pd_placement``), three calls on
the same model [``relax_slices``, ``fix_counts``]:
(1) relax the slice counts n (and u, m) to continuous, keep y integer: with few configurations
this is fast, and its optimum is a valid lower bound; (2) fix y at its solution and restore the
integrality of n: any feasible point costs exactly the bound, hence is optimal; (3) if (2) is
infeasible, solve the full MILP with the cut Σ_k p_k y_k ≥ bound. On the scale benchmark
(benchmarks/pd_scale.py) phase (2) succeeded on every seed: slice integrality rarely changes the
optimal counts, while branching on n instead of y is what made the plain MILP slow.

``build(instance, *, formulation=..., min_served_rps=None, prune=True)``: with ``min_served_rps`` a
max_goodput instance is built as "min cost s.t. Σ_b ρ_b s_b ≥ min_served_rps" (the second,
lexicographic stage: cheapest fleet reaching the optimal goodput). ``extract(model)`` returns a
``PDPlan`` with one ``SliceAssignment`` per (bucket, slice, phase).
"""
from __future__ import annotations

import math
from collections import defaultdict

import pyomo.environ as pyo

from servopt.instances.pd_placement import Config, ConfigUse, PDPlacementInstance, PDPlan, SliceAssignment

FORMULATIONS = ("aggregated", "per_slice")


def dominated_configs(instance: PDPlacementInstance) -> set[Config]:
    """Configurations some optimal plan never needs (exact preprocessing, module docstring)."""
    K = instance.configs()
    cap = instance.capacity_table()
    available = {g.type: g.available for g in instance.gpus}
    price = {k: instance.config_usd_per_hour(k) for k in K}
    buckets = [b.id for b in instance.buckets]
    # A link makes the GPU type of a phase matter beyond price and capacity: no cross-type swap may
    # touch a type that appears in a link.
    linked = {l.src for l in instance.links} | {l.dst for l in instance.links}
    dominated: set[Config] = set()
    for k in K:
        for k2 in K:
            if k2 == k or k2.role != k.role or k2 in dominated:
                continue
            if k2.gpu == k.gpu:
                if k2.tp >= k.tp or k.tp % k2.tp:
                    continue
                multiples = (k.tp // k2.tp,)  # same GPUs, same price
            elif available[k2.gpu] is None and k.gpu not in linked and k2.gpu not in linked:
                multiples = range(1, 1 + min(8, int(price[k] / price[k2] + 1e-9)))
            else:
                continue
            if any(all(mult * cap.get((k2, b), 0.0) >= cap.get((k, b), 0.0) for b in buckets) for mult in multiples
                   if mult * price[k2] <= price[k] + 1e-12):
                dominated.add(k)
                break
    return dominated


def _data(instance: PDPlacementInstance, *, prune: bool = True) -> dict:
    """Plain index sets and coefficients, no Pyomo (mpi-sppy style)."""
    S = instance.slices
    buckets = {b.id: b for b in instance.buckets}
    K = instance.configs()
    dropped = dominated_configs(instance) if prune else set()
    K = [k for k in K if k not in dropped]
    cap = instance.capacity_table()
    rho = {b.id: instance.slice_rate_rps(b) for b in instance.buckets}
    by_role: dict[tuple[str, str], list[int]] = defaultdict(list)  # (bucket, role) -> config indices
    load: dict[tuple[str, int], float] = {}
    for ki, k in enumerate(K):
        for b in instance.buckets:
            mu = cap.get((k, b.id))
            if mu:
                by_role[(b.id, k.role)].append(ki)
                load[(b.id, ki)] = rho[b.id] / mu
    links = instance.link_table()
    gpu_types = [g.type for g in instance.gpus]
    return {
        "S": S,
        "B": [b.id for b in instance.buckets if b.share > 0],  # a bucket without traffic has nothing to place
        "buckets": buckets,
        "K": K,
        "price": [instance.config_usd_per_hour(k) for k in K],
        "rho": rho,
        "by_role": by_role,
        "load": load,
        "links": links,
        "kv_gb": {b.id: instance.kv_gb_per_request(b) for b in instance.buckets},
        "gpu_types": gpu_types,
        "available": {g.type: g.available for g in instance.gpus if g.available is not None},
        "dominated": sorted(dropped, key=lambda k: (k.gpu, k.tp, k.role)),
    }


def build(instance: PDPlacementInstance, *, formulation: str | None = None, min_served_rps: float | None = None,
          prune: bool = True) -> pyo.ConcreteModel:
    formulation = formulation or "aggregated"
    if formulation not in FORMULATIONS:
        from servopt.errors import InputError

        raise InputError("--formulation", f"unknown formulation '{formulation}' for pd_placement (known: {', '.join(FORMULATIONS)})")
    d = _data(instance, prune=prune)
    m = pyo.ConcreteModel(name=f"pd_placement[{formulation}]")
    m._instance = instance
    m._data = d
    m._formulation = formulation
    goodput = instance.objective == "max_goodput"
    m._maximise_goodput = goodput and min_served_rps is None
    K = range(len(d["K"]))
    m.y = pyo.Var(K, domain=pyo.NonNegativeIntegers)
    # a key for exported LP/MPS files (solvers.highs.write_model): what each index stands for
    m._export_legend = [f"y({i}): instances of {k.gpu} tp{k.tp} {k.role}" for i, k in enumerate(d["K"])]
    m._export_legend.append("n(BUCKET_i): slices of BUCKET on configuration i (aggregated); "
                            "x(BUCKET_s_i): slice s of BUCKET on configuration i (per_slice)")
    if formulation == "aggregated":
        _declare_aggregated(m, instance, d, goodput)
    else:
        _declare_per_slice(m, instance, d, goodput)
    m.load_row = pyo.Constraint(K, rule=_load_rule)
    m.availability = pyo.Constraint(list(d["available"]), rule=_availability_rule)
    m.cost = pyo.Expression(expr=sum(d["price"][k] * m.y[k] for k in K))
    if goodput and instance.budget_usd_per_hour is not None:
        m.budget = pyo.Constraint(rule=_budget_rule)
    if m._maximise_goodput:
        m.obj = pyo.Objective(expr=m.served_rps, sense=pyo.maximize)
    else:
        if min_served_rps is not None:
            m.min_served = pyo.Constraint(expr=m.served_rps >= min_served_rps)
        m.obj = pyo.Objective(expr=m.cost, sense=pyo.minimize)
    return m


# ---- aggregated formulation ----------------------------------------------------------------


def _declare_aggregated(m, instance, d, goodput):
    S, mode = d["S"], instance.mode
    pairs = [(b, ki) for (b, ki) in d["load"]]
    m.n = pyo.Var(pairs, domain=pyo.NonNegativeIntegers, bounds=(0, S))
    if goodput:
        m.served = pyo.Var(d["B"], domain=pyo.NonNegativeIntegers, bounds=(0, S))
    else:
        m.served = pyo.Param(d["B"], initialize=S)
    if mode == "hybrid":
        m.split = pyo.Var(d["B"], domain=pyo.NonNegativeIntegers, bounds=(0, S))
    m.served_rps = pyo.Expression(expr=sum(d["rho"][b] * m.served[b] for b in d["B"]))
    roles = instance.roles
    if "colocated" in roles:
        m.colocated_demand = pyo.Constraint(d["B"], rule=_colocated_demand_rule)
    if "prefill" in roles:
        m.prefill_demand = pyo.Constraint(d["B"], rule=_prefill_demand_rule)
        m.decode_demand = pyo.Constraint(d["B"], rule=_decode_demand_rule)
        if d["links"]:
            _declare_pairing_aggregated(m, d)


def _split(m, b):
    mode = m._instance.mode
    if mode == "colocated":
        return 0
    if mode == "disaggregated":
        return m.served[b]
    return m.split[b]


def _role_sum(m, b, role, gpu=None):
    d = m._data
    return sum(m.n[b, ki] for ki in d["by_role"].get((b, role), ()) if gpu is None or d["K"][ki].gpu == gpu)


def _colocated_demand_rule(m, b):
    return _role_sum(m, b, "colocated") == m.served[b] - _split(m, b)


def _prefill_demand_rule(m, b):
    return _role_sum(m, b, "prefill") == _split(m, b)


def _decode_demand_rule(m, b):
    return _role_sum(m, b, "decode") == _split(m, b)


def _type_pairs(d, b):
    pre = sorted({d["K"][ki].gpu for ki in d["by_role"].get((b, "prefill"), ())})
    dec = sorted({d["K"][ki].gpu for ki in d["by_role"].get((b, "decode"), ())})
    return [(g, h) for g in pre for h in dec if d["links"].get((g, h), math.inf) > 0]


def _declare_pairing_aggregated(m, d):
    idx = [(b, g, h) for b in d["B"] for (g, h) in _type_pairs(d, b)]
    m.pair = pyo.Var(idx, domain=pyo.NonNegativeIntegers, bounds=(0, d["S"]))
    m._pair_index = idx
    m._pairs_from, m._pairs_to = defaultdict(list), defaultdict(list)
    for (b, g, h) in idx:
        m._pairs_from[(b, g)].append(m.pair[b, g, h])
        m._pairs_to[(b, h)].append(m.pair[b, g, h])
    m.pair_out = pyo.Constraint([(b, g) for b in d["B"] for g in d["gpu_types"]], rule=_pair_out_rule)
    m.pair_in = pyo.Constraint([(b, h) for b in d["B"] for h in d["gpu_types"]], rule=_pair_in_rule)
    m.link = pyo.Constraint([gh for gh, w in d["links"].items() if w > 0], rule=_link_rule)


def _pairing_row(lhs, rhs):
    if isinstance(lhs, int) and isinstance(rhs, int):  # both sides empty: nothing to pair
        return pyo.Constraint.Skip
    return lhs == rhs


def _pair_out_rule(m, b, g):
    return _pairing_row(sum(m._pairs_from[(b, g)]), _role_sum(m, b, "prefill", gpu=g))


def _pair_in_rule(m, b, h):
    return _pairing_row(sum(m._pairs_to[(b, h)]), _role_sum(m, b, "decode", gpu=h))


def _link_rule(m, g, h):
    d = m._data
    if m._formulation == "aggregated":
        terms = [d["rho"][b] * d["kv_gb"][b] * m.pair[b, g, h] for (b, g2, h2) in m._pair_index if g2 == g and h2 == h]
    else:
        terms = [d["rho"][q[0]] * d["kv_gb"][q[0]] * m.pair[q, g, h] for (q, g2, h2) in m._pair_index if g2 == g and h2 == h]
    if not terms:
        return pyo.Constraint.Skip
    return sum(terms) <= d["links"][(g, h)]


# ---- per-slice formulation (Mélange §5.2) ------------------------------------------------------


def _declare_per_slice(m, instance, d, goodput):
    S = d["S"]
    Q = [(b, s) for b in d["B"] for s in range(S)]
    m._Q = Q
    xs = [((b, s), ki) for (b, s) in Q for (b2, ki) in [(b, ki) for ki in _all_configs_of(d, b)]]
    m.x = pyo.Var(xs, domain=pyo.Binary)
    if goodput:
        m.served_q = pyo.Var(Q, domain=pyo.Binary)
    else:
        m.served_q = pyo.Param(Q, initialize=1)
    if instance.mode == "hybrid":
        m.split_q = pyo.Var(Q, domain=pyo.Binary)
    m.served_rps = pyo.Expression(expr=sum(d["rho"][b] * m.served_q[b, s] for (b, s) in Q))
    roles = instance.roles

    def split_q(q):
        if instance.mode == "colocated":
            return 0
        if instance.mode == "disaggregated":
            return m.served_q[q]
        return m.split_q[q]

    def role_sum(q, role, gpu=None):
        return sum(m.x[q, ki] for ki in d["by_role"].get((q[0], role), ()) if gpu is None or d["K"][ki].gpu == gpu)

    if "colocated" in roles:
        m.colocated_demand = pyo.Constraint(Q, rule=lambda m, b, s: role_sum((b, s), "colocated") == m.served_q[b, s] - split_q((b, s)))
    if "prefill" in roles:
        m.prefill_demand = pyo.Constraint(Q, rule=lambda m, b, s: role_sum((b, s), "prefill") == split_q((b, s)))
        m.decode_demand = pyo.Constraint(Q, rule=lambda m, b, s: role_sum((b, s), "decode") == split_q((b, s)))
        if d["links"]:
            idx = [(q, g, h) for q in Q for (g, h) in _type_pairs(d, q[0])]
            m.pair = pyo.Var(idx, domain=pyo.NonNegativeReals, bounds=(0, 1))
            m._pair_index = idx
            pairs_from, pairs_to = defaultdict(list), defaultdict(list)
            for (q, g, h) in idx:
                pairs_from[(q, g)].append(m.pair[q, g, h])
                pairs_to[(q, h)].append(m.pair[q, g, h])

            def out_rule(m, b, s, g):
                return _pairing_row(sum(pairs_from[((b, s), g)]), role_sum((b, s), "prefill", gpu=g))

            def in_rule(m, b, s, h):
                return _pairing_row(sum(pairs_to[((b, s), h)]), role_sum((b, s), "decode", gpu=h))

            m.pair_out = pyo.Constraint([(b, s, g) for (b, s) in Q for g in d["gpu_types"]], rule=out_rule)
            m.pair_in = pyo.Constraint([(b, s, h) for (b, s) in Q for h in d["gpu_types"]], rule=in_rule)
            m.link = pyo.Constraint([gh for gh, w in d["links"].items() if w > 0], rule=_link_rule)


def _all_configs_of(d, b):
    out = []
    for role in ("colocated", "prefill", "decode"):
        out.extend(d["by_role"].get((b, role), ()))
    return out


# ---- rows shared by both formulations ------------------------------------------------------------


def _load_rule(m, ki):
    d = m._data
    if m._formulation == "aggregated":
        terms = [d["load"][(b, ki)] * m.n[b, ki] for b in d["B"] if (b, ki) in d["load"]]
    else:
        terms = [d["load"][(b, ki)] * m.x[(b, s), ki] for (b, s) in m._Q if (b, ki) in d["load"]]
    return sum(terms) <= m.y[ki]


def _availability_rule(m, g):
    d = m._data
    terms = [d["K"][ki].tp * m.y[ki] for ki in range(len(d["K"])) if d["K"][ki].gpu == g]
    if not terms:
        return pyo.Constraint.Skip
    return sum(terms) <= d["available"][g]


def _budget_rule(m):
    return m.cost <= m._instance.budget_usd_per_hour


# ---- the relax-and-fix strategy (see module docstring) --------------------------------------------


def _slice_vars(m):
    """Every integer variable except the instance counts y."""
    for name in ("n", "x", "split", "split_q", "pair", "served", "served_q"):
        comp = getattr(m, name, None)
        if isinstance(comp, pyo.Var):
            yield from comp.values()


def relax_slices(m) -> None:
    """Make slice counts continuous (y stays integer): the relaxation whose optimum bounds the MILP."""
    m._integer_domains = {id(v): v.domain for v in _slice_vars(m)}
    for v in _slice_vars(m):
        v.domain = pyo.UnitInterval if v.domain is pyo.Binary else pyo.NonNegativeReals


def restore_slices(m) -> None:
    for v in _slice_vars(m):
        v.domain = m._integer_domains.get(id(v), v.domain)


def fix_counts(m, counts: list[int]) -> None:
    for k, value in enumerate(counts):
        m.y[k].fix(value)


def unfix_counts(m) -> None:
    for v in m.y.values():
        v.unfix()


def counts(m) -> list[int]:
    return [int(round(pyo.value(m.y[k]))) for k in range(len(m._data["K"]))]


# ---- extraction ----------------------------------------------------------------------------------


def extract(model) -> PDPlan:
    """Read the incumbent into a plan: which slice goes where, instances per configuration."""
    d, inst = model._data, model._instance
    K = d["K"]
    counts = [int(round(pyo.value(model.y[k]))) for k in range(len(K))]
    assignments: list[SliceAssignment] = []
    unserved: list[dict] = []
    if model._formulation == "aggregated":
        for b in d["B"]:
            assignments.extend(_slices_of_bucket_aggregated(model, b, unserved))
    else:
        for q in model._Q:
            assignments.extend(_slices_per_slice(model, q, unserved))
    load = [0.0] * len(K)
    index = {k: i for i, k in enumerate(K)}
    for a in assignments:
        ki = index[Config(a.gpu, a.tp, a.role)]
        load[ki] += d["load"][(a.bucket, ki)]
    configs = [
        ConfigUse(k.gpu, k.tp, k.role, counts[i], load[i], counts[i] * d["price"][i]) for i, k in enumerate(K)
    ]
    served = sum(d["rho"][a.bucket] for a in assignments if a.role in ("colocated", "prefill"))
    cost = sum(c.usd_per_hour for c in configs)
    return PDPlan(assignments, configs, served, cost, unserved)


def _int(v) -> int:
    return int(round(pyo.value(v)))


def _slices_of_bucket_aggregated(model, b, unserved) -> list[SliceAssignment]:
    d = model._data
    K, S, rate = d["K"], d["S"], d["rho"][b]
    served = _int(model.served[b]) if isinstance(model.served, pyo.Var) else S
    out: list[SliceAssignment] = []
    slice_ids = iter(range(S))
    for ki in d["by_role"].get((b, "colocated"), ()):
        for _ in range(_int(model.n[b, ki])):
            s = next(slice_ids)
            out.append(SliceAssignment(b, s, K[ki].gpu, K[ki].tp, "colocated", rate))
    # Split slices: pair prefill and decode picks; with links the pairing of GPU types is a decision.
    pre = [ki for ki in d["by_role"].get((b, "prefill"), ()) for _ in range(_int(model.n[b, ki]))]
    dec = [ki for ki in d["by_role"].get((b, "decode"), ()) for _ in range(_int(model.n[b, ki]))]
    if hasattr(model, "pair"):
        pairs = []
        for (b2, g, h) in model._pair_index:
            if b2 == b:
                pairs.extend([(g, h)] * _int(model.pair[b2, g, h]))
        ordered_pre, ordered_dec = [], []
        pre_left, dec_left = list(pre), list(dec)
        for g, h in pairs:
            ordered_pre.append(next(ki for ki in pre_left if K[ki].gpu == g))
            pre_left.remove(ordered_pre[-1])
            ordered_dec.append(next(ki for ki in dec_left if K[ki].gpu == h))
            dec_left.remove(ordered_dec[-1])
        pre, dec = ordered_pre, ordered_dec
    for kp, kd in zip(pre, dec):
        s = next(slice_ids)
        out.append(SliceAssignment(b, s, K[kp].gpu, K[kp].tp, "prefill", rate))
        out.append(SliceAssignment(b, s, K[kd].gpu, K[kd].tp, "decode", rate))
    for s in range(served, S):
        unserved.append({"bucket": b, "slice": s})
    return out


def _slices_per_slice(model, q, unserved) -> list[SliceAssignment]:
    d = model._data
    K = d["K"]
    b, s = q
    rate = d["rho"][b]
    out = []
    picked = [ki for ki in _all_configs_of(d, b) if pyo.value(model.x[q, ki]) > 0.5]
    for ki in picked:
        out.append(SliceAssignment(b, s, K[ki].gpu, K[ki].tp, K[ki].role, rate))
    if not picked:
        unserved.append({"bucket": b, "slice": s})
    return out
