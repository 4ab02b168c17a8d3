"""Read Helix's cluster INI files (Helix-ASPLOS25 artifact) into a layer_placement instance dict.

Cluster file format (research/placement-anchors.md §1.8; Helix's artifact_evaluation/*/config/*.ini):
``[NodeNames] total_compute_nodes = N``; ``[SourceNode]`` / ``[SinkNode] connected_nodes = [..]``;
``[ComputeNode-i] type = T4, connected_nodes = [..]``; ``[Link-a-b] bandwidth = "<x> * mbps",
latency = "<y> * MilliSec"`` with a = ``source`` or a node index, b = ``sink`` or a node index.
Links between compute nodes are bidirectional (both directions get the capacity); source links go
source -> node, sink links node -> sink.

Capacities (Helix's MILP, notes §1.1): node -> node arcs carry bandwidth / activation bytes per
token (hidden size × 2 B: 16384 for LLaMA-2 70B, 13312 for LLaMA-1 30B), source and sink arcs
bandwidth / token bytes (2 B). ``units="helix"`` (default) reproduces Helix's numbers: its "mbps"
constant is 1e6 and the byte division is applied to that, so a 1000 Mbps link gives
1e9 / 16384 = 61035.16 tok/s (8x a strict bit-to-byte conversion, notes §1.1); ``units="strict"``
divides by 8 first.

Node throughputs T_τ(k) are not in the INI (Helix derives them from latency profiles and a fixed
point over the cluster); they come from a throughput table::

    {"num_layers": 60, "activation_bytes_per_token": 13312, "token_bytes": 2,
     "throughput_tokens_per_s": {"T4": [T(1), ..., T(K)], "L4": [...]}}

or a CSV with header ``type,num_layers_held,tokens_per_s`` (then ``num_layers`` and
``activation_bytes_per_token`` are passed as options).
"""
from __future__ import annotations

import ast
import configparser
import csv
import json
import re
from pathlib import Path

from servopt.errors import InputError

_BANDWIDTH_UNITS = {"bps": 1.0, "kbps": 1e3, "mbps": 1e6, "gbps": 1e9}
_EXPR = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*\*\s*([A-Za-z]+)\s*$")


def parse_bandwidth(text: str, where: str) -> float:
    """``"1000 * mbps"`` -> 1e9 (Helix's constant; bits per second read as Helix reads them)."""
    text = text.strip().strip('"').strip("'")
    m = _EXPR.match(text)
    if m:
        unit = m.group(2).lower()
        if unit not in _BANDWIDTH_UNITS:
            raise InputError(where, f"unknown bandwidth unit '{m.group(2)}' (expected bps, kbps, mbps, gbps)")
        return float(m.group(1)) * _BANDWIDTH_UNITS[unit]
    try:
        return float(text)
    except ValueError:
        raise InputError(where, f"cannot read bandwidth '{text}' (expected '<number> * mbps')") from None


_LATENCY_UNITS = {"sec": 1000.0, "millisec": 1.0, "microsec": 1e-3}


def parse_latency_ms(text: str, where: str) -> float:
    """``"44 * MilliSec"`` -> 44.0 (milliseconds); units Sec, MilliSec, MicroSec."""
    text = text.strip().strip('"').strip("'")
    m = _EXPR.match(text)
    if m and m.group(2).lower() in _LATENCY_UNITS:
        return float(m.group(1)) * _LATENCY_UNITS[m.group(2).lower()]
    try:
        return float(text) * 1000.0  # a bare number: seconds
    except ValueError:
        raise InputError(where, f"cannot read latency '{text}' (expected '<number> * MilliSec')") from None


def _int_list(text: str, where: str) -> list[int]:
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        raise InputError(where, f"expected a list of node indices, got '{text}'") from None
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) for v in value):
        raise InputError(where, f"expected a list of node indices, got '{text}'")
    return list(value)


def read_throughput_table(path: str, *, num_layers: int | None = None, activation_bytes: float | None = None,
                          token_bytes: float | None = None) -> dict:
    p = Path(path)
    if not p.is_file():
        raise InputError(str(path), "file not found")
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise InputError(str(path), f"malformed JSON at line {exc.lineno}: {exc.msg}") from None
        if not isinstance(data, dict) or not isinstance(data.get("throughput_tokens_per_s"), dict):
            raise InputError(f"{path}: throughput_tokens_per_s", "required object {type: [T(1), ...]} is missing")
        table = data["throughput_tokens_per_s"]
        num_layers = num_layers or data.get("num_layers")
        activation_bytes = activation_bytes or data.get("activation_bytes_per_token")
        token_bytes = token_bytes or data.get("token_bytes", 2)
    else:
        table: dict[str, dict[int, float]] = {}
        with p.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            need = {"type", "num_layers_held", "tokens_per_s"}
            if not reader.fieldnames or not need <= set(reader.fieldnames):
                raise InputError(str(path), f"CSV header must have {', '.join(sorted(need))}")
            for row_no, row in enumerate(reader, start=2):
                try:
                    k = int(row["num_layers_held"])
                    t = float(row["tokens_per_s"])
                except (TypeError, ValueError):
                    raise InputError(f"{path}: line {row_no}", "num_layers_held must be an integer, tokens_per_s a number") from None
                table.setdefault(row["type"], {})[k] = t
        dense = {}
        for gpu, by_k in table.items():
            ks = sorted(by_k)
            if ks != list(range(1, len(ks) + 1)):
                raise InputError(f"{path}: type {gpu}", "num_layers_held must run 1, 2, ..., K without gaps")
            dense[gpu] = [by_k[k] for k in ks]
        table = dense
        token_bytes = token_bytes or 2
    if not isinstance(num_layers, int) or num_layers < 1:
        raise InputError("--num-layers", "the number of model layers is required (in the table or as an option)")
    if not isinstance(activation_bytes, (int, float)) or activation_bytes <= 0:
        raise InputError("--activation-bytes", "activation bytes per token are required (hidden size × 2 B)")
    for gpu, values in table.items():
        if not isinstance(values, list) or not values or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in values):
            raise InputError(f"{path}: throughput_tokens_per_s.{gpu}", "expected a non-empty list of positive numbers")
    return {"num_layers": num_layers, "activation_bytes": float(activation_bytes), "token_bytes": float(token_bytes),
            "throughput": table}


