"""Trace readers for the simulator: requests streamed one at a time, sorted by arrival.

Formats (detected from the file name and header; ``fmt`` forces one):

``azure``     Azure LLM inference trace 2023 CSV, ``TIMESTAMP,ContextTokens,GeneratedTokens``
              (Patel et al., Splitwise, ISCA'24; CC-BY-4.0). Arrival = seconds since the first row.
``mooncake``  Mooncake FAST'25 JSONL, ``timestamp`` (ms), ``input_length``, ``output_length``,
              ``hash_ids`` (prefix block ids, 512 tokens each) (Qin et al., FAST'25; Apache-2.0).
``lengths``   a length table without times, ``num_prefill_tokens,num_decode_tokens[,...]`` (the
              ShareGPT and arXiv-summarisation tables of Sarathi-Serve and Vidur); arrivals are drawn
              at ``rate`` requests/s, Poisson or gamma with coefficient of variation ``cv``.
``csv``       plain request CSV ``arrival_s,prompt_tokens,output_tokens[,id]``.
``vidur``     Vidur's trace-replay CSV ``Time,PromptTokenCount,CompletionTokenCount[,Date]``.
``json``      our JSON: ``{"requests": [{id, arrival, prompt_tokens, output_tokens, ...}]}`` (the
              fields of ``instances/requests.py``; ``arrival`` in seconds) or a bare list of them.

Any format with times can instead take synthetic arrivals (``arrivals="poisson"`` or ``"gamma"``
at ``rate``), keeping its lengths; ``limit`` keeps the first N requests; ``repeat`` cycles a length
table until ``limit`` requests are drawn (for long synthetic runs). Errors name the file, the row
and the column; lengths must be integers, prompts >= 0 and outputs >= 1.
"""
from __future__ import annotations

import csv
import json
from datetime import datetime
from pathlib import Path
from typing import Iterator

import numpy as np

from servopt.errors import InputError
from servopt.instances.requests import Request, Workload, request_from_dict

FORMATS = ("azure", "mooncake", "lengths", "csv", "vidur", "json")
_HEADERS = {
    "azure": ("TIMESTAMP", "ContextTokens", "GeneratedTokens"),
    "lengths": ("num_prefill_tokens", "num_decode_tokens"),
    "vidur": ("Time", "PromptTokenCount", "CompletionTokenCount"),
    "csv": ("arrival_s", "prompt_tokens", "output_tokens"),
}


def detect_format(path: str | Path) -> str:
    p = Path(path)
    if not p.is_file():
        raise InputError(str(path), "file not found" if not p.exists() else "is not a file")
    suffix = p.suffix.lower()
    if suffix == ".jsonl":
        return "mooncake"
    if suffix == ".json":
        return "json"
    with p.open(newline="", encoding="utf-8") as f:
        header = next(csv.reader(f), None)
    if not header:
        raise InputError(str(path), "empty file: expected a CSV header")
    cols = {h.strip() for h in header}
    for fmt in ("azure", "vidur", "csv", "lengths"):
        if cols >= set(_HEADERS[fmt]):
            return fmt
    best = max(("csv", "azure", "vidur", "lengths"), key=lambda f: len(cols & set(_HEADERS[f])))
    if cols & set(_HEADERS[best]):
        missing = [c for c in _HEADERS[best] if c not in cols][0]
        raise InputError(f"{path}:{missing}", f"required column is missing (header: {', '.join(header)})")
    raise InputError(f"{path}:header", "unrecognised columns " + ", ".join(sorted(cols))
                     + "; expected arrival_s,prompt_tokens,output_tokens (plain CSV), TIMESTAMP,ContextTokens,GeneratedTokens"
                     " (Azure), num_prefill_tokens,num_decode_tokens (length table) or Time,PromptTokenCount,"
                     "CompletionTokenCount (Vidur)")


