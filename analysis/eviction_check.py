"""Independent re-verification of an eviction result: replay its cache plan and recompute everything.

For each cache (replica) the checker starts from an empty set ``S`` and, request by request in list
order: recomputes the hit as the longest prefix of the request's hash ids inside ``S`` (compared with
the reported ``hit_blocks``); checks that ``evict`` lists blocks in ``S`` and ``admit`` lists blocks of
this request not in ``S``; applies ``S = (S - evict) | admit``; checks ``|S| <= C_t`` (the capacity
after the request, ``models/eviction.capacity_after``). Finally it recomputes the objective
(``hit_blocks`` or ``saved_prefill_ms``) and compares it with the reported one (exactly for
``hit_blocks``, to 1e-6 relative for milliseconds). It shares no code with the solvers or the replay.
"""
from __future__ import annotations

import math


def check_result(instance, result: dict, *, caps=None, weights=None) -> list[str]:
    """Violations of ``result`` against ``instance`` ([] = valid)."""
    from servopt.models.eviction import capacity_after, weights_for

    out: list[str] = []
    rows = result.get("requests")
    if not isinstance(rows, list):
        return ["result has no 'requests' list (per request: hit_blocks, admit, evict)"]
    if len(rows) != instance.n:
        return [f"result lists {len(rows)} requests, the instance has {instance.n}"]
    caps = caps if caps is not None else capacity_after(instance)
    if weights is None and instance.objective != "hit_blocks":
        weights = weights_for(instance)
    caches: dict[int, set] = {}
    total_hits = 0
    total_ms = 0.0
    for i, (req, row) in enumerate(zip(instance.requests, rows)):
        where = f"requests[{i}]"
        if not isinstance(row, dict):
            out.append(f"{where}: must be an object")
            continue
        if "id" in row and str(row["id"]) != req.id:
            out.append(f"{where}: id '{row['id']}' but the instance's request {i} is '{req.id}'")
        S = caches.setdefault(req.replica, set())
        k = 0
        for h in req.hash_ids:
            if h not in S:
                break
            k += 1
        if row.get("hit_blocks") != k:
            out.append(f"{where}: reports {row.get('hit_blocks')} hit blocks, the cache before it holds a prefix of {k}")
        total_hits += k
        if weights is not None:
            total_ms += sum(weights[d] for d in range(k))
        admit, evict = row.get("admit", []), row.get("evict", [])
        if not isinstance(admit, list) or not isinstance(evict, list):
            out.append(f"{where}: admit and evict must be lists of hash ids")
            continue
        path = set(req.hash_ids)
        for b in evict:
            if b not in S:
                out.append(f"{where}: evicts block {b}, which is not cached")
        S.difference_update(evict)
        for b in admit:
            if b not in path:
                out.append(f"{where}: admits block {b}, which is not one of its blocks")
            elif b in S:
                out.append(f"{where}: admits block {b}, which is already cached")
        S.update(b for b in admit if b in path)
        if len(S) > caps[i]:
            out.append(f"{where}: the cache holds {len(S)} blocks after it, capacity {caps[i]}")
        if len(out) > 200:
            out.append("... stopped after 200 violations")
            return out
    reported = result.get("hit_blocks")
    if reported is not None and reported != total_hits:
        out.append(f"hit_blocks reported {reported}, recomputed {total_hits}")
    objective = result.get("objective")
    if objective is None:
        out.append("result has no objective")
    elif weights is None:
        if objective != total_hits:
            out.append(f"objective reported {objective}, recomputed {total_hits}")
    elif not math.isclose(float(objective), total_ms, rel_tol=1e-6, abs_tol=1e-6):
        out.append(f"objective (saved_prefill_ms) reported {objective}, recomputed {total_ms}")
    return out
