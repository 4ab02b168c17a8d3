"""Results explained for people: what a plan does and why (``servopt explain``, ``servopt solve``).

``explain(result, instance=None, ...)`` returns a JSON-able dict for any result kind; ``render``
prints it as tables that fit the console's width.

* ``pd_placement`` (``pd_explanation``): per bucket the configuration(s) serving it and the mean
  TTFT / TPOT predicted at the plan's operating point by the queueing models of
  ``servopt.costmodel.capacities`` (``operating_point``: each instance of a configuration is taken
  to serve bucket b at ``u · μ_b``, its utilisation times its capacity for b, i.e. time-sharing);
  with capacities given in the instance the latencies are unknown. The binding constraints:
  availability used up, SLO-limited buckets (configurations the SLO rules out; the limit that caps
  the chosen configuration's capacity), the budget (max_goodput), link bandwidth. Beside the optimum,
  the best single GPU type (Mélange's baseline, arXiv 2404.14527 §6) and the other serving modes,
  each a re-solve charged to a deadline (skipped with a note when the time is short). For
  max_goodput: the unserved buckets and what serving them would cost.
* ``layer_placement``: pipelines (source-to-sink paths of the flow), depth, bottleneck nodes
  (flow at their capacity T_i(k_i)) and links (flow at their bandwidth).
* ``kv_schedule``: where the online policies lose against the optimum's schedule, request by
  request (the policies are re-run on the instance; the optimum's rows come from the result).
* other kinds: a generic summary (status, objective, bound, gap, method, notes).
"""
from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import replace
from functools import lru_cache

from servopt.errors import InputError

_pd_buckets_cache: dict[int, list] = {}  # the bucket rows of the result being explained (read by _pd_binding)
ROLE_ORDER = {"prefill": 0, "decode": 1, "colocated": 2}
UNITS = {"cost_usd_per_hour": "$/h", "served_rate_rps": "rps"}


# ---- pd_placement ---------------------------------------------------------------------------------


def pd_explanation(instance, result: dict, *, deadline: float | None = None, compare: bool = True) -> dict:
    """The explanation of a pd_placement result (module docstring). ``deadline``: a
    ``time.perf_counter()`` value by which the comparison solves must end (None: 30 s from now)."""
    t0 = time.perf_counter()
    deadline = t0 + 30.0 if deadline is None else deadline
    notes: list[str] = []
    out = {
        "latency_source": ("cost model (mean TTFT/TPOT at the plan's utilisation; servopt.costmodel.capacities)"
                           if instance.capacities_source == "cost model" else
                           "unknown: the capacities were given in the instance (no latency model behind them)"),
        "slo": instance.slo.to_dict() if instance.slo is not None else None,
        "buckets": _pd_buckets(instance, result),
    }
    _pd_buckets_cache[id(result)] = out["buckets"]
    try:
        out["binding"] = _pd_binding(instance, result)
    finally:
        _pd_buckets_cache.pop(id(result), None)
    if result.get("objective_name") == "served_rate_rps" or instance.objective == "max_goodput":
        out["unserved"] = _pd_unserved_rows(instance, result)
    if compare:
        out["alternatives"] = _pd_alternatives(instance, result, deadline, notes)
        if out.get("unserved"):
            _pd_unserved_costs(instance, result, out["unserved"], deadline, notes)
    out["notes"] = notes
    out["seconds"] = round(time.perf_counter() - t0, 4)
    return out


def _configs_of(result: dict) -> dict[tuple, dict]:
    return {(c["gpu"], c["tp"], c["role"]): c for c in result.get("configs", [])}


def _combo_label(combo) -> str:
    return " + ".join(f"{g} tp{tp} {role}" for (g, tp, role) in combo)


def _pd_buckets(instance, result: dict) -> list[dict]:
    per_slice: dict[tuple, list] = defaultdict(list)
    for a in result.get("assignment", []):
        per_slice[(a["bucket"], a["slice"])].append(a)
    configs = _configs_of(result)
    # (gpu, tp, role, bucket) -> rps from plain tuples: capacity_table's dataclass keys are slow at 50k entries
    roles = set(instance.roles)
    cap = {(c.gpu, c.tp, c.role, c.bucket): c.rps for c in instance.capacities if c.role in roles and c.rps > 0}
    derived = instance.capacities_source == "cost model"
    rows = []
    for b in instance.buckets:
        combos: dict[tuple, float] = defaultdict(float)
        for s in range(instance.slices):
            rows_s = per_slice.get((b.id, s), [])
            if not rows_s:
                continue
            combo = tuple(sorted({(a["gpu"], a["tp"], a["role"]) for a in rows_s}, key=lambda k: (ROLE_ORDER[k[2]], k)))
            # a slice's rate is counted once (its prefill and decode rows carry the same rate)
            combos[combo] += max(a["rate_rps"] for a in rows_s)
        served = sum(combos.values())
        entry = {"bucket": b.id, "prompt_tokens": b.prompt_tokens, "output_tokens": b.output_tokens,
                 "rate_rps": instance.bucket_rate_rps(b), "served_rps": served, "served_by": []}
        for combo, rate in sorted(combos.items(), key=lambda kv: -kv[1]):
            item = {"configs": _combo_label(combo), "rate_rps": rate, "ttft_ms": None, "tpot_ms": None, "limited_by": None}
            if derived:
                for (g, tp, role) in combo:
                    mu = cap.get((g, tp, role, b.id))
                    use = configs.get((g, tp, role))
                    if not mu or use is None:
                        continue
                    lat, limit = _latency(instance, g, tp, role, b, use["utilisation"] * mu)
                    # JSON has no infinity: a latency beyond any bound (overload) is reported as null
                    if lat.get("ttft_ms") is not None:
                        item["ttft_ms"] = lat["ttft_ms"] if math.isfinite(lat["ttft_ms"]) else None
                    if lat.get("tpot_ms") is not None:
                        item["tpot_ms"] = lat["tpot_ms"] if math.isfinite(lat["tpot_ms"]) else None
                    item["limited_by"] = ", ".join(x for x in (item["limited_by"], f"{role}: {limit}") if x)
            entry["served_by"].append(item)
        rows.append(entry)
    return rows


