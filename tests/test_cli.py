"""The CLI's own behaviour: help, version, unknown commands, error and exit-code discipline."""
from __future__ import annotations

import subprocess
import sys

import pytest


def test_help_lists_core_commands(run_cli):
    with pytest.raises(SystemExit) as exc:
        run_cli("--help")
    assert exc.value.code == 0


def test_help_output_names_commands(capsys):
    from servopt.cli import build_parser

    text = build_parser().format_help()
    for command in ("solve", "check", "validate", "demo"):
        assert command in text


def test_no_command_prints_help_and_exits_2(run_cli):
    code, out, _ = run_cli()
    assert code == 2 and "usage" in out


def test_unknown_command_is_rejected(run_cli):
    with pytest.raises(SystemExit) as exc:
        run_cli("no-such-command")
    assert exc.value.code == 2


def test_internal_error_exits_1_without_traceback(monkeypatch, run_cli, tmp_path):
    import servopt.commands.validate as validate

    def boom(args):
        raise RuntimeError("kaboom")

    # register() binds the module's `run` when the parser is built, so the patch is picked up.
    monkeypatch.setattr(validate, "run", boom)
    code, _, err = run_cli("validate", str(tmp_path / "x.json"))
    assert code == 1
    assert err.strip() == "internal error: RuntimeError: kaboom (run with --debug for the traceback)"


def test_console_script_runs(tmp_path):
    # Outside the repo root, where the folder servopt/ would shadow the installed package.
    out = subprocess.run([sys.executable, "-m", "servopt.cli", "--version"], capture_output=True, text=True, timeout=60,
                         cwd=tmp_path)
    assert out.returncode == 0 and "servopt" in out.stdout
