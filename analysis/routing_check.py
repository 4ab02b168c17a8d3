"""Independent re-verification of any ``routing`` result, whoever produced it.

Re-derives everything from the instance and the result JSON with its own arithmetic; it imports
neither the model, the solvers nor the simulator. Rules (instances/routing.py; each replica the
round model of Jaillet et al., arXiv 2502.07115, §2):

1. every request of the instance appears exactly once, and nothing else does;
2. its ``replica`` is a replica of the instance on which it fits alone (``s_i + o_i <= M_k``);
3. start, finish and attempt rounds are integers; ``start >= arrival``; ``finish == start + o_i``;
   a preempted attempt has ``arrival <= start < preempted_at < start + o_i`` and attempts are in
   time order, before the final run;
4. on every replica ``k``, in every round ``t``, ``sum (s_i + t - p)`` over the runs and attempts
   on ``k`` holding memory in ``t`` (``p < t <= p + o_i``, or ``p < t <= preempted_at``) is at most ``M_k``;
5. the reported ``objective`` equals the one recomputed from the finishes, and a reported dual
   ``bound`` does not exceed it (minimisation).

The prefix model (``"model": "prefix"``) is checked by ``check_prefix_result`` (its docstring).

``check_result`` returns a list of violations; ``[]`` means valid.
"""
from __future__ import annotations

import math

_TOL = 1e-6


def _is_int(v) -> bool:
    return (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer())