def _catalog_names(instance, gpu_type: str) -> tuple[str, str]:
    from servopt.instances.catalog import get_gpu, get_llm

    return get_llm(instance.llm).name, get_gpu(instance.gpu_offer(gpu_type).catalog_name).name


def _latency(instance, gpu_type, tp, role, bucket, rps):
    """(operating point, what caps the capacity) of one configuration for one bucket."""
    from servopt.costmodel.capacities import operating_point

    llm, gpu = _catalog_names(instance, gpu_type)
    point = operating_point(llm, gpu, tp, role, bucket.prompt_tokens, bucket.output_tokens, rps)
    return point, _limit(llm, gpu, tp, role, bucket.prompt_tokens, bucket.output_tokens, instance.slo.ttft_ms,
                         instance.slo.tpot_ms)


@lru_cache(maxsize=4096)
def _limit(llm, gpu, tp, role, prompt, output, ttft_ms, tpot_ms) -> str:
    from servopt.costmodel.capacities import capacity

    return capacity(llm, gpu, tp, role, prompt, output, ttft_ms=ttft_ms, tpot_ms=tpot_ms).limited_by


def _pd_binding(instance, result: dict) -> list[dict]:
    binding = []
    used: dict[str, int] = defaultdict(int)
    for c in result.get("configs", []):
        used[c["gpu"]] += c["gpus"]
    usable = {(c.gpu, c.tp, c.role) for c in instance.capacities if c.role in instance.roles and c.rps > 0}
    min_tp: dict[str, int] = defaultdict(lambda: 1)
    for g, tp, _ in usable:
        min_tp[g] = min(min_tp.get(g, tp), tp)
    for g in instance.gpus:
        if g.available is not None and used[g.type] + min_tp[g.type] > g.available:
            binding.append({"constraint": "availability",
                            "what": f"{g.type}: {used[g.type]} of {g.available} GPUs used (no room for another instance)"})
    # the budget: no further instance of the cheapest configuration fits under it
    if instance.objective == "max_goodput" and instance.budget_usd_per_hour is not None:
        cost = result.get("cost_usd_per_hour") or 0.0
        price = {g.type: g.usd_per_hour for g in instance.gpus}
        cheapest = min((price[g] * tp for g, tp, _ in usable), default=math.inf)
        left = instance.budget_usd_per_hour - cost
        if left < cheapest:
            binding.append({"constraint": "budget",
                            "what": f"{cost:.4g} of {instance.budget_usd_per_hour:g} $/h spent; {left:.4g} $/h left is less "
                                    f"than the cheapest instance ({cheapest:.4g} $/h)"})
    # the SLO: configurations it rules out, per bucket (0 rps = cannot meet the SLO for that size)
    roles = set(instance.roles)
    offered = sorted({(c.gpu, c.tp, c.role) for c in instance.capacities if c.role in roles})
    positive = {(c.gpu, c.tp, c.role, c.bucket) for c in instance.capacities if c.role in roles and c.rps > 0}
    slo_lines: dict[str, list[str]] = defaultdict(list)
    for b in instance.buckets:
        if b.share <= 0:
            continue
        out_by: dict[tuple[str, str], list[int]] = defaultdict(list)
        for (g, tp, role) in offered:
            if (g, tp, role, b.id) not in positive:
                out_by[(g, role)].append(tp)
        if out_by:
            n, total = sum(len(v) for v in out_by.values()), len(offered)
            items = [f"{g} {role} (tp {'/'.join(map(str, tps))})" for (g, role), tps in sorted(out_by.items())]
            which = ", ".join(items[:6]) + (f" and {len(items) - 6} more" if len(items) > 6 else "")
            slo_lines[f"{n} of {total} configurations cannot meet the SLO: {which}"].append(b.id)
    for what, ids in slo_lines.items():
        binding.append({"constraint": "slo", "what": f"bucket{'s' if len(ids) > 1 else ''} {', '.join(ids)}: {what}"})
    # what caps the capacity of the configurations that serve each bucket (cost model only)
    caps = []
    for row in _pd_buckets_cache.get(id(result), []):
        limits = sorted({s["limited_by"] for s in row["served_by"] if s.get("limited_by")})
        if limits:
            caps.append(f"{row['bucket']} ({'; '.join(limits)})")
    if caps:
        binding.append({"constraint": "capacity caps", "what": "what limits the serving configurations' rps: " + ", ".join(caps)
                        + " (ttft/tpot: the SLO; kv: KV-cache memory)"})
    # links: KV traffic from prefill on one GPU type to decode on another
    if instance.links and instance.kv_bytes_per_token:
        per_slice: dict[tuple, list] = defaultdict(list)
        for a in result.get("assignment", []):
            per_slice[(a["bucket"], a["slice"])].append(a)
        buckets = {b.id: b for b in instance.buckets}
        traffic: dict[tuple[str, str], float] = defaultdict(float)
        for (bid, _), rows in per_slice.items():
            pre = [a for a in rows if a["role"] == "prefill"]
            dec = [a for a in rows if a["role"] == "decode"]
            for p in pre:
                for d in dec:
                    share = d["rate_rps"] / max(sum(x["rate_rps"] for x in dec), 1e-12)
                    traffic[(p["gpu"], d["gpu"])] += p["rate_rps"] * share * instance.kv_gb_per_request(buckets[bid])
        for link in instance.links:
            t = traffic.get((link.src, link.dst), 0.0)
            if link.gb_per_s == 0 or t >= 0.98 * link.gb_per_s:
                binding.append({"constraint": "link",
                                "what": f"{link.src} -> {link.dst}: {t:.4g} of {link.gb_per_s:g} GB/s of KV traffic"
                                        + (" (the link is closed)" if link.gb_per_s == 0 else "")})
    full = [c for c in result.get("configs", []) if c.get("utilisation", 0) >= 0.999]
    if full:
        binding.append({"constraint": "utilisation",
                        "what": "at 100% load: " + ", ".join(f"{c['count']} x {c['gpu']} tp{c['tp']} {c['role']}" for c in full)})
    return binding


