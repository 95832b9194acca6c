"""tools/faceapi_convert.py: face-api.js's expression network, from npm, as a model folder the app runs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT, run_main

TOOL = REPO_ROOT / "tools" / "faceapi_convert.py"


@pytest.fixture(scope="module")
def faceapi_folder(tmp_path_factory):
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.skip("npm and node are needed to fetch face-api.js and run its own forward pass")
    folder = tmp_path_factory.mktemp("faceapi") / "model"
    done = subprocess.run([sys.executable, str(TOOL), str(folder)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return folder


def test_the_onnx_graph_gives_face_api_js_own_probabilities_on_real_faces(faceapi_folder):
    record = json.loads((faceapi_folder / "conversion.json").read_text())
    assert record["max_abs_diff"] <= 1e-4 and record["same_label"] == 1.0
    assert int(record["compared_on"].split()[0]) >= 10
    assert "MIT License" in (faceapi_folder / "LICENSE").read_text()


def test_the_app_evaluates_the_folder_as_a_112_px_rgb_model(faceapi_folder, fer2013_dir, tmp_path):
    """Fed as the app feeds any model folder; well above chance (1/7) on FER2013 val only if the
    layout, the pixel scale and the class order are all right."""
    out = tmp_path / "eval.json"
    done = run_main("evaluate", "--model", str(faceapi_folder), "--data", str(fer2013_dir), "--split", "val",
                    "--limit", "400", "--json", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "input 112x112x3" in done.stderr
    metrics = json.loads(out.read_text())
    assert metrics["accuracy"] > 0.45, metrics["accuracy"]
    assert min(metrics["per_class"][name]["recall"] for name in ("happy", "surprise")) > 0.5


def test_a_tarball_that_is_not_npms_is_refused_in_one_line(tmp_path):
    fake = tmp_path / "vladmandic-face-api-1.7.15.tgz"
    fake.write_bytes(b"not the package")
    done = subprocess.run([sys.executable, str(TOOL), str(tmp_path / "out"), "--tarball", str(fake)],
                          capture_output=True, text=True, timeout=120)
    if shutil.which("npm") is None or shutil.which("node") is None:
        assert done.returncode == 2 and "is not on PATH" in done.stderr
        return
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: ") and "sha512" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out" / "model.onnx").exists()
