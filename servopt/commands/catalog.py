"""``servopt catalog [gpus|llms] [--json]``: the shipped GPU and LLM catalogs as tables or JSON."""
from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("catalog", help="list the shipped GPUs and LLMs (with sources in --json)")
    p.add_argument("which", nargs="?", choices=("gpus", "llms", "all"), default="all", help="which catalog (default all)")
    p.add_argument("--json", action="store_true", help="print JSON (every entry with its sources)")
    p.set_defaults(func=run)


def run(args) -> int:
    import sys

    from servopt import jsonio
    from servopt.instances.catalog import gpus, llms

    show_gpus = args.which in ("gpus", "all")
    show_llms = args.which in ("llms", "all")
    if args.json:
        out = {}
        if show_gpus:
            out["gpus"] = [g.to_dict() for g in gpus()]
        if show_llms:
            out["llms"] = [dict(m.to_dict(), num_params=m.num_params(), kv_bytes_per_token=m.kv_bytes_per_token()) for m in llms()]
        sys.stdout.write(jsonio.dumps(out) + "\n")
        return 0
    from rich.table import Table

    from servopt.commands._common import console

    con = console()
    if show_gpus:
        t = Table(title="GPUs (dense bf16 peak; T4/V100: fp16 tensor peak)")
        for col in ("name", "TFLOP/s", "mem GB/s", "GiB", "NVLink GB/s", "PCIe GB/s", "$/hour", "aliases"):
            t.add_column(col, justify="left" if col in ("name", "aliases") else "right", no_wrap=col != "aliases")
        for g in gpus():
            t.add_row(g.name, f"{g.bf16_tflops:g}", f"{g.hbm_gb_per_s:g}", f"{g.memory_gib:g}", f"{g.nvlink_gb_per_s:g}",
                      f"{g.pcie_gb_per_s:g}", f"{g.usd_per_hour:.3g}", ", ".join(g.aliases[:3]))
        con.print(t)
    if show_llms:
        t = Table(title="LLMs (config.json shapes; KV per token in bf16 over all layers)")
        # Short headers (L layers, d hidden, h_q/h_kv heads, d_h head dim, d_ff FFN, V vocabulary, E top-k/experts)
        # keep the table inside a 100-column terminal.
        for col in ("name", "params (B)", "L", "d", "h_q", "h_kv", "d_h", "d_ff", "V", "E", "KV KiB/tok"):
            t.add_column(col, justify="left" if col == "name" else "right", no_wrap=True)
        for m in llms():
            experts = f"{m.experts_per_token}/{m.num_experts}" if m.num_experts > 1 else "-"
            t.add_row(m.name, f"{m.num_params() / 1e9:.2f}", str(m.num_layers), str(m.hidden_size), str(m.num_heads),
                      str(m.num_kv_heads), str(m.head_dim), str(m.intermediate_size), str(m.vocab_size), experts,
                      f"{m.kv_bytes_per_token() / 1024:g}")
        con.print(t)
    return 0