def _servable(inst) -> list[str]:
    """Bucket ids that no configuration of the mode can serve (same rule as the front door's precheck)."""
    table = inst.capacity_table()
    bad = []
    for b in inst.buckets:
        has = {role: any(k.role == role and bid == b.id for (k, bid) in table) for role in ("colocated", "prefill", "decode")}
        ok = (has["colocated"] and "colocated" in inst.roles) or (has["prefill"] and has["decode"] and "prefill" in inst.roles)
        if b.share > 0 and not ok:
            bad.append(b.id)
    return bad


def _pd_solve(inst, time_limit_s: float):
    """One MILP solve of the aggregated model (no relax-and-fix: comparisons need a value, not a proof race)."""
    from servopt.models import pd_placement as mp
    from servopt.solvers.highs import solve as highs_solve

    m = mp.build(inst, formulation="aggregated")
    res = highs_solve(m, time_limit_s=max(0.05, time_limit_s), rel_gap=1e-4)
    plan = mp.extract(m) if res.has_solution else None
    return res, plan


class _Budget:
    """Shares the time to a deadline among the comparison solves still to run."""

    def __init__(self, deadline: float, build_s: float):
        self.deadline, self.build_s = deadline, build_s

    def share(self, solves_left: int) -> float | None:
        """Seconds for the next solve: an equal share, or all that is left when a share is too short
        (the earlier comparisons matter more); None when not even that fits."""
        left = self.deadline - time.perf_counter()
        per = left / max(1, solves_left) - self.build_s
        if per < 0.05:
            per = left - self.build_s
        return per if per >= 0.05 else None


def _estimated_build_s(result: dict) -> float:
    return max([st.get("build_seconds") or 0.0 for st in result.get("stages", [])] + [0.0]) + 0.02


def _objective_of(inst, plan) -> float:
    return plan.cost_usd_per_hour if inst.objective == "min_cost" else plan.served_rate_rps


def _pd_alternatives(instance, result: dict, deadline: float, notes: list[str]) -> list[dict]:
    from servopt.instances.pd_placement import MODES

    unit = "$/h" if instance.objective == "min_cost" else "rps"
    opt = result.get("objective")
    jobs = []  # (label, kind, build the sub-instance or a reason it cannot exist); the most telling first
    for mode in MODES:
        if mode != instance.mode:
            jobs.append((f"{mode} serving", "mode", lambda mode=mode: _other_mode(instance, mode)))
    if instance.links:  # what the link limits cost: the same instance with unconstrained KV transfer
        jobs.append(("no link limits", "links", lambda: (replace(instance, links=()), "")))
    used = {c["gpu"] for c in result.get("configs", [])}
    for g in sorted(instance.gpus, key=lambda g: g.type not in used):  # the optimum's own GPU types first
        jobs.append((f"{g.type} only", "single type", lambda g=g: _single_type(instance, g)))
    budget = _Budget(deadline, _estimated_build_s(result))
    rows = []
    for i, (label, kind, make) in enumerate(jobs):
        row = {"alternative": label, "kind": kind, "objective": None, "unit": unit, "relative": None, "status": None, "note": ""}
        rows.append(row)
        # checked before building the sub-instance too: deriving another mode's capacities takes time
        if budget.share(len(jobs) - i) is None:
            row.update(status="skipped", note="not solved: the time limit was spent")
            continue
        sub, why = make()
        if sub is None:
            row.update(status="cannot serve", note=why)
            continue
        limit = budget.share(len(jobs) - i)
        if limit is None:
            row.update(status="skipped", note="not solved: the time limit was spent")
            continue
        res, plan = _pd_solve(sub, limit)
        row["status"] = res.status
        if plan is None and res.status == "infeasible" and any(g.available is not None for g in sub.gpus):
            row["note"] = "infeasible: too few GPUs available (" + ", ".join(
                f"{g.type}: {g.available}" for g in sub.gpus if g.available is not None) + ")"
            again = budget.share(len(jobs) - i)
            if again is not None:
                res2, plan2 = _pd_solve(replace(sub, gpus=tuple(replace(g, available=None) for g in sub.gpus)), again)
                if plan2 is not None:
                    row["note"] += (f"; {_objective_of(sub, plan2):.4g} {unit} with unlimited availability: "
                                    + ", ".join(f"{c.count} x {c.gpu} tp{c.tp} {c.role}" for c in plan2.configs if c.count > 0))
            continue
        if plan is None:
            row["note"] = f"no plan within {limit:.2g} s ({res.status})"
            continue
        row["objective"] = _objective_of(sub, plan)
        row["relative"] = row["objective"] / opt if opt else None
        row["plan"] = ", ".join(f"{c.count} x {c.gpu} tp{c.tp} {c.role}" for c in plan.configs if c.count > 0)
        if res.status != "optimal":
            row["note"] = f"best found in {limit:.2g} s (gap {_pct(res.gap)})"
            worse = row["objective"] > opt if instance.objective == "min_cost" else row["objective"] < opt
            if label == "hybrid serving" and opt is not None and worse:
                # hybrid serving includes the optimum's own plan: it is never worse, only not improved on in time
                row.update(objective=opt, relative=1.0, plan="the optimum's plan",
                           note=f"no better plan found in {limit:.2g} s (hybrid includes the {instance.mode} plan)")
        if instance.objective == "max_goodput" and row["objective"] > 0:
            row["note"] = (row["note"] + "; " if row["note"] else "") + f"costs {plan.cost_usd_per_hour:.4g} $/h"
    if any(r["status"] == "skipped" for r in rows):
        notes.append("some comparisons were skipped: raise --time-limit to see them")
    return rows


