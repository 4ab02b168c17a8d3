"""Speed and agreement of our simulator against Vidur, side by side in one run.

Setting: 4,000 requests with Azure-2023-conversation lengths (the first 4,000 rows whose
prompt + output <= 4,096, Vidur's limit), Poisson arrivals at 3 req/s (seed 0), 4 replicas of
Llama-2-70B TP2 on A100 80GB, round-robin, Sarathi with 512-token chunks and batch cap 128.
Both simulators read the same request CSV and the same Vidur operator profiles
(shared/traces/vidur_profiling/); our KV capacity is set to Vidur's (its MemoryPlanner rule, 90 %
of 80 GiB minus weights, rounded down to whole 4,096-token request slots, see
costmodel/vidur_import.py) so that both run on the same memory.

Rows: ours with Vidur's profiles imported (``costmodel/vidur_import.py``), ours with the roofline
cost model calibrated to the same profiles (``fit_roofline_to_vidur``), ours with the roofline's
shipped default profile (not calibrated to Vidur: shows the cost model's own error), and Vidur
0.0.26 (PyPI) run as a subprocess from a separate virtualenv when one is found
(``--vidur-python``, default ``/tmp/vidur-venv/bin/python``; recipe in research/costmodel-anchors.md
§1.4), with its event loop timed inside the process. Without Vidur, ours are printed alone.

Speed is the simulator's own time: our ``simulate()`` call (best of ``--repeats``) vs Vidur's event
loop (``Simulator.run`` minus writing metrics), both as wall and CPU time, since the machine may be
shared. Agreement: medians (and p90) of TTFT and of TPOT = (e2e - TTFT) / (output - 1), computed
the same way from both simulators' per-request records.

Usage: ``python benchmarks/sim_vidur.py [--requests 4000] [--qps 3] [--repeats 3] [--no-vidur]``.
Writes benchmarks/results/sim_vidur.md and .json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SERVOPT_SHARED", ROOT.parent / "shared"))
PROFILES = SHARED / "traces" / "vidur_profiling"
AZURE_CONV = SHARED / "traces" / "AzureLLMInferenceTrace_conv.csv"
RESULTS = ROOT / "benchmarks" / "results"

VIDUR_DRIVER = r'''
import json, sys, time
from vidur.config import SimulationConfig
from vidur.simulator import Simulator
from vidur.utils.random import set_seeds
marks = {}
orig = Simulator._write_output
def timed_write(self):
    marks["loop_wall"] = time.perf_counter(); marks["loop_cpu"] = time.process_time()
    orig(self)
Simulator._write_output = timed_write
config = SimulationConfig.create_from_cli_args()
set_seeds(config.seed)
t0 = time.perf_counter()
sim = Simulator(config)
t1 = time.perf_counter(); c1 = time.process_time()
sim.run()
t2 = time.perf_counter()
json.dump({"init_s": t1 - t0, "event_loop_wall_s": marks["loop_wall"] - t1, "event_loop_cpu_s": marks["loop_cpu"] - c1,
           "write_s": t2 - marks["loop_wall"], "output_dir": config.metrics_config.output_dir},
          open(__import__("os").environ["VIDUR_TIMING_JSON"], "w"))
'''


def make_trace(n: int, qps: float, seed: int, out_csv: Path, vidur_csv: Path):
    """Azure conversation lengths (first n rows with prompt + output <= 4096), Poisson arrivals."""
    import pandas as pd

    from servopt.instances.requests import Request
    from servopt.instances.traces import iter_trace, write_csv

    rows = [r for r in iter_trace(AZURE_CONV) if r.prompt_tokens + r.output_tokens <= 4096][:n]
    rng = np.random.default_rng(seed)
    times = np.cumsum(rng.exponential(1.0 / qps, len(rows)))
    reqs = [Request(str(i), float(t), r.prompt_tokens, r.output_tokens) for i, (t, r) in enumerate(zip(times, rows))]
    write_csv(reqs, out_csv)
    pd.DataFrame({"Date": "2023-08-21", "Time": [r.arrival for r in reqs], "PromptTokenCount": [r.prompt_tokens for r in reqs],
                  "CompletionTokenCount": [r.output_tokens for r in reqs]}).to_csv(vidur_csv, index=False)
    return reqs


def vidur_kv_tokens(llm, tp: int, max_tokens: int = 4096, block: int = 16) -> int:
    """Vidur's KV blocks per replica: whole max_tokens request slots of its MemoryPlanner capacity."""
    from servopt.costmodel.vidur_import import vidur_kv_capacity_tokens

    hd, kvh, qh = llm.head_dim, llm.num_kv_heads // tp, llm.num_heads // tp
    d, ff, L = llm.hidden_size, llm.intermediate_size, llm.num_layers
    params = L * (d * hd * (qh + 2 * kvh) + d * hd * qh + 3 * d * ff // tp)  # Vidur's ParamCounter (no embeddings)
    tokens = vidur_kv_capacity_tokens(params_per_gpu=params, kv_bytes_per_token_per_gpu=2 * 2 * hd * kvh * L)
    return (tokens // max_tokens) * (max_tokens // block) * block


def stats(ttft, tpot, e2e) -> dict:
    f = lambda v, q: float(np.nanpercentile(v, q))  # noqa: E731
    return {"ttft_p50": f(ttft, 50), "ttft_p90": f(ttft, 90), "ttft_p99": f(ttft, 99),
            "tpot_p50": f(tpot, 50), "tpot_p90": f(tpot, 90), "e2e_p50": f(e2e, 50), "e2e_p90": f(e2e, 90)}


def run_ours(reqs, cost, kv_tokens, replicas, repeats):
    from servopt.simulator.engine import SimConfig, simulate

    cfg = SimConfig(kv_tokens=kv_tokens, replicas=replicas, scheduler="sarathi", router="round_robin",
                    scheduler_options={"token_budget": 512, "max_batch": 128})
    best_wall = best_cpu = float("inf")
    res = None
    for _ in range(repeats):
        c0 = time.process_time()
        res = simulate(reqs, cost, cfg)
        best_cpu = min(best_cpu, time.process_time() - c0)
        best_wall = min(best_wall, res.wall_s)
    df = res.to_dataframe()
    out = stats(df["ttft_s"], df["tpot_s"], df["e2e_s"])
    out.update({"wall_s": best_wall, "cpu_s": best_cpu, "preemptions": int(df["preemptions"].sum()), "requests": len(df)})
    return out


def run_vidur(python: str, trace_csv: Path, workdir: Path, replicas: int, n: int):
    import lzma

    import pandas as pd

    cache = workdir / "cache"
    rev = "0" * 40
    for kind, name, files, cfg in (
        ("compute", "llama2-70b-a100", {"mlp.csv.xz": "a100_Llama-2-70b-hf_mlp.csv", "attention.csv.xz": "a100_attention_n8192_q64_kv8_tp2.csv"},
         {"model": "meta-llama/Llama-2-70b-hf", "device_sku": "a100"}),
        ("network", "a100-dgx", {"all_reduce.csv.xz": "a100_dgx_all_reduce.csv", "send_recv.csv.xz": "a100_dgx_send_recv.csv"}, {"sku": "a100_dgx"})):
        base = cache / "profiling_data" / kind / f"datasets--local--{name}"
        snap = base / "snapshots" / rev
        snap.mkdir(parents=True, exist_ok=True)
        (base / "refs").mkdir(exist_ok=True)
        (base / "refs" / "main").write_text(rev)
        (snap / "config.json").write_text(json.dumps(cfg))
        for dst, src in files.items():
            if not (snap / dst).exists():
                with open(PROFILES / src, "rb") as f, lzma.open(snap / dst, "wb") as g:
                    g.write(f.read())
    driver = workdir / "vidur_driver.py"
    driver.write_text(VIDUR_DRIVER)
    out_json = workdir / "vidur_timing.json"
    args = [python, str(driver),
            "--replica_config_device", "a100", "--replica_config_network_device", "a100_dgx",
            "--replica_config_model_name", "meta-llama/Llama-2-70b-hf", "--replica_config_tensor_parallel_size", "2",
            "--replica_config_num_pipeline_stages", "1", "--cluster_config_num_replicas", str(replicas),
            "--request_generator_config_type", "trace_replay", "--trace_request_generator_config_trace_file", str(trace_csv),
            "--trace_request_generator_config_prefill_scale_factor", "1", "--trace_request_generator_config_decode_scale_factor", "1",
            "--trace_request_generator_config_time_scale_factor", "1", "--trace_request_generator_config_max_tokens", "4096",
            "--replica_scheduler_config_type", "sarathi", "--sarathi_scheduler_config_batch_size_cap", "128",
            "--sarathi_scheduler_config_chunk_size", "512", "--global_scheduler_config_type", "round_robin",
            "--random_forrest_execution_time_predictor_config_model_profiling_dataset", "local/llama2-70b-a100",
            "--random_forrest_execution_time_predictor_config_network_profiling_dataset", "local/a100-dgx",
            "--random_forrest_execution_time_predictor_config_cache_dir", str(cache),
            "--random_forrest_execution_time_predictor_config_prediction_max_tokens_per_request", "4096",
            "--random_forrest_execution_time_predictor_config_num_estimators", "250",
            "--random_forrest_execution_time_predictor_config_max_depth", "16",
            "--random_forrest_execution_time_predictor_config_min_samples_split", "2",
            "--random_forrest_execution_time_predictor_config_k_fold_cv_splits", "2",
            "--metrics_config_output_dir", str(workdir / "out")]
    env = dict(os.environ, WANDB_MODE="disabled", HF_HUB_OFFLINE="1", VIDUR_TIMING_JSON=str(out_json))
    t0 = time.perf_counter()
    proc = subprocess.run(args, cwd=workdir, env=env, capture_output=True, text=True)
    total = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError("Vidur failed: " + (proc.stderr.strip().splitlines() or ["?"])[-1])
    timing = json.loads(out_json.read_text())
    metrics = sorted(Path(timing["output_dir"]).glob("**/request_metrics.csv"))
    df = pd.read_csv(metrics[-1])
    if len(df) != n:
        raise RuntimeError(f"Vidur finished {len(df)} of {n} requests")
    ttft = df["prefill_e2e_time"]
    tpot = (df["request_e2e_time"] - ttft) / (df["request_num_decode_tokens"] - 1).where(df["request_num_decode_tokens"] > 1)
    out = stats(ttft, tpot, df["request_e2e_time"])
    out.update({"wall_s": timing["event_loop_wall_s"], "cpu_s": timing["event_loop_cpu_s"], "process_wall_s": total,
                "init_s": timing["init_s"], "write_s": timing["write_s"], "preemptions": int(df["request_num_restarts"].sum()),
                "requests": len(df)})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--qps", type=float, default=3.0)
    ap.add_argument("--replicas", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--vidur-python", default="/tmp/vidur-venv/bin/python")
    ap.add_argument("--no-vidur", action="store_true")
    args = ap.parse_args(argv)

    from servopt.costmodel.roofline import make_cost_model
    from servopt.costmodel.vidur_import import fit_roofline_to_vidur, load_vidur_profiles
    from servopt.instances.catalog import get_llm

    llm = get_llm("llama-2-70b")
    tp = 2
    work = Path(tempfile.mkdtemp(prefix="sim_vidur_"))
    reqs = make_trace(args.requests, args.qps, args.seed, work / "trace.csv", work / "trace_vidur.csv")
    kv_tokens = vidur_kv_tokens(llm, tp)
    vcost = load_vidur_profiles(PROFILES / "a100_Llama-2-70b-hf_mlp.csv", PROFILES / "a100_attention_n8192_q64_kv8_tp2.csv",
                                PROFILES / "a100_dgx_all_reduce.csv", num_layers=llm.num_layers, hidden_size=llm.hidden_size,
                                tp=tp, num_kv_heads=llm.num_kv_heads, head_dim=llm.head_dim)
    fitted = fit_roofline_to_vidur(vcost, llm="llama-2-70b", gpu="a100-80gb", tp=tp)
    rows = {}
    rows["servopt, Vidur profiles imported"] = run_ours(reqs, vcost, kv_tokens, args.replicas, args.repeats)
    rows["servopt, roofline fitted to Vidur profiles"] = run_ours(reqs, make_cost_model(llm, "a100-80gb", tp, fitted), kv_tokens, args.replicas, args.repeats)
    rows["servopt, roofline default profile"] = run_ours(reqs, make_cost_model(llm, "a100-80gb", tp), kv_tokens, args.replicas, args.repeats)
    vidur_note = ""
    if not args.no_vidur and Path(args.vidur_python).exists():
        try:
            rows["Vidur 0.0.26 (PyPI)"] = run_vidur(args.vidur_python, work / "trace_vidur.csv", work, args.replicas, len(reqs))
        except Exception as exc:  # noqa: BLE001 - report and print ours alone
            vidur_note = f"Vidur run failed: {exc}"
    else:
        vidur_note = f"Vidur not found at {args.vidur_python} (or --no-vidur): our rows only."
    ref = rows.get("Vidur 0.0.26 (PyPI)")
    lines = [f"# Simulator speed and agreement vs Vidur", "",
             f"{len(reqs)} requests (Azure 2023 conversation lengths, Poisson {args.qps} req/s, seed {args.seed}), "
             f"{args.replicas} x Llama-2-70B TP2 on A100 80GB, round-robin, Sarathi chunk 512, batch cap 128, "
             f"KV {kv_tokens} tokens per replica (Vidur's rule). Fitted roofline profile: held-out MAPE "
             f"{fitted.metadata['fit']['held_out_mape']:.1%} on Vidur-priced iterations. "
             f"Machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end of the run.", "",
             "| simulator / costs | wall s | CPU s | speed-up (wall, CPU) | TTFT p50 | TTFT p90 | TPOT p50 | TPOT p90 | e2e p50 | dTTFT p50 | dTPOT p50 | preemptions |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        sp = "-" if ref is None or name == "Vidur 0.0.26 (PyPI)" else f"{ref['wall_s'] / r['wall_s']:.0f}x, {ref['cpu_s'] / r['cpu_s']:.0f}x"
        d1 = "-" if ref is None else f"{r['ttft_p50'] / ref['ttft_p50'] - 1:+.1%}"
        d2 = "-" if ref is None else f"{r['tpot_p50'] / ref['tpot_p50'] - 1:+.1%}"
        lines.append(f"| {name} | {r['wall_s']:.3f} | {r['cpu_s']:.3f} | {sp} | {r['ttft_p50']:.4f} | {r['ttft_p90']:.4f} | "
                     f"{r['tpot_p50']:.4f} | {r['tpot_p90']:.4f} | {r['e2e_p50']:.2f} | {d1} | {d2} | {r['preemptions']} |")
    if ref is not None:
        lines += ["", f"Vidur process wall {ref['process_wall_s']:.1f} s (init incl. predictor {ref['init_s']:.1f} s, "
                      f"event loop {ref['wall_s']:.1f} s, writing metrics {ref['write_s']:.1f} s)."]
    if vidur_note:
        lines += ["", vidur_note]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "sim_vidur.md").write_text(text)
    (RESULTS / "sim_vidur.json").write_text(json.dumps({"kv_tokens": kv_tokens, "rows": rows, "note": vidur_note,
                                                        "fitted_profile": fitted.to_dict()}, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
