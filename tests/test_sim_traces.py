"""Trace readers, metrics, the Vidur profile import and the ``servopt simulate`` command."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from servopt.errors import InputError
from servopt.instances.requests import Request
from servopt.instances.traces import detect_format, iter_trace, write_csv

DATA = Path(__file__).resolve().parents[1] / "instances" / "data"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "traces" / "vidur_profiling"


def test_formats_are_detected_and_read():
    az = list(iter_trace(DATA / "trace_azure_conv_sample.csv"))
    assert detect_format(DATA / "trace_azure_conv_sample.csv") == "azure"
    assert len(az) == 300 and az[0].arrival == 0.0 and (az[0].prompt_tokens, az[0].output_tokens) == (374, 44)
    assert az[1].arrival == pytest.approx(50.9951690 - 46.6805900)  # seconds between the first two timestamps
    mc = list(iter_trace(DATA / "trace_mooncake_conv_sample.jsonl"))
    assert len(mc) == 200 and mc[0].prefix_block_ids[:3] == (0, 1, 2) and mc[0].prompt_tokens == 6758
    assert max(r.arrival for r in mc) == pytest.approx(72.0)  # ms -> s


def test_plain_csv_and_json_round_trip(tmp_path):
    reqs = [Request("x", 0.5, 10, 3), Request("y", 1.25, 0, 1)]
    write_csv(reqs, tmp_path / "t.csv")
    back = list(iter_trace(tmp_path / "t.csv"))
    assert [(r.id, r.arrival, r.prompt_tokens, r.output_tokens) for r in back] == [("x", 0.5, 10, 3), ("y", 1.25, 0, 1)]
    (tmp_path / "t.json").write_text(json.dumps({"requests": [r.to_dict() for r in reqs]}))
    assert [r.id for r in iter_trace(tmp_path / "t.json")] == ["x", "y"]


def test_poisson_and_gamma_arrivals_hit_the_rate():
    f = DATA / "trace_sharegpt_lengths_sample.csv"
    p = np.array([r.arrival for r in iter_trace(f, rate=4.0, limit=2000, repeat=True, seed=1)])
    gaps = np.diff(p)
    assert 1 / gaps.mean() == pytest.approx(4.0, rel=0.08)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.1)
    g = np.diff([r.arrival for r in iter_trace(f, arrivals="gamma", rate=4.0, cv=3.0, limit=4000, repeat=True, seed=1)])
    assert 1 / g.mean() == pytest.approx(4.0, rel=0.15)
    assert g.std() / g.mean() == pytest.approx(3.0, rel=0.2)
    again = [r.arrival for r in iter_trace(f, rate=4.0, limit=50, seed=1)]
    assert again == list(p[:50])


@pytest.mark.parametrize("body, match", [
    ("arrival_s,prompt_tokens\n0,5\n", "output_tokens: required column is missing"),
    ("arrival_s,prompt_tokens,output_tokens\n0,-5,3\n", "row 2.prompt_tokens: must be >= 0"),
    ("arrival_s,prompt_tokens,output_tokens\n0,5,0\n", "output_tokens: must be >= 1"),
    ("arrival_s,prompt_tokens,output_tokens\n2,5,3\n1,5,3\n", "not sorted"),
    ("arrival_s,prompt_tokens,output_tokens\nx,5,3\n", "arrival_s: expected a number"),
    ("a,b\n1,2\n", "unrecognised columns"),
])
def test_bad_traces_name_the_field(tmp_path, body, match):
    f = tmp_path / "bad.csv"
    f.write_text(body)
    with pytest.raises(InputError, match=match):
        list(iter_trace(f))


def test_length_table_needs_a_rate():
    with pytest.raises(InputError, match="--rate"):
        list(iter_trace(DATA / "trace_sharegpt_lengths_sample.csv", arrivals="poisson"))
    with pytest.raises(InputError, match="--arrivals"):
        list(iter_trace(DATA / "trace_sharegpt_lengths_sample.csv", arrivals="trace"))


def test_summary_percentiles_and_goodput():
    from servopt.analysis.sim_metrics import summarize
    from servopt.simulator.engine import SimConfig, simulate
    from servopt.simulator.timing import LinearTimer

    reqs = list(iter_trace(DATA / "trace_azure_conv_sample.csv", limit=100))
    res = simulate(reqs, LinearTimer(20, 0.002, 0.15), SimConfig(kv_tokens=20000, replicas=2))
    df = res.to_dataframe()
    s = summarize(res, slo_ttft_s=0.2, slo_tpot_s=0.03)
    assert s["ttft_s"]["p90"] == pytest.approx(np.percentile(df["ttft_s"], 90))
    tpot = (df["e2e_s"] - df["ttft_s"]) / (df["output_tokens"] - 1)
    assert s["tpot_s"]["p50"] == pytest.approx(np.nanmedian(tpot))
    ok = ((df["ttft_s"] <= 0.2) & ~(tpot > 0.03)).sum()
    assert s["goodput_requests_per_s"] == pytest.approx(ok / df["finish_s"].max())
    assert 0 < s["kv_utilization"]["mean"] <= s["kv_utilization"]["peak"] <= 1


@pytest.mark.skipif(not SHARED.is_dir(), reason="Vidur profiles live in shared/traces/vidur_profiling")
def test_vidur_import_reproduces_profiled_points():
    """At a profiled point the imported cost is Vidur's composition of the CSV medians, by hand."""
    import pandas as pd

    from servopt.costmodel.vidur_import import TOKEN_OPS, load_vidur_profiles

    cost = load_vidur_profiles(SHARED / "a100_Llama-2-70b-hf_mlp.csv", SHARED / "a100_attention_n8192_q64_kv8_tp2.csv",
                               SHARED / "a100_dgx_all_reduce.csv", num_layers=80, hidden_size=8192, tp=2)
    mlp = pd.read_csv(SHARED / "a100_Llama-2-70b-hf_mlp.csv")
    row = mlp[(mlp.num_tensor_parallel_workers == 2) & (mlp.num_tokens == 512)]
    token_ms = sum(row[f"time_stats.{o}.median"].median() for o in TOKEN_OPS)
    att = pd.read_csv(SHARED / "a100_attention_n8192_q64_kv8_tp2.csv")
    pre = att[(att.is_prefill) & (att.prefill_chunk_size == 512) & (att.kv_cache_size == 0)]["time_stats.attn_prefill.median"].median()
    dec = att[(~att.is_prefill) & (att.batch_size == 32) & (att.kv_cache_size == 1024)]["time_stats.attn_decode.median"].median()
    ar = pd.read_csv(SHARED / "a100_dgx_all_reduce.csv")
    ar = ar[(ar.num_workers == 2) & (ar.devices_per_node == 2)].groupby("size")["time_stats.all_reduce.median"].median()
    ar_ms = lambda n: np.interp(n * 8192 * 2, ar.index, ar.values) + 0.02  # noqa: E731
    assert cost.iteration_ms([(512, 0)]) == pytest.approx(80 * (token_ms + pre + 2 * ar_ms(512)), rel=1e-9)
    row32 = mlp[(mlp.num_tensor_parallel_workers == 2) & (mlp.num_tokens == 32)]
    tok32 = sum(row32[f"time_stats.{o}.median"].median() for o in TOKEN_OPS)
    assert cost.iteration_ms([], 32, 32 * 1024) == pytest.approx(80 * (tok32 + 1.1 * dec + 2 * ar_ms(32)), rel=1e-9)
    arr = cost.decode_ms_array(32, np.array([32 * 1024, 32 * 2048]))
    assert arr[0] == pytest.approx(cost.iteration_ms([], 32, 32 * 1024))
    assert arr[1] == pytest.approx(cost.iteration_ms([], 32, 32 * 2048))