def _single_type(instance, g):
    caps = tuple(c for c in instance.capacities if c.gpu == g.type)
    if not any(c.rps > 0 and c.role in instance.roles for c in caps):
        return None, "no configuration of this GPU meets the SLO"
    sub = replace(instance, gpus=(g,), capacities=caps,
                  links=tuple(l for l in instance.links if l.src == g.type and l.dst == g.type))
    bad = _servable(sub)
    if bad and instance.objective == "min_cost":
        return None, f"cannot meet the SLO for bucket(s) {', '.join(bad)}"
    return sub, ""


def _other_mode(instance, mode: str):
    from servopt.instances.pd_placement import ROLES_OF_MODE

    links = instance.links if mode != "colocated" else ()
    if instance.capacities_source == "cost model":
        from servopt.costmodel.capacities import capacities_for_instance

        sub = replace(instance, mode=mode, links=links)
        sub = replace(sub, capacities=tuple(capacities_for_instance(sub)))
    else:
        have = {c.role for c in instance.capacities if c.rps > 0}
        missing = [r for r in ROLES_OF_MODE[mode] if r not in have and not (mode == "hybrid" and ({"colocated"} <= have or {"prefill", "decode"} <= have))]
        if mode == "disaggregated" and missing or mode == "colocated" and "colocated" not in have:
            return None, f"the instance gives no {' / '.join(missing or ['colocated'])} capacities"
        sub = replace(instance, mode=mode, links=links)
    bad = _servable(sub)
    if bad and instance.objective == "min_cost":
        return None, f"cannot meet the SLO for bucket(s) {', '.join(bad)}"
    return sub, ""


def _pd_unserved_rows(instance, result: dict) -> list[dict]:
    count: dict[str, int] = defaultdict(int)
    for u in result.get("unserved", []):
        count[u["bucket"]] += 1
    rows = []
    for b in instance.buckets:
        if count.get(b.id):
            rate = count[b.id] * instance.slice_rate_rps(b)
            rows.append({"bucket": b.id, "slices": count[b.id], "of_slices": instance.slices, "rate_rps": rate,
                         "share_of_traffic": rate / instance.rate_rps, "extra_usd_per_hour": None, "note": ""})
    return rows


def _pd_unserved_costs(instance, result: dict, rows: list[dict], deadline: float, notes: list[str]) -> None:
    """What serving each unserved bucket's slices would cost on the GPUs the plan leaves free."""
    used: dict[str, int] = defaultdict(int)
    for c in result.get("configs", []):
        used[c["gpu"]] += c["gpus"]
    free = tuple(replace(g, available=None if g.available is None else max(0, g.available - used[g.type]))
                 for g in instance.gpus)
    budget = _Budget(deadline, _estimated_build_s(result))
    buckets = {b.id: b for b in instance.buckets}
    for i, row in enumerate(rows):
        b = buckets[row["bucket"]]
        sub = replace(instance, objective="min_cost", budget_usd_per_hour=None, gpus=free, rate_rps=row["rate_rps"],
                      slices=row["slices"], buckets=(replace(b, share=1.0),),
                      capacities=tuple(c for c in instance.capacities if c.bucket == b.id))
        if _servable(sub):
            row["note"] = "no configuration meets the SLO for it"
            continue
        limit = budget.share(len(rows) - i)
        if limit is None:
            row["note"] = "not solved: the time limit was spent"
            notes.append("the cost of serving the unserved buckets was not computed in time: raise --time-limit")
            continue
        res, plan = _pd_solve(sub, limit)
        if plan is None:
            row["note"] = "the GPUs left free cannot serve it" if res.status == "infeasible" else f"no plan within {limit:.2g} s"
            continue
        row["extra_usd_per_hour"] = plan.cost_usd_per_hour
        budget_total = instance.budget_usd_per_hour
        row["note"] = ("+" + ", ".join(f"{c.count} x {c.gpu} tp{c.tp} {c.role}" for c in plan.configs if c.count > 0)
                       + (f" ({100 * plan.cost_usd_per_hour / budget_total:.0f}% of the budget)" if budget_total else ""))


