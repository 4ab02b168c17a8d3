"""Build the request-size mixes of the pd_placement study: ``instances/data/pd_workload_mixes.json``.

Mélange (arXiv 2404.14527 §6.1) evaluates a short-context chat workload (Chatbot Arena), a
long-context one (PubMed summarisation) and a mix of the two (80 % short / 20 % long). Their
traces are not in the repository; the public stand-ins used here are

* ``sharegpt`` (short context, for Arena): ShareGPT (microsoft/sarathi-serve, data/processed_traces/
  sharegpt_8k_filtered_stats_llama2_tokenizer.csv, Apache-2.0; 8k conversations, llama-2 tokens);
* ``arxiv`` (long context, for PubMed): arXiv summarisation (microsoft/vidur, data/processed_traces/
  arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv, MIT; 28k papers, llama-2 tokens);
* ``mixed``: 80 % sharegpt + 20 % arxiv, as in Mélange.

(provenance and checksums: shared/traces/SOURCES.md). Each mix is a 2-D histogram over Mélange-style
buckets, prompt edges 0/256/512/1024/2048/4096/8192 and output edges 0/64/256/512/1024/4096 tokens;
a bucket's request size is the mean prompt and output length of the trace rows in it; buckets
under 0.5 % of the requests are merged into their nearest populated neighbour (by index) so that
every mix has at most ~20 buckets.

    python benchmarks/pd_make_mixes.py [--traces TRACES_DIR]
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

PROMPT_EDGES = (0, 256, 512, 1024, 2048, 4096, 8192)
OUTPUT_EDGES = (0, 64, 256, 512, 1024, 4096)
MIN_SHARE = 0.005
SOURCES = {
    "sharegpt": ("sharegpt_8k_filtered_stats_llama2_tokenizer.csv",
              "microsoft/sarathi-serve data/processed_traces/sharegpt_8k_filtered_stats_llama2_tokenizer.csv (Apache-2.0)"),
    "arxiv": ("arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv",
             "microsoft/vidur data/processed_traces/arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv (MIT)"),
}


def _bin(value: int, edges) -> int | None:
    for i in range(len(edges) - 1):
        if edges[i] < value <= edges[i + 1]:
            return i
    return None


def histogram(path: Path) -> dict[tuple[int, int], list]:
    """(prompt bin, output bin) -> [count, sum prompt, sum output]; rows outside the edges are dropped."""
    cells: dict[tuple[int, int], list] = {}
    with path.open() as fh:
        for row in csv.DictReader(fh):
            p, o = int(row["num_prefill_tokens"]), int(row["num_decode_tokens"])
            i, j = _bin(p, PROMPT_EDGES), _bin(o, OUTPUT_EDGES)
            if i is None or j is None:
                continue
            c = cells.setdefault((i, j), [0, 0, 0])
            c[0] += 1
            c[1] += p
            c[2] += o
    return cells


def merge_small(cells: dict) -> dict:
    total = sum(c[0] for c in cells.values())
    cells = {k: list(v) for k, v in cells.items()}
    for key in sorted(cells, key=lambda k: cells[k][0]):
        if cells[key][0] / total >= MIN_SHARE or len(cells) == 1:
            continue
        others = [k for k in cells if k != key]
        nearest = min(others, key=lambda k: (abs(k[0] - key[0]) + abs(k[1] - key[1]), -cells[k][0]))
        for idx in range(3):
            cells[nearest][idx] += cells[key][idx]
        del cells[key]
    return cells


def buckets_of(cells: dict, weight: float = 1.0, prefix: str = "") -> list[dict]:
    total = sum(c[0] for c in cells.values())
    out = []
    for (i, j), (n, sp, so) in sorted(cells.items()):
        out.append({"id": f"{prefix}p{PROMPT_EDGES[i + 1]}_o{OUTPUT_EDGES[j + 1]}", "share": weight * n / total,
                    "prompt_tokens": max(1, round(sp / n)), "output_tokens": max(2, round(so / n)), "requests": n})
    return out


def _normalise(buckets: list[dict]) -> list[dict]:
    for b in buckets:
        b["share"] = round(b["share"], 6)
    drift = round(1.0 - sum(b["share"] for b in buckets), 6)
    max(buckets, key=lambda b: b["share"])["share"] = round(max(buckets, key=lambda b: b["share"])["share"] + drift, 6)
    return buckets


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--traces", default=str(Path(__file__).resolve().parents[2] / "shared" / "traces"))
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "instances" / "data" / "pd_workload_mixes.json"))
    args = ap.parse_args(argv)
    cells = {name: merge_small(histogram(Path(args.traces) / fname)) for name, (fname, _) in SOURCES.items()}
    mixes = {
        "sharegpt": _normalise(buckets_of(cells["sharegpt"])),
        "arxiv": _normalise(buckets_of(cells["arxiv"])),
        "mixed": _normalise(buckets_of(cells["sharegpt"], 0.8, "s_") + buckets_of(cells["arxiv"], 0.2, "a_")),
    }
    doc = {
        "comment": "Request-size mixes for benchmarks/pd_study.py, made by benchmarks/pd_make_mixes.py (see its docstring): "
                   "Melange-style buckets (arXiv 2404.14527, 6.1) from public traces; share = fraction of requests, "
                   "prompt/output tokens = the bucket's mean lengths (llama-2 tokenizer), requests = trace rows in the bucket.",
        "sources": {name: src for name, (_, src) in SOURCES.items()} | {"mixed": "80% sharegpt + 20% arxiv, as Melange's mixed workload"},
        "prompt_edges": list(PROMPT_EDGES), "output_edges": list(OUTPUT_EDGES),
        "mixes": mixes,
    }
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    for name, bs in mixes.items():
        print(f"{name}: {len(bs)} buckets, shares sum {sum(b['share'] for b in bs):.6f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
