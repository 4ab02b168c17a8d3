r"""The exact optimum of the base prefix-cache model: Belady's rule with bypass.

Model (``instances/eviction.py``). Requests ``r = 0..n-1`` are served one at a time; request ``r``
carries the root path ``h_r[0..L_r-1]`` of prefix-block hash ids (an id always has the same depth and
parent). ``S_{r-1}`` is the cache when ``r`` arrives (``S_{-1} = {}``); ``r`` hits
``hit_r = max{k : h_r[0..k-1] \subseteq S_{r-1}}`` blocks; then the cache becomes any
``S_r \subseteq S_{r-1} \cup set(h_r)`` with ``|S_r| <= C_r``. Maximise ``sum_r hit_r``. (``C_r = C``
in the base model; a capacity that varies per step, given in advance, is allowed and the proof below
does not change.)

Rule. ``next_r(b)`` = the first request after ``r`` whose path contains ``b`` (``inf`` if none). After
serving ``r`` the candidates are ``S_{r-1} \cup set(h_r)``; keep the ``C_r`` candidates that come first
in the order ``(next_r(b), depth(b), b)`` ascending, leaving out every candidate with ``next_r = inf``.
"Bypass": r's own blocks compete like any other, so a block of ``r`` whose next use is far is simply
not kept.

Why the kept set is ancestor-closed. If ``a`` is an ancestor of ``b`` then every request whose path
contains ``b`` contains ``a`` (ids name prefixes), so ``next_r(a) <= next_r(b)``, and
``depth(a) < depth(b)``: ``a`` comes strictly before ``b`` in the order. ``a`` is a candidate whenever
``b`` is (if ``b`` is in ``h_r`` so is ``a``; if ``b`` is in ``S_{r-1}`` so is ``a``, by induction).
So ``b`` kept implies ``a`` kept. Consequently ``h_r \cap S_{r-1}`` is a prefix of ``h_r`` and
``hit_r = |set(h_r) \cap S_{r-1}|`` for this plan.

Optimality (exchange argument). Relax the objective to ``rel(S) = sum_r |set(h_r) \cap S_{r-1}|``
(count cached blocks of ``r`` whether or not they form a prefix). For every plan ``hit_r <= rel_r``,
and for Belady's plan they are equal (above). It therefore suffices to show that Belady's plan
``M`` maximises ``rel``. Take an optimal plan ``S`` for ``rel`` that agrees with ``M`` on
``S_0..S_{t-1}`` for the largest possible ``t``; suppose ``S_t != M_t``. Both are drawn from the same
candidates ``K = S_{t-1} \cup set(h_t)``. We build ``S'`` with ``S'_u = S_u`` for ``u < t``,
``rel(S') >= rel(S)`` and ``S'_t`` one step closer to ``M_t``; repeating gives a contradiction.

* ``x \in S_t \setminus M_t`` with ``next_t(x) = inf``: drop ``x`` from ``S_u`` for all ``u >= t``. It is
  never requested again, so no term of ``rel`` changes, and sets only shrink.
* ``b \in M_t \setminus S_t`` and ``|S_t| < C_t``: set ``S'_u = S_u \cup {b}`` for
  ``u = t .. m-1`` where ``m`` is the first ``u > t`` with ``|S_u| = C_u`` or ``u = next_t(b)``, and
  ``S'_u = S_u`` from ``m`` on. Every ``S'_u`` respects its capacity; the step ``m-1 -> m`` is legal
  because ``S_m \subseteq S_{m-1} \cup set(h_m) \subseteq S'_{m-1} \cup set(h_m)``; ``b`` is not requested
  in ``(t, m)``, so ``rel`` does not drop (it gains 1 if ``m = next_t(b)`` and ``b`` stayed).
* ``b \in M_t \setminus S_t``, ``a \in S_t \setminus M_t`` with ``next_t(a) < inf``: ``M_t`` holds the
  ``C_t`` first candidates and ``a`` is not among them, so ``|M_t| = C_t`` and ``b`` precedes ``a``:
  ``next_t(b) <= next_t(a)``. Set ``S'_u = S_u - {a} + {b}`` for ``u = t ..`` while ``a \in S_u`` and
  ``u < next_t(b)``. (i) If ``S`` drops ``a`` at some ``u < next_t(b)``, set ``S'_u = S_u`` from there on:
  legal because ``S_u \subseteq (S_{u-1} - {a}) \cup set(h_u)``; neither ``a`` nor ``b`` was requested in
  ``(t, u]``, so ``rel`` is unchanged. (ii) Otherwise ``S'`` holds ``b`` at ``next_t(b)``, a gain of 1
  over ``S`` (which cannot hold ``b``: it left the cache at ``t`` and re-enters only at its request).
  If ``next_t(a) = next_t(b)``, ``S`` gains 1 there on ``a``, and ``S'`` continues as ``S`` (``a`` is
  requested there, so it may re-enter). Otherwise continue ``S'_u = S_u - {a}`` (``b`` may now stay
  or leave exactly as in ``S``) until ``S`` drops ``a`` (no loss) or ``a`` is requested (a loss of 1,
  after which ``S'`` continues as ``S``). Net change ``>= 0``.

Each exchange keeps ``S'_u = S_u`` for ``u < t``, capacities and transitions legal, and ``rel`` not
smaller, while ``|S'_t \triangle M_t|`` decreases; so an optimal plan agrees with ``M`` at ``t`` too,
contradicting the choice of ``t``. Hence ``M`` maximises ``rel`` and, being ancestor-closed, the true
objective: ``sum hit(M) = rel(M) >= rel(S) >= sum hit(S)`` for every plan ``S``. Equivalently: the
relaxed problem is choosing keep-intervals ``[r, next_r(b) - 1]`` with at most ``C_u`` covering each
step ``u`` (FOO's interval view, Berger, Beckmann, Harchol-Balter, SIGMETRICS 2018) and the rule is the
earliest-end greedy for that problem; the same argument is Belady's MIN (Belady 1966) with bypass.

Cost: ``O(A log A)`` for ``A = sum_r L_r`` block accesses (one heap push per access, lazy deletion).

Reuse. ``belady_hits(hash_lists, capacity)`` is the plain "hits per request" function for any
sequence of root paths (one cache); ``belady_plan`` adds the admitted/evicted blocks per request and
per-step capacities; ``solve_instance`` handles an ``EvictionInstance`` with several replicas.
"""
from __future__ import annotations

