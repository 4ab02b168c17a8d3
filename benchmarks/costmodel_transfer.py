"""Profile transfer between GPUs: which profile each GPU gets, and leave-one-GPU-out validation.

A GPU without its own measured profile borrows the efficiencies (fractions of the datasheet peaks)
and the fixed overheads of the nearest measured GPU of its architecture (costmodel/transfer.py).
This benchmark measures how well efficiencies carry across GPUs wherever two GPUs have measurements
of one engine, and the errors before and after the transfer rule on the two reference points that
exist for the H200.

Sections:
  1. the profile each catalog GPU gets, and whose measurements its overheads come from;
  2. reference points, llama-3.1-8b decode of 512 sequences x 512 tokens of context, measured by the
     project on an H100 (26.9 ms) and an H200 (23.9 ms) with another harness than the shipped H100
     profile's: before (H100: the previous fit with a free per-sequence term; H200: public-h100-sxm,
     Splitwise's overheads), with the decode KV read as servopt profile's kernel reads it, and after
     (the shipped defaults: KV read at the weight-streaming rate, calibration.DECODE_KV_DEFAULT);
  3. the H100 measured grid (642 iterations): held-out MAPE of the three fits, overall and for the
     two GQA 7-8B models;
  4. leave-one-GPU-out on Splitwise's table (one engine, A100-80GB and H100): every parameter fitted on
     one GPU's rows, lent to the other GPU's datasheet peaks, tested on its rows -- across
     architectures (Ampere <-> Hopper), a harder transfer than the rule allows; next to the
     GPU's own fit (held out);
  5. GPU terms from the other GPU, engine terms (overheads, all-reduce) fitted on 75 % of the target's
     table and tested on the rest: A100 Splitwise with the H100's measured GPU terms vs Vidur's A100
     GPU terms; H100 Splitwise with Vidur's A100 GPU terms vs the H100's measured ones; the H100
     measured grid with Vidur's A100 GPU terms (per-iteration, per-layer, per-sequence overheads refitted).

    python benchmarks/costmodel_transfer.py

CPU only, a few seconds. Writes benchmarks/results/costmodel_transfer.md and .json.
"""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np

from servopt.costmodel import calibration as C
from servopt.costmodel.fit import DEFAULT_FREE, MeasuredPoint, fit_profile, predict_ms, splitwise_points
from servopt.costmodel.profile import default_profile, shipped_profile
from servopt.costmodel.transfer import catalog_choices, transfer_profile

RESULTS = Path(__file__).resolve().parent / "results"
# Reference measurements (ms) of one iteration, quoted by the project with its H200 report; another
# harness than the shipped H100 profile's (see docs/cost_model.md, "Transfer between GPUs").
REFERENCE = [("h100-sxm", "llama-3.1-8b", (512, 512), 26.9), ("h200", "llama-3.1-8b", (512, 512), 23.9)]


def _mape(profile, points) -> float:
    y = np.array([p.measured_ms for p in points])
    return float(np.mean(np.abs(predict_ms(profile, points) / y - 1)))


def h100_measurements() -> dict:
    data = json.loads(resources.files("servopt.costmodel").joinpath("profiles", "h100-sxm.json").read_text())
    return {k: v for k, v in data.items() if k != "fit"}


def previous_h100_fit(measurements: dict):
    """The H100 fit as shipped before: per_sequence_ms free, decode's KV read at the profiled kernel's
    rate (same data, split and seed)."""
    return C.calibrate(measurements, name="h100-sxm-measured (before)", free=C.FREE + ("per_sequence_ms",),
                       decode_kv="measured")


def as_measured_h100_fit(measurements: dict):
    """No per-sequence term, decode's KV read at the profiled kernel's rate (decode_kv="measured")."""
    return C.calibrate(measurements, name="h100-sxm-measured (KV read as profiled)", decode_kv="measured")


def section_choices() -> list[dict]:
    return [{k: v for k, v in c.to_dict().items() if k != "parameters"} for c in catalog_choices()]


