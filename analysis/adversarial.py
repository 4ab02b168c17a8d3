"""Adversarial instances for online KV schedulers: a search that maximises a policy's proven ratio, and a
family whose ratio grows with n.

**Search** (``search``). An evolutionary local search over ``kv_schedule`` instances of a fixed small
size n (n <= 12, where the exact branch-and-bound of solvers/kv_schedule_bnb.py proves optima in well
under a second). The score of an instance is the policy's ratio ``ALG / OPT`` with OPT *proven*; an
instance whose optimum is not proven within the time limit scores nothing (it is never reported as
a worst case). The search keeps a population of the best instances found; each step picks one of
them (uniformly), applies one to three random mutations and keeps the child if it scores at least as
high as the population's worst (accepting equal scores lets it cross plateaus). Every 40 steps
without improvement it restarts from a fresh random instance. Mutations stay inside ``space``:

* ``paper``: the support of the paper's synthetic family with n fixed (Jaillet et al., arXiv
  2502.07115 §6.1; instances/kv_generators.py): ``M in 30..50``, one prompt size ``s in 1..5``
  shared by all requests, ``o_i in 1..M-s``, integer arrivals in ``0..max_arrival`` (every such
  arrival pattern has positive probability under the paper's per-round Poisson arrivals);
* ``all_at_zero``: the same with every arrival at round 0 (the setting of MC-SF's O(1) theorem,
  except its memory condition);
* ``free``: per-request prompt sizes, ``M in 4..60``, arrivals in ``0..max_arrival``.

Mutations: redraw or nudge one output length, the shared prompt size (or one request's), M, or one
arrival; copy one request's arrival to another (bursts); swap two requests' lengths.

**Adversarial-arrivals family** (``adversarial_arrivals(n)``), ours, after the idea behind the
Omega(sqrt n) lower bound of Jaillet et al. (arXiv 2502.07115 v5, Thm 4.1): an online algorithm
that starts work as soon as it fits can be made to regret it. With ``k = n - 1`` and ``L = k + 2``:

* memory ``M = k (L - 1)``;
* one long request at round 0: prompt ``M - L``, output ``L`` (peak exactly ``M``);
* ``k`` short requests at round 1: prompt ``L - 2``, output 1 (peak ``L - 1``; all k fill M exactly).

At round 0 the long request is alone and fits, so a work-conserving policy (MC-SF, FCFS, ...) starts
it; from round 1 on its footprint ``M - L + t + 1`` leaves less than the ``L - 1`` tokens a short one
needs, so the k short requests wait until round L: ``ALG = L + k L``. Holding the long one back two
rounds instead gives ``k + (L + 2)``, so ``ALG / OPT >= (k + 1) L / (k + L + 2) = (k + 1) / 2 = n / 2``:
linear in n for MC-SF (the Omega(sqrt n) of the theorem is for the best deterministic algorithm;
MC-SF does worse here). The proven ratios for n <= 12 are in docs/analysis.md.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

SPACES = ("paper", "all_at_zero", "free")


def adversarial_arrivals(n: int, *, name: str = "") -> dict:
    """The instance of the module docstring with n requests (n >= 3)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 3:
        raise ValueError(f"adversarial_arrivals needs n >= 3, got {n!r}")
    k = n - 1
    L = k + 2
    M = k * (L - 1)
    requests = [{"id": "long", "arrival": 0, "prompt_tokens": M - L, "output_tokens": L}]
    requests += [{"id": f"short{i}", "arrival": 1, "prompt_tokens": L - 2, "output_tokens": 1} for i in range(k)]
    return {"kind": "kv_schedule", "name": name or f"adversarial-arrivals-n{n}", "memory_tokens": M,
            "source": "servopt analysis/adversarial.py (after Jaillet et al., arXiv 2502.07115 v5, Thm 4.1)",
            "meta": {"generator": "adversarial_arrivals", "long_output_tokens": L, "short_requests": k,
                     "ratio_at_least": (k + 1) * L / (k + L + 2)},
            "requests": requests}


# ---- scoring ------------------------------------------------------------------------------------------

@dataclass
class Scored:
    """One instance with the policy's cost and the optimum (proven or not)."""

    instance: dict
    policy: str
    policy_cost: float
    optimum: float
    bound: float
    proven: bool
    ratio: float | None  # ALG / OPT when proven, else None
    ratio_lo: float
    ratio_hi: float

    def to_dict(self) -> dict:
        return asdict(self)


