"""The README and the manual cannot rot: their code blocks run here, from the repository root, as a
reader would paste them.

Rules (docs/architecture.md, "Writing the manual"):
* a ```python block runs as one script in a fresh interpreter (cwd = repository root);
* in a ```console, ```bash or ```sh block, every line that starts with ``servopt`` (or ``$ servopt``)
  runs as a command; ``pip``, ``pytest``, ``python benchmarks/...`` and ``mkdocs`` lines are set-up or
  minutes-long measurements and are shown, not run; a line ending in ``# exit N`` must exit with N,
  every other one with 0;
* a block right after a line ``<!-- no-run -->`` is shown, not run; ```text / ```json blocks never run.
Each block gets a limit far above its need (it is no timing test): 300 s.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\s*$")
LIMIT_S = 300


def code_blocks(path: Path):
    """(language, first line number, text) of every fenced block that is to run."""
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        lang = m.group(1)
        skip = i > 0 and lines[i - 1].strip() == "<!-- no-run -->"
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        if not skip and lang in ("python", "console", "bash", "sh"):
            yield lang, i + 1, "\n".join(lines[i + 1:j])
        i = j + 1


def commands(text: str):
    """(command line, expected exit code) of the servopt lines of a shell block."""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("$ "):
            line = line[2:]
        if not line.startswith("servopt"):
            continue
        expected = 0
        m = re.search(r"#\s*exit\s+(\d+)\s*$", line)
        if m:
            expected = int(m.group(1))
        line = line.split(" #", 1)[0].strip()
        yield line, expected


CASES = [(p, lang, start, text) for p in PAGES for (lang, start, text) in code_blocks(p)]


def _env():
    env = dict(os.environ)
    env.setdefault("MPLBACKEND", "Agg")
    return env


@pytest.mark.parametrize("page,lang,start,text", CASES,
                         ids=[f"{p.relative_to(REPO)}:{start}" for p, _, start, _ in CASES])
def test_code_block_runs(page, lang, start, text, tmp_path):
    where = f"{page.relative_to(REPO)}:{start}"
    if lang == "python":
        proc = subprocess.run([sys.executable, "-c", text], cwd=REPO, capture_output=True, text=True,
                              timeout=LIMIT_S, env=_env())
        assert proc.returncode == 0, f"{where}\n{proc.stderr[-3000:]}"
        return
    ran = 0
    for line, expected in commands(text):
        args = shlex.split(line)
        proc = subprocess.run([sys.executable, "-m", "servopt.cli", *args[1:]], cwd=REPO, capture_output=True,
                              text=True, timeout=LIMIT_S, env=_env())
        assert proc.returncode == expected, f"{where}: {line}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        assert "Traceback" not in proc.stderr, f"{where}: {line}\n{proc.stderr[-3000:]}"
        ran += 1
    if ran == 0:
        pytest.skip(f"{where}: no servopt line to run")


def test_the_readme_opens_with_the_two_set_up_commands():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    first = next(block for lang, _, block in code_blocks(REPO / "README.md") if lang in ("console", "bash", "sh"))
    assert "pip install" in first and "servopt demo" in first
    assert 'pip install ".[test]"' in first and "pytest" in first
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert "pytest -q -n 2 tests" in ci and "pytest -q -n 2 tests" in first
    assert len(text.splitlines()) <= 260


def test_no_page_points_outside_the_repository():
    pattern = re.compile(r"\.\./shared/|/work/shared|[Ii]ssue #?\d+|\btask \d+\b")
    for page in PAGES:
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            assert not pattern.search(line), f"{page.relative_to(REPO)}:{number}: {line}"


def test_every_page_is_in_the_mkdocs_nav():
    nav = (REPO / "mkdocs.yml").read_text(encoding="utf-8")
    for page in (REPO / "docs").glob("*.md"):
        assert page.name in nav, f"docs/{page.name} is not in mkdocs.yml's nav"


def test_mkdocs_build_is_strict(tmp_path):
    pytest.importorskip("mkdocs")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=REPO, capture_output=True, text=True, timeout=LIMIT_S)
    assert proc.returncode == 0, proc.stderr[-4000:]
