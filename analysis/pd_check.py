"""Independent re-verification of a prefill/decode placement plan (kind ``pd_placement``).

Works from the instance's data and the result JSON only; it does not import the model
(``servopt.models.pd_placement``) nor reuse its index sets, so a bug there cannot hide here.
What it checks ("servopt check"):

* every assignment row names a known bucket, a slice in ``[0, slices)``, a role of the instance's
  mode, a configuration (gpu, tp, role) with a positive capacity for that bucket, and the slice's
  rate ``share * rate_rps / slices``;
* every slice is served exactly once: one ``colocated`` row, or one ``prefill`` and one ``decode``
  row (``hybrid`` allows either); under ``max_goodput`` a slice may be left unserved;
* loads within counts: for every configuration, ``sum(rate / capacity) <= count`` (1e-6 slack);
* availability: ``sum(count * tp) <= available`` per GPU type;
* links: the KV traffic ``sum(rate * prompt_tokens * kv_bytes_per_token) / 1e9`` from prefill on
  type g to decode on type h is within the link's GB/s;
* the objective recomputed: $/hour = ``sum(count * tp * usd_per_hour)`` (min_cost), or the served
  rate (max_goodput, whose cost must stay within the budget).
"""
from __future__ import annotations

import math
import re
from collections import defaultdict

TOLERANCE = 1e-6
_KEY = re.compile(r"^(colocated|prefill|decode)(?:@tp(\d+))?$")
_ROLES = {"colocated": ("colocated",), "disaggregated": ("prefill", "decode"), "hybrid": ("colocated", "prefill", "decode")}


def _close(a: float, b: float, rel: float = 1e-6) -> bool:
    return abs(a - b) <= rel * max(1.0, abs(a), abs(b))


