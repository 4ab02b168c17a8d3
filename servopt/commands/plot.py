"""``servopt plot RESULT --out FILE.png``: a figure of any result (analysis/plots.py).

RESULT is a result JSON of any kind (``servopt solve``/``simulate``/``compare`` ``--out``, an
adversarial search, a sweep's ``summary.json``), a sweep folder or its ``results.csv`` (ratio
histograms per policy). A ``kv_schedule`` schedule is drawn as a Gantt chart; with ``--instance``
the memory curve under M is drawn below it. Kinds without a dedicated figure get a generic one.
The format follows FILE's extension (png, pdf, svg).
"""
from __future__ import annotations

from pathlib import Path

FORMATS = (".png", ".pdf", ".svg")


def register(subparsers) -> None:
    p = subparsers.add_parser("plot", help="draw a result, a comparison or a sweep (matplotlib)")
    p.add_argument("result", help="result JSON of any kind, a sweep folder, or a sweep's results.csv")
    p.add_argument("--out", required=True, metavar="FILE.png", help="image to write (.png, .pdf or .svg)")
    p.add_argument("--instance", metavar="INSTANCE.json", help="the instance (kv_schedule: adds the memory curve under M)")
    p.add_argument("--dpi", type=int, default=120, help="resolution of a .png (default 120)")
    p.set_defaults(func=run)


def run(args) -> int:
    from servopt.errors import InputError

    out = Path(args.out)
    if out.suffix.lower() not in FORMATS:
        raise InputError("--out", f"the file name must end in {', '.join(FORMATS)}; got '{out.name}'")
    if not 20 <= args.dpi <= 1200:
        raise InputError("--dpi", f"must be between 20 and 1200, got {args.dpi}")
    source = Path(args.result)
    if not source.exists():
        raise InputError("result", f"no such file or folder: {args.result}")
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    from servopt.analysis import plots

    instance = None
    if args.instance:
        from servopt.commands._common import read_instance

        _, instance, _ = read_instance(args.instance)
    if source.is_dir() or source.suffix.lower() == ".csv":
        import pandas as pd

        csv = source / "results.csv" if source.is_dir() else source
        if not csv.is_file():
            raise InputError("result", f"{source} holds no results.csv (is it a sweep folder?)")
        frame = pd.read_csv(csv)
        missing = {"policy", "ratio_lo", "ratio_hi", "proven"} - set(frame.columns)
        if missing:
            raise InputError("result", f"{csv.name} is not a sweep's results.csv (no column {sorted(missing)[0]})")
        fig = plots.ratio_histograms(frame)
    else:
        from servopt import jsonio

        result = jsonio.read_json(str(source))
        if not isinstance(result, dict) or "kind" not in result:
            raise InputError("result", "a result JSON is an object with a 'kind' field")
        if instance is not None and result.get("kind") == "kv_schedule":
            ids = {r.id for r in instance.requests}
            if {r.get("id") for r in result.get("requests", [])} != ids:
                raise InputError("--instance", "the instance's request ids differ from the result's")
        fig = plots.plot_result(result, instance)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=args.dpi, bbox_inches="tight")
    plt.close(fig)
    print(f"wrote {out}")
    return 0
