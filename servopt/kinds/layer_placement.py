"""Front door of kind ``layer_placement``: max-flow layer placement over a heterogeneous GPU cluster (Helix, ASPLOS'25).

``load`` validates the JSON (schema, then field rules: ids, links, throughputs). ``solve`` runs
``servopt.solvers.layer_placement_search.solve_layer_placement`` (heuristics, then HiGHS on the
boundary formulation with threshold covers; ``formulation="helix"`` / ``"helix_capped"`` run
Helix's own MILP instead) and returns the result JSON: the common fields, the layout
(``layers``), one maximum flow (``flows``), the routing weights, the bounds, the baselines and,
where the instance carries Helix's published layout, the time at which it was matched.
``check`` is the independent checker ``servopt.analysis.layer_check``. ``options["max_depth"]``
(or the instance's ``max_pipeline_depth``) bounds the nodes on every flow path
(``instances.layer_placement.depth_bounded``). ``simulate`` (``--policy reference|solve``) and
``simulate_result`` (``servopt simulate RESULT.json``: results carry their instance) serve a layout
in ``simulator.layer_pipeline`` and report decode throughput, TTFT and TPOT.

API::

    from servopt.kinds import layer_placement as lpk
    inst = lpk.load(json.load(open("instances/data/example_layer_placement.json")))
    result = lpk.solve(inst, time_limit_s=60, options={})
    assert lpk.check(inst, result) == []
"""
from __future__ import annotations


from servopt import jsonio
from servopt.errors import InputError
from servopt.instances import layer_placement as lpi

KIND = "layer_placement"
EXAMPLE = "example_layer_placement.json"
SHIPPED = (
    "example_layer_placement.json",
    "helix_cluster24_llama2_70b.json",
    "helix_a100x4_llama1_30b.json",
    "helix_l4x8_llama1_30b.json",
    "helix_t4x12_llama1_30b.json",
    "helix_3cluster24_llama2_70b.json",
    "helix_3cluster24_pruned_llama2_70b.json",
    "helix_cluster42_llama2_70b.json",
    "helix_cluster42_pruned_llama2_70b.json",
    "helix_a100x4_geo_llama1_30b.json",
    "helix_l4x8_geo_llama1_30b.json",
    "helix_t4x12_geo_llama1_30b.json",
)


def load(data: dict) -> lpi.LayerPlacementInstance:
    jsonio.validate(data, KIND)
    return lpi.instance_from_dict(data)


def reference_objective(instance: lpi.LayerPlacementInstance) -> float | None:
    """Helix's published objective; where Helix published a better layout for the same cluster (its
    pruned-cluster layout is valid on the full cluster too), the better of the two."""
    ref = instance.reference or {}
    values = [ref.get(k) for k in ("helix_milp_objective", "helix_best_objective")]
    values = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return max(values) if values else None


