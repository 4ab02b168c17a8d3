"""Policies found by file name: ``sched_<name>.py`` (replica schedulers), ``route_<name>.py``
(routers), ``evict_<name>.py`` (prefix-cache eviction). Adding a policy means adding one file.

A policy module defines ``NAME`` (what users type), optionally ``ALIASES``, a docstring whose first
line says what it is and cites its source, and ``make(**options)`` returning a fresh policy object
(one per replica for schedulers and caches, one per cluster for routers).
"""
from __future__ import annotations

import difflib
import importlib
import pkgutil
from functools import lru_cache

from servopt.errors import InputError

PREFIXES = {"scheduler": "sched_", "router": "route_", "eviction": "evict_"}


@lru_cache(maxsize=None)
def _modules(kind: str) -> dict:
    import servopt.simulator as pkg

    prefix = PREFIXES[kind]
    out = {}
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.startswith(prefix):
            mod = importlib.import_module(f"servopt.simulator.{info.name}")
            out[mod.NAME] = mod
            for alias in getattr(mod, "ALIASES", ()):
                out[alias] = mod
    return out


def names(kind: str) -> list[str]:
    """Canonical policy names of one kind, sorted."""
    return sorted({m.NAME for m in _modules(kind).values()})


def describe(kind: str) -> list[tuple[str, str]]:
    """(name, first docstring line) for every policy of one kind."""
    seen = {}
    for mod in _modules(kind).values():
        seen[mod.NAME] = (mod.__doc__ or "").strip().splitlines()[0] if mod.__doc__ else ""
    return sorted(seen.items())


def get(kind: str, name: str, field: str | None = None):
    mods = _modules(kind)
    key = str(name).strip().lower().replace("-", "_")
    if key not in mods:
        known = names(kind)
        hint = difflib.get_close_matches(key, list(mods), n=1)
        extra = f" (did you mean '{mods[hint[0]].NAME}'?)" if hint else ""
        raise InputError(field or kind, f"unknown {kind} '{name}'{extra}; valid: {', '.join(known)}")
    return mods[key]


def make(kind: str, name: str, options: dict | None = None, field: str | None = None):
    mod = get(kind, name, field)
    try:
        return mod.make(**(options or {}))
    except TypeError as exc:
        raise InputError(field or kind, f"{mod.NAME}: {exc}") from None
    except ValueError as exc:
        raise InputError(field or kind, f"{mod.NAME}: {exc}") from None
