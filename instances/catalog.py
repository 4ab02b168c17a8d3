"""The shipped GPU and LLM catalogs (``instances/data/gpus.json``, ``llms.json``).

Every number carries its public source in the entry's ``sources`` field. Names and aliases
match case-insensitively; an unknown name gets the closest known one suggested.
"""
from __future__ import annotations

import difflib
import json
from functools import lru_cache
from importlib import resources

from servopt.errors import InputError
from servopt.instances.hardware import GPU, LLM


def _read(name: str) -> list[dict]:
    ref = resources.files("servopt.instances").joinpath("data", name)
    return json.loads(ref.read_text(encoding="utf-8"))["entries"]


@lru_cache(maxsize=None)
def gpus() -> tuple[GPU, ...]:
    out = []
    for e in _read("gpus.json"):
        e = dict(e)
        e["aliases"] = tuple(e.get("aliases", ()))
        out.append(GPU(**e))
    return tuple(out)


@lru_cache(maxsize=None)
def llms() -> tuple[LLM, ...]:
    out = []
    for e in _read("llms.json"):
        e = dict(e)
        e["aliases"] = tuple(e.get("aliases", ()))
        out.append(LLM(**e))
    return tuple(out)


def _lookup(name, entries, what: str, field: str):
    if not isinstance(name, str):
        raise InputError(field, f"expected a {what} name, got {name!r}")
    key = name.strip().lower()
    table = {}
    for entry in entries:
        for alias in (entry.name, *entry.aliases):
            table[alias.lower()] = entry
    if key in table:
        return table[key]
    hint = difflib.get_close_matches(key, list(table), n=1, cutoff=0.4)
    known = ", ".join(e.name for e in entries)
    suffix = f" (did you mean '{table[hint[0]].name}'?)" if hint else f" (known: {known})"
    raise InputError(field, f"unknown {what} '{name}'{suffix}")


def get_gpu(name: str, field: str = "gpu") -> GPU:
    return _lookup(name, gpus(), "GPU", field)


def get_llm(name: str, field: str = "llm") -> LLM:
    return _lookup(name, llms(), "LLM", field)