def _int(value, where: str, minimum: int) -> int:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise InputError(where, f"expected an integer, got {value!r}") from None
    if not np.isfinite(f) or f != int(f):
        raise InputError(where, f"expected an integer, got {value!r}")
    v = int(f)
    if v < minimum:
        raise InputError(where, f"must be >= {minimum}, got {v}")
    return v


def _num(value, where: str) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise InputError(where, f"expected a number, got {value!r}") from None
    if not np.isfinite(f) or f < 0:
        raise InputError(where, f"must be a finite number >= 0, got {value!r}")
    return f


_CHUNK_ROWS = 1 << 16
_FAST_COLUMNS = {  # format -> (time column or None, prompt column, output column)
    "lengths": (None, "num_prefill_tokens", "num_decode_tokens"),
    "vidur": ("Time", "PromptTokenCount", "CompletionTokenCount"),
    "csv": ("arrival_s", "prompt_tokens", "output_tokens"),
}


def _rows_csv(path, fmt) -> Iterator[tuple]:
    """(id, time or None, prompt, output, prefix ids) per row, validated.

    Numeric formats are parsed a chunk of rows at a time by pandas (floats with Python's own
    correctly rounded parser, ``float_precision="round_trip"``, so times are the ones ``float()``
    gives) and validated column-wise; a chunk with anything unusual (a non-number, a gap, a
    negative or fractional length, a malformed line) is handed to the row-by-row reader, which
    raises the error naming the row and column.
    """
    if fmt in _FAST_COLUMNS:
        yield from _rows_csv_chunked(path, fmt)
        return
    yield from _rows_csv_slow(path, fmt)


def _rows_csv_chunked(path, fmt) -> Iterator[tuple]:
    import pandas as pd

    tcol, pcol, ocol = _FAST_COLUMNS[fmt]
    with Path(path).open(newline="", encoding="utf-8") as f:
        header = [h.strip() for h in next(csv.reader(f), [])]
    for col in _HEADERS[fmt]:
        if col not in header:
            raise InputError(f"{path}:{col}", "required column is missing")
    has_id = fmt == "csv" and "id" in header
    if len(set(header)) != len(header):
        yield from _rows_csv_slow(path, fmt)
        return
    start = 0
    try:
        # Parse floats exactly as float() does (the row reader), so both paths give identical times:
        # pandas 3 does by default and deprecates the option; pandas 2 needs "round_trip".
        exact = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}
        # the reader holds the file open: ``with`` closes it however the loop ends (a consumer that
        # stops early, a chunk handed over to the row reader)
        with pd.read_csv(path, header=0, names=header, chunksize=_CHUNK_ROWS, **exact,
                         dtype={"id": str} if has_id else None, keep_default_na=not has_id,
                         encoding="utf-8") as reader:
            for chunk in reader:
                cols = _chunk_columns(chunk, tcol, pcol, ocol)
                if cols is None:
                    break
                times, prompts, outputs = cols
                n = len(prompts)
                if has_id:
                    ids = [(v or "").strip() or str(start + j) for j, v in enumerate(chunk["id"].tolist())]
                else:
                    ids = [str(i) for i in range(start, start + n)]
                if times is None:
                    for rid, p, o in zip(ids, prompts, outputs):
                        yield (rid, None, p, o, ())
                else:
                    for rid, t, p, o in zip(ids, times, prompts, outputs):
                        yield (rid, t, p, o, ())
                start += n
            else:
                return
    except (ValueError, pd.errors.ParserError):
        pass
    # something in this chunk needs the row-by-row reader's checks (and its error message)
    for i, row in enumerate(_rows_csv_slow(path, fmt)):
        if i >= start:
            yield row


