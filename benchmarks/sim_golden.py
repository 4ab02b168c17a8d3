"""Golden per-request results of the simulator: speed-ups must leave every simulated number unchanged.

Runs a handful of configurations (the scale and Vidur-comparison settings on Vidur profiles and on
the roofline, prefix cache + JSQ + vLLM V0, P/D disaggregation with Orca, FastServe / SRPT with swap
and recompute preemption under tight memory) and hashes the per-request columns (arrival, first
token, finish, preemptions, cached tokens, swaps, replica, prefill replica) byte for byte, plus the
per-replica statistics. ``--write`` stores the hashes in benchmarks/results/sim_golden.json (and the
arrays under ``--dump DIR`` to diff a mismatch); the default compares against the stored hashes and
exits 1 on any difference.

The hashes pin the simulator *and* the cost models it runs on: a change to the roofline or the Vidur
import changes the configurations that use them. Re-write them (``--write``) only from a tree whose
simulator code is the one that produced the stored hashes, so that the file keeps meaning "the
simulator gives the same results". Floating-point results can differ across platforms (another
Python/numpy build changed one of the ten here), so compare on one machine.

Usage: ``python benchmarks/sim_golden.py [--write] [--dump DIR] [--only NAME]``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sim_vidur import AZURE_CONV, PROFILES, RESULTS, vidur_kv_tokens  # noqa: E402 - same setting, same paths

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "instances" / "data"
GOLDEN = RESULTS / "sim_golden.json"


def _vidur_cost():
    from servopt.costmodel.vidur_import import load_vidur_profiles

    return load_vidur_profiles(PROFILES / "a100_Llama-2-70b-hf_mlp.csv", PROFILES / "a100_attention_n8192_q64_kv8_tp2.csv",
                               PROFILES / "a100_dgx_all_reduce.csv", num_layers=80, hidden_size=8192, tp=2)


def _lengths_csv() -> Path:
    from servopt.instances.traces import iter_trace

    path = Path("/tmp") / "sim_golden_azure_conv_lengths.csv"
    if not path.exists():
        with path.open("w") as f:
            f.write("num_prefill_tokens,num_decode_tokens\n")
            for r in iter_trace(AZURE_CONV):
                if r.prompt_tokens + r.output_tokens <= 4096:
                    f.write(f"{r.prompt_tokens},{r.output_tokens}\n")
    return path


def configs():
    """name -> (requests iterable factory, cost factory, SimConfig factory)."""
    from servopt.costmodel.roofline import make_cost_model
    from servopt.instances.catalog import get_llm
    from servopt.instances.traces import iter_trace
    from servopt.simulator.engine import SimConfig

    llm70 = get_llm("llama-2-70b")
    kv70 = vidur_kv_tokens(llm70, 2)
    sar = {"token_budget": 512, "max_batch": 128}
    mooncake = DATA / "trace_mooncake_conv_sample.jsonl"
    azure = DATA / "trace_azure_conv_sample.csv"
    cm8 = lambda: make_cost_model("llama-3.1-8b", "h100-sxm", 1)  # noqa: E731
    out = {
        "scale16_vidur_20k": (lambda: iter_trace(_lengths_csv(), fmt="lengths", arrivals="poisson", rate=12.0, limit=20000, repeat=True, seed=0),
                              _vidur_cost, lambda: SimConfig(kv_tokens=kv70, replicas=16, scheduler="sarathi", router="round_robin", scheduler_options=sar)),
        "vidur4_vidur_4k": (lambda: iter_trace(_lengths_csv(), fmt="lengths", arrivals="poisson", rate=3.0, limit=4000, seed=0),
                            _vidur_cost, lambda: SimConfig(kv_tokens=kv70, replicas=4, scheduler="sarathi", router="round_robin", scheduler_options=sar)),
        "vidur4_roofline_4k": (lambda: iter_trace(_lengths_csv(), fmt="lengths", arrivals="poisson", rate=3.0, limit=4000, seed=0),
                               lambda: make_cost_model("llama-2-70b", "a100-80gb", 2),
                               lambda: SimConfig(kv_tokens=kv70, replicas=4, scheduler="sarathi", router="round_robin", scheduler_options=sar)),
        "mooncake_vllm_lru_jsq": (lambda: iter_trace(mooncake), cm8,
                                  lambda: SimConfig(unservable="drop", kv_tokens=60000, replicas=2, scheduler="vllm", router="jsq", eviction="lru",
                                                    kv_bytes_per_token=cm8().kv_bytes_per_token())),
        "mooncake_sarathi_cache_aware_gdsf": (lambda: iter_trace(mooncake), cm8,
                                              lambda: SimConfig(unservable="drop", kv_tokens=40000, replicas=3, scheduler="sarathi", router="cache_aware", eviction="gdsf",
                                                                scheduler_options={"token_budget": 256})),
        "azure_pd_orca": (lambda: iter_trace(azure, arrivals="poisson", rate=4.0, seed=1), cm8,
                          lambda: SimConfig(unservable="drop", kv_tokens=30000, pd=(1, 2), scheduler="orca", router="round_robin", decode_router="least_tokens",
                                            kv_bytes_per_token=cm8().kv_bytes_per_token(), link_gb_per_s=10.0)),
        "azure_fastserve_swap_tight": (lambda: iter_trace(azure, arrivals="poisson", rate=6.0, seed=2), cm8,
                                       lambda: SimConfig(unservable="drop", kv_tokens=9000, replicas=2, scheduler="fastserve", router="power_of_two",
                                                         scheduler_options={"preempt_mode": "swap"},
                                                         kv_bytes_per_token=cm8().kv_bytes_per_token(), seed=3)),
        "azure_srpt_recompute_tight": (lambda: iter_trace(azure, arrivals="gamma", rate=6.0, cv=2.0, seed=4), cm8,
                                       lambda: SimConfig(unservable="drop", kv_tokens=9000, replicas=2, scheduler="srpt", router="random", seed=5)),
        "azure_sarathi_tight_vidur": (lambda: iter_trace(_lengths_csv(), fmt="lengths", arrivals="poisson", rate=8.0, limit=3000, seed=6),
                                      _vidur_cost, lambda: SimConfig(kv_tokens=40960, replicas=2, scheduler="sarathi", router="jsq", scheduler_options=sar)),
        "azure_vllm_tight_roofline": (lambda: iter_trace(_lengths_csv(), fmt="lengths", arrivals="poisson", rate=8.0, limit=3000, seed=7),
                                      lambda: make_cost_model("llama-2-70b", "a100-80gb", 2),
                                      lambda: SimConfig(kv_tokens=40960, replicas=2, scheduler="vllm", router="least_tokens")),
    }
    return out


COLS = ("request_index", "arrival_s", "first_token_s", "finish_s", "prompt_tokens", "output_tokens", "replica",
        "preemptions", "cached_tokens", "swaps", "prefill_replica")


def run_one(name, make_reqs, make_cost, make_cfg):
    from servopt.simulator.engine import simulate

    cost, cfg = make_cost(), make_cfg()
    c0 = time.process_time()
    res = simulate(make_reqs(), cost, cfg)
    cpu = time.process_time() - c0
    arrays = {k: np.ascontiguousarray(res.columns[k]) for k in COLS}
    h = hashlib.sha256()
    for k in COLS:
        h.update(k.encode())
        h.update(arrays[k].tobytes())
    reps = json.dumps(res.replicas, sort_keys=True)
    h.update(reps.encode())
    h.update(json.dumps(sorted(map(str, res.unserved))).encode())
    return {"sha256": h.hexdigest(), "requests": int(len(arrays["finish_s"])), "unserved": len(res.unserved),
            "preemptions": int(arrays["preemptions"].sum()), "makespan_s": res.makespan_s}, arrays, cpu


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--dump", default=None)
    ap.add_argument("--only", default=None)
    args = ap.parse_args(argv)
    stored = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    bad = 0
    new = {}
    for name, (mr, mc, mf) in configs().items():
        if args.only and args.only not in name:
            continue
        rec, arrays, cpu = run_one(name, mr, mc, mf)
        new[name] = rec
        if args.dump:
            Path(args.dump).mkdir(parents=True, exist_ok=True)
            np.savez(Path(args.dump) / f"{name}.npz", **arrays)
        ok = stored.get(name, {}).get("sha256") == rec["sha256"]
        bad += 0 if (ok or args.write) else 1
        print(f"{name:40s} {rec['requests']:6d} req {rec['preemptions']:5d} preempt {cpu:6.2f} s CPU  "
              f"{'same' if ok else ('WRITTEN' if args.write else 'DIFFERENT')}", flush=True)
    if args.write:
        stored.update(new)
        GOLDEN.write_text(json.dumps(stored, indent=2) + "\n")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