def solve(instance: lpi.LayerPlacementInstance, *, time_limit_s: float, options: dict | None = None) -> dict:
    from servopt.models.layer_placement import FORMULATIONS
    from servopt.solvers.highs import relative_gap
    from servopt.solvers.layer_placement_search import solve_layer_placement
    from servopt.solvers.maxflow import evaluate_layout

    options = options or {}
    formulation = options.get("formulation") or "boundary"
    if formulation not in FORMULATIONS:
        raise InputError("--formulation", f"unknown formulation '{formulation}' (known: {', '.join(FORMULATIONS)})")
    if (options.get("solver") or "highs").lower() != "highs":
        raise InputError("--solver", f"layer_placement runs HiGHS only (its search drives HiGHS directly), got '{options['solver']}'")
    rel_gap = options.get("rel_gap")
    rel_gap = 1e-6 if rel_gap is None else float(rel_gap)
    if options.get("export"):
        _export(instance, formulation, options["export"])
    depth = options.get("max_depth") or instance.max_pipeline_depth
    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 1):
        raise InputError("max_depth", f"expected a positive integer, got {depth!r}")
    instance = lpi.depth_bounded(instance, depth)
    starts = {}
    ref_layout = (instance.reference or {}).get("helix_layout")
    if options.get("start_from_reference") and isinstance(ref_layout, dict):
        starts["helix_reference"] = lpi.layout_from_dict(instance, ref_layout, "reference.helix_layout")
    outcome = solve_layer_placement(instance, time_limit_s=time_limit_s, rel_gap=rel_gap, formulation=formulation,
                                    starts=starts)
    ev = evaluate_layout(instance, outcome.layout)
    ref = reference_objective(instance)
    matched = None
    if ref is not None:
        hits = [row["t_s"] for row in outcome.trace if row["objective"] >= ref * (1 - 1e-9)]
        matched = min(hits) if hits else None
    baselines = dict(outcome.baselines)
    if ref is not None:
        baselines["helix_published"] = {"objective": ref}
    common = {
        "status": outcome.status,
        "objective": ev.value,
        "bound": outcome.bound,
        "gap": relative_gap(ev.value, outcome.bound, "max"),
        "solve_seconds": round(outcome.seconds, 4),
        "solver": "highs",
    }
    details = {
        "formulation": formulation,
        "method": outcome.method,
        "proof": outcome.proof,
        "time_to_first_layout_s": round(outcome.first_layout_s, 4),
        "reference_objective": ref,
        "time_to_reference_s": matched,
        "num_layers": instance.num_layers,
        "bounds": outcome.bounds,
        "baselines": baselines,
        "trace": outcome.trace,
        "milp_calls": outcome.milp_calls,
    }
    details["pipeline_depth"] = pipeline_depth(ev.flows)
    if depth:
        details["max_pipeline_depth"] = depth
    # the instance rides along, so that `servopt simulate RESULT.json` needs nothing else
    details["instance"] = instance.to_dict()
    result = lpi.LayerPlacementResult(common, outcome.layout, list(ev.flows), ev.routing_weights, details).to_dict()
    return result


def pipeline_depth(flows) -> int:
    """The most nodes on one source -> sink path of a flow (flows of a layout form a DAG)."""
    succ: dict[str, list[str]] = {}
    for u, v, f in flows:
        if f > 1e-9:
            succ.setdefault(u, []).append(v)
    memo: dict[str, int] = {}

    def longest(u: str) -> int:
        if u == lpi.SINK:
            return 0
        if u not in memo:
            memo[u] = -1  # guard: a cycle cannot occur (layer ranges increase along every arc)
            memo[u] = max((longest(v) for v in succ.get(u, [])), default=-1) + (0 if u == lpi.SOURCE else 1)
        return memo[u]

    return max(longest(lpi.SOURCE), 0)


def _workload(options: dict):
    from servopt.simulator.layer_pipeline import Workload

    def num(key, default, cast):
        value = options.get(key, default)
        try:
            value = cast(value)
        except (TypeError, ValueError):
            raise InputError(f"--param {key}", f"expected a number, got {value!r}") from None
        if value < 0 or (cast is int and key != "seed" and value < 1):
            raise InputError(f"--param {key}", f"out of range: {value!r}")
        return value

    return Workload(num_requests=num("num_requests", 200, int), prompt_tokens=num("prompt_tokens", 512, int),
                    output_tokens=num("output_tokens", 64, int), rate_per_s=num("rate", 0.0, float),
                    seed=num("seed", 0, int))


def simulate_layout_result(instance, layout, routing_weights, options: dict | None = None) -> dict:
    """Serving simulation of one layout (simulator/layer_pipeline.py) as result JSON."""
    import time

    from servopt.simulator.layer_pipeline import simulate_layout
    from servopt.solvers.maxflow import evaluate_layout

    options = dict(options or {})
    cost = options.get("cost", "roofline")
    if cost not in ("roofline", "throughput"):
        raise InputError("--param cost", f"expected roofline or throughput, got {cost!r}")
    ev = evaluate_layout(instance, layout)
    if ev.value <= 0:
        raise InputError("layers", "the layout carries no flow: there is nothing to simulate")
    weights = routing_weights or ev.routing_weights
    t0 = time.perf_counter()
    sim = simulate_layout(instance, layout, weights, workload=_workload(options), cost=cost,
                          llm=str(options.get("llm", "llama-2-70b")))
    out = {"kind": KIND, "status": "feasible", "objective": sim.decode_throughput_tokens_per_s,
           "objective_name": "decode_throughput_tokens_per_s", "bound": None, "gap": None,
           "solve_seconds": round(time.perf_counter() - t0, 4), "solver": None, "method": "layer_pipeline simulation",
           "max_flow_tokens_per_s": ev.value, "pipeline_depth": pipeline_depth(ev.flows),
           "layers": layout.to_dict(), "flows": [{"from": u, "to": v, "tokens_per_s": f} for u, v, f in ev.flows],
           "routing_weights": weights, "simulation": sim.to_dict()}
    return out


