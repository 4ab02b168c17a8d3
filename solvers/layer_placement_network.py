"""Layer placement where the network binds: fast flow evaluation, network-following constructions,
an exhaustive feasibility test, link-cut bounds and an iterated local search.

Used by ``solvers.layer_placement_search.solve_layer_placement`` on instances where the boundary
formulation is only a relaxation (links can bind, or links are missing: pruned and geo-distributed
clusters, Helix ASPLOS'25 §6.4–6.5 and its artifact's ``pruned_cluster.ini`` files).

Facts used (every layout's flow decomposes into source -> sink paths, and a path through the
layout visits nodes whose ranges abut, so it crosses each of the L layers exactly once):

* **Positive flow exists iff** some simple path source -> v_1 -> ... -> v_m -> sink along links of
  positive capacity has Σ_j K_{v_j} >= L (then lengths 1 <= k_j <= K_{v_j} with Σ k_j = L put
  the path into one pipeline; conversely a positive flow contains such a path).
  ``find_chain`` decides this by depth-first search with a reachability bound; when the search is
  exhaustive its "no" is a proof.
* **A chain at rate F**: the same search restricted to links with C >= F and to lengths k with
  T(k) >= F yields a pipeline carrying F (``best_chain`` bisects F).
* **Link-cut bound** (ours): for any partition of the nodes into groups R, a flow path either stays
  inside one group, and those paths carry at most the saturation bound of that group alone
  (research notes §1.7, valid for any sub-cluster), or uses a link between groups, and those carry
  at most the total capacity of the links between groups. So
  F <= Σ_R U_sat(R) + Σ_{links between groups} C. Groups are the components of the links with
  C >= τ, for every distinct capacity τ (geo regions appear as components).
* **Network bound**: the max flow of the link graph with node capacities max_k T_i(k).

Constructions and searches (ours):

* ``chains_layout`` — disjoint pipelines, widest first (``best_chain`` bisects the rate F).
* ``trunk_layouts`` — a trunk pipeline inside one node group (a geo region: the components of the
  links above the largest jump in capacity) holds 30–70 % of the layers at the end (or start); chains
  of the other nodes feed (drain) it over the links into its head (out of its tail). This is the
  shape of Helix's published 3cluster24 layout (an A100 trunk fed by two L4/T4 pipelines).
* ``local_search`` — iterated local search over layouts scored by the exact max flow
  (``FlowOracle``, scipy's Dinic on integer capacities; final values are re-evaluated by
  ``solvers.maxflow``). Moves follow the network: re-attach a node between an in-neighbour's end and
  an out-neighbour's start; shift a layer boundary shared by several nodes; lay a chain of idle
  nodes between two points of the layout (``augment_chain``); swap two nodes' ranges; kicks.
* ``ruin_recreate`` — release the nodes meeting a window of layers (or a random share, or the least
  used) and re-insert them as the chains that raise the max flow most.
* ``neighbourhood_milp`` / ``milp_lns`` — the exact best re-placement of a few freed nodes
  (HiGHS, warm-started); exact on its neighbourhood but slow beyond 3 free nodes on 24-node
  clusters, so the default search does not call it.
"""
from __future__ import annotations

import math
import random
import time
from collections import defaultdict

import numpy as np

from servopt.instances.layer_placement import SINK, SOURCE, LayerPlacementInstance, Layout


