"""Figures (matplotlib) for servopt results: every function returns a ``matplotlib.figure.Figure``.

* ``kv_gantt``: a ``kv_schedule`` schedule as a Gantt chart (one bar per request over the rounds in
  which it holds KV memory; preempted attempts hatched), with the memory curve under ``M`` below it,
  recomputed by the independent checker's arithmetic (analysis/kv_check.memory_profile);
* ``ratio_histograms``: per policy, the distribution of ``ALG/OPT`` over the proven instances of a
  sweep, and the upper ends ``ALG/bound`` of the unproven ones (analysis/sweep.py);
* ``comparison_bars``: the interval ``[ALG/incumbent, ALG/bound]`` of each policy on one instance;
* ``pd_fleet``: a ``pd_placement`` plan: GPUs per type and role, and each bucket's rate per GPU type;
* ``layer_placement``: a ``layer_placement`` layout: the layer range each node holds;
* ``search_history``: an adversarial search's best proven ratio against evaluations;
* ``generic``: any other result JSON (objective against bound, and per-row costs where it has rows).

``plot_result(result, instance=None)`` picks one by the result's ``kind``. pyplot makes the figures,
so notebooks show them inline; a caller that only saves them closes them (``plt.close(fig)``).
"""
from __future__ import annotations

import math

GANTT_MAX_REQUESTS = 80  # beyond this a Gantt chart is unreadable: the first ones by start are drawn


def _plt():
    import matplotlib.pyplot as plt

    return plt


def _colors(n: int):
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


# ---- kv_schedule ---------------------------------------------------------------------------------------