def simulate(instance: lpi.LayerPlacementInstance, *, policy: str, options: dict | None = None) -> dict:
    """Simulate serving a layout of ``instance``: ``policy`` = ``reference`` (Helix's best published
    layout, ``reference.helix_layout`` or ``helix_pruned_layout``) or ``solve`` (our layout,
    ``--param time_limit=S``)."""
    options = dict(options or {})
    if policy == "reference":
        ref = instance.reference or {}
        raw = ref.get("helix_layout")
        best, own = ref.get("helix_best_objective"), ref.get("helix_milp_objective")
        if isinstance(ref.get("helix_pruned_layout"), dict) and isinstance(best, (int, float)) and best > (own or 0):
            raw = ref["helix_pruned_layout"]  # Helix's better layout for this cluster (see reference_objective)
        if not isinstance(raw, dict):
            raise InputError("reference.helix_layout", "this instance ships no published layout to simulate")
        layout = lpi.layout_from_dict(instance, raw, "reference.helix_layout")
        return simulate_layout_result(instance, layout, None, options)
    if policy == "solve":
        limit = float(options.pop("time_limit", 30.0))
        if not limit > 0:
            raise InputError("--param time_limit", "must be positive")
        result = solve(instance, time_limit_s=limit, options={"max_depth": options.pop("max_depth", None)})
        return simulate_result(result, options)
    raise InputError("--policy", f"unknown policy '{policy}' for layer_placement (known: reference, solve)")


def simulate_result(result: dict, options: dict | None = None) -> dict:
    """``servopt simulate RESULT.json``: the layout of a layer_placement result, served."""
    if not isinstance(result.get("instance"), dict):
        raise InputError("instance", "this result carries no instance (results of servopt solve do)")
    instance = lpi.instance_from_dict(result["instance"])
    layout = lpi.layout_from_dict(instance, result.get("layers"), "layers")
    bad = lpi.layout_violations(instance, layout)
    if bad:
        raise InputError("layers", bad[0])
    out = simulate_layout_result(instance, layout, result.get("routing_weights"), options)
    out["solved_objective"] = result.get("objective")
    return out


def _export(instance, formulation, path):
    from servopt.models import layer_placement as lp
    from servopt.solvers.highs import write_model
    from servopt.solvers.layer_placement_search import saturation_upper_bound

    model = lp.build(instance, formulation=formulation, upper_bound=saturation_upper_bound(instance))
    write_model(model, path)


def check(instance: lpi.LayerPlacementInstance, result: dict) -> list[str]:
    from servopt.analysis.layer_check import check as layer_check

    depth = result.get("max_pipeline_depth")
    if isinstance(depth, int) and not isinstance(depth, bool) and depth >= 1:
        instance = lpi.depth_bounded(instance, depth)
    return layer_check(instance, result)


# ---- presentation ---------------------------------------------------------------------------------