def check(instance, result: dict) -> list[str]:
    """Return the violations of ``result`` against ``instance``; ``[]`` means the plan is valid."""
    v: list[str] = []
    if not isinstance(result, dict):
        return ["result is not a JSON object"]
    if result.get("objective") is None:
        return [] if result.get("status") in ("infeasible", "time_limit", "error") else ["result has no objective"]
    S = instance.slices
    roles = _ROLES[instance.mode]
    buckets = {b.id: b for b in instance.buckets}
    price = {g.type: g.usd_per_hour for g in instance.gpus}
    available = {g.type: g.available for g in instance.gpus}
    capacity = {(c.gpu, c.tp, c.role, c.bucket): c.rps for c in instance.capacities}
    slice_rate = {b.id: b.share * instance.rate_rps / S for b in instance.buckets}

    # --- assignment rows
    rows = result.get("assignment")
    if not isinstance(rows, list):
        return ["assignment: missing or not a list"]
    per_slice: dict[tuple[str, int], list[dict]] = defaultdict(list)
    load: dict[tuple[str, int, str], float] = defaultdict(float)
    for i, row in enumerate(rows):
        where = f"assignment[{i}]"
        if not isinstance(row, dict) or not {"bucket", "slice", "gpu", "role"} <= set(row):
            v.append(f"{where}: needs bucket, slice, gpu, role")
            continue
        b, s, g, role, tp = row["bucket"], row["slice"], row["gpu"], row["role"], row.get("tp", 1)
        if b not in buckets:
            v.append(f"{where}: unknown bucket '{b}'")
            continue
        if not isinstance(s, int) or not 0 <= s < S:
            v.append(f"{where}: slice {s!r} outside 0..{S - 1}")
            continue
        if role not in roles:
            v.append(f"{where}: role '{role}' not allowed in mode {instance.mode}")
            continue
        mu = capacity.get((g, tp, role, b), 0.0)
        if not mu > 0:
            v.append(f"{where}: {g} tp{tp} {role} has no capacity for bucket '{b}' under the SLO")
            continue
        if "rate_rps" in row and not _close(float(row["rate_rps"]), slice_rate[b]):
            v.append(f"{where}: rate_rps {row['rate_rps']} != slice rate {slice_rate[b]:.6g}")
        per_slice[(b, s)].append(row)
        load[(g, tp, role)] += slice_rate[b] / mu

    # --- every slice served exactly once
    served_rps = 0.0
    for b in instance.buckets:
        if b.share == 0 and not any(key[0] == b.id for key in per_slice):
            continue  # no traffic, nothing to serve
        for s in range(S):
            got = sorted(r["role"] for r in per_slice.get((b.id, s), []))
            if got == ["colocated"] or got == ["decode", "prefill"]:
                served_rps += slice_rate[b.id]
            elif not got:
                if instance.objective == "min_cost":
                    v.append(f"slice {s} of bucket '{b.id}' is not served")
            else:
                v.append(f"slice {s} of bucket '{b.id}' has roles {got}; expected [colocated] or [prefill, decode]")

    # --- counts, loads, availability, cost
    counts = result.get("counts")
    if not isinstance(counts, dict):
        return v + ["counts: missing or not an object"]
    count: dict[tuple[str, int, str], int] = {}
    for g, by_key in counts.items():
        if g not in price:
            v.append(f"counts: unknown GPU type '{g}'")
            continue
        if not isinstance(by_key, dict):
            v.append(f"counts.{g}: not an object")
            continue
        for key, n in by_key.items():
            mt = _KEY.match(str(key))
            if not mt or isinstance(n, bool) or not isinstance(n, int) or n < 0:
                v.append(f"counts.{g}.{key}: expected role[@tpN] -> non-negative integer, got {n!r}")
                continue
            count[(g, int(mt.group(2) or 1), mt.group(1))] = n
    for cfg, need in sorted(load.items()):
        have = count.get(cfg, 0)
        if need > have + TOLERANCE:
            g, tp, role = cfg
            v.append(f"{g} tp{tp} {role}: load {need:.6g} instances exceeds count {have}")
    gpus_used: dict[str, int] = defaultdict(int)
    cost = 0.0
    for (g, tp, role), n in count.items():
        gpus_used[g] += n * tp
        cost += n * tp * price[g]
    for g, used in gpus_used.items():
        if available.get(g) is not None and used > available[g]:
            v.append(f"{g}: {used} GPUs used > {available[g]} available")

    # --- links
    links = {(l.src, l.dst): l.gb_per_s for l in instance.links}
    if links:
        kv = instance.kv_bytes_per_token or 0.0
        traffic: dict[tuple[str, str], float] = defaultdict(float)
        for (b, s), rs in per_slice.items():
            pre = [r["gpu"] for r in rs if r["role"] == "prefill"]
            dec = [r["gpu"] for r in rs if r["role"] == "decode"]
            if len(pre) == 1 and len(dec) == 1:
                traffic[(pre[0], dec[0])] += slice_rate[b] * buckets[b].prompt_tokens * kv / 1e9
        for pair, gbps in traffic.items():
            if pair in links and gbps > links[pair] * (1 + 1e-9) + 1e-12:
                v.append(f"link {pair[0]} -> {pair[1]}: KV traffic {gbps:.6g} GB/s > {links[pair]:g} GB/s")

    # --- objective recomputed
    objective = float(result["objective"])
    if instance.objective == "min_cost":
        if not _close(objective, cost):
            v.append(f"objective {objective:.6g} $/h != recomputed cost {cost:.6g} $/h")
    else:
        if not _close(objective, served_rps):
            v.append(f"objective {objective:.6g} rps != recomputed served rate {served_rps:.6g} rps")
        budget = instance.budget_usd_per_hour
        if budget is not None and cost > budget * (1 + 1e-9):
            v.append(f"cost {cost:.6g} $/h exceeds the budget {budget:g} $/h")
    reported_cost = result.get("cost_usd_per_hour")
    if reported_cost is not None and not _close(float(reported_cost), cost):
        v.append(f"cost_usd_per_hour {reported_cost:.6g} != recomputed {cost:.6g}")
    if not math.isfinite(objective):
        v.append("objective is not finite")
    return v
