"""Dispatch on an instance's ``"kind"``: one module per kind, found by name, no central list.

A kind module ``servopt/kinds/<kind>.py`` defines:

``KIND``                              the string in the instance's ``"kind"`` field
``load(data: dict) -> instance``      validate (JSON Schema + semantic checks) and build the dataclass
``solve(instance, *, time_limit_s, options) -> dict``        the offline optimum as result JSON
``simulate(instance, *, policy, options) -> dict``           optional: an online policy's result JSON
``check(instance, result: dict) -> list[str]``               independent re-verification; [] = valid
``render(result: dict, console) -> None``                    print a result as a table
``demo(*, time_limit_s) -> list[dict]``                      rows for ``servopt demo``

Adding a kind means adding one file.
"""
from __future__ import annotations

import difflib
import importlib
import pkgutil
from types import ModuleType

from servopt.errors import InputError


def available() -> list[str]:
    import servopt.kinds as pkg

    return sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_"))


def get(kind: str) -> ModuleType:
    names = available()
    if not isinstance(kind, str) or kind not in names:
        hint = difflib.get_close_matches(str(kind), names, n=1)
        suffix = f" (did you mean '{hint[0]}'?)" if hint else f" (known kinds: {', '.join(names)})"
        raise InputError("kind", f"unknown kind '{kind}'{suffix}")
    return importlib.import_module(f"servopt.kinds.{kind}")


def load_instance(data) -> tuple[ModuleType, object]:
    """Pick the kind module for a parsed JSON document and load the instance with it."""
    if not isinstance(data, dict):
        raise InputError("(top level)", "an instance must be a JSON object")
    if "kind" not in data:
        raise InputError("kind", "required field is missing")
    module = get(data["kind"])
    return module, module.load(data)
