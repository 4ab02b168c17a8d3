"""Reading and writing JSON with errors a user can act on, and JSON Schema validation.

Schemas live in ``servopt/schemas/<name>.schema.json``. Validation errors name the field as a
JSON path (``requests[3].prompt_tokens``) and the rule it broke.
"""
from __future__ import annotations

import os
import tempfile

import json
import math
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from servopt.errors import InputError


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(str(path), "file not found") from None
    except IsADirectoryError:
        raise InputError(str(path), "is a directory, expected a JSON file") from None
    except UnicodeDecodeError:
        raise InputError(str(path), "not UTF-8 text") from None
    return parse_json(text, source=str(path))


def parse_json(text: str, *, source: str = "<input>") -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(source, f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None


def _clean(obj: Any) -> Any:
    """JSON has no NaN/Infinity: write them as null rather than emit invalid JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return _clean(obj.item())
    return obj


def dumps(obj: Any, *, indent: int | None = 2) -> str:
    return json.dumps(_clean(obj), indent=indent, allow_nan=False)


def read_shipped(*parts: str) -> Any:
    """A JSON file shipped in ``instances/data/`` (installed inside the package), e.g. a kind's example."""
    ref = resources.files("servopt.instances").joinpath("data", *parts)
    return json.loads(ref.read_text(encoding="utf-8"))


def write_json(obj: Any, path: str | Path) -> None:
    """Write atomically: a failed run never leaves a half-written file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)  # `--out out/result.json` works in a fresh clone
    # a temporary name of its own, so that two runs writing the same file never collide
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(dumps(obj) + "\n")
    os.chmod(tmp, 0o644)  # mkstemp makes it private; a result file is an ordinary one
    os.replace(tmp, path)


def json_path(parts) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


@lru_cache(maxsize=None)
def load_schema(name: str) -> dict:
    ref = resources.files("servopt").joinpath("schemas", f"{name}.schema.json")
    if not ref.is_file():
        raise InputError("kind", f"no schema named '{name}'")
    return json.loads(ref.read_text(encoding="utf-8"))


def schema_names() -> list[str]:
    folder = resources.files("servopt").joinpath("schemas")
    return sorted(p.name[: -len(".schema.json")] for p in folder.iterdir() if p.name.endswith(".schema.json"))


def validate(data: Any, schema_name: str) -> None:
    """Raise InputError naming the first (deepest, then first in document order) bad field."""
    import jsonschema

    schema = load_schema(schema_name)
    validator = jsonschema.Draft202012Validator(schema)
    errors = list(validator.iter_errors(data))
    if not errors:
        return
    best = jsonschema.exceptions.best_match(errors)
    field = json_path(best.absolute_path)
    message = best.message
    if best.validator == "required":
        missing = message.split("'")[1] if "'" in message else message
        field = json_path(list(best.absolute_path) + [missing])
        message = "required field is missing"
    elif best.validator == "additionalProperties":
        message = message.replace("Additional properties are not allowed", "unknown field(s)")
    raise InputError(field, message)
