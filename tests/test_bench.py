"""``main.py bench``: where it writes, what it compares, and its errors (a short real run)."""

from __future__ import annotations

import json

from conftest import REPO_ROOT, run_main
from detector.bench import table_path


def test_json_into_a_missing_folder_is_one_line_before_the_benchmark(tmp_path):
    done = run_main("bench", "--json", str(tmp_path / "absent" / "bench.json"), timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: output folder does not exist: {tmp_path / 'absent'}"
    assert done.stdout == ""  # nothing measured, nothing printed


def test_both_loops_run_the_same_model_file_and_the_table_is_written_beside_the_json(tmp_path, shipped_model):
    out = tmp_path / "bench.json"
    done = run_main("bench", "--frames", "12", "--no-startup", "--json", str(out), timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["model_file"] == report["naive_model_file"] == "model.int8.onnx"  # the shipped folder has one
    table = table_path(out).read_text()
    assert table in done.stdout
    one = report["clips"]["1 face"]
    assert "| 1 face | **pipeline** |" in table and f"{one['pipeline']['ms']['total']['p50']:.1f}" in table
    assert f"**{one['speedup_p50']}x**" in table


def test_by_default_results_go_to_the_ignored_results_folder(tmp_path):
    done = run_main("bench", "--frames", "6", "--no-naive", "--no-startup", timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "emotion_output").iterdir()) == ["bench.json", "bench.table.md"]
    assert "/emotion_output/" in (REPO_ROOT / ".gitignore").read_text().split()
