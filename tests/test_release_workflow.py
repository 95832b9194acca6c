"""The release workflow (.github/workflows/release.yml) is valid and builds what docs/BUNDLE.md offers.

It cannot run here, so it is checked against the GitHub workflow JSON schema that check-jsonschema
vendors from SchemaStore (``--builtin-schema vendor.github-workflows``), and read for the jobs the
download page depends on: Windows and macOS, default and lean, Python 3.11, ``pytest -m bundle``
on the very build that is uploaded, each archive with its SHA-256.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from conftest import REPO_ROOT

WORKFLOW = REPO_ROOT / ".github" / "workflows" / "release.yml"


def _validate(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", str(path)],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def workflow() -> dict:
    return YAML(typ="safe").load(WORKFLOW.read_text(encoding="utf-8"))  # YAML 1.2: `on` stays a string


def test_workflow_matches_the_github_schema():
    done = _validate(WORKFLOW)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("break_it,words", [
    (lambda text: text.replace("    runs-on: ${{ matrix.os }}\n", ""), "runs-on"),
    (lambda text: text.replace("timeout-minutes: 60", "timeout-minutes: soon"), "timeout-minutes"),
    (lambda text: text.replace("    steps:\n      - uses: actions/checkout@v4", "    stepz:\n      - uses: actions/checkout@v4", 1), "stepz"),
], ids=["job without runs-on", "timeout not a number", "misspelt key"])
def test_the_schema_check_rejects_a_broken_workflow(tmp_path, break_it, words):
    broken = break_it(WORKFLOW.read_text(encoding="utf-8"))
    assert broken != WORKFLOW.read_text(encoding="utf-8")
    (tmp_path / "release.yml").write_text(broken, encoding="utf-8")
    done = _validate(tmp_path / "release.yml")
    assert done.returncode == 1 and "Schema validation errors" in done.stdout + done.stderr, done.stdout


def test_every_platform_and_variant_is_built_with_python_3_11(workflow):
    job = workflow["jobs"]["bundle"]
    matrix = job["strategy"]["matrix"]
    assert set(matrix["os"]) == {"windows-latest", "macos-14"} and set(matrix["variant"]) == {"default", "lean"}
    spec_args = {row["variant"]: row["spec_args"] for row in matrix["include"] if "spec_args" in row}
    assert spec_args == {"default": "", "lean": "--without-tensorflow"}  # build.spec's own option
    assert job["env"]["BUNDLE_SPEC_ARGS"] == "${{ matrix.spec_args }}"
    python = next(step for step in job["steps"] if step.get("uses", "").startswith("actions/setup-python@"))
    assert python["with"]["python-version"] == "3.11"


def test_the_uploaded_build_is_the_tested_one_with_its_checksum(workflow):
    steps = workflow["jobs"]["bundle"]["steps"]
    names = [step.get("name", step.get("uses", "")) for step in steps]
    build = next(i for i, step in enumerate(steps) if "PyInstaller build.spec" in step.get("run", ""))
    test = next(i for i, step in enumerate(steps) if "pytest -m bundle" in step.get("run", ""))
    upload = next(i for i, step in enumerate(steps) if step.get("uses", "").startswith("actions/upload-artifact@"))
    assert build < test < upload, names
    assert steps[test]["env"]["BUNDLE_EXE"].startswith("dist/main/")  # tests/test_bundle.py tests that build
    assert "sha256" in steps[upload - 1]["run"]
    paths = steps[upload]["with"]["path"].splitlines()
    assert paths == ["${{ env.ARCHIVE }}.zip", "${{ env.ARCHIVE }}.zip.sha256"]
    assert steps[upload]["with"]["if-no-files-found"] == "error"
    release = workflow["jobs"]["release"]
    assert release["needs"] == "bundle" and "sha256sum --check" in "".join(s.get("run", "") for s in release["steps"])