def render_pd(expl: dict, result: dict, console) -> None:
    from rich.table import Table

    slo = expl.get("slo") or {}
    wide = console.width >= 100
    known = expl.get("slo") is not None and "unknown" not in (expl.get("latency_source") or "")
    t = Table(title="per bucket: who serves it, predicted mean latency vs the SLO", title_justify="left")
    t.add_column("bucket")
    if wide and known:
        t.add_column("tokens in/out", justify="right")
    t.add_column("rps", justify="right")
    t.add_column("served by")
    ttft, tpot = _g(slo.get("ttft_ms")), _g(slo.get("tpot_ms"))
    t.add_column(f"TTFT ms (SLO {ttft})" if wide else f"TTFT ms\n≤ {ttft}", justify="right")
    t.add_column(f"TPOT ms (SLO {tpot})" if wide else f"TPOT ms\n≤ {tpot}", justify="right")
    for b in expl.get("buckets", []):
        served_by = b["served_by"] or [{"configs": "(not served)", "rate_rps": 0.0, "ttft_ms": None, "tpot_ms": None}]
        for j, s in enumerate(served_by):
            cells = [b["bucket"] if j == 0 else ""]
            if wide and known:
                cells.append(f"{b['prompt_tokens']}/{b['output_tokens']}" if j == 0 else "")
            cells += [f"{s['rate_rps']:.4g}", s["configs"], _ms(s.get("ttft_ms")), _ms(s.get("tpot_ms"))]
            t.add_row(*cells)
    console.print(t)
    console.print(f"latencies: {expl.get('latency_source')}")
    if expl.get("binding"):
        console.print("binding constraints:")
        for item in expl["binding"]:
            console.print(f"  - {item['constraint']}: {item['what']}")
    else:
        console.print("binding constraints: none at their limit (the cost is set by prices and capacities)")
    alts = expl.get("alternatives")
    if alts:
        unit = alts[0]["unit"]
        opt = result.get("objective")
        a = Table(title=f"beside the optimum ({'-' if opt is None else f'{opt:.4g}'} {unit}, mode {result.get('mode')})",
                  title_justify="left")
        a.add_column("alternative")
        a.add_column(unit, justify="right")
        a.add_column("vs opt", justify="right")
        a.add_column("note" if not wide else "plan / note")
        shown, folded = _fold_alternatives(alts)
        for r in shown:
            note = r.get("plan") or ""
            if r.get("note"):
                note = f"{note}; {r['note']}" if note else r["note"]
            a.add_row(r["alternative"], "-" if r["objective"] is None else f"{r['objective']:.4g}",
                      "-" if r["relative"] is None else f"{r['relative']:.3f}x", note)
        console.print(a)
        for line in folded:
            console.print(line)
    if expl.get("unserved"):
        u = Table(title="unserved traffic (max_goodput) and the cost of serving it on the GPUs left free", title_justify="left")
        for col, just in (("bucket", "left"), ("slices", "right"), ("rps", "right"), ("traffic", "right"),
                          ("+$/h", "right"), ("how", "left")):
            u.add_column(col, justify=just)
        for r in expl["unserved"]:
            u.add_row(r["bucket"], f"{r['slices']}/{r['of_slices']}", f"{r['rate_rps']:.4g}", f"{100 * r['share_of_traffic']:.1f}%",
                      "-" if r["extra_usd_per_hour"] is None else f"{r['extra_usd_per_hour']:.4g}", r.get("note", ""))
        console.print(u)
    for n in expl.get("notes", []):
        console.print(f"note: {n}")


def _fold_alternatives(alts: list[dict], keep: int = 12) -> tuple[list[dict], list[str]]:
    """Rows to show and one line per folded group: with many GPU types, the skipped and the
    cannot-serve single types are named in a line each instead of a row each."""
    if len(alts) <= keep:
        return alts, []
    shown, groups = [], defaultdict(list)
    for r in alts:
        if r["kind"] == "single type" and r["status"] in ("skipped", "cannot serve"):
            groups[r["status"]].append(r["alternative"].removesuffix(" only"))
        else:
            shown.append(r)
    lines = []
    for status, names in groups.items():
        what = "not solved in time" if status == "skipped" else "cannot meet the SLO alone"
        lines.append(f"{len(names)} single GPU types {what}: {', '.join(names[:8])}" + (" ..." if len(names) > 8 else ""))
    return shown, lines


def _g(x) -> str:
    return "-" if x is None else f"{x:g}"


def _ms(x) -> str:
    if x is None:
        return "?"
    if math.isinf(x):
        return "inf"
    return f"{x:.1f}"


# ---- layer_placement -------------------------------------------------------------------------------