def score(data: dict, policy: str = "mc-sf", *, time_limit_s: float = 20.0) -> Scored:
    """The policy's proven ratio on one instance (exact branch-and-bound from the best policy schedule)."""
    from servopt.analysis.kv_check import check_result
    from servopt.analysis.kv_optimum import best_policy_schedule
    from servopt.instances.kv_schedule import KVScheduleInstance
    from servopt.simulator.kv_rounds import simulate_rounds
    from servopt.solvers.kv_schedule_bnb import branch_and_bound

    inst = KVScheduleInstance.from_dict(data)
    sched = simulate_rounds(inst, policy)
    cost = sched.objective_value(inst)
    problems = check_result(inst, {"objective": cost, **sched.to_dict()})
    if problems:  # never score a schedule the independent checker rejects
        raise AssertionError(f"policy {policy} produced an invalid schedule: {problems[:3]}")
    _, start, _ = best_policy_schedule(inst)
    res = branch_and_bound(inst, time_limit_s=time_limit_s, incumbent=start, incumbent_source="policy",
                           heuristic_seconds=0.0)
    proven = res.status == "optimal"
    return Scored(data, policy, float(cost), float(res.objective), float(res.bound), proven,
                  float(cost) / res.objective if proven else None, float(cost) / res.objective,
                  float(cost) / res.bound if res.bound > 0 else math.inf)


# ---- the search space -----------------------------------------------------------------------------------

def random_instance(rng: np.random.Generator, n: int, space: str = "paper", *, max_arrival: int = 20) -> dict:
    """A uniformly drawn instance of ``space`` (module docstring)."""
    if space == "free":
        M = int(rng.integers(4, 61))
        reqs = []
        for i in range(n):
            s = int(rng.integers(0, M))
            reqs.append({"id": f"r{i}", "arrival": int(rng.integers(0, max_arrival + 1)), "prompt_tokens": s,
                         "output_tokens": int(rng.integers(1, M - s + 1))})
        return _instance(M, reqs, space)
    M = int(rng.integers(30, 51))
    s = int(rng.integers(1, 6))
    arrivals = np.zeros(n, dtype=int) if space == "all_at_zero" else rng.integers(0, max_arrival + 1, size=n)
    reqs = [{"id": f"r{i}", "arrival": int(a), "prompt_tokens": s, "output_tokens": int(rng.integers(1, M - s + 1))}
            for i, a in enumerate(arrivals)]
    return _instance(M, reqs, space)


def _instance(M: int, reqs: list[dict], space: str) -> dict:
    return {"kind": "kv_schedule", "name": f"adversarial-{space}-n{len(reqs)}", "memory_tokens": int(M),
            "meta": {"generator": "adversarial search", "space": space}, "requests": reqs}


def mutate(data: dict, rng: np.random.Generator, space: str = "paper", *, max_arrival: int = 20) -> dict:
    """One to three random mutations inside ``space`` (module docstring); returns a new dict."""
    out = json.loads(json.dumps(data))
    reqs = out["requests"]
    n = len(reqs)
    for _ in range(int(rng.integers(1, 4))):
        M = out["memory_tokens"]
        move = int(rng.integers(0, 7))
        i, j = int(rng.integers(0, n)), int(rng.integers(0, n))
        if move == 0:  # redraw one output length
            reqs[i]["output_tokens"] = int(rng.integers(1, M - reqs[i]["prompt_tokens"] + 1))
        elif move == 1:  # nudge one output length
            reqs[i]["output_tokens"] = reqs[i]["output_tokens"] + int(rng.choice([-3, -2, -1, 1, 2, 3]))
        elif move == 2:  # prompt size: shared in the paper spaces, per request in 'free'
            if space == "free":
                reqs[i]["prompt_tokens"] = int(rng.integers(0, M))
            else:
                s = int(rng.integers(1, 6))
                for r in reqs:
                    r["prompt_tokens"] = s
        elif move == 3:  # memory
            lo, hi = (4, 60) if space == "free" else (30, 50)
            out["memory_tokens"] = int(np.clip(M + int(rng.choice([-4, -2, -1, 1, 2, 4])), lo, hi))
        elif move == 4 and space != "all_at_zero":  # one arrival
            reqs[i]["arrival"] = int(np.clip(reqs[i]["arrival"] + int(rng.choice([-3, -1, 1, 3])), 0, max_arrival))
        elif move == 5 and space != "all_at_zero":  # a burst: copy an arrival
            reqs[i]["arrival"] = reqs[j]["arrival"]
        else:  # swap two lengths
            reqs[i]["output_tokens"], reqs[j]["output_tokens"] = reqs[j]["output_tokens"], reqs[i]["output_tokens"]
        _repair(out, space)
    return out


def _repair(data: dict, space: str) -> None:
    """Clip every length into ``1..M - s`` (and prompts into ``0..M-1``) so the instance stays valid."""
    M = data["memory_tokens"]
    for r in data["requests"]:
        r["prompt_tokens"] = int(min(max(r["prompt_tokens"], 0 if space == "free" else 1), M - 1))
        r["output_tokens"] = int(min(max(r["output_tokens"], 1), M - r["prompt_tokens"]))
        if space == "all_at_zero":
            r["arrival"] = 0


