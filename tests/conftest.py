"""Shared fixtures. Every solver call in tests uses threads=1 (HiGHS fixes threads per process)."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BAD_INPUTS = Path(__file__).resolve().parent / "bad_inputs"


@pytest.fixture
def run_cli(capsys):
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    from servopt.cli import main

    def _run(*argv):
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return _run


@pytest.fixture(scope="session", autouse=True)
def compiled_kv_search():
    """Compile the KV branch-and-bound once before the tests (a fresh install has no numba cache; the
    ``auto`` engine would otherwise search in Python until a background compile finishes)."""
    from servopt.solvers import kv_schedule_bnb_kernel as kernel

    if not kernel.compiled_on_disk():
        kernel.warm_up()