def import_cluster(ini_path: str, table: dict, *, units: str = "helix", name: str | None = None) -> dict:
    """A layer_placement instance dict from a Helix cluster INI and a throughput table."""
    p = Path(ini_path)
    if not p.is_file():
        raise InputError(str(ini_path), "file not found")
    parser = configparser.ConfigParser()
    try:
        parser.read_string(p.read_text(encoding="utf-8"))
    except configparser.Error as exc:
        raise InputError(str(ini_path), f"not a valid INI file: {str(exc).splitlines()[0]}") from None
    if "NodeNames" not in parser or "total_compute_nodes" not in parser["NodeNames"]:
        raise InputError(f"{ini_path}: [NodeNames] total_compute_nodes", "required entry is missing")
    try:
        count = int(parser["NodeNames"]["total_compute_nodes"].strip())
    except ValueError:
        raise InputError(f"{ini_path}: [NodeNames] total_compute_nodes", "expected an integer") from None
    scale = 1.0 if units == "helix" else 1.0 / 8.0
    nodes = []
    for i in range(count):
        section = f"ComputeNode-{i}"
        if section not in parser:
            raise InputError(f"{ini_path}: [{section}]", "section is missing (total_compute_nodes says so)")
        gpu = parser[section].get("type", "").strip()
        if gpu not in table["throughput"]:
            raise InputError(f"{ini_path}: [{section}] type", f"'{gpu}' has no row in the throughput table "
                             f"(types there: {', '.join(sorted(table['throughput']))})")
        nodes.append({"id": section, "type": gpu, "throughput_tokens_per_s": list(table["throughput"][gpu])})
    links = {}
    latency: dict[str, float] = {}  # "u->v" -> ms, for the serving simulator
    for section in parser.sections():
        if not section.startswith("Link-"):
            continue
        parts = section.split("-")
        if len(parts) != 3:
            raise InputError(f"{ini_path}: [{section}]", "expected [Link-<from>-<to>]")
        a, b = parts[1], parts[2]
        where = f"{ini_path}: [{section}] bandwidth"
        if "bandwidth" not in parser[section]:
            raise InputError(where, "required entry is missing")
        bw = parse_bandwidth(parser[section]["bandwidth"], where) * scale
        ends = []
        for end in (a, b):
            if end in ("source", "sink"):
                ends.append(end)
            elif end.isdigit() and int(end) < count:
                ends.append(f"ComputeNode-{int(end)}")
            else:
                raise InputError(f"{ini_path}: [{section}]", f"unknown end point '{end}'")
        u, v = ends
        if "latency" in parser[section]:
            ms = parse_latency_ms(parser[section]["latency"], f"{ini_path}: [{section}] latency")
            latency[f"{u}->{v}"] = ms
            if u != "source" and v != "sink":
                latency[f"{v}->{u}"] = ms
        if u == "source" or v == "sink":
            links[(u, v)] = bw / table["token_bytes"]
        elif "source" in (u, v) or "sink" in (u, v):
            raise InputError(f"{ini_path}: [{section}]", "source links must go out of source, sink links into sink")
        else:
            cap = bw / table["activation_bytes"]
            links[(u, v)] = cap
            links[(v, u)] = cap
    if not any(u == "source" for u, _ in links):
        raise InputError(f"{ini_path}", "no [Link-source-i] section: no node can receive requests")
    if not any(v == "sink" for _, v in links):
        raise InputError(f"{ini_path}", "no [Link-i-sink] section: no node can return results")
    order = {"source": -1, "sink": count}
    for i in range(count):
        order[f"ComputeNode-{i}"] = i

    def key(arc):
        u, v = arc
        kind = 0 if u == "source" else (2 if v == "sink" else 1)
        return (kind, order[u], order[v])

    out = {
        "kind": "layer_placement",
        "name": name or p.stem,
        "source": f"Helix cluster file {p.name} (units={units}); throughputs from the given table",
        "num_layers": table["num_layers"],
        "nodes": nodes,
        "links": [{"from": u, "to": v, "tokens_per_s": links[(u, v)]} for (u, v) in sorted(links, key=key)],
    }
    if latency:
        out["reference"] = {"link_latency_ms": latency}
    return out