class FlowOracle:
    """Max flow of layouts of one instance, fast (integer Dinic); vertex 0 source, 1 sink, node i: 2+2i in, 3+2i out."""

    def __init__(self, instance: LayerPlacementInstance):
        self.instance = instance
        self.L = instance.num_layers
        self.ids = list(instance.node_ids)
        self.index = {nid: i for i, nid in enumerate(self.ids)}
        self.n = len(self.ids)
        self.tables = [np.array(nd.throughput_tokens_per_s, dtype=float) for nd in instance.nodes]
        self.K = np.array([len(t) for t in self.tables])
        total = float(sum(t.max() for t in self.tables))
        # no arc carries more than the total node capacity: clip, then scale into int32
        self.scale = 2.0e9 / max(total * 1.01, 1e-9)
        self.src_nodes, self.src_caps = [], []
        self.snk_nodes, self.snk_caps = [], []
        a_from, a_to, a_cap = [], [], []
        for l in instance.links:
            if l.tokens_per_s <= 0:
                continue
            c = min(l.tokens_per_s, total)
            if l.src == SOURCE:
                self.src_nodes.append(self.index[l.dst])
                self.src_caps.append(c)
            elif l.dst == SINK:
                self.snk_nodes.append(self.index[l.src])
                self.snk_caps.append(c)
            else:
                a_from.append(self.index[l.src])
                a_to.append(self.index[l.dst])
                a_cap.append(c)
        self.src_nodes = np.array(self.src_nodes, dtype=int)
        self.snk_nodes = np.array(self.snk_nodes, dtype=int)
        self.src_caps = np.array(self.src_caps)
        self.snk_caps = np.array(self.snk_caps)
        self.a_from = np.array(a_from, dtype=int)
        self.a_to = np.array(a_to, dtype=int)
        self.a_cap = np.array(a_cap)
        self.out_nbrs = defaultdict(list)
        self.in_nbrs = defaultdict(list)
        for u, v, c in zip(a_from, a_to, a_cap):
            self.out_nbrs[u].append((v, c))
            self.in_nbrs[v].append((u, c))
        self.src_cap = dict(zip(self.src_nodes.tolist(), self.src_caps.tolist()))
        self.snk_cap = dict(zip(self.snk_nodes.tolist(), self.snk_caps.tolist()))
        self.evaluations = 0

    def arrays(self, layout: Layout) -> tuple[np.ndarray, np.ndarray]:
        s = np.array([layout.ranges[nid][0] for nid in self.ids], dtype=int)
        e = np.array([layout.ranges[nid][1] for nid in self.ids], dtype=int)
        return s, e

    def layout(self, s, e) -> Layout:
        return Layout({nid: (int(s[i]), int(e[i])) for i, nid in enumerate(self.ids)})

    def value(self, s: np.ndarray, e: np.ndarray) -> float:
        from scipy.sparse import csr_matrix
        from scipy.sparse.csgraph import maximum_flow

        self.evaluations += 1
        n = self.n
        node_cap = np.array([self.tables[i][e[i] - s[i] - 1] for i in range(n)])
        rows = [2 + 2 * np.arange(n)]
        cols = [3 + 2 * np.arange(n)]
        caps = [node_cap]
        m = s[self.src_nodes] == 0 if len(self.src_nodes) else np.zeros(0, bool)
        rows.append(np.zeros(int(m.sum()), dtype=int))
        cols.append(2 + 2 * self.src_nodes[m])
        caps.append(self.src_caps[m])
        m = e[self.snk_nodes] == self.L if len(self.snk_nodes) else np.zeros(0, bool)
        rows.append(3 + 2 * self.snk_nodes[m])
        cols.append(np.ones(int(m.sum()), dtype=int))
        caps.append(self.snk_caps[m])
        if len(self.a_from):
            m = e[self.a_from] == s[self.a_to]
            rows.append(3 + 2 * self.a_from[m])
            cols.append(2 + 2 * self.a_to[m])
            caps.append(self.a_cap[m])
        r = np.concatenate(rows)
        c = np.concatenate(cols)
        w = np.floor(np.concatenate(caps) * self.scale).astype(np.int32)
        g = csr_matrix((w, (r, c)), shape=(2 * n + 2, 2 * n + 2))
        return maximum_flow(g, 0, 1, method="dinic").flow_value / self.scale

    def node_flows(self, s, e) -> np.ndarray:
        """Flow through each node in one maximum flow (for choosing which nodes to move)."""
        from servopt.solvers.maxflow import evaluate_layout

        inflow = evaluate_layout(self.instance, self.layout(s, e)).node_inflow()
        return np.array([inflow.get(nid, 0.0) for nid in self.ids])


# --------------------------------------------------------------------------------------------
# chains: feasibility proof and network-following pipelines


def _lengths_at(table, F: float) -> list[int]:
    return [k for k, t in enumerate(table, 1) if t >= F]


def find_chain(oracle: FlowOracle, F: float = 0.0, *, banned=frozenset(), max_expansions: int = 200_000,
               start_caps: dict | None = None, end_caps: dict | None = None, length: int | None = None,
               deadline: float | None = None):
    """A simple path source -> ... -> sink with links >= F whose nodes can hold L layers at T(k) >= F.

    Returns (path of node indices with lengths, exhaustive) where path is a list of (i, k) or None;
    ``exhaustive`` is True when the search finished (a None is then a proof that no such path exists).
    ``start_caps`` / ``end_caps`` / ``length`` replace the source links, the sink links and L: a
    chain entered from a given node, leaving into a given node, covering ``length`` layers.
    """
    L = oracle.L if length is None else length
    start_caps = oracle.src_cap if start_caps is None else start_caps
    end_caps = oracle.snk_cap if end_caps is None else end_caps
    allowed = {}
    for i in range(oracle.n):
        if i in banned:
            continue
        # F = 0 asks for any positive flow: lengths whose T is not the depth bound's 1e-12 placeholder
        ks = _lengths_at(oracle.tables[i], F if F > 0 else 1e-9)
        if ks:
            allowed[i] = ks
    kmax = {i: max(ks) for i, ks in allowed.items()}
    out = {i: [v for v, c in oracle.out_nbrs[i] if c >= F and v in allowed] for i in allowed}
    for i in out:  # widest neighbours first: more layers sooner
        out[i].sort(key=lambda v: -kmax[v])
    starts = sorted((i for i, c in start_caps.items() if c >= F and i in allowed), key=lambda v: -kmax[v])
    ends = {i for i, c in end_caps.items() if c >= F and i in allowed}
    if not starts or not ends:
        return None, True
    # nodes that can reach the sink at all (backward search), and a cheap bound on what lies ahead
    inn = defaultdict(list)
    for i, vs in out.items():
        for v in vs:
            inn[v].append(i)
    reach_sink = set(ends)
    stack = list(ends)
    while stack:
        v = stack.pop()
        for u in inn[v]:
            if u not in reach_sink:
                reach_sink.add(u)
                stack.append(u)
    expansions = 0
    exhausted = [False]

    def ahead(path_set, v):
        # Σ K over the nodes that lie on some path v -> ... -> an end avoiding the path so far
        # (an upper bound on what the rest of the chain can hold; 0 when no end can be reached)
        seen = {v}
        st = [v]
        while st:
            u = st.pop()
            for w in out[u]:
                if w not in seen and w not in path_set:
                    seen.add(w)
                    st.append(w)
        back = [u for u in seen if u in ends]
        useful = set(back)
        while back:
            u = back.pop()
            for w in inn[u]:
                if w in seen and w not in useful:
                    useful.add(w)
                    back.append(w)
        return sum(kmax[u] for u in useful) if v in useful else 0

    path: list[int] = []
    on_path: set[int] = set()

    def fits(nodes) -> list[int] | None:
        # lengths from each node's allowed set summing to exactly L (subset-sum along the path)
        reach = [{0: None}]
        for i in nodes:
            nxt = {}
            for tot in reach[-1]:
                for k in allowed[i]:
                    if tot + k <= L and tot + k not in nxt:
                        nxt[tot + k] = k
            reach.append(nxt)
            if not nxt:
                return None
        if L not in reach[-1]:
            return None
        ks, tot = [], L
        for j in range(len(nodes), 0, -1):
            # walk back: pick any k with tot - k reachable one step earlier
            for k in allowed[nodes[j - 1]]:
                if tot - k in reach[j - 1]:
                    ks.append(k)
                    tot -= k
                    break
        ks.reverse()
        return ks

    def dfs(v, held):
        nonlocal expansions
        expansions += 1
        if expansions > max_expansions or (deadline is not None and expansions % 32 == 0
                                           and time.perf_counter() > deadline):
            exhausted[0] = True  # stopped early: a None is then no proof
            return None
        path.append(v)
        on_path.add(v)
        held += kmax[v]
        try:
            if held >= L and v in ends:
                ks = fits(path)
                if ks is not None:
                    return list(zip(path, ks))
            if held - kmax[v] + ahead(on_path - {v}, v) < L:
                return None
            for w in out[v]:
                if w in on_path or w not in reach_sink:
                    continue
                got = dfs(w, held)
                if got is not None or exhausted[0]:
                    return got
            return None
        finally:
            path.pop()
            on_path.discard(v)

    for v in starts:
        if v not in reach_sink:
            continue
        got = dfs(v, 0)
        if got is not None:
            return got, True
        if exhausted[0]:
            return None, False
    return None, True


