"""Every instance kind honours the front-door contract (servopt/kinds/__init__.py).

For each kind module: the contract's functions exist, the instance and result schemas ship, and
every shipped example instance (``instances/data/example_*.json`` whose ``kind`` is that kind)
validates, solves within a short limit to a result that matches the common result schema and the
kind's result schema, and passes the kind's independent checker.
"""
from __future__ import annotations

import json
from importlib import resources

import pytest

from servopt import jsonio, kinds

KINDS = kinds.available()


def _examples():
    folder = resources.files("servopt.instances").joinpath("data")
    out = []
    for ref in sorted(folder.iterdir(), key=lambda r: r.name):
        if ref.name.startswith("example_") and ref.name.endswith(".json"):
            data = json.loads(ref.read_text(encoding="utf-8"))
            if data.get("kind") in KINDS:
                out.append(pytest.param(data, id=ref.name))
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_kind_module_has_contract(kind):
    module = kinds.get(kind)
    assert module.KIND == kind
    for name in ("load", "solve", "check", "render", "demo"):
        assert callable(getattr(module, name, None)), f"{kind} lacks {name}()"
    assert jsonio.load_schema(kind)["type"] == "object"
    assert jsonio.load_schema(f"{kind}_result")["type"] == "object"


def test_every_kind_ships_an_example():
    kinds_with_examples = {p.values[0]["kind"] for p in _examples()}
    assert set(KINDS) <= kinds_with_examples


@pytest.mark.parametrize("data", _examples())
def test_example_solves_and_checks(data):
    jsonio.validate(data, data["kind"])
    module, instance = kinds.load_instance(data)
    result = module.solve(instance, time_limit_s=20, options={})
    jsonio.validate(result, "result_common")
    jsonio.validate(result, f"{module.KIND}_result")
    assert result["kind"] == module.KIND
    if result["objective"] is not None:
        assert module.check(instance, result) == []


def test_unknown_kind_is_named():
    with pytest.raises(Exception, match="unknown kind"):
        kinds.get("no_such_kind")