def layer_zero_reason(instance, layout) -> str:
    """Why a layout gives 0 tokens/s: layers no node holds, spans that do not chain, or no path over the links."""
    L = instance.num_layers
    spans = {nid: tuple(r) for nid, r in layout.ranges.items()}
    held = [False] * L
    for s, e in spans.values():
        for layer in range(s, e):
            held[layer] = True
    if not all(held):
        missing = [i for i, h in enumerate(held) if not h]
        return f"layer {missing[0]} is held by no node ({len(missing)} layer(s) uncovered)"
    # stages chain when one starts exactly where another ends; how far do chains from layer 0 reach?
    reach, frontier = {0}, [0]
    while frontier:
        x = frontier.pop()
        for s, e in spans.values():
            if s == x and e not in reach:
                reach.add(e)
                frontier.append(e)
    if L not in reach:
        return (f"its stages chain from layer 0 only up to layer {max(reach)} of {L}: a stage must start exactly where "
                f"the previous one ends, so no pipeline covers all layers")
    return "every pipeline of its layout needs a link the cluster does not have (no source-to-sink path)"


def layer_explanation(result: dict) -> dict:
    from servopt.instances.layer_placement import SINK, SOURCE, instance_from_dict

    raw = result.get("instance")
    if not isinstance(raw, dict):
        raise InputError("instance", "this layer_placement result does not embed its instance; re-run servopt solve")
    inst = instance_from_dict(raw)
    layers = {k: tuple(v) for k, v in (result.get("layers") or {}).items()}
    flows = result.get("flows") or []
    out_flow: dict[str, list] = defaultdict(list)
    node_flow: dict[str, float] = defaultdict(float)
    for f in flows:
        out_flow[f["from"]].append((f["to"], f["tokens_per_s"]))
        if f["to"] != SINK:
            node_flow[f["to"]] += f["tokens_per_s"]
    # pipelines: decompose the flow into source-to-sink paths (greedy widest path first)
    residual = {(f["from"], f["to"]): f["tokens_per_s"] for f in flows}
    pipelines = []
    for _ in range(200):
        path, node, width, seen = [], SOURCE, math.inf, set()
        while node != SINK:
            nxt = [(t, residual[(node, t)]) for t, _ in out_flow.get(node, []) if residual.get((node, t), 0) > 1e-9 and t not in seen]
            if not nxt:
                break
            t, w = max(nxt, key=lambda x: x[1])
            width = min(width, w)
            if t != SINK:
                path.append(t)
                seen.add(t)
            node = t
        if node != SINK or not path or width <= 1e-9:
            break
        prev = SOURCE
        for n in path + [SINK]:
            residual[(prev, n)] -= width
            prev = n
        pipelines.append({"nodes": path, "tokens_per_s": width, "depth": len(path),
                          "layers": [list(layers.get(n, ())) for n in path]})
    pipelines.sort(key=lambda p: -p["tokens_per_s"])
    nodes = []
    for n in inst.nodes:
        if n.id not in layers:
            continue
        s, e = layers[n.id]
        cap = n.throughput(e - s) if e > s else 0.0
        flow = node_flow.get(n.id, 0.0)
        nodes.append({"node": n.id, "type": n.type, "layers": [s, e], "capacity_tokens_per_s": cap, "flow_tokens_per_s": flow,
                      "utilisation": flow / cap if cap else 0.0})
    bottleneck_nodes = [x for x in nodes if x["utilisation"] >= 0.999]
    links = []
    caps = inst.link_capacity()
    for f in flows:
        c = caps.get((f["from"], f["to"]))
        if c is not None and c > 0 and f["tokens_per_s"] >= 0.999 * c:
            links.append({"from": f["from"], "to": f["to"], "tokens_per_s": f["tokens_per_s"], "capacity_tokens_per_s": c})
    zero = {}
    baselines = result.get("baselines") or {}
    for name, row in baselines.items():
        if row.get("objective") == 0:
            zero[name] = baseline_zero_reason(inst, name)
    return {"pipelines": pipelines, "pipeline_depth": result.get("pipeline_depth"),
            "max_pipeline_depth": inst.max_pipeline_depth, "nodes": nodes,
            "bottleneck_nodes": [x["node"] for x in bottleneck_nodes], "bottleneck_links": links,
            "zero_baselines": zero}


def baseline_zero_reason(instance, name: str) -> str:
    try:
        from servopt.solvers.layer_placement_search import BASELINES

        layout = BASELINES[name](instance)
    except Exception:  # a baseline we cannot rebuild here: say so rather than guess
        return "its layout carries no flow"
    return layer_zero_reason(instance, layout)


def render_layer(expl: dict, result: dict, console) -> None:
    from rich.table import Table

    console.print(f"layer_placement: {result.get('objective', 0):,.2f} tokens/s, status {result.get('status')}, "
                  f"{len(expl['pipelines'])} pipeline(s), depth {expl.get('pipeline_depth')}"
                  + (f" (at most {expl['max_pipeline_depth']})" if expl.get("max_pipeline_depth") else ""))
    p = Table(title="pipelines (the flow split into source-to-sink paths)", title_justify="left")
    p.add_column("#", justify="right")
    p.add_column("tok/s", justify="right")
    p.add_column("depth", justify="right")
    p.add_column("nodes [layers)")
    for i, pl in enumerate(expl["pipelines"][:20]):
        hops = " > ".join(f"{n} [{a},{b})" for n, (a, b) in zip(pl["nodes"], pl["layers"]))
        p.add_row(str(i + 1), f"{pl['tokens_per_s']:,.2f}", str(pl["depth"]), hops)
    console.print(p)
    if expl["bottleneck_nodes"]:
        console.print("bottleneck nodes (flow = capacity T(k) for their layers): " + ", ".join(expl["bottleneck_nodes"]))
    else:
        console.print("bottleneck nodes: none at capacity")
    if expl["bottleneck_links"]:
        console.print("bottleneck links (flow = bandwidth): " + ", ".join(f"{x['from']} -> {x['to']}" for x in expl["bottleneck_links"]))
    else:
        console.print("bottleneck links: none at their bandwidth")
    for name, why in expl.get("zero_baselines", {}).items():
        console.print(f"baseline {name} gives 0 tokens/s: {why}")