def kv_gantt(result, instance=None, *, title: str | None = None):
    """Gantt chart + memory curve of a kv_schedule result (dict or KVSchedule); ``instance`` adds the curve."""
    plt = _plt()
    rows = result["requests"] if isinstance(result, dict) else result.to_dict()["requests"]
    rows = sorted(rows, key=lambda r: (r["start"], r["finish"], str(r["id"])))
    shown = rows[:GANTT_MAX_REQUESTS]
    if instance is not None:
        fig, (ax, mem) = plt.subplots(2, 1, figsize=(9, 6), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    else:
        fig, ax = plt.subplots(figsize=(9, 4))
        mem = None
    arrivals = {r.id: int(r.arrival) for r in instance.requests} if instance is not None else {}
    for y, r in enumerate(shown):
        arrival = r.get("arrival", arrivals.get(r["id"]))
        for a in r.get("attempts", []) or []:
            ax.broken_barh([(a["start"], a["preempted_at"] - a["start"])], (y - 0.4, 0.8), facecolors="none",
                           edgecolors="tab:red", hatch="///", label="preempted attempt")
        ax.broken_barh([(r["start"], r["finish"] - r["start"])], (y - 0.4, 0.8), facecolors="tab:blue",
                       edgecolors="white", label="run (holds KV memory)")
        if arrival is not None:
            ax.plot([arrival], [y], marker="|", color="black", markersize=10, linestyle="none", label="arrival")
    ax.set_yticks(range(len(shown)))
    ax.set_yticklabels([str(r["id"]) for r in shown], fontsize=7 if len(shown) > 20 else 9)
    ax.invert_yaxis()
    ax.set_ylabel("request")
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax.legend(unique.values(), unique.keys(), loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    objective = result.get("objective") if isinstance(result, dict) else None
    head = title or f"kv_schedule: {result.get('method', 'schedule') if isinstance(result, dict) else 'schedule'}"
    if objective is not None:
        head += f" ({result.get('objective_name', 'objective')} = {objective:g})"
    if len(rows) > len(shown):
        head += f"; first {len(shown)} of {len(rows)} requests"
    ax.set_title(head)
    if mem is not None:
        from servopt.analysis.kv_check import memory_profile

        load = memory_profile(instance, rows)
        rounds = list(range(0, max(load) + 2)) if load else [0, 1]
        values = [load.get(t, 0) for t in rounds]
        mem.step(rounds, values, where="pre", color="tab:blue", label="KV memory in use (round t drawn over [t-1, t])")
        mem.axhline(instance.memory_tokens, color="tab:red", linestyle="--", label=f"M = {instance.memory_tokens} tokens")
        mem.set_ylim(0, instance.memory_tokens * 1.15)
        mem.set_ylabel("tokens")
        mem.set_xlabel("round")
        mem.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    else:
        ax.set_xlabel("round")
    fig.tight_layout()
    return fig


def ratio_histograms(frame, *, policies=None, bins: int = 20, title: str | None = None):
    """Per policy: ALG/OPT over proven instances (filled) and ALG/bound over unproven ones (outline)."""
    plt = _plt()
    frame = frame[frame["cost"].notna()] if "cost" in frame.columns else frame
    policies = list(policies or sorted(frame["policy"].dropna().unique()))
    cols = min(3, max(1, len(policies)))
    rows = math.ceil(len(policies) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    colors = _colors(len(policies))
    for k, policy in enumerate(policies):
        ax = axes[k // cols][k % cols]
        sub = frame[frame["policy"] == policy]
        proven = sub[sub["proven"].astype(bool)]["ratio_lo"].astype(float)
        open_hi = sub[~sub["proven"].astype(bool)]["ratio_hi"].astype(float)
        hi = max([1.001] + list(proven) + list(open_hi[open_hi.notna() & (open_hi < 1e6)]))
        edges = [1.0 + (hi - 1.0) * i / bins for i in range(bins + 1)]
        if len(proven):
            ax.hist(proven, bins=edges, color=colors[k], alpha=0.85, label=f"proven ({len(proven)})")
        if len(open_hi):
            ax.hist(open_hi, bins=edges, histtype="step", color="black", linewidth=1.5,
                    label=f"unproven: ALG/bound ({len(open_hi)})")
        ax.axvline(1.0, color="grey", linewidth=0.8)
        worst = proven.max() if len(proven) else float("nan")
        ax.set_title(f"{policy}: mean {proven.mean():.3f}, worst {worst:.3f}" if len(proven) else policy, fontsize=10)
        ax.set_xlabel("ALG / OPT")
        ax.set_ylabel("instances")
        ax.legend(fontsize=8)
    for k in range(len(policies), rows * cols):
        axes[k // cols][k % cols].set_visible(False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def comparison_bars(result: dict):
    """A kv_schedule_comparison: each policy's interval [ALG/incumbent, ALG/bound] as a bar and whisker."""
    plt = _plt()
    rows = [r for r in result["rows"] if r.get("ratio_to_incumbent") is not None]
    fig, ax = plt.subplots(figsize=(max(5, 1.1 * len(rows) + 2), 3.6))
    colors = _colors(len(rows))
    for k, r in enumerate(rows):
        lo, hi = r["ratio_to_incumbent"], r["ratio_to_bound"] or r["ratio_to_incumbent"]
        ax.bar(k, lo, color=colors[k])
        ax.errorbar([k], [lo], yerr=[[0], [hi - lo]], color="black", capsize=4)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([r["policy"] for r in rows])
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_ylim(min(0.95, *[r["ratio_to_incumbent"] for r in rows]) if rows else 0.95, None)
    ax.set_ylabel("ALG / OPT  (bar: / incumbent; whisker: / bound)")
    ax.set_title(f"{result.get('instance_name') or 'instance'}: optimum {result.get('optimum_status')}, "
                 f"incumbent {result.get('incumbent')}, bound {result.get('bound')}")
    fig.tight_layout()
    return fig


def search_history(result: dict):
    """An adversarial search (analysis/adversarial.py): best proven ratio found against evaluations."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.4))
    hist = result.get("history") or []
    if hist:
        xs = [h[0] for h in hist] + [result.get("evaluations", hist[-1][0])]
        ys = [h[1] for h in hist] + [hist[-1][1]]
        ax.step(xs, ys, where="post", color="tab:red", label=f"search ({result.get('space')} space)")
    baseline = result.get("random_worst")
    if baseline is not None:
        ax.axhline(baseline, color="tab:blue", linestyle="--",
                   label=f"worst of {result.get('random_count', '?')} random instances")
    ax.set_xlabel("instances evaluated")
    ax.set_ylabel(f"{result.get('policy', 'policy')} / OPT (proven)")
    ax.set_title(f"adversarial search, n = {result.get('n')}: worst ratio {result.get('worst_ratio') or float('nan'):.4f}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# ---- pd_placement and layer_placement ---------------------------------------------------------------------

def pd_fleet(result: dict):
    """A pd_placement plan: GPUs per type and role (left), each bucket's rate per GPU type and role (right)."""
    plt = _plt()
    counts = result.get("counts") or {}
    roles = sorted({role for per in counts.values() for role in per})
    gpus = sorted(counts)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [1, 1.6]})
    role_colors = dict(zip(roles, _colors(len(roles))))
    bottom = [0] * len(gpus)
    for role in roles:
        values = [counts[g].get(role, 0) for g in gpus]
        left.bar(gpus, values, bottom=bottom, color=role_colors[role], label=role)
        bottom = [b + v for b, v in zip(bottom, values)]
    from matplotlib.ticker import MaxNLocator

    left.yaxis.set_major_locator(MaxNLocator(integer=True))
    left.set_ylabel("GPUs")
    unit = {"cost_usd_per_hour": "$ / hour"}.get(result.get("objective_name"), result.get("objective_name", ""))
    left.set_title(f"fleet: {result.get('objective', float('nan')):g} {unit}".strip())
    left.legend(fontsize=8)
    assignment = result.get("assignment") or []
    buckets = list(dict.fromkeys(a["bucket"] for a in assignment))
    series = list(dict.fromkeys((a["gpu"], a["role"]) for a in assignment))
    series_colors = dict(zip(series, _colors(len(series))))
    width = 0.8 / max(1, len(series))
    for j, key in enumerate(series):
        values = [sum(a["rate_rps"] for a in assignment if a["bucket"] == b and (a["gpu"], a["role"]) == key)
                  for b in buckets]
        right.bar([i + (j - (len(series) - 1) / 2) * width for i in range(len(buckets))], values, width,
                  color=series_colors[key], label=f"{key[0]} ({key[1]})")
    right.set_xticks(range(len(buckets)))
    right.set_xticklabels(buckets, rotation=30 if len(buckets) > 4 else 0, ha="right" if len(buckets) > 4 else "center")
    right.set_ylabel("requests / s")
    right.set_title("per-bucket assignment")
    right.legend(fontsize=8)
    fig.tight_layout()
    return fig


def layer_placement(result: dict):
    """A layer_placement layout: each node's contiguous layer range, and the throughput it reaches."""
    plt = _plt()
    layers = result.get("layers") or {}
    nodes = list(layers)
    fig, ax = plt.subplots(figsize=(9, max(2.5, 0.35 * len(nodes) + 1.2)))
    colors = _colors(len(nodes))
    for y, node in enumerate(nodes):
        lo, hi = layers[node]
        ax.broken_barh([(lo, hi - lo)], (y - 0.4, 0.8), facecolors=colors[y])
        ax.text((lo + hi) / 2, y, f"{lo}-{hi - 1}", ha="center", va="center", fontsize=7, color="white")
    ax.set_yticks(range(len(nodes)))
    ax.set_yticklabels(nodes, fontsize=8)
    ax.invert_yaxis()
    total = result.get("num_layers") or (max(hi for _, hi in layers.values()) if layers else 0)
    ax.set_xlim(0, total)
    ax.set_xlabel("model layer")
    ax.set_title(f"layer placement ({result.get('method', '')}): {result.get('objective', float('nan')):.1f} tokens/s, "
                 f"status {result.get('status')}")
    fig.tight_layout()
    return fig


# ---- anything else ------------------------------------------------------------------------------------------

def generic(result: dict):
    """Fallback for any result kind: the objective against its bound, and per-row costs where there are rows."""
    plt = _plt()
    rows = [r for r in (result.get("rows") or []) if isinstance(r, dict)]
    named = [(str(r.get("policy") or r.get("name") or r.get("id") or i), r.get("cost", r.get("objective")))
             for i, r in enumerate(rows)]
    named = [(k, v) for k, v in named if isinstance(v, (int, float))]
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * (len(named) + 2) + 2), 3.6))
    labels, values = [], []
    for key in ("objective", "bound", "incumbent"):
        v = result.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            labels.append(key)
            values.append(v)
    labels += [k for k, _ in named]
    values += [v for _, v in named]
    ax.bar(range(len(values)), values, color=_colors(max(1, len(values)))[: len(values)])
    ax.set_xticks(range(len(values)))
    ax.set_xticklabels(labels, rotation=30 if len(labels) > 5 else 0)
    ax.set_ylabel(str(result.get("objective_name", "value")))
    ax.set_title(f"{result.get('kind', 'result')}: status {result.get('status', result.get('optimum_status', '-'))}")
    fig.tight_layout()
    return fig


