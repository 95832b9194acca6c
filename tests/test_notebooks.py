"""training_notebooks/ run end to end in smoke mode (tiny subset, one epoch), as CI runs them.

The notebook is executed in memory (the committed copy and its outputs are left alone)
with ``NOTEBOOK_SMOKE=1``; FER2013 comes from the ``fer2013_dir`` fixture and results go
to a temporary folder, both passed to the kernel through the environment.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "training_notebooks"
ARCHS = ("fer_vgg", "mobilenetv2", "resnet50", "vgg19")
CELL_TIMEOUT_S = 900  # one cell trains or exports four models; generous for a loaded 2-core runner


@pytest.fixture(scope="module")
def comparison(fer2013_dir, tmp_path_factory) -> Path:
    """Run compare_architectures.ipynb in smoke mode; returns its OUT folder."""
    out = tmp_path_factory.mktemp("compare")
    notebook = nbformat.read(NOTEBOOKS / "compare_architectures.ipynb", as_version=4)
    with pytest.MonkeyPatch.context() as patch:  # the kernel inherits this process' environment
        patch.setenv("NOTEBOOK_SMOKE", "1")
        patch.setenv("NOTEBOOK_OUT", str(out))
        patch.setenv("FER2013_DIR", str(fer2013_dir))
        patch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
        client = NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                resources={"metadata": {"path": str(NOTEBOOKS)}})
        try:
            client.execute()
        finally:
            nbformat.write(notebook, out / "executed.ipynb")  # what failed, for a look afterwards
    return out


def test_notebook_runs_without_errors(comparison):
    executed = nbformat.read(comparison / "executed.ipynb", as_version=4)
    errors = [output for cell in executed.cells if cell.cell_type == "code" for output in cell.outputs
              if output.output_type == "error"]
    assert errors == []
    assert all(cell.execution_count for cell in executed.cells if cell.cell_type == "code")


def test_comparison_json_has_one_sane_row_per_arch(comparison):
    summary = json.loads((comparison / "comparison.json").read_text())
    assert summary["smoke"] is True and summary["split"] == "test"
    rows = {row["arch"]: row for row in summary["rows"]}
    assert sorted(rows) == sorted(ARCHS) and len(summary["rows"]) == len(ARCHS)
    for arch, row in rows.items():
        assert 0.0 <= row["accuracy"] <= 1.0, arch
        assert 0.0 <= row["macro_f1"] <= 1.0, arch
        assert row["params"] > 0, arch
        assert row["ms_per_face_batch1"] > 0, arch
        assert row["test_images"] == 256, arch
        assert row["train_command"].startswith("python main.py train ") and f"--arch {arch}" in row["train_command"]


def test_comparison_markdown_has_a_table_row_per_arch(comparison):
    lines = (comparison / "comparison.md").read_text().splitlines()
    table = [line for line in lines if line.startswith("|")]
    assert table[0].startswith("| architecture |") and set(table[1]) <= set("|-")
    body = [line.split("|")[1].strip() for line in table[2:]]
    assert sorted(body) == sorted(ARCHS)
    assert all(line.count("|") == table[0].count("|") for line in table)


def test_bar_chart_written(comparison):
    assert (comparison / "accuracy.png").stat().st_size > 1000
