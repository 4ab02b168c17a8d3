"""Every file in tests/bad_inputs/ must fail with one line naming the field, exit code 2.

Each case is ``NAME.json`` (or any other suffix) plus ``NAME.expect``, a JSON object with
``args`` (the CLI arguments, ``{file}`` standing for the case's path) and ``message`` (a
substring the one-line error must contain). Adding a case needs no change here.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

BAD = Path(__file__).resolve().parent / "bad_inputs"
CASES = sorted(BAD.glob("*.expect"))


@pytest.mark.parametrize("expect_path", CASES, ids=[c.stem for c in CASES])
def test_bad_input_gives_one_line_error(expect_path, run_cli):
    spec = json.loads(expect_path.read_text())
    data_files = [p for p in BAD.glob(expect_path.stem + ".*") if p.suffix != ".expect"]
    file = str(data_files[0]) if data_files else ""
    args = [a.replace("{file}", file).replace("{bad}", str(BAD)) for a in spec["args"]]
    code, out, err = run_cli(*args)
    assert code == spec.get("exit_code", 2), (code, out, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert spec["message"] in lines[0], lines[0]
    assert "Traceback" not in err