# ---- kv_schedule ------------------------------------------------------------------------------------

DEFAULT_KV_POLICIES = ("mc-sf", "fcfs", "vllm")


def kv_explanation(instance, result: dict, *, policies=None, top: int = 10) -> dict:
    """Per policy: its cost against the optimum's and the requests it delays most (latency - optimum's)."""
    from servopt.simulator.kv_rounds import PolicyLivelock, PolicyTimeUp, simulate_rounds

    if result.get("kind") == "kv_schedule_comparison":
        opt_rows = result.get("optimum_requests") or []
        names = policies or [r["policy"] for r in result.get("rows", [])] or list(DEFAULT_KV_POLICIES)
        optimum = {"objective": result.get("incumbent"), "bound": result.get("bound"), "status": result.get("optimum_status"),
                   "method": result.get("method") or result.get("formulation")}
    else:
        opt_rows = result.get("requests") or []
        names = policies or list(DEFAULT_KV_POLICIES)
        optimum = {"objective": result.get("objective"), "bound": result.get("bound"), "status": result.get("status"),
                   "method": result.get("method")}
        if result.get("policy"):  # a servopt simulate result: the delays are against that policy's schedule
            optimum["reference"] = f"policy {result['policy']} (not an optimum)"
    if not opt_rows:
        raise InputError("RESULT", "the result carries no schedule of the optimum (a comparison from an older servopt: "
                                   "run servopt compare again, or explain a servopt solve result)")
    arrival = {r.id: r.arrival for r in instance.requests}
    unknown = [r.get("id") for r in opt_rows if r.get("id") not in arrival]
    if unknown:
        raise InputError("--instance", f"the result's request '{unknown[0]}' is not in this instance: give the instance the result was solved on")
    opt_latency = {r["id"]: r["finish"] - arrival[r["id"]] for r in opt_rows}
    out = {"optimum": optimum, "objective_name": instance.objective, "policies": []}
    for name in names:
        try:
            sched = simulate_rounds(instance, name)
        except (PolicyLivelock, PolicyTimeUp) as exc:
            out["policies"].append({"policy": name, "status": type(exc).__name__, "cost": None, "delays": []})
            continue
        cost = sched.objective_value(instance)
        delays = []
        for r in sched.requests:
            d = r.latency - opt_latency.get(r.id, r.latency)
            delays.append({"id": r.id, "arrival": r.arrival, "latency": r.latency, "optimum_latency": opt_latency.get(r.id),
                           "delay": d, "preempted": len(r.attempts)})
        late = sorted((x for x in delays if x["delay"] > 0), key=lambda x: (-x["delay"], x["id"]))
        early = [x for x in delays if x["delay"] < 0]
        out["policies"].append({
            "policy": sched.method.split(":", 1)[-1], "status": "ok", "cost": cost,
            "ratio": cost / optimum["objective"] if optimum["objective"] else None,
            "requests_later": len(late), "requests_earlier": len(early),
            "rounds_lost": sum(x["delay"] for x in late), "rounds_gained": -sum(x["delay"] for x in early),
            "delays": late[:top],
        })
    return out


def render_kv(expl: dict, console) -> None:
    from rich.table import Table

    o = expl["optimum"]
    if o.get("reference"):
        console.print(f"kv_schedule ({expl['objective_name']}): reference schedule = {o['reference']}, cost {o.get('objective')}")
    else:
        console.print(f"kv_schedule ({expl['objective_name']}): optimum {o.get('objective')} by {o.get('method')} "
                      f"(bound {o.get('bound')}, status {o.get('status')})")
    s = Table(title="where the policies lose against the optimum (rounds)", title_justify="left",
              caption="ratio = policy / optimum; later/earlier: requests finishing after/before their optimum finish")
    for col in ("policy", "cost", "ratio", "later", "lost", "earlier", "gained"):
        s.add_column(col, justify="left" if col == "policy" else "right")
    for p in expl["policies"]:
        if p["status"] != "ok":
            s.add_row(p["policy"], "-", "-", "-", "-", "-", p["status"])
            continue
        s.add_row(p["policy"], f"{p['cost']:g}", "-" if p["ratio"] is None else f"{p['ratio']:.4f}", str(p["requests_later"]),
                  str(p["rounds_lost"]), str(p["requests_earlier"]), str(p["rounds_gained"]))
    console.print(s)
    for p in expl["policies"]:
        if p["status"] != "ok" or not p["delays"]:
            continue
        t = Table(title=f"{p['policy']}: the requests it delays most", title_justify="left")
        for col in ("request", "arrival", "latency", "optimum", "delay", "preempted"):
            t.add_column(col, justify="left" if col == "request" else "right")
        for d in p["delays"]:
            t.add_row(str(d["id"]), str(d["arrival"]), str(d["latency"]), str(d["optimum_latency"]), f"+{d['delay']}",
                      str(d["preempted"]))
        console.print(t)


