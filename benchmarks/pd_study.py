"""The Mélange figure on our cost model: $/hour of the optimal GPU mix vs the best single GPU type.

Mélange (arXiv 2404.14527, §6.2, Fig. 11-13) reports the cost saving of its ILP's GPU mix over the
cheapest single-GPU-type fleet, for short/long/mixed workloads, several request rates and TPOT SLOs
of 40 and 120 ms, on profiled capacities. Here the capacities come from the roofline cost model
(servopt.costmodel.capacities: M/D/1 prefill, Little's-law decode, colocated interference), the
workloads from public traces (instances/data/pd_workload_mixes.json: ShareGPT, arXiv summarisation,
80/20 mix), every catalog GPU is on offer at its catalog price with unlimited availability (Mélange's
setting), and three serving modes are compared: colocated (Mélange), disaggregated (DistServe /
Splitwise: every slice gets a prefill and a decode configuration, possibly of different types), and
hybrid (each slice chooses). Each cell is solved to proven optimality (rel_gap 0); the single-type
baseline is the same MILP restricted to one GPU type (TP options of that type included).

    python benchmarks/pd_study.py [--llms llama-3.1-8b,llama-2-70b] [--slices 8] [--quick]

Writes benchmarks/results/pd_study.md and .json.
"""
from __future__ import annotations

import argparse
import json
import time
from importlib import resources
from pathlib import Path

SLOS = {"tight": {"ttft_ms": 1000.0, "tpot_ms": 40.0}, "loose": {"ttft_ms": 4000.0, "tpot_ms": 120.0}}
RATES = {"llama-3.1-8b": (2.0, 8.0, 32.0), "llama-2-70b": (1.0, 4.0, 16.0)}
MODES = ("colocated", "disaggregated", "hybrid")


def mixes() -> dict:
    ref = resources.files("servopt.instances").joinpath("data", "pd_workload_mixes.json")
    return json.loads(ref.read_text(encoding="utf-8"))["mixes"]


def instance(llm: str, slo: dict, rate: float, mix: list[dict], mode: str, slices: int) -> dict:
    from servopt.instances.catalog import gpus

    return {
        "kind": "pd_placement", "mode": mode, "rate_rps": rate, "slices": slices, "llm": llm, "slo": dict(slo),
        "buckets": [{k: b[k] for k in ("id", "share", "prompt_tokens", "output_tokens")} for b in mix],
        "gpus": [{"type": g.name} for g in gpus()],
    }


def fleet(result: dict) -> str:
    parts = []
    for c in result.get("configs", []):
        role = {"colocated": "C", "prefill": "P", "decode": "D"}[c["role"]]
        tp = "" if c["tp"] == 1 else f"/tp{c['tp']}"
        parts.append(f"{c['count']}x{c['gpu']}{tp}:{role}")
    return " ".join(parts)