def section_reference(before_h100, middle_h100) -> list[dict]:
    rows = []
    for gpu, llm, (b, ctx), ms in REFERENCE:
        pt = [MeasuredPoint(llm, gpu, 1, ms, decode=((b, ctx),))]
        before = before_h100.profile if gpu == "h100-sxm" else shipped_profile("public-h100-sxm")
        middle = (middle_h100.profile if gpu == "h100-sxm"
                  else transfer_profile(middle_h100.profile, "h100-sxm", gpu))
        after = default_profile(gpu)
        pb, pm, pa = (float(predict_ms(p, pt)[0]) for p in (before, middle, after))
        rows.append({"gpu": gpu, "llm": llm, "shape": f"decode {b} x {ctx}", "measured_ms": ms,
                     "before_profile": before.name, "before_ms": pb, "before_error": pb / ms - 1,
                     "kv_as_profiled_ms": pm, "kv_as_profiled_error": pm / ms - 1,
                     "after_profile": after.name, "after_ms": pa, "after_error": pa / ms - 1})
    return rows


def section_h100_grid(fits: dict) -> list[dict]:
    rows = []
    for label, cal in fits.items():
        for regime in C.REGIMES:
            r = cal.row("all", regime)
            rows.append({"fit": label, "regime": regime, "n": r.n, "n_held_out": r.n_held_out,
                         "held_out_mape": r.held_out_mape, "held_out_max_error": r.held_out_max_abs_error,
                         "mean_signed_error": r.mean_signed_error})
        for model in ("llama-3.1-8b", "qwen2.5-7b"):
            for regime in C.REGIMES:
                r = cal.row(f"h100-sxm {model} tp1", regime)
                rows.append({"fit": label, "regime": f"{model} {regime}", "n": r.n, "n_held_out": r.n_held_out,
                             "held_out_mape": r.held_out_mape, "held_out_max_error": r.held_out_max_abs_error,
                             "mean_signed_error": r.mean_signed_error})
    return rows


def section_splitwise_logo() -> list[dict]:
    """Fit on one GPU's Splitwise rows, lend to the other, test there; the other's own fit held out."""
    free = DEFAULT_FREE + ("roofline_smoothness",)
    pts = {g: splitwise_points([g]) for g in ("a100-80g", "h100-sxm")}
    rows = []
    for src, dst in (("a100-80g", "h100-sxm"), ("h100-sxm", "a100-80g")):
        fitted = fit_profile(pts[src], name=f"splitwise-{src}", gpus=(src,), holdout_fraction=0.0, free=free)
        lent = transfer_profile(fitted, src, dst, across_architectures=True)
        train, test = C.split_points(pts[dst])
        own = fit_profile([pts[dst][i] for i in train], name=f"splitwise-{dst}", gpus=(dst,), holdout_fraction=0.0,
                          free=free)
        held = [pts[dst][i] for i in test]
        for regime in ("prefill", "decode", "all"):
            sel = [p for p in pts[dst] if regime == "all" or p.regime == regime]
            sel_held = [p for p in held if regime == "all" or p.regime == regime]
            rows.append({"fitted_on": src, "tested_on": dst, "regime": regime, "n": len(sel),
                         "lent_mape": _mape(lent, sel), "own_fit_held_out_mape": _mape(own, sel_held),
                         "n_held_out": len(sel_held)})
    return rows


