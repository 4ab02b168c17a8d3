"""Online policies vs the hindsight optimum on trace-driven kv_schedule instances.

Instances from instances/kv_generators.py ``trace``: consecutive requests of the Azure 2023
conversation trace (real inter-arrival times) and ShareGPT lengths (Poisson arrivals), KV memory
16,492 tokens (Jaillet et al.'s Llama2-70B / 2 x A100 figure), coarsened to ``--tokens-per-unit``
tokens per unit and as many decode steps per round (50 ms per step). For each instance every
policy runs in the round simulator and the hindsight IP runs for ``--time-limit`` seconds; the
table gives each policy's mean ratio interval [ALG/incumbent, ALG/bound] (ALG/OPT lies inside).

    python benchmarks/kv_schedule_trace.py [--instances 3] [--n 40] [--time-limit 30]

Writes benchmarks/results/kv_schedule_trace.md and .json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
from pathlib import Path

import numpy as np

from servopt.analysis.compare import compare_kv_schedule
from servopt.instances.kv_generators import trace
from servopt.instances.kv_schedule import KVScheduleInstance

RESULTS = Path(__file__).resolve().parent / "results"
POLICIES = ["fcfs", "mc-sf", "vllm", "sjf", "alpha-threshold", "a-min"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", type=int, default=3)
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--time-limit", type=float, default=30.0)
    ap.add_argument("--tokens-per-unit", type=int, default=32)
    ap.add_argument("--sharegpt-rate", type=float, default=8.0, help="ShareGPT Poisson arrivals per round")
    ap.add_argument("--out", default=str(RESULTS / "kv_schedule_trace"))
    args = ap.parse_args(argv)
    settings = [("azure_conv", {"arrivals": "trace"}), ("sharegpt", {"arrivals": "poisson", "rate": args.sharegpt_rate})]
    records = []
    for source, kw in settings:
        for k in range(args.instances):
            data = trace(np.random.default_rng([11, k]), source=source, n=args.n, tokens_per_unit=args.tokens_per_unit, **kw)
            inst = KVScheduleInstance.from_dict(data)
            cmp = compare_kv_schedule(inst, POLICIES, time_limit_s=args.time_limit, rel_gap=0.0)
            rec = {"source": source, "k": k, "n": inst.n, "M_units": inst.memory_tokens, "meta": data["meta"],
                   **{key: v for key, v in cmp.to_dict().items() if key != "rows"}, "rows": cmp.to_dict()["rows"]}
            records.append(rec)
            print(json.dumps({key: rec[key] for key in ("source", "k", "n", "optimum_status", "incumbent", "bound", "gap")}),
                  flush=True)
    lines = ["# Online policies vs the hindsight optimum on trace-driven instances", "",
             f"Command: `python benchmarks/kv_schedule_trace.py --instances {args.instances} --n {args.n} "
             f"--time-limit {args.time_limit:g} --tokens-per-unit {args.tokens_per_unit} --sharegpt-rate {args.sharegpt_rate:g}`", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores shared with other jobs; HiGHS 1 thread, rel_gap 0. "
             f"Units: {args.tokens_per_unit} tokens per memory unit and decode steps per round; M = 16492 tokens.", "",
             "| source | instances | OPT proven | mean gap | " + " | ".join(f"{p} [lo, hi]" for p in POLICIES) + " |",
             "| --- | --- | --- | --- | " + " | ".join("---" for _ in POLICIES) + " |"]
    for source, _ in settings:
        sub = [r for r in records if r["source"] == source]
        proven = sum(r["optimum_status"] == "optimal" and r["gap"] == 0 for r in sub)
        cells = []
        for p in POLICIES:
            rows = [next(x for x in r["rows"] if x["policy"] == p) for r in sub]
            ok = [x for x in rows if x["status"] == "ok"]
            if not ok:
                cells.append("livelock")
                continue
            lo = statistics.fmean(x["ratio_to_incumbent"] for x in ok)
            hi = statistics.fmean(x["ratio_to_bound"] for x in ok)
            cells.append(f"[{lo:.3f}, {hi:.3f}]" + ("" if len(ok) == len(rows) else f" ({len(rows) - len(ok)} livelock)"))
        gaps = [r["gap"] for r in sub if r["gap"] is not None]
        lines.append(f"| {source} | {len(sub)} | {proven} | {100 * statistics.fmean(gaps):.2f}% | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out + ".md").write_text(text)
    Path(args.out + ".json").write_text(json.dumps(records, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