def chain_candidates(oracle: FlowOracle) -> list[float]:
    vals = {float(t) for tab in oracle.tables for t in tab}
    vals |= set(oracle.a_cap.tolist()) | set(oracle.src_caps.tolist()) | set(oracle.snk_caps.tolist())
    return sorted(v for v in vals if v > 0)


def best_chain(oracle: FlowOracle, *, banned=frozenset(), deadline: float | None = None,
               max_expansions: int = 20_000, cands=None, **where):
    """The pipeline with the largest bottleneck F found by bisection over candidate rates."""
    cands = chain_candidates(oracle) if cands is None else cands
    lo, hi, best = 0, len(cands) - 1, None
    while lo <= hi:
        if deadline is not None and time.perf_counter() > deadline:
            break
        mid = (lo + hi) // 2
        got, _ = find_chain(oracle, cands[mid], banned=banned, max_expansions=max_expansions, deadline=deadline, **where)
        if got is not None:
            best, lo = (cands[mid], got), mid + 1
        else:
            hi = mid - 1
    return best


def chains_layout(oracle: FlowOracle, *, deadline: float, max_chains: int = 64) -> tuple[np.ndarray, np.ndarray] | None:
    """Disjoint pipelines, best bottleneck first, each along links that carry its rate (greedy)."""
    L = oracle.L
    s = np.full(oracle.n, L - 1)
    e = np.full(oracle.n, L)
    used: set[int] = set()
    found = False
    for _ in range(max_chains):
        if time.perf_counter() > deadline:
            break
        got = best_chain(oracle, banned=frozenset(used), deadline=deadline)
        if got is None:
            break
        _F, chain = got
        pos = 0
        for i, k in chain:
            s[i], e[i] = pos, pos + k
            pos += k
            used.add(i)
        found = True
    if not found:
        return None
    return _park_spares(oracle, s, e, used)


def _park_spares(oracle, s, e, used):
    """Unused nodes join a used node's range (parallel to it) where both its links exist, else the end."""
    L = oracle.L
    for i in range(oracle.n):
        if i in used:
            continue
        best = None
        for j in used:
            k = e[j] - s[j]
            if k > oracle.K[i]:
                continue
            score = oracle.tables[i][k - 1]
            if best is None or score > best[0]:
                best = (score, j)
        if best is not None:
            j = best[1]
            s[i], e[i] = s[j], e[j]
        else:
            s[i], e[i] = L - 1, L
    return s, e


# --------------------------------------------------------------------------------------------
# bounds


def network_bound(oracle: FlowOracle) -> float:
    """Max flow of the link graph with node capacities max_k T_i(k): every layout's flow is such a flow."""
    import networkx as nx

    g = nx.DiGraph()
    for i in range(oracle.n):
        g.add_edge(("in", i), ("out", i), capacity=float(oracle.tables[i].max()))
    for i, c in oracle.src_cap.items():
        g.add_edge("s", ("in", i), capacity=c)
    for i, c in oracle.snk_cap.items():
        g.add_edge(("out", i), "t", capacity=c)
    for u, v, c in zip(oracle.a_from.tolist(), oracle.a_to.tolist(), oracle.a_cap.tolist()):
        g.add_edge(("out", u), ("in", v), capacity=c)
    if "s" not in g or "t" not in g:
        return 0.0
    return float(nx.maximum_flow_value(g, "s", "t"))