def _chunk_columns(chunk, tcol, pcol, ocol):
    """Validated (times or None, prompts, outputs) as Python lists, or None when a row needs a closer look."""
    out = []
    for col, minimum in ((pcol, 0), (ocol, 1)):
        v = chunk[col].to_numpy()
        if v.dtype.kind == "f":
            if not (np.isfinite(v).all() and (v == np.floor(v)).all()):
                return None
            v = v.astype(np.int64)
        elif v.dtype.kind not in "iu":
            return None
        if len(v) and v.min() < minimum:
            return None
        out.append(v.tolist())
    times = None
    if tcol is not None:
        t = chunk[tcol].to_numpy()
        if t.dtype.kind not in "fiu":
            return None
        t = t.astype(np.float64)
        if not (np.isfinite(t).all() and (t >= 0).all()):
            return None
        times = t.tolist()
    return times, out[0], out[1]


def _rows_csv_slow(path, fmt) -> Iterator[tuple]:
    need = _HEADERS[fmt]
    with Path(path).open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        for col in need:
            if col not in header:
                raise InputError(f"{path}:{col}", "required column is missing")
        reader.fieldnames = header
        t0 = None
        for i, row in enumerate(reader):
            where = f"{path}:row {i + 2}"
            if fmt == "azure":
                try:
                    ts = datetime.fromisoformat(row["TIMESTAMP"].strip()[:26])
                except (ValueError, AttributeError):
                    raise InputError(f"{where}.TIMESTAMP", f"not a timestamp: {row['TIMESTAMP']!r}") from None
                t0 = ts if t0 is None else t0
                t = (ts - t0).total_seconds()
                yield (str(i), t, _int(row["ContextTokens"], f"{where}.ContextTokens", 0),
                       _int(row["GeneratedTokens"], f"{where}.GeneratedTokens", 1), ())
            elif fmt == "lengths":
                yield (str(i), None, _int(row["num_prefill_tokens"], f"{where}.num_prefill_tokens", 0),
                       _int(row["num_decode_tokens"], f"{where}.num_decode_tokens", 1), ())
            elif fmt == "vidur":
                yield (str(i), _num(row["Time"], f"{where}.Time"), _int(row["PromptTokenCount"], f"{where}.PromptTokenCount", 0),
                       _int(row["CompletionTokenCount"], f"{where}.CompletionTokenCount", 1), ())
            else:
                rid = (row.get("id") or "").strip() or str(i)
                yield (rid, _num(row["arrival_s"], f"{where}.arrival_s"), _int(row["prompt_tokens"], f"{where}.prompt_tokens", 0),
                       _int(row["output_tokens"], f"{where}.output_tokens", 1), ())


def _rows_mooncake(path) -> Iterator[tuple]:
    with Path(path).open(encoding="utf-8") as f:
        for i, line in enumerate(f):
            if not line.strip():
                continue
            where = f"{path}:line {i + 1}"
            try:
                d = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(where, f"malformed JSON: {exc.msg}") from None
            if not isinstance(d, dict):
                raise InputError(where, "expected a JSON object per line")
            for k in ("timestamp", "input_length", "output_length"):
                if k not in d:
                    raise InputError(f"{where}.{k}", "required field is missing")
            ids = d.get("hash_ids", [])
            if not isinstance(ids, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in ids):
                raise InputError(f"{where}.hash_ids", "expected an array of integers")
            yield (str(i), _num(d["timestamp"], f"{where}.timestamp") / 1000.0, _int(d["input_length"], f"{where}.input_length", 0),
                   _int(d["output_length"], f"{where}.output_length", 1), tuple(ids))


def _requests_json(path) -> list[Request]:
    from servopt import jsonio

    data = jsonio.read_json(path)
    items = data.get("requests") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise InputError(f"{path}:requests", "expected an array of requests (or {\"requests\": [...]})")
    reqs = [request_from_dict(r, f"requests[{i}]", default_id=str(i)) for i, r in enumerate(items)]
    return sorted(reqs, key=lambda r: r.arrival)


