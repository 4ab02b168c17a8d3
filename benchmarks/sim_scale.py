"""Scale: a million requests on 16 replicas, and memory that follows requests in flight, not the trace.

Setting: the per-replica load of the Vidur comparison (benchmarks/sim_vidur.py): Llama-2-70B TP2 on
A100 80GB with Vidur's operator profiles imported, Sarathi chunk 512, batch cap 128, KV per
replica by Vidur's rule, round-robin; lengths cycled from the Azure 2023 conversation trace
(prompt + output <= 4096), Poisson arrivals at 0.75 req/s per replica (12 req/s for 16). The trace
is streamed from the CSV (``iter_trace(..., repeat=True)``), never held in memory.

Reported per size N: the simulator's wall and CPU time, microseconds of CPU per request, the peak
number of requests in flight, and the peak resident memory of a fresh process for that N (run as
a subprocess so sizes do not share a heap), right after ``simulate()`` and again after building
the per-request DataFrame. The per-request result log is O(N) by design (80 bytes of typed
columns per finished request; ids only when the trace has its own); everything else the engine
holds is O(requests in flight).

Usage: ``python benchmarks/sim_scale.py [--sizes 10000,100000,1000000] [--replicas 16]``.
Writes benchmarks/results/sim_scale.md and .json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sim_vidur import AZURE_CONV, PROFILES, RESULTS, vidur_kv_tokens  # noqa: E402 - same setting, same paths


def one(n: int, replicas: int, qps_per_replica: float, lengths_csv: str) -> dict:
    import resource

    from servopt.costmodel.vidur_import import load_vidur_profiles
    from servopt.instances.catalog import get_llm
    from servopt.instances.traces import iter_trace
    from servopt.simulator.engine import SimConfig, simulate

    llm = get_llm("llama-2-70b")
    cost = load_vidur_profiles(PROFILES / "a100_Llama-2-70b-hf_mlp.csv", PROFILES / "a100_attention_n8192_q64_kv8_tp2.csv",
                               PROFILES / "a100_dgx_all_reduce.csv", num_layers=80, hidden_size=8192, tp=2)
    reqs = iter_trace(lengths_csv, fmt="lengths", arrivals="poisson", rate=qps_per_replica * replicas, limit=n, repeat=True, seed=0)
    cfg = SimConfig(kv_tokens=vidur_kv_tokens(llm, 2), replicas=replicas, scheduler="sarathi", router="round_robin",
                    scheduler_options={"token_budget": 512, "max_batch": 128})
    c0 = time.process_time()
    res = simulate(reqs, cost, cfg)
    cpu = time.process_time() - c0
    rss_sim = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before building any DataFrame
    log_mb = sum(v.nbytes for v in res.columns.values() if hasattr(v, "nbytes") and v.dtype != object) / 2**20
    df = res.to_dataframe()
    return {"requests": n, "replicas": replicas, "wall_s": res.wall_s, "cpu_s": cpu, "cpu_us_per_request": 1e6 * cpu / n,
            "max_in_flight": res.max_in_flight, "peak_rss_sim_mb": rss_sim, "result_log_mb": log_mb,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "ttft_p50_s": float(df["ttft_s"].median()), "tpot_p50_s": float(df["tpot_s"].median()),
            "iterations": int(sum(r["iterations"] for r in res.replicas))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--replicas", type=int, default=16)
    ap.add_argument("--qps-per-replica", type=float, default=0.75)
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--lengths", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one is not None:
        print(json.dumps(one(args.one, args.replicas, args.qps_per_replica, args.lengths)))
        return 0
    import tempfile

    from servopt.instances.traces import iter_trace

    # a length table of the Azure conversation requests that fit Vidur's 4096-token limit
    lengths = Path(tempfile.mkdtemp(prefix="sim_scale_")) / "azure_conv_lengths.csv"
    with lengths.open("w") as f:
        f.write("num_prefill_tokens,num_decode_tokens\n")
        for r in iter_trace(AZURE_CONV):
            if r.prompt_tokens + r.output_tokens <= 4096:
                f.write(f"{r.prompt_tokens},{r.output_tokens}\n")
    rows = []
    for n in [int(x) for x in args.sizes.split(",")]:
        out = subprocess.run([sys.executable, __file__, "--one", str(n), "--replicas", str(args.replicas),
                              "--qps-per-replica", str(args.qps_per_replica), "--lengths", str(lengths)],
                             capture_output=True, text=True)
        if out.returncode != 0:
            print(out.stderr[-2000:], file=sys.stderr)
            return 1
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    lines = ["# Simulator scale", "",
             f"Llama-2-70B TP2 A100 (Vidur profiles), Sarathi 512, round-robin, {args.replicas} replicas, "
             f"Poisson {args.qps_per_replica} req/s per replica, Azure-conversation lengths cycled. "
             f"Machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end.", "",
             "| requests | wall s | CPU s | CPU us/request | iterations | max in flight | peak RSS after simulate MB | of which result log MB | peak RSS with DataFrame MB | TTFT p50 s | TPOT p50 s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['requests']:,} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['cpu_us_per_request']:.0f} | {r['iterations']:,} | "
                     f"{r['max_in_flight']} | {r['peak_rss_sim_mb']:.0f} | {r['result_log_mb']:.0f} | {r['peak_rss_mb']:.0f} | "
                     f"{r['ttft_p50_s']:.3f} | {r['tpot_p50_s']:.4f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "sim_scale.md").write_text(text)
    (RESULTS / "sim_scale.json").write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