def _saturation_of(tables, L: float, src_total: float, snk_total: float) -> float:
    if sum(len(t) for t in tables) < L:
        return 0.0

    def cap(F):
        return sum(max(k * min(t, F) for k, t in enumerate(tab, 1)) for tab in tables)

    hi = sum(max(k * t for k, t in enumerate(tab, 1)) for tab in tables) / L
    lo = 0.0
    if cap(hi) < L * hi * (1 - 1e-12):
        for _ in range(100):
            mid = 0.5 * (lo + hi)
            if cap(mid) >= L * mid * (1 - 1e-12):
                lo = mid
            else:
                hi = mid
            if hi - lo <= 1e-12 * max(hi, 1.0):
                break
    return min(hi, src_total, snk_total)


def _components(oracle: FlowOracle, tau: float) -> list[int]:
    """Per node a label of its component in the graph of the links with capacity >= ``tau`` (union-find)."""
    parent = list(range(oracle.n))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for u, v, c in zip(oracle.a_from.tolist(), oracle.a_to.tolist(), oracle.a_cap.tolist()):
        if c >= tau:
            parent[find(u)] = find(v)
    return [find(i) for i in range(oracle.n)]


def link_cut_bound(oracle: FlowOracle, *, deadline: float | None = None) -> tuple[float, dict]:
    """min over thresholds τ of Σ_groups U_sat(group) + capacity of links between groups (see module doc).

    Every threshold gives a valid bound on its own, so a ``deadline`` (``time.perf_counter()``) that stops
    the loop early keeps a valid, weaker bound (200 nodes: ~60 s for all thresholds)."""
    import time

    levels = sorted(set(oracle.a_cap.tolist()))
    best, best_info = math.inf, {}
    tables = [t.tolist() for t in oracle.tables]
    for tau in [math.inf] + levels[::-1]:
        if deadline is not None and time.perf_counter() > deadline and math.isfinite(best):
            best_info["stopped_at_deadline"] = True
            break
        label = _components(oracle, tau)
        groups = defaultdict(list)
        for i in range(oracle.n):
            groups[label[i]].append(i)
        if len(groups) == 1:
            continue
        cross = sum(c for u, v, c in zip(oracle.a_from.tolist(), oracle.a_to.tolist(), oracle.a_cap.tolist())
                    if label[u] != label[v])
        total = cross
        for members in groups.values():
            src = sum(oracle.src_cap.get(i, 0.0) for i in members)
            snk = sum(oracle.snk_cap.get(i, 0.0) for i in members)
            total += _saturation_of([tables[i] for i in members], oracle.L, src, snk)
        if total < best:
            best, best_info = total, {"groups": len(groups), "cross_link_capacity": cross,
                                      "threshold_tokens_per_s": tau}
    return best, best_info


# --------------------------------------------------------------------------------------------
# iterated local search


def _candidate_ranges(oracle: FlowOracle, i: int, s, e, max_k=None):
    """Ranges for node i that abut a neighbour's range (or the source / sink) on at least one side."""
    L = oracle.L
    K = int(oracle.K[i]) if max_k is None else int(min(oracle.K[i], max_k))
    starts = set()
    if i in oracle.src_cap:
        starts.add(0)
    for u, _c in oracle.in_nbrs[i]:
        if e[u] < L:
            starts.add(int(e[u]))
    ends = set()
    if i in oracle.snk_cap:
        ends.add(L)
    for v, _c in oracle.out_nbrs[i]:
        if s[v] > 0:
            ends.add(int(s[v]))
    out = set()
    for a in starts:
        for b in ends:
            if 1 <= b - a <= K:
                out.add((a, b))
    for a in starts:
        out.add((a, min(a + K, L)))
    for b in ends:
        out.add((max(b - K, 0), b))
    out.discard((int(s[i]), int(e[i])))
    return list(out)


def augment_chain(oracle: FlowOracle, s, e, *, rng, deadline: float, tries: int = 12):
    """Changes [(i, start, end)] that lay a chain of idle nodes between two points of the layout.

    Idle nodes carry no flow in the current maximum flow. The head is the source or a node u
    (the chain starts at e_u, entered over a link from u), the tail the sink or a node v with spare
    capacity (the chain ends at s_v, leaving over a link into v); the chain's bottleneck is
    maximised by ``best_chain``. Pairs are tried at random; the first chain found is returned.
    """
    L = oracle.L
    flows = oracle.node_flows(s, e)
    idle = [i for i in range(oracle.n) if flows[i] <= 1e-9]
    if not idle:
        return None
    busy = [i for i in range(oracle.n) if flows[i] > 1e-9]
    spare = {i: oracle.tables[i][e[i] - s[i] - 1] - flows[i] for i in busy}
    heads = [None] + busy
    tails = [None] + [i for i in busy if spare[i] > 1e-6]
    banned = frozenset(busy)
    cands = chain_candidates(oracle)
    for _ in range(tries):
        if time.perf_counter() > deadline:
            return None
        u, v = rng.choice(heads), rng.choice(tails)
        a = 0 if u is None else int(e[u])
        b = L if v is None else int(s[v])
        if b - a < 1:
            continue
        if u is None:
            start_caps = {i: c for i, c in oracle.src_cap.items()}
        else:
            start_caps = {w: c for w, c in oracle.out_nbrs[u]}
        if v is None:
            end_caps = {i: c for i, c in oracle.snk_cap.items()}
        else:
            end_caps = {w: c for w, c in oracle.in_nbrs[v]}
        got = best_chain(oracle, banned=banned, deadline=deadline, max_expansions=5_000, cands=cands,
                         start_caps=start_caps, end_caps=end_caps, length=b - a)
        if got is None:
            continue
        changes, pos = [], a
        for i, k in got[1]:
            changes.append((i, pos, pos + k))
            pos += k
        return changes
    return None