def _arrival_times(n_hint: int, *, arrivals: str, rate: float, cv: float, rng) -> Iterator[float]:
    t = 0.0
    while True:
        if arrivals == "poisson":
            gaps = rng.exponential(1.0 / rate, 4096)
        else:  # gamma with mean 1/rate and coefficient of variation cv: shape 1/cv^2
            shape = 1.0 / (cv * cv)
            gaps = rng.gamma(shape, 1.0 / (rate * shape), 4096)
        for g in np.cumsum(gaps):
            yield t + float(g)
        t += float(gaps.sum())


def iter_trace(path: str | Path, *, fmt: str | None = None, arrivals: str | None = None, rate: float | None = None,
               cv: float = 1.0, seed: int = 0, limit: int | None = None, repeat: bool = False) -> Iterator[Request]:
    """Stream the requests of a trace file, sorted by arrival (see the module docstring)."""
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise InputError("--trace-format", f"unknown format '{fmt}'; valid: {', '.join(FORMATS)}")
    if not Path(path).is_file():
        raise InputError(str(path), "file not found")
    if arrivals is None:
        arrivals = "poisson" if fmt == "lengths" else "trace"
    if arrivals not in ("trace", "poisson", "gamma"):
        raise InputError("--arrivals", f"must be trace, poisson or gamma; got '{arrivals}'")
    if arrivals == "trace" and fmt == "lengths":
        raise InputError("--arrivals", "a length table has no times: use poisson or gamma with --rate")
    if arrivals != "trace" and not (rate and rate > 0):
        raise InputError("--rate", f"{arrivals} arrivals need a positive --rate (requests per second)")
    if not cv > 0:
        raise InputError("--cv", f"must be > 0, got {cv}")
    if limit is not None and limit < 1:
        raise InputError("--limit", f"must be >= 1, got {limit}")

    def rows():
        if fmt == "json":
            for r in _requests_json(path):
                yield (r.id, r.arrival, r.prompt_tokens, r.output_tokens, r.prefix_block_ids, r)
            return
        src = _rows_mooncake if fmt == "mooncake" else (lambda p: _rows_csv(p, fmt))
        while True:
            any_row = False
            for row in src(path):
                any_row = True
                yield row + (None,)
            if not repeat or not any_row:
                return

    times = _arrival_times(0, arrivals=arrivals, rate=rate, cv=cv, rng=np.random.default_rng(seed)) if arrivals != "trace" else None
    last = -1.0
    count = 0
    for rid, t, prompt, output, ids, full in rows():
        if limit is not None and count >= limit:
            return
        arrival = next(times) if times is not None else t
        if times is None and arrival < last:
            raise InputError(f"{path}:request {rid}", f"arrivals are not sorted ({arrival} after {last}); sort the trace")
        last = arrival
        rid_out = rid if not repeat else str(count)  # cycled rows get their position as id
        if full is not None and times is None:
            yield full
        elif full is not None:
            yield Request(full.id, arrival, full.prompt_tokens, full.output_tokens, full.predicted_output_tokens,
                          full.output_tokens_interval, full.prefix_block_ids, full.weight)
        else:
            yield Request(rid_out, arrival, prompt, output, prefix_block_ids=ids)
        count += 1
    if count == 0:
        raise InputError(str(path), "the trace has no requests")


def load_trace(path: str | Path, **options) -> Workload:
    """The whole trace as a ``Workload`` (for small traces; the simulator streams ``iter_trace``)."""
    reqs = tuple(iter_trace(path, **options))
    return Workload(reqs, name=Path(path).stem, source=str(path))


def write_csv(requests, path: str | Path) -> None:
    """Write requests as the plain CSV ``arrival_s,prompt_tokens,output_tokens,id``."""
    with Path(path).open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["arrival_s", "prompt_tokens", "output_tokens", "id"])
        for r in requests:
            w.writerow([repr(float(r.arrival)), r.prompt_tokens, r.output_tokens, r.id])
