"""Accuracy of the H100-calibrated cost model: error tables, ablations, reproducibility, Splitwise.

Run: ``python benchmarks/profile_accuracy.py`` (CPU only, ~10 s). Prints the tables and writes
``benchmarks/results/profile_accuracy.md`` and ``.json``. Data: the shipped
``costmodel/profiles/h100-sxm.json`` (servopt profile on one H100 SXM, see
costmodel/PROFILING_NOTES.md) and ``benchmarks/results/h100-rerun-llama-3.1-8b.json`` (the same
llama-3.1-8b grid timed again in a later device session, for run-to-run spread).

Sections:
1. Calibrated vs roofline-only error per measured run and regime (held-out = never fitted).
2. Ablations: without the per-layer overhead term; leave-one-model-out (fit on the other runs, test on
   the model left out); fitted on the two GQA 7-8B models only and tested on everything else, the
   80-layer Llama-2-70B shards included (the extrapolation the 70B layer timings are for).
3. Run-to-run spread: the same 107 llama-3.1-8b shapes timed in two device sessions.
4. Splitwise's measured Llama-2-70B H100 table (TP 2/4/8): the shipped H100 profile; the public
   fit of the cost-model module (public-h100-sxm); our measured shard times plus the all-reduce
   term (no cost model for the GPU work); and the H100 profile with only the engine-side terms
   (per-iteration and per-sequence overheads, all-reduce) refitted to Splitwise.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from servopt.costmodel import calibration as C
from servopt.costmodel.fit import error_summary, prediction_errors, splitwise_points
from servopt.costmodel.profile import default_profile, shipped_profile
from servopt.costmodel.roofline import make_cost_model

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
RERUN = RESULTS / "h100-rerun-llama-3.1-8b.json"


def _pct(x) -> str:
    return "-" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{100 * x:.1f}%"


def _table(title: str, header: list[str], rows: list[list]) -> list[str]:
    out = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out + [""]


def shipped_measurements() -> dict:
    from importlib import resources

    data = json.loads(resources.files("servopt.costmodel").joinpath("profiles", "h100-sxm.json").read_text())
    return data


def section_errors(data: dict, cal: C.Calibration) -> tuple[list[str], dict]:
    rows = [[r.group.replace("h100-sxm ", ""), r.regime, r.n, r.n_held_out, _pct(r.roofline_mape), _pct(r.calibrated_mape),
             _pct(r.held_out_mape), _pct(r.held_out_max_abs_error), _pct(r.median_mfu), _pct(r.median_bw_util)]
            for r in cal.rows]
    lines = _table("1. Calibrated vs roofline-only (MAPE = mean |predicted/measured - 1|; MFU and BW util vs datasheet 989.4 TFLOP/s, 3.35 TB/s)",
                   ["run", "regime", "n", "held out", "roofline-only", "calibrated (all)", "held-out MAPE", "held-out max",
                    "median MFU", "median BW util"], rows)
    fr = C.ceiling_fractions(data, C.measured_points(data))
    lines += _table("Fractions of the measured ceilings (bf16 matmul %.0f TFLOP/s, copy %.0f GB/s read+write)" % (
        data["ceilings"]["matmul_tflops"], data["ceilings"]["copy_gb_per_s"]),
        ["regime", "median of matmul", "max of matmul", "median of copy", "max of copy"],
        [[f["regime"], _pct(f["median_of_measured_matmul"]), _pct(f["max_of_measured_matmul"]),
          _pct(f["median_of_measured_copy"]), _pct(f["max_of_measured_copy"])] for f in fr])
    params = cal.profile.parameters()
    lines += ["Fitted parameters: " + ", ".join(f"{k} = {v:g}" for k, v in params.items()), ""]
    return lines, {"rows": [r.to_dict() for r in cal.rows], "ceiling_fractions": fr, "parameters": params}


def _subset(data: dict, keep) -> dict:
    out = {k: v for k, v in data.items() if k != "runs"}
    out["runs"] = [r for r in data["runs"] if keep(r)]
    return out


def section_ablations(data: dict) -> tuple[list[str], dict]:
    """Fits on part of the runs, errors (all points) on the rest; and the fit without the per-layer term."""
    no_layer = tuple(f for f in C.FREE if f != "per_layer_overhead_ms")
    all_pts = C.measured_points(data)
    llms = sorted({p.llm for p in all_pts})
    variants = [("no per-layer term, fitted on all runs", data, no_layer, lambda p: True)]
    for llm in llms:
        variants.append((f"leave {llm} out, tested on it", _subset(data, lambda r, m=llm: r["llm"] != m), C.FREE,
                         lambda p, m=llm: p.llm == m))
    first = lambda r: r["llm"] in ("llama-3.1-8b", "qwen2.5-7b")  # noqa: E731
    variants.append(("fitted on llama-3.1-8b + qwen2.5-7b only, tested on the rest", _subset(data, first), C.FREE,
                     lambda p: p.llm not in ("llama-3.1-8b", "qwen2.5-7b")))
    variants.append(("same, without the per-layer term", _subset(data, first), no_layer,
                     lambda p: p.llm not in ("llama-3.1-8b", "qwen2.5-7b")))
    rows, out = [], {}
    for label, train_data, free, test in variants:
        prof = C.calibrate(train_data, free=free).profile
        summ = error_summary(prof, [p for p in all_pts if test(p)], by=("table", "regime"))
        out[label] = summ
        for s in summ:
            rows.append([label, s["table"].replace("h100-sxm ", ""), s["regime"], s["n"], _pct(s["mape"]),
                         _pct(s["max_abs_error"]), _pct(s["mean_signed_error"])])
    return _table("2. Ablations and out-of-sample models (errors on all points of the tested runs)",
                  ["variant", "run", "regime", "n", "MAPE", "max", "mean signed"], rows), out


def section_rerun(data: dict) -> tuple[list[str], dict]:
    if not RERUN.exists():
        return ["(no rerun file)", ""], {}
    rerun = json.loads(RERUN.read_text())
    first = next(r for r in data["runs"] if r["llm"] == "llama-3.1-8b")
    key = lambda p: json.dumps([p["prefill"], p["decode_batch"], p["decode_ctx_tokens"]])  # noqa: E731
    a = {key(p): p["time_ms"] for p in first["points"]}
    diffs: dict[str, list[float]] = {}
    for p in rerun["runs"][0]["points"]:
        if key(p) in a:
            diffs.setdefault(p["regime"], []).append(p["time_ms"] / a[key(p)] - 1)
    rows, out = [], {}
    for regime, d in diffs.items():
        x = np.array(d)
        out[regime] = {"n": int(x.size), "mean_abs": float(np.mean(np.abs(x))), "max_abs": float(np.max(np.abs(x))),
                       "mean_signed": float(np.mean(x))}
        rows.append([regime, x.size, _pct(out[regime]["mean_abs"]), _pct(out[regime]["max_abs"]), _pct(out[regime]["mean_signed"])])
    cyc = [abs(c["rel_err"]) for c in rerun["runs"][0]["scaling_check"]]
    lines = _table("3. Run-to-run: llama-3.1-8b timed again in a later device session (second / first - 1)",
                   ["regime", "n", "mean |diff|", "max |diff|", "mean signed"], rows)
    lines += [f"Layer cycling (4 built layers run to depth 32 vs 32 distinct layers) in the second session: "
              f"{len(cyc)} shapes, median |error| {_pct(float(np.median(cyc)))}, max {_pct(max(cyc))}.", ""]
    out["cycling"] = {"n": len(cyc), "median_abs": float(np.median(cyc)), "max_abs": max(cyc)}
    return lines, out


def _shard_table(data: dict):
    """Measured shard times of llama-2-70b by TP: prefill by shape key, decode by (batch, ctx)."""
    out = {}
    for r in data["runs"]:
        if r["llm"] != "llama-2-70b":
            continue
        pre, dec = {}, {}
        for p in r["points"]:
            if p["regime"] == "prefill":
                pre[tuple(map(tuple, p["prefill"]))] = p["time_ms"]
            elif p["regime"] == "decode":
                dec.setdefault(p["decode_batch"], []).append((p["decode_ctx_tokens"], p["time_ms"]))
        out[r["tp"]] = (pre, {b: sorted(v) for b, v in dec.items()})
    return out


def _interp(pairs, x):
    xs, ys = np.array([p[0] for p in pairs], float), np.array([p[1] for p in pairs], float)
    if x > xs[-1]:  # linear extrapolation from the last two contexts
        return ys[-1] + (ys[-1] - ys[-2]) / (xs[-1] - xs[-2]) * (x - xs[-1])
    return float(np.interp(x, xs, ys))


def section_splitwise(data: dict, prof) -> tuple[list[str], dict]:
    pts = [p for p in splitwise_points(["h100-sxm"]) if p.llm == "llama-2-70b"]
    results = {}
    variants = [("shipped h100-sxm-measured", prof), ("public-h100-sxm (Splitwise fit)", shipped_profile("public-h100-sxm"))]
    transfer = C.engine_transfer(prof)
    eng = prof.with_parameters(**transfer["parameters"])
    variants.append(("h100-sxm-measured + engine terms refitted on Splitwise", eng))
    rows = []
    for label, p in variants:
        summ = error_summary(p, pts, by=("tp", "regime")) + [dict(s, tp="all", regime="all") for s in error_summary(p, pts, by=("gpu",))]
        results[label] = summ
        for s in summ:
            rows.append([label, s["tp"], s["regime"], s["n"], _pct(s["mape"]), _pct(s["max_abs_error"]), _pct(s["mean_signed_error"])])
    # measured shard + modelled all-reduce, no cost model for the GPU work
    shards = _shard_table(data)
    direct: dict[tuple, list[float]] = {}
    for pt in pts:
        pre, dec = shards[pt.tp]
        if pt.regime == "prefill":
            gpu_ms = pre.get(tuple(pt.prefill))
            if gpu_ms is None:
                continue
        else:
            (b, ctx), = pt.decode
            if b not in dec:
                continue
            gpu_ms = _interp(dec[b], ctx)
        cm = make_cost_model("llama-2-70b", "h100-sxm", pt.tp, prof)
        c = cm.iteration_from_totals(pt.totals())
        comm = sum(o["time_ms"] for o in c.operators if o["name"] == "allreduce")
        for key in ((pt.tp, pt.regime), ("all", "all")):
            direct.setdefault(key, []).append((gpu_ms + comm) / pt.measured_ms - 1)
    results["measured shard + all-reduce term"] = []
    for (tp, regime), e in sorted(direct.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
        x = np.array(e)
        row = {"tp": tp, "regime": regime, "n": int(x.size), "mape": float(np.mean(np.abs(x))),
               "max_abs_error": float(np.max(np.abs(x))), "mean_signed_error": float(np.mean(x))}
        results["measured shard + all-reduce term"].append(row)
        rows.append(["measured shard + all-reduce term (no engine overhead)", tp, regime, row["n"], _pct(row["mape"]),
                     _pct(row["max_abs_error"]), _pct(row["mean_signed_error"])])
    lines = _table("4. Splitwise's measured Llama-2-70B table on H100 (Patel et al. ISCA'24; all 94 points)",
                   ["variant", "tp", "regime", "n", "MAPE", "max", "mean signed"], rows)
    lines += ["Engine terms refitted on Splitwise (25 % held out, seed 0): " +
              ", ".join(f"{k} = {v:g}" for k, v in transfer["parameters"].items()) + "; held-out MAPE per TP/regime: " +
              ", ".join(f"TP{h['tp']} {h['regime']} {_pct(h['mape'])} (n={h['n']})" for h in transfer["held_out"]), ""]
    results["engine_transfer"] = transfer
    return lines, results


def section_form(measurements: dict, prof) -> tuple[list[str], dict]:
    """Form ablation (hard max vs smooth roofline on the H100 measurements) and leave-one-TP-out on
    Splitwise's Llama-2-70B table (a TP degree's points never seen by the fit that predicts them)."""
    rows, results = [], {"form": {}, "leave_one_tp_out": []}
    for label, free in (("hard max (format 1)", tuple(f for f in C.FREE if f != "roofline_smoothness")),
                        ("smooth roofline (shipped)", C.FREE)):
        cal = C.calibrate(measurements, name="form", free=free)
        held = {r.regime: r.held_out_mape for r in cal.rows if r.group == "all"}
        worst = {r.regime: r.held_out_max_abs_error for r in cal.rows if r.group == "all"}
        results["form"][label] = {"held_out_mape": held, "held_out_max": worst,
                                  "roofline_smoothness": cal.profile.roofline_smoothness}
        rows.append([label, f"{cal.profile.roofline_smoothness:.3f}",
                     *[f"{_pct(held[r])} (max {_pct(worst[r])})" for r in C.REGIMES]])
    lines = _table("5. Roofline form on the H100 measurements (held-out MAPE, 25 % held out, seed 0)",
                   ["form", "s", "prefill", "decode", "mixed"], rows)
    rows = []
    vidur = shipped_profile(C.VIDUR_A100_PROFILE)
    no_host = tuple(f for f in C.ENGINE_FREE if f != "host_ms_per_layer")
    for label, gpu, base, free in (
            ("H100: measured GPU terms, engine terms (with host) fitted on the other TPs", "h100-sxm", prof, None),
            ("H100: same, no host term", "h100-sxm", prof, no_host),
            ("H100: every term fitted on the other TPs (roofline start)", "h100-sxm", None, None),
            ("A100: Vidur GPU terms, engine terms (with host) fitted on the other TPs", "a100-80g", vidur, None),
            ("A100: same, no host term", "a100-80g", vidur, no_host),
            ("A100: every term fitted on the other TPs (roofline start)", "a100-80g", None, None)):
        res = C.splitwise_leave_one_tp_out(gpu, base=base, free=free)
        results["leave_one_tp_out"].append(dict(res, variant=label))
        for c in res["cells"]:
            rows.append([label, c["tp"], c["regime"], c["n"], _pct(c["mape"]), _pct(c["max_abs_error"]),
                         _pct(c["mean_signed_error"])])
        rows.append([label, "all", "all", res["n"], _pct(res["mape"]), "", ""])
    lines += _table("6. Splitwise Llama-2-70B, leave one TP degree out (fit on the other TPs and BLOOM-176B, "
                    "predict the TP left out)", ["variant", "tp", "regime", "n", "MAPE", "max", "mean signed"], rows)
    return lines, results


def main() -> int:
    data = shipped_measurements()
    measurements = {k: v for k, v in data.items() if k != "fit"}
    meta = data["fit"]["metadata"]["fit"]
    cal = C.calibrate(measurements, name=data["fit"]["name"], seed=meta["seed"], holdout_fraction=meta["holdout_fraction"])
    prof = default_profile("h100-sxm")
    lines = ["# H100 cost-model calibration accuracy", "",
             f"Profile {prof.name}: measured on {data['device']['name']} (torch {data['device']['torch']}), "
             f"{meta['n_points']} points ({meta['n_train']} fitted, {meta['n_held_out']} held out).", ""]
    report = {}
    for name, fn in (("errors", lambda: section_errors(data, cal)), ("ablations", lambda: section_ablations(measurements)),
                     ("rerun", lambda: section_rerun(data)), ("splitwise", lambda: section_splitwise(data, prof)),
                     ("form", lambda: section_form(measurements, prof))):
        part, obj = fn()
        lines += part
        report[name] = obj
    text = "\n".join(lines)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "profile_accuracy.md").write_text(text + "\n")
    (RESULTS / "profile_accuracy.json").write_text(json.dumps(report, indent=1, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