def check_result(instance, result: dict) -> list[str]:
    if getattr(instance, "model", "round") == "prefix":
        return check_prefix_result(instance, result)
    problems: list[str] = []
    rows = result.get("requests") if isinstance(result, dict) else None
    if not isinstance(rows, list):
        return ["result has no 'requests' array"]
    memory = {rep.id: rep.memory_tokens for rep in instance.replicas}
    by_id = {r.id: r for r in instance.requests}
    seen: set = set()
    load: dict[tuple[str, int], int] = {}
    finish: dict[str, int] = {}
    for n, row in enumerate(rows):
        if not isinstance(row, dict):
            problems.append(f"requests[{n}] is not an object")
            continue
        rid = row.get("id")
        if rid not in by_id:
            problems.append(f"requests[{n}]: id {rid!r} is not a request of the instance")
            continue
        if rid in seen:
            problems.append(f"request '{rid}' appears more than once")
            continue
        seen.add(rid)
        req = by_id[rid]
        rep = row.get("replica")
        if rep not in memory:
            problems.append(f"request '{rid}': replica {rep!r} is not a replica of the instance")
            continue
        if req.prompt_tokens + req.output_tokens > memory[rep]:
            problems.append(f"request '{rid}' needs {req.prompt_tokens + req.output_tokens} tokens in its last round, "
                            f"more than replica '{rep}' has ({memory[rep]})")
        start, fin = row.get("start"), row.get("finish")
        if not _is_int(start) or not _is_int(fin):
            problems.append(f"request '{rid}': start and finish must be integer rounds, got {start!r}, {fin!r}")
            continue
        start, fin = int(start), int(fin)
        if start < req.arrival:
            problems.append(f"request '{rid}' starts at round {start}, before its arrival at round {req.arrival}")
        if fin != start + req.output_tokens:
            problems.append(f"request '{rid}': finish {fin} != start {start} + output_tokens {req.output_tokens}")
        spans = []
        previous = None
        attempts = row.get("attempts", []) or []
        if not isinstance(attempts, list):
            problems.append(f"request '{rid}': attempts must be an array")
            attempts = []
        for j, a in enumerate(attempts):
            if not isinstance(a, dict) or not _is_int(a.get("start")) or not _is_int(a.get("preempted_at")):
                problems.append(f"request '{rid}' attempt {j}: needs integer start and preempted_at")
                continue
            p, q = int(a["start"]), int(a["preempted_at"])
            if p < req.arrival or not p < q < p + req.output_tokens:
                problems.append(f"request '{rid}' attempt {j}: start {p}, preempted_at {q} is not a preempted run after arrival")
            if previous is not None and p < previous:
                problems.append(f"request '{rid}' attempt {j} starts before the previous attempt was preempted")
            previous = q
            spans.append((p, q))
        if previous is not None and start < previous:
            problems.append(f"request '{rid}': final start {start} is before its last attempt was preempted at {previous}")
        spans.append((start, start + req.output_tokens))
        for p, last in spans:
            for t in range(p + 1, last + 1):
                load[(rep, t)] = load.get((rep, t), 0) + req.prompt_tokens + (t - p)
        finish[rid] = fin
    for r in instance.requests:
        if r.id not in seen:
            problems.append(f"request '{r.id}' is missing from the schedule")
    for (rep, t), v in sorted(load.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        if v > memory[rep]:
            problems.append(f"replica '{rep}', round {t}: memory {v} tokens > memory_tokens {memory[rep]}")
    if problems:
        return problems
    if instance.objective == "makespan":
        value = float(max(finish.values()))
    else:
        value = float(sum(finish[r.id] - r.arrival for r in instance.requests))
    reported = result.get("objective")
    if reported is not None:
        if not isinstance(reported, (int, float)) or isinstance(reported, bool) or not math.isfinite(reported):
            problems.append(f"objective {reported!r} is not a finite number")
        elif abs(float(reported) - value) > _TOL * max(1.0, abs(value)):
            problems.append(f"reported objective {reported} != recomputed {instance.objective} {value:g}")
    bound = result.get("bound")
    if isinstance(bound, (int, float)) and not isinstance(bound, bool) and math.isfinite(bound):
        if bound > value + _TOL * max(1.0, abs(value)):
            problems.append(f"reported bound {bound} exceeds the schedule's {instance.objective} {value:g} (minimisation)")
    return problems


def _relaxed_max_hits(paths: list, capacity: int) -> int:
    """An upper bound on the total hits of one prefix cache of ``capacity`` blocks serving ``paths`` in order:
    the most cached-block reuses over all plans, counting a block whether or not it extends a prefix. Keeping
    a block from one use to its next is an interval; at most ``capacity`` intervals may overlap any step, and
    the earliest-next-use-first choice (Belady's MIN with bypass) maximises how many are kept (greedy
    interval scheduling on a line with ``capacity`` tracks). Written here, not imported, to stay independent."""
    n = len(paths)
    nxt: dict = {}
    next_use = [None] * n
    for r in range(n - 1, -1, -1):
        next_use[r] = {b: nxt.get(b, n) for b in set(paths[r])}
        for b in set(paths[r]):
            nxt[b] = r
    cache: dict = {}  # block -> its next use
    total = 0
    for r in range(n):
        blocks = set(paths[r])
        total += sum(1 for b in blocks if b in cache)
        for b in blocks:
            cache[b] = next_use[r][b]
        for b in [b for b, u in cache.items() if u >= n]:
            del cache[b]
        if len(cache) > capacity:
            keep = sorted(cache.items(), key=lambda kv: kv[1])[:capacity]
            cache = dict(keep)
    return total


def check_prefix_result(instance, result: dict) -> list[str]:
    """The prefix model: each request once, on a replica of the instance, ``hit_blocks`` an integer no larger
    than its path and than the longest prefix it shares with an earlier request on that replica; per replica
    the hits add up to no more than one cache of its capacity can give; objective and bound recomputed."""
    problems: list[str] = []
    rows = result.get("requests") if isinstance(result, dict) else None
    if not isinstance(rows, list):
        return ["result has no 'requests' array"]
    caps = {rep.id: rep.cache_blocks for rep in instance.replicas}
    by_id = {r.id: (i, r) for i, r in enumerate(instance.requests)}
    seen, placed = set(), {}
    for n, row in enumerate(rows):
        if not isinstance(row, dict) or row.get("id") not in by_id:
            problems.append(f"requests[{n}]: not a request of the instance")
            continue
        rid = row["id"]
        if rid in seen:
            problems.append(f"request '{rid}' appears more than once")
            continue
        seen.add(rid)
        if row.get("replica") not in caps:
            problems.append(f"request '{rid}': replica {row.get('replica')!r} is not a replica of the instance")
            continue
        h = row.get("hit_blocks")
        i, req = by_id[rid]
        if not _is_int(h) or not 0 <= int(h) <= len(req.prefix_block_ids):
            problems.append(f"request '{rid}': hit_blocks {h!r} must be an integer in [0, {len(req.prefix_block_ids)}]")
            continue
        placed[rid] = (row["replica"], int(h))
    for r in instance.requests:
        if r.id not in seen:
            problems.append(f"request '{r.id}' is missing from the result")
    if problems:
        return problems
    order = sorted(range(instance.n), key=lambda j: (instance.requests[j].arrival, j))
    B = instance.block_tokens
    per_replica: dict = {k: 0.0 for k in caps}
    for rep in caps:
        members = [instance.requests[j] for j in order if placed[instance.requests[j].id][0] == rep]
        seen_blocks: set = set()
        for r in members:
            shared = 0
            for b in r.prefix_block_ids:
                if b not in seen_blocks:
                    break
                shared += 1
            if placed[r.id][1] > shared:
                problems.append(f"request '{r.id}' claims {placed[r.id][1]} hit blocks on '{rep}', but only {shared} of its "
                                "prefix were brought there by earlier requests")
            seen_blocks.update(r.prefix_block_ids)
        claimed = sum(placed[r.id][1] for r in members)
        most = _relaxed_max_hits([r.prefix_block_ids for r in members], caps[rep])
        if claimed > most:
            problems.append(f"replica '{rep}': {claimed} hit blocks claimed, a cache of {caps[rep]} blocks gives at most {most}")
        for r in members:
            h = placed[r.id][1]
            per_replica[rep] += B * (instance.alpha_hit * h + instance.alpha_miss * (len(r.prefix_block_ids) - h)) + r.output_tokens
    if problems:
        return problems
    value = max(per_replica.values()) if instance.objective == "makespan" else sum(per_replica.values())
    reported = result.get("objective")
    if isinstance(reported, (int, float)) and abs(float(reported) - value) > _TOL * max(1.0, abs(value)):
        problems.append(f"reported objective {reported} != recomputed {instance.objective} {value:g}")
    bound = result.get("bound")
    if isinstance(bound, (int, float)) and not isinstance(bound, bool) and bound > value + _TOL * max(1.0, abs(value)):
        problems.append(f"reported bound {bound} exceeds the result's {instance.objective} {value:g} (minimisation)")
    return problems