def render(result: dict, console) -> None:
    from rich.table import Table

    def num(x, fmt="{:,.2f}"):
        return "-" if x is None else fmt.format(x)

    if isinstance(result.get("simulation"), dict):
        _render_simulation(result, console)
        return
    gap = result.get("gap")
    console.print(
        f"layer_placement: status {result.get('status')}, throughput {num(result.get('objective'))} tokens/s, "
        f"bound {num(result.get('bound'))}, gap {'-' if gap is None else f'{100 * gap:.4g}%'}, "
        f"{result.get('solve_seconds')} s (first layout {result.get('time_to_first_layout_s')} s; method {result.get('method')})"
    )
    if result.get("proof"):
        console.print(f"proof: {result['proof']}")
    ref = result.get("reference_objective")
    if ref is not None:
        t = result.get("time_to_reference_s")
        console.print(f"Helix published: {ref:,.2f} tokens/s; matched at {'-' if t is None else f'{t} s'}; "
                      f"ours / Helix = {result['objective'] / ref:.4f}")
    inflow: dict[str, float] = {}
    for arc in result.get("flows", []):
        inflow[arc["to"]] = inflow.get(arc["to"], 0.0) + arc["tokens_per_s"]
    table = Table(title="layout (sorted by first layer)")
    for col in ("node", "layers", "count", "flow tok/s", "next hops (weight)"):
        table.add_column(col, justify="right" if col in ("count", "flow tok/s") else "left")
    weights = result.get("routing_weights", {})
    rows = sorted(result.get("layers", {}).items(), key=lambda kv: (kv[1][0], kv[1][1], kv[0]))
    for nid, (s, e) in rows:
        hops = ", ".join(f"{v} ({w:.2f})" for v, w in sorted(weights.get(nid, {}).items()))
        table.add_row(nid, f"[{s}, {e})", str(e - s), num(inflow.get(nid, 0.0)), hops or "-")
    console.print(table)
    bl = Table(title="bounds and baselines (tokens/s)")
    bl.add_column("what")
    bl.add_column("tokens/s", justify="right")
    for name, value in (result.get("bounds") or {}).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            bl.add_row(name, num(value))
    for name, row in (result.get("baselines") or {}).items():
        bl.add_row(f"baseline: {name}", num(row.get("objective")))
    console.print(bl)


def _render_simulation(result: dict, console) -> None:
    from rich.table import Table

    sim = result["simulation"]

    def ms(d, key):
        v = d.get(key)
        return "-" if v is None else f"{v:,.1f}"

    console.print(f"layer_placement serving simulation: decode throughput {sim['decode_throughput_tokens_per_s']:,.1f} "
                  f"tokens/s (max flow {result.get('max_flow_tokens_per_s', 0):,.1f}); {sim['completed']} requests, "
                  f"{sim['num_paths']} distinct paths of {sim['mean_path_nodes']:.1f} nodes on average "
                  f"(deepest flow path {result.get('pipeline_depth')}); cost model {sim['cost']}")
    table = Table(title="latency (ms)")
    for col in ("metric", "mean", "p50", "p90", "p99"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for name in ("ttft_ms", "tpot_ms"):
        table.add_row(name.split("_")[0].upper(), *(ms(sim[name], k) for k in ("mean", "p50", "p90", "p99")))
    console.print(table)


def _shipped(name: str) -> dict:
    return jsonio.read_shipped(name)


def demo(*, time_limit_s: float) -> list[dict]:
    inst = load(_shipped(EXAMPLE))
    result = solve(inst, time_limit_s=time_limit_s, options={})
    rows = [{"instance": inst.name or EXAMPLE, "method": f"boundary MILP + threshold covers ({result['method']})",
             "objective": result["objective"], "bound": result["bound"], "gap": result["gap"],
             "status": result["status"], "seconds": result["solve_seconds"], "ratio": 1.0, "unit": "tok/s"}]
    for name, row in result["baselines"].items():
        if row.get("objective") is not None:
            extra = {}
            if row["objective"] == 0:  # say why a baseline gives nothing (servopt demo prints it as a footnote)
                from servopt.analysis.explain import baseline_zero_reason

                extra["note"] = baseline_zero_reason(inst, name)
            rows.append({"instance": inst.name or EXAMPLE, "method": f"baseline: {name}", "objective": row["objective"],
                         "bound": None, "gap": None, "status": "-", "unit": "tok/s", **extra,
                         "ratio": row["objective"] / result["objective"] if result["objective"] else None})
    return rows