def local_search(oracle: FlowOracle, s, e, *, deadline: float, seed: int = 0, on_improve=None):
    """Iterated local search from (s, e); returns the best (s, e, value) found before ``deadline``."""
    rng = random.Random(seed)
    L = oracle.L
    s, e = s.copy(), e.copy()
    cur = oracle.value(s, e)
    best = (s.copy(), e.copy(), cur)
    n = oracle.n
    stall = 0

    def try_set(changes):
        nonlocal cur
        old = [(i, s[i], e[i]) for i, _, _ in changes]
        for i, a, b in changes:
            s[i], e[i] = a, b
        v = oracle.value(s, e)
        if v >= cur * (1 + 1e-9) + 1e-9:
            cur = v
            return 1
        if v >= cur * (1 - 1e-12) and rng.random() < 0.3:
            cur = max(cur, v)
            return 0  # sideways move on a plateau
        for i, a, b in old:
            s[i], e[i] = a, b
        return -1

    while time.perf_counter() < deadline:
        improved = False
        order = list(range(n))
        rng.shuffle(order)
        for i in order:
            if time.perf_counter() > deadline:
                break
            cands = _candidate_ranges(oracle, i, s, e)
            rng.shuffle(cands)
            for a, b in cands[:24]:
                if try_set([(i, a, b)]) == 1:
                    improved = True
                    break
        # boundary shifts: move every end at b and every start at b together
        bounds = sorted(set(e.tolist()) & set(s.tolist()) - {0, L})
        rng.shuffle(bounds)
        for b in bounds[:12]:
            if time.perf_counter() > deadline:
                break
            for d in (-1, 1, -2, 2, -4, 4):
                nb = b + d
                if not 0 < nb < L:
                    continue
                changes = []
                ok = True
                for j in range(n):
                    a, c = int(s[j]), int(e[j])
                    if c == b:
                        c = nb
                    elif a == b:
                        a = nb
                    else:
                        continue
                    if not (1 <= c - a <= oracle.K[j]):
                        ok = False
                        break
                    changes.append((j, a, c))
                if ok and changes and try_set(changes) == 1:
                    improved = True
                    break
        # augmenting pipelines: idle nodes form a chain from a node's end (or the source) into a
        # node's start (or the sink)
        if time.perf_counter() < deadline:
            got = augment_chain(oracle, s, e, rng=rng, deadline=min(deadline, time.perf_counter() + 1.0))
            if got is not None and try_set(got) == 1:
                improved = True
        # swaps of two nodes' ranges
        for _ in range(2 * n):
            if time.perf_counter() > deadline:
                break
            i, j = rng.randrange(n), rng.randrange(n)
            if i == j or (s[i], e[i]) == (s[j], e[j]):
                continue
            if e[j] - s[j] > oracle.K[i] or e[i] - s[i] > oracle.K[j]:
                continue
            if try_set([(i, int(s[j]), int(e[j])), (j, int(s[i]), int(e[i]))]) == 1:
                improved = True
        if cur > best[2] * (1 + 1e-9):
            best = (s.copy(), e.copy(), cur)
            stall = 0
            if on_improve:
                on_improve(best[0], best[1], cur)
        elif not improved:
            stall += 1
            # kick: restart from the best with a few nodes moved at random
            s, e = best[0].copy(), best[1].copy()
            for i in rng.sample(range(n), min(n, 2 + stall % 4)):
                cands = _candidate_ranges(oracle, i, s, e)
                if cands:
                    a, b = rng.choice(cands)
                    s[i], e[i] = a, b
            cur = oracle.value(s, e)
    return best


# --------------------------------------------------------------------------------------------
# MILP neighbourhood: re-place a few nodes optimally, the others fixed