def run_cell(data: dict, time_limit_s: float) -> dict:
    from servopt.errors import ServoptError
    from servopt.kinds import pd_placement as pd

    t0 = time.perf_counter()
    try:
        inst = pd.load(data)
        result = pd.solve(inst, time_limit_s=time_limit_s, options={"rel_gap": 0.0})
    except ServoptError as exc:
        return {"status": "infeasible", "reason": str(exc), "seconds": round(time.perf_counter() - t0, 3)}
    violations = pd.check(inst, result)
    singles = pd.best_single_type(inst, time_limit_s=time_limit_s)
    feasible = {g: c for g, c in singles.items() if c is not None}
    best_type = min(feasible, key=feasible.get) if feasible else None
    best = feasible.get(best_type) if best_type else None
    return {
        "status": result["status"], "cost": result["objective"], "gap": result["gap"], "fleet": fleet(result),
        "best_single_type": best_type, "best_single_cost": best,
        "saving_pct": (100.0 * (best - result["objective"]) / best) if best else None,
        "solve_seconds": result["solve_seconds"], "seconds": round(time.perf_counter() - t0, 3),
        "checker": "ok" if not violations else f"{len(violations)} violations",
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llms", default="llama-3.1-8b,llama-2-70b")
    ap.add_argument("--slices", type=int, default=8)
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--quick", action="store_true", help="one rate, one SLO, mixed workload only")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "pd_study"))
    ap.add_argument("--plot-only", action="store_true", help="redraw OUT.png from OUT.json without solving")
    args = ap.parse_args(argv)
    if args.plot_only:
        plot(json.loads(Path(args.out).with_suffix(".json").read_text()), Path(args.out).with_suffix(".png"))
        return 0
    all_mixes = mixes()
    rows = []
    t_start = time.perf_counter()
    for llm in args.llms.split(","):
        rates = RATES.get(llm, (1.0, 4.0, 16.0))
        for slo_name, slo in SLOS.items():
            if args.quick and slo_name != "loose":
                continue
            for rate in (rates[1:2] if args.quick else rates):
                for mix_name, mix in all_mixes.items():
                    if args.quick and mix_name != "mixed":
                        continue
                    for mode in MODES:
                        cell = run_cell(instance(llm, slo, rate, mix, mode, args.slices), args.time_limit)
                        row = {"llm": llm, "slo": slo_name, "ttft_ms": slo["ttft_ms"], "tpot_ms": slo["tpot_ms"], "rate_rps": rate,
                               "workload": mix_name, "mode": mode, **cell}
                        rows.append(row)
                        print(_line(row), flush=True)
    total = time.perf_counter() - t_start
    md = _markdown(rows, argv, total)
    print()
    print(md)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(md + "\n")
    out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
    plot(rows, out.with_suffix(".png"))
    return 0


def plot(rows: list[dict], path: Path) -> None:
    """Mélange-style figure: saving of the optimal mix over the best single type, per cell and mode."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # plotting is optional (extra "plot")
        print("matplotlib not installed: no figure")
        return
    panels = sorted({(r["llm"], r["slo"]) for r in rows})
    fig, axes = plt.subplots(len(panels), 1, figsize=(12, 3.2 * len(panels)), squeeze=False)
    for ax, (llm, slo) in zip(axes[:, 0], panels):
        cells = sorted({(r["rate_rps"], r["workload"]) for r in rows if (r["llm"], r["slo"]) == (llm, slo)})
        width = 0.8 / len(MODES)
        for i, mode in enumerate(MODES):
            xs, ys = [], []
            for j, cell in enumerate(cells):
                r = next((r for r in rows if (r["llm"], r["slo"], r["rate_rps"], r["workload"], r["mode"]) == (llm, slo, *cell, mode)), None)
                if r is not None and r.get("saving_pct") is not None:
                    xs.append(j + (i - 1) * width)
                    ys.append(r["saving_pct"])
            ax.bar(xs, ys, width=width, label=mode)
        ax.set_xticks(range(len(cells)))
        ax.set_xticklabels([f"{rate:g} rps\n{wl}" for rate, wl in cells], fontsize=7)
        r0 = next(r for r in rows if (r["llm"], r["slo"]) == (llm, slo))
        ax.set_title(f"{llm}, mean TTFT <= {r0['ttft_ms']:g} ms, TPOT <= {r0['tpot_ms']:g} ms", fontsize=9)
        ax.set_ylabel("saving vs best\nsingle type (%)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def _fmt(x, nd=2):
    return "-" if x is None else (f"{x + 0.0:.{nd}f}" if isinstance(x, float) else str(x))


def _line(r: dict) -> str:
    if r["status"] == "infeasible":
        return f"{r['llm']} {r['slo']} {r['rate_rps']} {r['workload']} {r['mode']}: infeasible ({r['reason'][:90]})"
    return (f"{r['llm']} {r['slo']} {r['rate_rps']} {r['workload']} {r['mode']}: ${r['cost']:.2f}/h vs "
            f"{r['best_single_type']} ${_fmt(r['best_single_cost'])}/h, saving {_fmt(r['saving_pct'], 1)}% [{r['fleet']}] {r['seconds']}s")


def _markdown(rows: list[dict], argv, total_s: float) -> str:
    head = ["# pd_placement study: optimal GPU mix vs best single GPU type (Mélange's comparison, our cost model)", "",
            f"`python benchmarks/pd_study.py {' '.join(argv or [])}` — {len(rows)} cells, {total_s:.0f} s wall in all "
            "(shared 2-core machine). Costs in $/hour for the whole fleet, catalog prices, unlimited availability; "
            "every plan passed the independent checker unless the checker column says otherwise. "
            "SLOs are mean TTFT / mean TPOT bounds; saving = (best single type − optimal mix) / best single type.", ""]
    cols = ["llm", "SLO ttft/tpot ms", "rate rps", "workload", "mode", "mix $/h", "best single type", "single $/h", "saving %",
            "fleet (count x gpu[/tp]:role)", "status", "checker", "s"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        slo = f"{r['ttft_ms']:g}/{r['tpot_ms']:g}"
        if r["status"] == "infeasible":
            lines.append(f"| {r['llm']} | {slo} | {r['rate_rps']:g} | {r['workload']} | {r['mode']} | - | - | - | - | "
                         f"{r['reason'][:120]} | infeasible | - | {r['seconds']} |")
            continue
        lines.append(f"| {r['llm']} | {slo} | {r['rate_rps']:g} | {r['workload']} | {r['mode']} | {r['cost']:.2f} | "
                     f"{r['best_single_type'] or '-'} | {_fmt(r['best_single_cost'])} | {_fmt(r['saving_pct'], 1)} | {r['fleet']} | "
                     f"{r['status']} | {r['checker']} | {r['seconds']} |")
    # summary: savings by llm x slo x mode, and colocated vs disaggregated
    summary = ["", "## Summary", "", "| llm | SLO | mode | cells | mean saving % | max saving % | mean $/h |", "|---|---|---|---|---|---|---|"]
    keys = sorted({(r["llm"], r["slo"], r["mode"]) for r in rows}, key=lambda k: (k[0], k[1], MODES.index(k[2])))
    for llm, slo, mode in keys:
        cell = [r for r in rows if (r["llm"], r["slo"], r["mode"]) == (llm, slo, mode) and r["status"] != "infeasible"]
        sav = [r["saving_pct"] for r in cell if r["saving_pct"] is not None]
        summary.append(f"| {llm} | {slo} | {mode} | {len(cell)} | {_fmt(sum(sav) / len(sav) if sav else None, 1)} | "
                       f"{_fmt(max(sav) if sav else None, 1)} | {_fmt(sum(r['cost'] for r in cell) / len(cell) if cell else None)} |")
    summary += ["", "Disaggregated (and hybrid) vs colocated, same llm/SLO/rate/workload: cost ratio to colocated.", "",
                "| llm | SLO | rate | workload | colocated $/h | disaggregated $/h | hybrid $/h | disagg/coloc | hybrid/coloc |",
                "|---|---|---|---|---|---|---|---|---|"]
    groups = sorted({(r["llm"], r["slo"], r["rate_rps"], r["workload"]) for r in rows})
    for g in groups:
        by_mode = {r["mode"]: r for r in rows if (r["llm"], r["slo"], r["rate_rps"], r["workload"]) == g}
        c = {m: by_mode[m].get("cost") if m in by_mode else None for m in MODES}
        ratio = lambda m: (c[m] / c["colocated"]) if (c[m] and c["colocated"]) else None  # noqa: E731
        summary.append(f"| {g[0]} | {g[1]} | {g[2]:g} | {g[3]} | {_fmt(c['colocated'])} | {_fmt(c['disaggregated'])} | "
                       f"{_fmt(c['hybrid'])} | {_fmt(ratio('disaggregated'), 3)} | {_fmt(ratio('hybrid'), 3)} |")
    return "\n".join(head + lines + summary)


if __name__ == "__main__":
    raise SystemExit(main())
