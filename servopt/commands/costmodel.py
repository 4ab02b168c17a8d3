"""``servopt costmodel report|fit``: the cost model's measured error, and fitting profiles to measurements.

``servopt costmodel report [--profile FILE ...] [--json]``: first, for every catalog GPU, the profile
it gets by default and where it came from (measured on it; lent from the nearest measured GPU of its
architecture; a public fit; the generic fit) with the engine its fixed overheads were measured on
(``servopt.costmodel.transfer``); then, for every shipped profile (and any
FILE given), recomputed from the data rather than read from the file: per regime, the number of
measured points, the roofline-only MAPE, the calibrated MAPE on all points and on the held-out
points (the split the fit was made with, from its recorded seed), the largest error, the measured
MFU and bandwidth utilisation; then the errors against Splitwise's measured Llama-2-70B table
(TP 2/4/8) for the GPUs the profile applies to.

``servopt costmodel fit MEASUREMENTS.json [...] --out PROFILE.json [--name NAME]``: merge
``servopt profile`` measurement files of one GPU, fit (``servopt.costmodel.calibration``) and write
the shippable profile (measurements plus ``fit``).
"""
from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("costmodel", help="cost-model error tables (report) and fitting profiles to measurements (fit)")
    sub = p.add_subparsers(dest="costmodel_command", metavar="ACTION")
    r = sub.add_parser("report", help="error table of every shipped profile against its measurements and public tables")
    r.add_argument("--profile", action="append", default=[], metavar="FILE", help="also report this profile file; repeatable")
    r.add_argument("--only", metavar="NAME", help="report only the profile with this name or file name")
    r.add_argument("--groups", action="store_true", help="also break the errors down per measured (LLM, TP) run")
    r.add_argument("--json", action="store_true", help="print JSON instead of tables")
    r.set_defaults(func=run_report)
    f = sub.add_parser("fit", help="fit a profile to servopt profile measurement files of one GPU")
    f.add_argument("files", nargs="+", metavar="MEASUREMENTS.json")
    f.add_argument("--out", required=True, metavar="PROFILE.json", help="where to write the profile (measurements + fit)")
    f.add_argument("--name", help="profile name (default <gpu>-measured)")
    f.add_argument("--seed", type=int, default=0, help="seed of the held-out split (default 0)")
    f.add_argument("--decode-kv", choices=("stream", "measured", "fit"), default="stream",
                   help="decode attention's KV read: at the fitted weight-streaming rate (stream, default), at "
                        "the rate the profiled attention kernel reached for all attention (measured), or at a rate "
                        "of its own fitted to the decode points (fit; for profiles of the packed GQA decode kernel)")
    f.set_defaults(func=run_fit)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _report_one(file_name: str, data: dict) -> dict:
    from servopt.costmodel import calibration
    from servopt.costmodel.profile import profile_from_dict

    profile = profile_from_dict(data, where=file_name)
    out = {"file": file_name, "profile": profile.name, "gpus": list(profile.gpus), "source": profile.source,
           "parameters": profile.parameters(), "measured": None, "public": calibration.public_table_rows(profile)}
    if isinstance(data, dict) and "runs" in data:
        points = calibration.measured_points(data)
        fit = profile.metadata.get("fit", {})
        _, held_out = calibration.split_points(points, fit.get("holdout_fraction", calibration.DEFAULT_HOLDOUT),
                                               fit.get("seed", calibration.DEFAULT_SEED))
        rows = calibration.error_rows(profile, points, held_out)
        out["measured"] = {"device": data.get("device", {}), "ceilings": {k: (data.get("ceilings") or {}).get(k)
                                                                         for k in ("matmul_tflops", "copy_gb_per_s")},
                           "rows": [r.to_dict() for r in rows],
                           "ceiling_fractions": calibration.ceiling_fractions(data, points),
                           "scaling_check": [c for r in data["runs"] for c in r.get("scaling_check", [])]}
    return out


