"""Every notebook in notebooks/ runs top to bottom (nbclient), with a time limit per cell.

Notebooks assert their own key properties (e.g. no policy beats the optimum), so a notebook that
runs but contradicts itself fails here too. Each must also show at least one figure inline (a PNG
in its outputs), write nothing into its working folder, and be stored with its outputs stripped.
"""
from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_the_expected_notebooks_are_there():
    names = {p.name for p in NOTEBOOKS}
    assert {"competitive_ratios.ipynb", "placement.ipynb", "cost_model.ipynb", "gpu_mix.ipynb",
            "kv_competitive_ratio.ipynb"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_stored_without_outputs(path):
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.get("outputs") == [] and cell.get("execution_count") is None, f"{path.name}: strip the outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    errors = [o for o in outputs if o.get("output_type") == "error"]
    assert not errors
    figures = [o for o in outputs if o.get("output_type") in ("display_data", "execute_result")
               and "image/png" in o.get("data", {})]
    assert figures, f"{path.name} shows no inline figure"
    assert list(tmp_path.iterdir()) == [], f"{path.name} wrote files into its working folder"