def neighbourhood_milp(oracle: FlowOracle, s, e, free, *, time_limit_s: float, threads: int = 1, seed: int = 0,
                       min_value: float | None = None):
    """Best ranges for the nodes in ``free`` with every other node fixed (an exact MILP, ours).

    Variables: x[i,a,k] ∈ {0,1} (free node i holds [a, a+k)), arc flows f_uv >= 0, and for two free
    nodes per boundary b a flow f_ijb. Rows: Σ_{a,k} x[i,a,k] = 1; conservation; inflow_i <= T_i
    (Σ T_i(k)·x for free nodes); f_uv <= C_uv·[u ends where v starts] written with the x of the free
    end (f_ijb <= C·end_i(b), f_ijb <= C·start_j(b) for two free ends). Arcs between fixed nodes are
    kept only where usable. Maximise the flow out of the source. Returns (s, e, value) or None.
    """
    import highspy

    from servopt.solvers.highs import solve_highspy
    from servopt.solvers.maxflow import evaluate_layout

    L = oracle.L
    free = sorted(set(int(i) for i in free))
    is_free = np.zeros(oracle.n, bool)
    is_free[free] = True
    cols_lb, cols_ub, cols_cost, cols_int = [], [], [], []

    def col(ub, cost=0.0, integer=False):
        cols_lb.append(0.0)
        cols_ub.append(ub)
        cols_cost.append(cost)
        cols_int.append(1 if integer else 0)
        return len(cols_lb) - 1

    x = {}  # (i, a, k) -> col
    starts_at = defaultdict(list)  # (i, a) -> cols
    ends_at = defaultdict(list)  # (i, b) -> cols
    for i in free:
        for k in range(1, int(oracle.K[i]) + 1):
            for a in range(0, L - k + 1):
                c = col(1.0, integer=True)
                x[(i, a, k)] = c
                starts_at[(i, a)].append(c)
                ends_at[(i, a + k)].append(c)
    rows = []  # (lower, upper, {col: coef})
    arc_col = {}  # (u, v) or (u, v, b) -> col, for the warm start
    max_t = [float(t.max()) for t in oracle.tables]
    inflow = defaultdict(dict)
    outflow = defaultdict(dict)
    src_cols = []
    for i, cap in oracle.src_cap.items():
        if not is_free[i] and s[i] != 0:
            continue
        cap = min(cap, max_t[i])
        c = col(cap, cost=-1.0)
        arc_col[(-1, i)] = c
        src_cols.append(c)
        inflow[i][c] = 1.0
        if is_free[i]:
            rows.append((-np.inf, 0.0, {c: 1.0, **{xc: -cap for xc in starts_at[(i, 0)]}}))
    for i, cap in oracle.snk_cap.items():
        if not is_free[i] and e[i] != L:
            continue
        cap = min(cap, max_t[i])
        c = col(cap)
        arc_col[(i, -2)] = c
        outflow[i][c] = 1.0
        if is_free[i]:
            rows.append((-np.inf, 0.0, {c: 1.0, **{xc: -cap for xc in ends_at[(i, L)]}}))
    for u, v, cap in zip(oracle.a_from.tolist(), oracle.a_to.tolist(), oracle.a_cap.tolist()):
        fu, fv = is_free[u], is_free[v]
        cap = min(cap, max_t[u], max_t[v])  # no arc carries more than either end can (valid tightening)
        if not fu and not fv:
            if e[u] != s[v]:
                continue
            c = col(cap)
            arc_col[(u, v)] = c
            outflow[u][c] = 1.0
            inflow[v][c] = 1.0
        elif fu and not fv:
            if s[v] == 0:
                continue
            c = col(cap)
            arc_col[(u, v)] = c
            outflow[u][c] = 1.0
            inflow[v][c] = 1.0
            rows.append((-np.inf, 0.0, {c: 1.0, **{xc: -cap for xc in ends_at[(u, int(s[v]))]}}))
        elif fv and not fu:
            if e[u] == L:
                continue
            c = col(cap)
            arc_col[(u, v)] = c
            outflow[u][c] = 1.0
            inflow[v][c] = 1.0
            rows.append((-np.inf, 0.0, {c: 1.0, **{xc: -cap for xc in starts_at[(v, int(e[u]))]}}))
        else:
            for b in range(1, L):
                if not ends_at[(u, b)] or not starts_at[(v, b)]:
                    continue
                c = col(cap)
                arc_col[(u, v, b)] = c
                outflow[u][c] = 1.0
                inflow[v][c] = 1.0
                rows.append((-np.inf, 0.0, {c: 1.0, **{xc: -cap for xc in ends_at[(u, b)]}}))
                rows.append((-np.inf, 0.0, {c: 1.0, **{xc: -cap for xc in starts_at[(v, b)]}}))
    for i in range(oracle.n):
        coeffs = dict(inflow[i])
        for c in outflow[i]:
            coeffs[c] = coeffs.get(c, 0.0) - 1.0
        if coeffs:
            rows.append((0.0, 0.0, coeffs))
        if is_free[i]:
            cap_row = dict(inflow[i])
            for (j, a, k), xc in x.items():
                if j == i:
                    cap_row[xc] = -float(oracle.tables[i][k - 1])
            rows.append((-np.inf, 0.0, cap_row))
            rows.append((1.0, 1.0, {xc: 1.0 for (j, a, k), xc in x.items() if j == i}))
        elif inflow[i]:
            rows.append((-np.inf, float(oracle.tables[i][e[i] - s[i] - 1]), dict(inflow[i])))
    if min_value is not None and src_cols:
        rows.append((float(min_value), np.inf, {c: 1.0 for c in src_cols}))
    if not src_cols:
        return None
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    n = len(cols_lb)
    h.addVars(n, np.array(cols_lb), np.array(cols_ub))
    h.changeColsCost(n, np.arange(n, dtype=np.int32), np.array(cols_cost))
    ints = np.flatnonzero(np.array(cols_int)).astype(np.int32)
    if len(ints):
        h.changeColsIntegrality(len(ints), ints, np.ones(len(ints), dtype=np.uint8))
    lo = np.array([r[0] for r in rows], dtype=float)
    hi = np.array([r[1] for r in rows], dtype=float)
    starts_arr, index, value = [], [], []
    for r in rows:
        starts_arr.append(len(index))
        for c, v in r[2].items():
            index.append(c)
            value.append(v)
    lo[np.isinf(lo)] = -highspy.kHighsInf
    hi[np.isinf(hi)] = highspy.kHighsInf
    h.addRows(len(rows), lo, hi, len(index), np.array(starts_arr, dtype=np.int32), np.array(index, dtype=np.int32),
              np.array(value, dtype=float))
    # warm start: the current layout and one maximum flow of it
    x0 = np.zeros(n)
    for i in free:
        x0[x[(i, int(s[i]), int(e[i] - s[i]))]] = 1.0
    idx = {nid: j for j, nid in enumerate(oracle.ids)}
    idx[SOURCE], idx[SINK] = -1, -2
    for a, b, f in evaluate_layout(oracle.instance, oracle.layout(s, e)).flows:
        u, v = idx[a], idx[b]
        c = arc_col.get((u, v))
        if c is None and u >= 0 and v >= 0:
            c = arc_col.get((u, v, int(e[u])))
        if c is not None:
            x0[c] = min(f, cols_ub[c])
    res, sol = solve_highspy(h, time_limit_s=max(time_limit_s, 0.05), rel_gap=1e-6, threads=threads, seed=seed,
                             sense="min", warm_start=x0, options={"output_flag": False})
    if not res.has_solution or sol is None:
        return None
    s2, e2 = s.copy(), e.copy()
    for (i, a, k), c in x.items():
        if sol[c] > 0.5:
            s2[i], e2[i] = a, a + k
    return s2, e2, oracle.value(s2, e2)