def collect(paths: list[str], only: str | None = None) -> list[dict]:
    import json
    from importlib import resources

    from servopt import jsonio
    from servopt.errors import InputError

    reports = []
    folder = resources.files("servopt.costmodel").joinpath("profiles")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            data = json.loads(entry.read_text(encoding="utf-8"))
            if isinstance(data, dict) and "runs" in data and "fit" not in data:
                continue
            reports.append(_report_one(entry.name, data))
    for path in paths:
        reports.append(_report_one(path, jsonio.read_json(path)))
    if only is not None:
        reports = [r for r in reports if only in (r["profile"], r["file"], r["file"].removesuffix(".json"))]
        if not reports:
            raise InputError("--only", f"no profile named '{only}'")
    return reports


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def run_report(args) -> int:
    import sys

    from servopt import jsonio

    from servopt.costmodel.transfer import catalog_choices

    reports = collect(args.profile, args.only)
    choices = [c.to_dict() for c in catalog_choices()]
    if args.json:
        sys.stdout.write(jsonio.dumps({"gpus": choices, "profiles": reports}) + "\n")
        return 0
    from rich.table import Table

    from servopt.commands._common import console

    out = console()
    t = Table(title="profile each catalog GPU gets by default (servopt cost, simulate, ... without --profile)")
    keys = {"gpu": "gpu", "profile": "profile", "kind": "kind"}
    for col in ("gpu", "architecture", "profile", "kind", "efficiencies from", "overheads from", "note"):
        # names stay whole (a reader copies them into --profile); the other columns wrap
        width = max([len(col)] + [len(str(c[keys[col]])) for c in choices]) if col in keys else None
        t.add_column(col, no_wrap=col in keys, min_width=width)
    for c in choices:
        t.add_row(c["gpu"], c["architecture"] or "?", c["profile"], c["kind"],
                  f"{c['donor_profile']} ({c['donor_gpu']})" if c["donor_gpu"] else (c["donor_profile"] or "-"),
                  c["engine"] if c["overheads_from_servopt_measurements"] else f"[yellow]{c['engine']}[/yellow]", c["note"])
    out.print(t)
    for rep in reports:
        out.print(f"\n[bold]{rep['profile']}[/bold] ({rep['file']}; GPUs: {', '.join(rep['gpus']) or 'any'})")
        out.print(f"  {rep['source']}")
        params = ", ".join(f"{k}={v:g}" for k, v in rep["parameters"].items())
        out.print(f"  {params}")
        m = rep["measured"]
        if m:
            dev = m["device"]
            out.print(f"  measured on {dev.get('name', '?')} (torch {dev.get('torch', '?')}); ceilings: bf16 matmul "
                      f"{m['ceilings']['matmul_tflops']} TFLOP/s, copy {m['ceilings']['copy_gb_per_s']} GB/s (read + write)")
            t = Table(title="calibrated vs measured (MAPE = mean |predicted / measured - 1|)")
            for col in ("group", "regime", "n", "held out", "roofline-only MAPE", "calibrated MAPE",
                        "held-out MAPE", "held-out max err", "max err", "median MFU", "median BW util"):
                t.add_column(col, justify="left" if col in ("group", "regime") else "right")
            for r in m["rows"]:
                if r["group"] != "all" and not args.groups:
                    continue
                t.add_row(r["group"], r["regime"], str(r["n"]), str(r["n_held_out"]), _pct(r["roofline_mape"]),
                          _pct(r["calibrated_mape"]), _pct(r["held_out_mape"]), _pct(r["held_out_max_abs_error"]),
                          _pct(r["max_abs_error"]), _pct(r["median_mfu"]), _pct(r["median_bw_util"]))
            out.print(t)
            if m["ceiling_fractions"]:
                out.print("  against the measured ceilings: " + "; ".join(
                    f"{c['regime']} median {_pct(c['median_of_measured_matmul'])} of matmul, "
                    f"{_pct(c['median_of_measured_copy'])} of copy" for c in m["ceiling_fractions"]))
            if m["scaling_check"]:
                errs = [abs(c["rel_err"]) for c in m["scaling_check"]]
                out.print(f"  layer-cycling check: {len(errs)} shapes, median |error| {_pct(sorted(errs)[len(errs) // 2])}, "
                          f"max {_pct(max(errs))}")
        if rep["public"]:
            t = Table(title="against Splitwise's measured Llama-2-70B table (Patel et al., ISCA'24)")
            for col in ("gpu", "tp", "regime", "n", "MAPE", "max err", "mean signed err"):
                t.add_column(col, justify="left" if col in ("gpu", "regime") else "right")
            for r in rep["public"]:
                t.add_row(r["gpu"], str(r["tp"]), r["regime"], str(r["n"]), _pct(r["mape"]), _pct(r["max_abs_error"]),
                          _pct(r["mean_signed_error"]))
            out.print(t)
    return 0


def run_fit(args) -> int:
    from servopt.costmodel import calibration, profiling

    shipped = calibration.build_shipped(args.files, name=args.name, seed=args.seed, decode_kv=args.decode_kv)
    profiling.write_json_atomic(shipped, args.out)
    fit = shipped["fit"]["metadata"]["fit"]
    print(f"wrote {args.out}: {fit['n_points']} points ({fit['n_train']} fitted, {fit['n_held_out']} held out)")
    for row in shipped["fit"]["metadata"]["errors"]:
        if row["group"] == "all":
            print(f"  {row['regime']:8s} roofline-only MAPE {_pct(row['roofline_mape']):>6s}, calibrated held-out MAPE "
                  f"{_pct(row['held_out_mape']):>6s} (max {_pct(row['held_out_max_abs_error'])})")
    return 0
