"""CPU time of the simulator on the scale setting, before/after style: this tree against others.

Runs ``simulate()`` on the setting of benchmarks/sim_scale.py (16 replicas of Llama-2-70B TP2 A100
on Vidur's operator profiles, Sarathi 512, round-robin, Poisson 12 req/s, Azure-conversation
lengths cycled) for N requests, in a fresh subprocess per tree and repeat, alternating trees so
that they see the same machine load, and reports the best and median CPU seconds
(``time.process_time``) per tree. A tree is a folder whose ``servopt`` package can be imported
with it first on ``PYTHONPATH`` (for an older commit:
``git archive COMMIT | tar -x -C /tmp/old`` and a ``/tmp/old_pkg/servopt`` folder that maps the
repo's folders the way pyproject's ``package-dir`` does; see benchmarks/results/sim_speed.md);
``.`` is the installed (this) tree.

Usage: ``python benchmarks/sim_speed.py [--requests 100000] [--repeats 3] [--tree NAME=PATH ...]``.
Writes benchmarks/results/sim_speed.md and .json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

CHILD = r'''
import json, sys, time, resource
sys.path.insert(0, sys.argv[3])
from sim_vidur import PROFILES, vidur_kv_tokens
from servopt.costmodel.vidur_import import load_vidur_profiles
from servopt.instances.catalog import get_llm
from servopt.instances.traces import iter_trace
from servopt.simulator.engine import SimConfig, simulate
import servopt.simulator.engine as eng
n = int(sys.argv[1])
cost = load_vidur_profiles(PROFILES / "a100_Llama-2-70b-hf_mlp.csv", PROFILES / "a100_attention_n8192_q64_kv8_tp2.csv",
                           PROFILES / "a100_dgx_all_reduce.csv", num_layers=80, hidden_size=8192, tp=2)
cfg = SimConfig(kv_tokens=vidur_kv_tokens(get_llm("llama-2-70b"), 2), replicas=16, scheduler="sarathi", router="round_robin",
                scheduler_options={"token_budget": 512, "max_batch": 128})
reqs = iter_trace(sys.argv[2], fmt="lengths", arrivals="poisson", rate=12.0, limit=n, repeat=True, seed=0)
c0 = time.process_time()
res = simulate(reqs, cost, cfg)
cpu = time.process_time() - c0
print(json.dumps({"cpu_s": cpu, "wall_s": res.wall_s, "engine": eng.__file__,
                  "finish_sum": float(res.columns["finish_s"].sum()),
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
'''


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=100000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tree", action="append", default=[], help="NAME=PATH (PATH first on PYTHONPATH); '.' = this tree")
    args = ap.parse_args(argv)
    trees = [t.split("=", 1) for t in args.tree] or [["this", "."]]
    sys.path.insert(0, str(HERE))
    from sim_golden import _lengths_csv

    lengths = str(_lengths_csv())
    runs = {name: [] for name, _ in trees}
    for _ in range(args.repeats):
        for name, path in trees:
            env = dict(os.environ)
            if path != ".":
                env["PYTHONPATH"] = path + os.pathsep + env.get("PYTHONPATH", "")
            out = subprocess.run([sys.executable, "-c", CHILD, str(args.requests), lengths, str(HERE)],
                                 capture_output=True, text=True, env=env, cwd="/")
            if out.returncode != 0:
                print(out.stderr[-2000:], file=sys.stderr)
                return 1
            runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(name, runs[name][-1], flush=True)
    sums = {name: {r["finish_sum"] for r in rs} for name, rs in runs.items()}
    same = len(set().union(*sums.values())) == 1
    lines = ["# Simulator CPU time, tree against tree", "",
             f"Scale setting (benchmarks/sim_scale.py), {args.requests:,} requests, 16 replicas; {args.repeats} runs per tree, "
             f"alternating; machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end. "
             f"Same simulated finish times in every run: {'yes' if same else 'NO'}.", "",
             "| tree | best CPU s | median CPU s | best CPU us/request | peak RSS MB |", "|---|---|---|---|---|"]
    for name, rs in runs.items():
        cpus = [r["cpu_s"] for r in rs]
        lines.append(f"| {name} | {min(cpus):.2f} | {statistics.median(cpus):.2f} | {1e6 * min(cpus) / args.requests:.1f} | "
                     f"{max(r['rss_mb'] for r in rs):.0f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "sim_speed.md").write_text(text)
    (RESULTS / "sim_speed.json").write_text(json.dumps({"requests": args.requests, "runs": runs}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
