"""Competitive ratios measured with honest bounds, and the proven constants of the literature beside them.

A sweep (analysis/sweep.py) gives, per instance and online policy, the policy's cost ``ALG``, the
hindsight optimum's incumbent ``U >= OPT`` and its proven lower bound ``L <= OPT``, so

    ALG / U  <=  ALG / OPT  <=  ALG / L           (``ratio_lo`` <= true ratio <= ``ratio_hi``)

with equal ends where the optimum is proven (``L = U``). ``ratio_table`` summarises these intervals
per family, size and policy: the share of instances proven, the mean of each end, the exact mean and
worst case over the proven instances, and the empirical worst case of each end over all instances.

``PROVEN_CONSTANTS`` lists what the literature proves, each in its own setting (research notes
scheduling-anchors.md §1.5, §3.1-3.3, §4.4). A measured ratio above a proven upper bound *in the
setting where the theorem holds* is a bug (in the policy, the optimum or the bound), and
``proven_bound_violations`` reports it; outside that setting the constant says nothing and is not
applied. The settings are recorded per instance by the sweep as boolean columns:

* ``all_at_zero``: every request arrives at round 0;
* ``identical_prompts``: one prompt size s shared by all requests;
* ``exact_predictions``: the policy sees the true output lengths (no ``predicted_output_tokens``
  or interval different from the truth);
* ``large_memory``: ``M >= 2 max_i (s_i + o_i)`` (the memory condition of Jaillet et al., Thm 4.3).

Two rules hold in every setting and are checked too: ``ALG / L >= 1`` (no policy beats a proven
lower bound on the optimum) and, on proven instances, ``ALG / OPT >= 1``.
"""
from __future__ import annotations

import math

SETTING_FLAGS = ("all_at_zero", "identical_prompts", "exact_predictions", "large_memory")

# What is proven, each in its own setting. ``policy`` is the servopt policy name where servopt has the
# algorithm, else the paper's name with ``implemented: False`` (shown, never measured).
PROVEN_CONSTANTS: list[dict] = [
    {"policy": "mc-sf", "bound": "upper", "constant": 9216.0, "order": None,
     "setting": "all arrivals at round 0, one prompt size, exact output lengths, M >= 2 max_i (s + o_i)",
     "flags": ("all_at_zero", "identical_prompts", "exact_predictions", "large_memory"), "implemented": True,
     "source": "Jaillet et al., arXiv 2502.07115 v5, Thm 4.3 (Lemmas 4.4 and 4.7: 1536 x 6)"},
    {"policy": "a-min", "bound": "upper", "constant": None, "order": "O(log(1/alpha)), alpha = l/u",
     "setting": "one prompt size, interval predictions [l, u] of the output lengths",
     "flags": (), "implemented": True,
     "source": "Chen, Ye, Zhou, arXiv 2508.14544 (algorithm A_min); no explicit constant stated"},
    {"policy": "Sorted-F", "bound": "upper", "constant": 48.0, "order": None,
     "setting": "all arrivals at round 0, prompt sizes may differ, exact output lengths",
     "flags": ("all_at_zero", "exact_predictions"), "implemented": False,
     "source": "Wang, Ye, Zhou, arXiv 2508.06133"},
    {"policy": "GBA", "bound": "upper", "constant": 10.67, "order": None,
     "setting": "all arrivals at round 0, clairvoyant (exact lengths); 6.75 for large memory",
     "flags": ("all_at_zero", "exact_predictions"), "implemented": False,
     "source": "Feng, Yang, Zhang, arXiv 2601.22996"},
    {"policy": "GSA", "bound": "upper", "constant": 61.92, "order": None,
     "setting": "all arrivals at round 0, non-clairvoyant (lengths unknown); 32 for large memory",
     "flags": ("all_at_zero",), "implemented": False,
     "source": "Feng, Yang, Zhang, arXiv 2601.22996"},
    {"policy": "any deterministic online algorithm", "bound": "lower", "constant": None, "order": "Omega(sqrt(n))",
     "setting": "adversarial arrivals (some instance of every size n forces it)",
     "flags": (), "implemented": False,
     "source": "Jaillet et al., arXiv 2502.07115 v5, Thm 4.1"},
]

_TOL = 1e-9


def instance_setting(instance) -> dict[str, bool]:
    """The setting flags of the module docstring for one ``KVScheduleInstance``."""
    reqs = instance.requests
    prompts = {int(r.prompt_tokens) for r in reqs}
    exact = all(r.output_tokens_seen == r.output_tokens
                and r.output_tokens_interval in (None, (r.output_tokens, r.output_tokens)) for r in reqs)
    return {
        "all_at_zero": all(int(r.arrival) == 0 for r in reqs),
        "identical_prompts": len(prompts) == 1,
        "exact_predictions": bool(exact),
        "large_memory": instance.memory_tokens >= 2 * max(r.prompt_tokens + r.output_tokens for r in reqs),
    }