def sweep_summary(summary: dict):
    """A sweep's summary.json: per (family, n, policy) group, the mean and worst of the ratio interval."""
    plt = _plt()
    rows = summary.get("ratios") or []
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(rows) + 2), 3.8))
    labels = [f"{r.get('policy')}\n{r.get('arrival_model') or r.get('family')} n={r.get('n')}" for r in rows]
    xs = range(len(rows))
    ax.bar(xs, [r["mean_lo"] for r in rows], color="tab:blue", label="mean ALG/incumbent")
    ax.scatter(xs, [r["worst_lo"] for r in rows], color="tab:red", marker="v", zorder=3, label="worst ALG/incumbent")
    ax.scatter(xs, [r["worst_hi"] for r in rows], color="black", marker="_", s=200, zorder=3, label="worst ALG/bound")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(labels, fontsize=7)
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_ylabel("ALG / OPT")
    ax.set_title(f"sweep {summary.get('name')}: {summary.get('instances_proven')} of {summary.get('instances')} optima proven")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_result(result, instance=None):
    """The figure for any result: by ``kind`` (a sweep's results DataFrame gives ratio histograms)."""
    if hasattr(result, "columns"):
        return ratio_histograms(result)
    kind = result.get("kind") if isinstance(result, dict) else None
    if kind == "kv_schedule" and isinstance(result.get("requests"), list) and result["requests"]:
        return kv_gantt(result, instance)
    if kind == "kv_schedule_comparison":
        return comparison_bars(result)
    if kind == "kv_schedule_adversarial":
        return search_history(result)
    if kind == "pd_placement" and result.get("counts") is not None:
        return pd_fleet(result)
    if kind == "layer_placement" and result.get("layers"):
        return layer_placement(result)
    if kind == "sweep":
        return sweep_summary(result)
    return generic(result if isinstance(result, dict) else {"kind": "unknown"})