# ---- the search -------------------------------------------------------------------------------------------

@dataclass
class SearchResult:
    policy: str
    n: int
    space: str
    evaluations: int
    unproven: int
    seconds: float
    best: list[Scored]
    history: list[tuple[int, float]] = field(default_factory=list)  # (evaluation, best proven ratio so far)

    @property
    def worst_ratio(self) -> float | None:
        return self.best[0].ratio if self.best else None

    def to_dict(self) -> dict:
        return {"kind": "kv_schedule_adversarial", "policy": self.policy, "n": self.n, "space": self.space,
                "evaluations": self.evaluations, "unproven": self.unproven, "seconds": round(self.seconds, 2),
                "worst_ratio": self.worst_ratio, "best": [b.to_dict() for b in self.best],
                "history": [list(h) for h in self.history]}

    def to_dataframe(self):
        import pandas as pd

        return pd.DataFrame([{k: v for k, v in b.to_dict().items() if k != "instance"} for b in self.best])

    def save(self, out_dir: str | Path, *, top: int = 3) -> list[Path]:
        """Write the ``top`` worst instances as instance JSON files (their ratios in ``meta``); returns the paths."""
        folder = Path(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for rank, b in enumerate(self.best[:top], start=1):
            data = json.loads(json.dumps(b.instance))
            data["name"] = f"worst-{self.policy}-{self.space}-n{self.n}-{rank}"
            data.setdefault("meta", {})["adversarial"] = {
                "policy": self.policy, "policy_cost": b.policy_cost, "optimum": b.optimum, "proven": b.proven,
                "ratio": b.ratio, "found_by": "servopt analysis/adversarial.py search",
                "recheck": f"servopt compare FILE --policies {self.policy} --formulation branch-and-bound"}
            path = folder / f"{data['name']}.json"
            path.write_text(json.dumps(data, indent=1) + "\n")
            paths.append(path)
        return paths


def search(policy: str = "mc-sf", *, n: int = 8, evaluations: int = 300, space: str = "paper", seed: int = 0,
           population: int = 6, max_arrival: int = 20, time_limit_s: float = 20.0, start: list[dict] | None = None,
           patience: int = 40) -> SearchResult:
    """The evolutionary search of the module docstring; ``evaluations`` instances are scored in all."""
    if space not in SPACES:
        raise ValueError(f"space must be one of {SPACES}, got {space!r}")
    if not 2 <= n <= 12:
        raise ValueError("the search proves optima exactly: keep 2 <= n <= 12")
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    pool: list[Scored] = []
    archive: list[Scored] = []
    seen: set[str] = set()
    unproven = 0
    history = []
    since_best = 0
    best = -math.inf
    seeds = list(start or [])
    for step in range(evaluations):
        if seeds:
            child = seeds.pop(0)
        elif since_best >= patience:  # restart: keep what was found, grow a fresh population
            archive = sorted(archive + pool, key=lambda s: -s.ratio)[:population]
            pool, since_best = [], 0
            child = random_instance(rng, n, space, max_arrival=max_arrival)
        elif len(pool) < population:
            child = random_instance(rng, n, space, max_arrival=max_arrival)
        else:
            parent = pool[int(rng.integers(0, len(pool)))]
            child = mutate(parent.instance, rng, space, max_arrival=max_arrival)
        key = json.dumps([child["memory_tokens"], [(r["arrival"], r["prompt_tokens"], r["output_tokens"]) for r in child["requests"]]])
        if key in seen:
            since_best += 1
            continue
        seen.add(key)
        scored = score(child, policy, time_limit_s=time_limit_s)
        if not scored.proven:
            unproven += 1
            since_best += 1
            continue
        if scored.ratio > best + 1e-12:
            best = scored.ratio
            since_best = 0
            history.append((step + 1, best))
        else:
            since_best += 1
        if len(pool) < population:
            pool.append(scored)
        elif scored.ratio >= min(p.ratio for p in pool):
            worst_at = min(range(len(pool)), key=lambda i: pool[i].ratio)
            pool[worst_at] = scored
        pool.sort(key=lambda s: -s.ratio)
    best_found = sorted(archive + pool, key=lambda s: -s.ratio)[:population]
    return SearchResult(policy, n, space, evaluations, unproven, time.perf_counter() - t0, best_found, history)


def random_baseline(policy: str = "mc-sf", *, n: int = 8, count: int = 100, arrival_model: str = "poisson_fixed_n",
                    seed: int = 0, time_limit_s: float = 20.0) -> list[Scored]:
    """``count`` instances of the paper's synthetic family at size n (instances/kv_generators.py), scored."""
    from servopt.instances.kv_generators import synthetic

    return [score(synthetic(np.random.default_rng([seed, n, k]), n=n, arrival_model=arrival_model), policy,
                  time_limit_s=time_limit_s) for k in range(count)]