def test_cli_simulate_json_contract(run_cli, tmp_path):
    out = tmp_path / "r.json"
    code, stdout, err = run_cli("simulate", DATA / "trace_azure_conv_sample.csv", "--llm", "llama-3.1-8b", "--gpu", "h100-sxm",
                                "--replicas", "2", "--router", "jsq", "--policy", "sarathi", "--limit", "80",
                                "--slo-ttft-ms", "500", "--json", "--out", out, "--check")
    assert code == 0, err
    s = json.loads(stdout)
    for key in ("ttft_s", "tpot_s", "e2e_s"):
        assert set(s[key]) >= {"p50", "p90", "p99"}
    for key in ("makespan_s", "preemptions", "requests", "wall_s", "throughput", "goodput_requests_per_s", "kv_utilization"):
        assert key in s
    assert s["requests"] == 80 and s["check"]["violations"] == []
    full = json.loads(out.read_text())
    assert len(full["requests_table"]) == 80 and {"ttft_s", "tpot_s", "cached_tokens", "preemptions"} <= set(full["requests_table"][0])


def test_cli_unit_cost_and_vidur_trace(run_cli, tmp_path):
    f = tmp_path / "v.csv"
    f.write_text("Date,Time,PromptTokenCount,CompletionTokenCount\n2023-08-21,0.0,10,3\n2023-08-21,0.5,4,2\n")
    code, stdout, err = run_cli("simulate", f, "--cost", "unit", "--kv-tokens", "64", "--block-size", "4", "--json")
    assert code == 0, err
    s = json.loads(stdout)
    # unit iterations: request 1 prefill at [0,1), decode 2 at [1,2); request 2 joins at 1 (mixed) ...
    assert s["requests"] == 2 and s["e2e_s"]["p50"] is not None