def section_gpu_terms() -> list[dict]:
    """GPU terms lent from the other GPU, engine terms fitted on 75 % of the target's points."""
    vidur = shipped_profile(C.VIDUR_A100_PROFILE)
    h100 = default_profile("h100-sxm")
    rows = []
    a100_pts = splitwise_points(["a100-80g"])
    h100_pts = splitwise_points(["h100-sxm"])
    cases = [
        ("Splitwise A100", a100_pts, "H100 measured GPU terms (lent)", transfer_profile(h100, "h100-sxm", "a100-80g",
                                                                                         across_architectures=True)),
        ("Splitwise A100", a100_pts, "Vidur A100 GPU terms (own)", vidur),
        ("Splitwise H100", h100_pts, "Vidur A100 GPU terms (lent)", transfer_profile(vidur, "a100-80g", "h100-sxm",
                                                                                     across_architectures=True)),
        ("Splitwise H100", h100_pts, "H100 measured GPU terms (own)", h100),
    ]
    for table, pts, label, base in cases:
        res = C.engine_terms_transfer(pts, base)
        rows.append({"table": table, "gpu_terms": label, "n_held_out": res["n_held_out"],
                     "held_out_mape": res["held_out_mape"], "prefill": res.get("held_out_mape_prefill"),
                     "decode": res.get("held_out_mape_decode")})
    grid = C.measured_points(h100_measurements())
    for label, base in (("Vidur A100 GPU terms (lent)", transfer_profile(vidur, "a100-80g", "h100-sxm",
                                                                         across_architectures=True)),
                        ("H100 measured GPU terms (own)", h100)):
        res = C.engine_terms_transfer(grid, base.with_parameters(host_ms_per_layer=0.0),
                                      free=("overhead_ms", "per_layer_overhead_ms", "per_sequence_ms"))
        rows.append({"table": "H100 measured grid", "gpu_terms": label, "n_held_out": res["n_held_out"],
                     "held_out_mape": res["held_out_mape"], "prefill": res.get("held_out_mape_prefill"),
                     "decode": res.get("held_out_mape_decode"), "mixed": res.get("held_out_mape_mixed")})
    return rows


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:+.1f}%" if isinstance(x, float) and x < 0 else f"{100 * x:.1f}%"


def _md(rows: list[dict], cols: list[str]) -> list[str]:
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c)
            cells.append(_pct(v) if isinstance(v, float) and ("mape" in c or "error" in c or c in ("prefill", "decode", "mixed"))
                         else f"{v:.2f}" if isinstance(v, float) else "-" if v is None else str(v))
        out.append("| " + " | ".join(cells) + " |")
    return out + [""]


def main() -> int:
    measurements = h100_measurements()
    before = previous_h100_fit(measurements)
    middle = as_measured_h100_fit(measurements)
    after = C.calibrate(measurements, name="h100-sxm-measured")
    fits = {"before (per-sequence term, KV as profiled)": before, "no per-sequence term, KV as profiled": middle,
            "shipped (no per-sequence term, KV at stream rate)": after}
    result = {"choices": section_choices(), "reference": section_reference(before, middle),
              "h100_grid": section_h100_grid(fits), "splitwise_leave_one_gpu_out": section_splitwise_logo(),
              "gpu_terms_transfer": section_gpu_terms()}
    lines = ["# Cost-model profile transfer between GPUs", "",
             "`python benchmarks/costmodel_transfer.py` (CPU, a few seconds). MAPE = mean |predicted / measured - 1|.", "",
             "## 1. Profile each catalog GPU gets", ""]
    lines += _md(result["choices"], ["gpu", "architecture", "kind", "profile", "donor_gpu", "engine", "note"])
    lines += ["## 2. Reference points (llama-3.1-8b, bf16, one GPU), before and after", ""]
    lines += _md(result["reference"], ["gpu", "shape", "measured_ms", "before_profile", "before_ms", "before_error",
                                        "kv_as_profiled_ms", "kv_as_profiled_error", "after_profile", "after_ms",
                                        "after_error"])
    lines += ["## 3. H100 measured grid (servopt profile's own harness), held-out MAPE (25 % of each run x regime, seed 0)",
              ""]
    lines += _md(result["h100_grid"], ["fit", "regime", "n", "n_held_out", "held_out_mape", "held_out_max_error",
                                        "mean_signed_error"])
    lines += ["## 4. Leave one GPU out, Splitwise's table (one engine; Ampere <-> Hopper)", ""]
    lines += _md(result["splitwise_leave_one_gpu_out"], ["fitted_on", "tested_on", "regime", "n", "lent_mape",
                                                          "n_held_out", "own_fit_held_out_mape"])
    lines += ["## 5. GPU terms lent, engine terms refitted on 75 % of the target (held-out MAPE)", ""]
    lines += _md(result["gpu_terms_transfer"], ["table", "gpu_terms", "n_held_out", "held_out_mape", "prefill",
                                                 "decode", "mixed"])
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "costmodel_transfer.json").write_text(json.dumps(result, indent=1, default=float) + "\n")
    (RESULTS / "costmodel_transfer.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