def milp_lns(oracle: FlowOracle, s, e, *, deadline: float, seed: int = 0, free_size: int = 5, per_call_s: float = 3.0,
             on_improve=None, threads: int = 1):
    """Large-neighbourhood search: free a few nodes (idle ones, a node and its link neighbours, or
    random), re-place them optimally with ``neighbourhood_milp``, keep improvements."""
    rng = random.Random(seed)
    cur = oracle.value(s, e)
    best = (s.copy(), e.copy(), cur)
    n = oracle.n
    size = min(free_size, n)
    calls = 0
    while time.perf_counter() < deadline - 0.2:
        s, e = best[0], best[1]
        flows = oracle.node_flows(s, e)
        util = [flows[i] / oracle.tables[i][e[i] - s[i] - 1] for i in range(n)]
        mode = calls % 3
        if mode == 0:  # a node and its link neighbours
            seed_node = rng.randrange(n)
            pool = [seed_node] + [v for v, _ in oracle.out_nbrs[seed_node]] + [u for u, _ in oracle.in_nbrs[seed_node]]
            rng.shuffle(pool)
            free = list(dict.fromkeys(pool))[:size]
        elif mode == 1:  # the least used nodes and some random others
            order = sorted(range(n), key=lambda i: (util[i], rng.random()))
            free = order[: max(1, size // 2)] + rng.sample(range(n), size)
            free = list(dict.fromkeys(free))[:size]
        else:
            free = rng.sample(range(n), size)
        calls += 1
        left = deadline - time.perf_counter()
        got = neighbourhood_milp(oracle, s, e, free, time_limit_s=min(per_call_s, left), threads=threads, seed=seed)
        if got is not None and got[2] > best[2] * (1 + 1e-9) + 1e-9:
            best = (got[0].copy(), got[1].copy(), got[2])
            if on_improve:
                on_improve(best[0], best[1], best[2])
    return best


def _chain_between(oracle, s, e, idle: set, u, v, *, deadline, cands):
    """A chain of nodes from ``idle`` from u's end (or the source) into v's start (or the sink)."""
    L = oracle.L
    a = 0 if u is None else int(e[u])
    b = L if v is None else int(s[v])
    if b - a < 1:
        return None
    start_caps = dict(oracle.src_cap) if u is None else {w: c for w, c in oracle.out_nbrs[u]}
    end_caps = dict(oracle.snk_cap) if v is None else {w: c for w, c in oracle.in_nbrs[v]}
    banned = frozenset(i for i in range(oracle.n) if i not in idle)
    got = best_chain(oracle, banned=banned, deadline=deadline, max_expansions=3_000, cands=cands,
                     start_caps=start_caps, end_caps=end_caps, length=b - a)
    if got is None:
        return None
    changes, pos = [], a
    for i, k in got[1]:
        changes.append((i, pos, pos + k))
        pos += k
    return changes


def ruin_recreate(oracle: FlowOracle, s, e, *, deadline: float, seed: int = 0, on_improve=None, tries: int = 10):
    """Ruin and recreate: release a set of nodes (those meeting a window of layers, a random share,
    or the least used), then re-insert them greedily as the chains (``_chain_between``) that raise
    the max flow most, until none does. Keeps the best layout; moves on from equal ones."""
    rng = random.Random(seed)
    L, n = oracle.L, oracle.n
    cands = chain_candidates(oracle)
    cur_s, cur_e = s.copy(), e.copy()
    cur = oracle.value(cur_s, cur_e)
    best = (cur_s.copy(), cur_e.copy(), cur)
    rounds = 0
    while time.perf_counter() < deadline:
        rounds += 1
        s, e = cur_s.copy(), cur_e.copy()
        mode = rng.randrange(3)
        if mode == 0:
            w = rng.randint(max(L // 6, 1), max(L // 2, 1))
            a = rng.randrange(0, max(L - w, 0) + 1)
            idle = {i for i in range(n) if s[i] < a + w and e[i] > a}
        elif mode == 1:
            idle = set(rng.sample(range(n), max(2, int(n * rng.uniform(0.15, 0.4)))))
        else:
            flows = oracle.node_flows(s, e)
            util = sorted(range(n), key=lambda i: flows[i] / oracle.tables[i][e[i] - s[i] - 1] + rng.random() * 0.3)
            idle = set(util[: max(2, n // 4)])
        value = oracle.value(s, e)
        while idle and time.perf_counter() < deadline:
            flows = oracle.node_flows(s, e)
            busy = [i for i in range(n) if i not in idle]
            heads = [None] + busy
            tails = [None] + [i for i in busy if oracle.tables[i][e[i] - s[i] - 1] - flows[i] > 1e-6]
            step = None
            for _ in range(tries):
                if time.perf_counter() > deadline:
                    break
                u, v = rng.choice(heads), rng.choice(tails)
                ch = _chain_between(oracle, s, e, idle, u, v, deadline=deadline, cands=cands)
                if ch is None:
                    continue
                old = [(i, s[i], e[i]) for i, _, _ in ch]
                for i, a2, b2 in ch:
                    s[i], e[i] = a2, b2
                val = oracle.value(s, e)
                for i, a2, b2 in old:
                    s[i], e[i] = a2, b2
                if val > value * (1 + 1e-9) + 1e-9 and (step is None or val > step[0]):
                    step = (val, ch)
            if step is None:
                break
            value = step[0]
            for i, a2, b2 in step[1]:
                s[i], e[i] = a2, b2
                idle.discard(i)
        # idle nodes left over: join a busy node's range where that helps (local search does the rest)
        if value >= cur * (1 - 1e-12):
            cur_s, cur_e, cur = s, e, value
        if value > best[2] * (1 + 1e-9) + 1e-9:
            best = (s.copy(), e.copy(), value)
            if on_improve:
                on_improve(best[0], best[1], value)
    return best


def _groups(oracle: FlowOracle) -> list[frozenset]:
    """Node groups: the components of the links with C >= τ for each distinct τ (geo regions), and all nodes."""
    out = {frozenset(range(oracle.n))}
    levels = sorted(set(oracle.a_cap.tolist()))
    # thresholds just above the largest jumps in link capacity (geo regions: 12.5 Mbps vs 1 Gbps)
    jumps = sorted(range(1, len(levels)), key=lambda j: -levels[j] / max(levels[j - 1], 1e-12))[:3]
    for tau in [levels[j] for j in jumps]:
        label = _components(oracle, tau)
        comps = defaultdict(set)
        for i in range(oracle.n):
            comps[label[i]].add(i)
        for members in comps.values():
            if 1 < len(members) < oracle.n:
                out.add(frozenset(members))
        if len(out) > 12:
            break
    return sorted(out, key=lambda g: (len(g), sorted(g)))


def trunk_layouts(oracle: FlowOracle, *, deadline: float, max_layouts: int = 6):
    """Trunk-and-feeders constructions (ours, after the shape of Helix's geo-distributed layouts):
    a trunk pipeline inside one node group holds the last (or first) ℓ layers at rate F, and chains
    of the other nodes feed it (or drain it) over the links into its head (out of its tail),
    added greedily while the max flow rises. Yields (value, s, e), best first."""
    L, n = oracle.L, oracle.n
    cands = chain_candidates(oracle)
    results = []
    for group in _groups(oracle):
        outside = frozenset(i for i in range(n) if i not in group)
        rates = sorted({float(t) for i in group for t in oracle.tables[i]}, reverse=True)
        layers_at = {F: sum(max(_lengths_at(oracle.tables[i], F), default=0) for i in group) for F in rates}
        # trunk rates whose trunk holds about 30 %, 45 %, 55 % or 70 % of the layers
        picked = []
        for share in (0.55, 0.45, 0.7, 0.3):
            fits = [F for F in rates if 1 <= layers_at[F] and F not in picked]
            if fits:
                picked.append(min(fits, key=lambda F: (abs(layers_at[F] - share * L), -F)))
        for at_end in (True, False):
            for F in picked:
                if time.perf_counter() > deadline:
                    break
                length = min(layers_at[F], L - 1)
                anywhere = {i: math.inf for i in group}
                if at_end:
                    where = dict(start_caps=anywhere, end_caps=dict(oracle.snk_cap))
                else:
                    where = dict(start_caps=dict(oracle.src_cap), end_caps=anywhere)
                trunk = None
                for ell in range(length, max(length - 6, 0), -1):
                    got, _ = find_chain(oracle, F, banned=outside, max_expansions=3_000, length=ell, deadline=deadline,
                                        **where)
                    if got is not None:
                        trunk = got
                        break
                if trunk is None:
                    continue
                ell = sum(k for _, k in trunk)
                s = np.full(n, L - 1)
                e = np.full(n, L)
                pos = L - ell if at_end else 0
                for i, k in trunk:
                    s[i], e[i] = pos, pos + k
                    pos += k
                used = {i for i, _ in trunk}
                idle = set(range(n)) - used
                # park idle nodes where they cannot carry flow: the trunk's own end range is taken
                # by nobody else, so park at the far end of the other side
                for i in idle:
                    s[i], e[i] = (0, 1) if at_end else (L - 1, L)
                    if at_end and i in oracle.src_cap:
                        s[i], e[i] = (L - 1, L) if i not in oracle.snk_cap else (0, 1)
                head = trunk[0][0] if at_end else trunk[-1][0]
                value = oracle.value(s, e)
                while idle and time.perf_counter() < deadline:
                    ch = _chain_between(oracle, s, e, idle, None if at_end else head, head if at_end else None,
                                        deadline=deadline, cands=cands)
                    if ch is None:
                        break
                    old = [(i, s[i], e[i]) for i, _, _ in ch]
                    for i, a2, b2 in ch:
                        s[i], e[i] = a2, b2
                    val = oracle.value(s, e)
                    if val <= value * (1 + 1e-9):
                        for i, a2, b2 in old:
                            s[i], e[i] = a2, b2
                        break
                    value = val
                    idle -= {i for i, _, _ in ch}
                results.append((value, s.copy(), e.copy()))
    results.sort(key=lambda r: -r[0])
    return results[:max_layouts]