def test_cli_dispatches_kv_schedule_instances(run_cli):
    inst = DATA / "example_kv_schedule.json"
    code, stdout, err = run_cli("simulate", inst, "--policy", "mc-sf", "--json")
    assert code == 0, err
    assert json.loads(stdout)["kind"] == "kv_schedule"
    code2, stdout2, _ = run_cli("simulate", inst, "--scheduler", "mc-sf", "--json")
    assert code2 == 0 and json.loads(stdout2)["objective"] == json.loads(stdout)["objective"]


def _rows_both_ways(path, fmt, monkeypatch, chunk_rows):
    from servopt.instances import traces

    monkeypatch.setattr(traces, "_CHUNK_ROWS", chunk_rows)
    return list(traces._rows_csv(path, fmt)), list(traces._rows_csv_slow(path, fmt))


@pytest.mark.parametrize("chunk_rows", [7, 1 << 16])
def test_chunked_csv_reader_equals_row_reader(tmp_path, monkeypatch, chunk_rows):
    """Chunk-parsed rows (pandas) are the row reader's rows, value for value, across chunk edges;
    times parse to the same doubles as float()."""
    rng = np.random.default_rng(3)
    f = tmp_path / "plain.csv"
    with f.open("w") as fh:
        fh.write("arrival_s,prompt_tokens,output_tokens,id\n")
        t = 0.0
        for i in range(50):
            t += float(rng.exponential(0.37))
            fh.write(f"{t!r},{int(rng.integers(0, 5000))},{int(rng.integers(1, 900))},{'' if i % 5 == 0 else f' r{i} '}\n")
    v = tmp_path / "vidur.csv"
    v.write_text("Date,Time,PromptTokenCount,CompletionTokenCount\n" +
                 "".join(f"2023-08-21,{0.1 * i + 1e-9 * i * i},{10 + i},{1 + i % 3}.0\n" for i in range(40)))
    for path, fmt in ((DATA / "trace_sharegpt_lengths_sample.csv", "lengths"), (f, "csv"), (v, "vidur")):
        fast, slow = _rows_both_ways(path, fmt, monkeypatch, chunk_rows)
        assert fast == slow and len(fast) > 30, fmt
        assert all(type(a) is type(b) for x, y in zip(fast, slow) for a, b in zip(x, y)), fmt


def test_chunked_reader_hands_bad_rows_to_the_row_reader(tmp_path, monkeypatch):
    """A bad value in a later chunk: the rows before it come through, then the row reader's error."""
    from servopt.instances import traces

    monkeypatch.setattr(traces, "_CHUNK_ROWS", 8)
    f = tmp_path / "lengths.csv"
    f.write_text("num_prefill_tokens,num_decode_tokens\n" + "".join(f"{i},{i + 1}\n" for i in range(20)) + "5,2.5\n3,4\n")
    got = []
    with pytest.raises(InputError, match=r"row 22\.num_decode_tokens: expected an integer"):
        for r in traces._rows_csv(f, "lengths"):
            got.append(r)
    assert [r[2] for r in got] == list(range(20))