def _num(x):
    if x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def _flag(row, name) -> bool:
    v = row.get(name)
    if isinstance(v, str):
        return v.strip().lower() in ("true", "1")
    return bool(v) if v is not None and not (isinstance(v, float) and math.isnan(v)) else False


def proven_bound_violations(rows) -> list[str]:
    """Rows (dicts, or a DataFrame) whose measured ratio contradicts a proven statement; [] = none.

    * ``ratio_hi = ALG / L < 1``: the policy beat a proven lower bound on the optimum;
    * a proven instance with ``ALG / OPT < 1``;
    * ``ALG / U`` (a lower end of the true ratio) above a proven upper constant for that policy, on an
      instance whose setting flags are all those of the theorem;
    * a policy row the independent checker rejected (``policy_status == 'invalid'``).
    """
    if hasattr(rows, "to_dict"):
        rows = rows.to_dict("records")
    out = []
    uppers = {c["policy"]: c for c in PROVEN_CONSTANTS if c["bound"] == "upper" and c["constant"] is not None}
    for row in rows:
        where = f"{row.get('instance_name', '?')} / {row.get('policy', '?')}"
        if row.get("policy_status") == "invalid":
            out.append(f"{where}: the checker rejected the policy's schedule ({row.get('violations', '')})")
        lo, hi = _num(row.get("ratio_lo")), _num(row.get("ratio_hi"))
        if hi is not None and hi < 1 - _TOL:
            out.append(f"{where}: ALG / bound = {hi:.6g} < 1: the policy beats a proven lower bound")
        if _flag(row, "proven") and lo is not None and lo < 1 - _TOL:
            out.append(f"{where}: ALG / OPT = {lo:.6g} < 1 on a proven optimum")
        claim = uppers.get(row.get("policy"))
        if claim and lo is not None and all(_flag(row, f) for f in claim["flags"]) and lo > claim["constant"] * (1 + _TOL):
            out.append(f"{where}: ALG / OPT >= {lo:.6g} exceeds the proven {claim['constant']:g} "
                       f"({claim['source']}) in its own setting")
    return out


def ratio_table(frame, by=("family", "arrival_model", "n", "policy")):
    """One row per group: the interval summary of the module docstring (pandas DataFrame)."""
    import pandas as pd

    keys = [k for k in by if k in frame.columns]
    uppers = {c["policy"]: c for c in PROVEN_CONSTANTS if c["bound"] == "upper"}
    rows = []
    ok = frame[frame["cost"].notna()] if "cost" in frame.columns else frame
    for group, sub in ok.groupby(keys, dropna=False, sort=True):
        group = group if isinstance(group, tuple) else (group,)
        proven = sub[sub["proven"].astype(bool)]
        exact = proven["ratio_lo"].astype(float)
        lo, hi = sub["ratio_lo"].astype(float), sub["ratio_hi"].astype(float)
        claim = uppers.get(sub["policy"].iloc[0]) if "policy" in sub.columns else None
        in_setting = None
        if claim and claim["flags"]:
            in_setting = int(sub[list(claim["flags"])].astype(bool).all(axis=1).sum())
        rows.append({
            **dict(zip(keys, group)),
            "instances": len(sub),
            "proven": len(proven),
            "proven_share": len(proven) / len(sub) if len(sub) else None,
            "mean_lo": float(lo.mean()), "mean_hi": float(hi.mean()),
            "proven_mean": float(exact.mean()) if len(exact) else None,
            "proven_worst": float(exact.max()) if len(exact) else None,
            "policy_optimal": int((exact <= 1 + _TOL).sum()),
            "worst_lo": float(lo.max()), "worst_hi": float(hi.max()),
            "proven_constant": (claim["constant"] if claim and claim["constant"] is not None
                                else (claim["order"] if claim else None)),
            "constant_setting_instances": in_setting,
        })
    return pd.DataFrame(rows)


def constants_table():
    """``PROVEN_CONSTANTS`` as a DataFrame (flags joined), for printing beside a ratio table."""
    import pandas as pd

    return pd.DataFrame([{**c, "flags": ", ".join(c["flags"]) or "-",
                          "constant": c["constant"] if c["constant"] is not None else c["order"]}
                         for c in PROVEN_CONSTANTS]).drop(columns=["order"])