import heapq
import time
from typing import Sequence

from servopt.instances.eviction import CachePlan, next_uses, replica_indices  # noqa: F401  (re-exported)


def belady_plan(hash_lists: Sequence[Sequence[int]], capacity: int | Sequence[int]) -> CachePlan:
    """Belady with bypass on one cache (module docstring); ``capacity`` is ``C`` or ``C_r`` per request."""
    n = len(hash_lists)
    caps = [int(capacity)] * n if isinstance(capacity, int) else [int(c) for c in capacity]
    if len(caps) != n:
        raise ValueError("one capacity per request expected")
    nxt = next_uses(hash_lists)
    key: dict[int, tuple[int, int]] = {}  # cached block -> (next use, depth): its rank while cached
    heap: list = []  # (-next, -depth, -block): the furthest-ranked cached block on top; stale entries skipped
    hits, admits, evicts = [], [], []
    push, pop = heapq.heappush, heapq.heappop
    for r in range(n):
        hs = hash_lists[r]
        k = 0
        for h in hs:
            if h not in key:
                break
            k += 1
        hits.append(k)
        new, out = [], []
        for d, h in enumerate(hs):
            nx = nxt[r][d]
            was = h in key
            if nx == n:  # never requested again: keeping it cannot help
                if was:
                    del key[h]
                    out.append(h)
                continue
            key[h] = (nx, d)
            push(heap, (-nx, -d, -h))
            if not was:
                new.append(h)
        cap = caps[r]
        if len(key) > cap:
            newset = set(new)
            while len(key) > cap:
                mnx, md, mh = pop(heap)
                h = -mh
                if key.get(h) != (-mnx, -md):
                    continue  # stale
                del key[h]
                if h in newset:
                    newset.discard(h)
                else:
                    out.append(h)
            new = [h for h in new if h in newset]
        if len(heap) > 4 * len(key) + 1024:  # drop stale entries now and then
            heap = [(-v[0], -v[1], -h) for h, v in key.items()]
            heapq.heapify(heap)
        admits.append(tuple(new))
        evicts.append(tuple(out))
    return CachePlan(tuple(hits), tuple(admits), tuple(evicts), "belady")


def belady_hits(hash_lists: Sequence[Sequence[int]], capacity: int | Sequence[int]) -> list[int]:
    """Hits per request of the optimal plan (Belady with bypass) for one cache of ``capacity`` blocks.

    ``hash_lists[r]`` is request r's root path of prefix-block ids (an id names a prefix: same depth
    and parent wherever it appears). The sum is the maximum total of hit blocks over all plans
    (module docstring). Runs in O(A log A) for A block accesses.
    """
    return list(belady_plan(hash_lists, capacity).hits)


def merge_replica_plans(n: int, parts: Sequence[tuple[Sequence[int], CachePlan]], method: str) -> CachePlan:
    """Interleave per-cache plans (``(global request indices, plan)``) back into request order."""
    hits = [0] * n
    admit: list = [()] * n
    evict: list = [()] * n
    for idx, plan in parts:
        for j, i in enumerate(idx):
            hits[i] = plan.hits[j]
            admit[i] = plan.admit[j]
            evict[i] = plan.evict[j]
    return CachePlan(tuple(hits), tuple(admit), tuple(evict), method)


def solve_instance(instance, capacity_after: Sequence[int] | None = None) -> CachePlan:
    """The optimal plan of an ``EvictionInstance`` for the ``hit_blocks`` objective, per replica.

    ``capacity_after[i]`` is the room of request i's cache after serving i (default: capacity_blocks).
    """
    t0 = time.perf_counter()
    caps = capacity_after if capacity_after is not None else [instance.capacity_blocks] * instance.n
    hl = instance.hash_lists()
    parts = []
    for idx in replica_indices(instance):
        if idx:
            parts.append((idx, belady_plan([hl[i] for i in idx], [caps[i] for i in idx])))
    plan = merge_replica_plans(instance.n, parts, "belady")
    plan.meta["seconds"] = time.perf_counter() - t0
    return plan