# ---- any kind -----------------------------------------------------------------------------------------


def generic_summary(result: dict) -> dict:
    keys = ("kind", "status", "optimum_status", "objective_name", "objective", "incumbent", "bound", "gap", "method",
            "formulation", "solver", "solve_seconds")
    out = {k: result.get(k) for k in keys if k in result}
    notes = result.get("notes") or []
    out["notes"] = [str(n) for n in notes] if isinstance(notes, list) else [str(notes)]
    rows = result.get("rows")
    if isinstance(rows, list):  # a comparison: each policy's cost and its ratio to the optimum's incumbent
        # the kinds name these columns differently (eviction: objective and share_of_optimum)
        out["policies"] = [{"policy": r.get("policy"), "cost": r.get("cost", r.get("objective")),
                            "ratio": r.get("ratio_to_incumbent", r.get("share_of_optimum")),
                            "status": r.get("status")} for r in rows if isinstance(r, dict)]
    return out


def render_generic(summary: dict, console) -> None:
    from rich.table import Table

    t = Table(title=f"{summary.get('kind', 'result')}: summary", title_justify="left", show_header=False)
    t.add_column("field")
    t.add_column("value", justify="right")
    for k, v in summary.items():
        if k in ("notes", "policies"):
            continue
        if k == "gap" and isinstance(v, (int, float)):
            v = f"{100 * v:.3g}%"
        elif isinstance(v, float):
            v = f"{v:,.6g}"
        t.add_row(k, "-" if v is None else str(v))
    console.print(t)
    if summary.get("policies"):
        p = Table(title="policies against the optimum", title_justify="left",
                  caption="ratio = policy / the optimum's incumbent", caption_justify="left")
        for col in ("policy", "cost", "ratio", "status"):
            p.add_column(col, justify="left" if col in ("policy", "status") else "right")
        for r in summary["policies"]:
            cost, ratio = r.get("cost"), r.get("ratio")
            p.add_row(str(r.get("policy")), "-" if cost is None else f"{cost:,.6g}", "-" if ratio is None else f"{ratio:.4f}",
                      str(r.get("status") or ""))
        console.print(p)
    for n in summary.get("notes", []):
        console.print(f"note: {n}")


# ---- dispatch -------------------------------------------------------------------------------------------


def needs_instance(result: dict) -> str | None:
    """Why explaining this result needs its instance (None when the result suffices)."""
    kind = result.get("kind")
    if kind in ("kv_schedule", "kv_schedule_comparison"):
        return ("kv_schedule explanations re-run the online policies on the instance; give it with "
                "--instance INSTANCE.json")
    if kind == "pd_placement" and not result.get("explanation"):
        return ("this pd_placement result carries no explanation (it was written by the Python API or an older "
                "servopt); give the instance it was solved on with --instance INSTANCE.json")
    return None


def explain(result: dict, instance=None, *, time_limit_s: float = 10.0, policies=None) -> dict:
    """The explanation of any result (module docstring): ``{"kind", "summary", "details"}``."""
    if not isinstance(result, dict) or "kind" not in result:
        raise InputError("RESULT", "not a servopt result (a JSON object with a 'kind')")
    kind = result["kind"]
    out = {"kind": kind, "summary": generic_summary(result), "details": None}
    if kind == "pd_placement":
        if result.get("explanation") and instance is None:
            out["details"] = result["explanation"]
        else:
            if instance is None:
                raise InputError("--instance", needs_instance(result))
            _same_instance_pd(instance, result)
            out["details"] = pd_explanation(instance, result, deadline=time.perf_counter() + time_limit_s)
    elif kind == "layer_placement":
        out["details"] = layer_explanation(result)
    elif kind in ("kv_schedule", "kv_schedule_comparison"):
        if instance is None:
            raise InputError("--instance", needs_instance(result))
        out["details"] = kv_explanation(instance, result, policies=policies)
    return out


def _same_instance_pd(instance, result: dict) -> None:
    ids = {b.id for b in instance.buckets}
    gpus = {g.type for g in instance.gpus}
    for i, a in enumerate(result.get("assignment", [])):
        if a.get("bucket") not in ids or a.get("gpu") not in gpus:
            raise InputError("--instance", f"the result's assignment[{i}] (bucket '{a.get('bucket')}', gpu '{a.get('gpu')}') "
                                           f"is not in this instance: give the instance the result was solved on")


def render(expl: dict, result: dict, console) -> None:
    kind = expl["kind"]
    if kind == "pd_placement":
        s = expl["summary"]
        unit = "$/h" if result.get("objective_name") == "cost_usd_per_hour" else "rps"
        obj = result.get("objective")
        console.print(f"pd_placement ({result.get('mode')}): {'-' if obj is None else f'{obj:,.4f}'} {unit}, status "
                      f"{s.get('status')}, gap {_pct(s.get('gap'))}, method {s.get('method')}")
        render_pd(expl["details"], result, console)
    elif kind == "layer_placement":
        render_layer(expl["details"], result, console)
    elif kind in ("kv_schedule", "kv_schedule_comparison"):
        render_kv(expl["details"], console)
    else:
        render_generic(expl["summary"], console)


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.3g}%"
