"""tools/faceapi_convert.py: face-api.js's expression network, from npm, as a model folder the app runs.

A developer tool, not part of the app: it needs Node.js with npm and the npm registry, so these
tests skip where ``npm`` or ``node`` is absent (the README's setup does not install Node.js).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from tests.conftest import REPO_ROOT, run_main

TOOL = REPO_ROOT / "tools" / "faceapi_convert.py"


@pytest.fixture(scope="module")
def node():
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.skip("npm and node are needed to fetch face-api.js and run its own forward pass")


@pytest.fixture(scope="module")
def tarball(node, tmp_path_factory):
    from tools.faceapi_convert import npm_pack

    return npm_pack(tmp_path_factory.mktemp("npm"))


@pytest.fixture(scope="module")
def faceapi_folder(tarball, tmp_path_factory):
    folder = tmp_path_factory.mktemp("faceapi") / "model"
    done = subprocess.run([sys.executable, str(TOOL), str(folder), "--tarball", str(tarball)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return folder


def test_the_app_gives_face_api_js_own_probabilities_on_fer2013_faces(faceapi_folder, tarball, fer2013_dir, tmp_path):
    """Other faces than the tool's own check (FER2013 val, gray faces as RGB), through the app's
    classifier on the written folder, against face-api.js's JavaScript run on the same pixels."""
    from detector.classifier import EmotionClassifier
    from detector.config import ModelConfig
    from detector.training.data import load_split
    from tools.faceapi_convert import SIDE, TOLERANCE, extract, reference

    faces = load_split(str(fer2013_dir), "val").subset(40, seed=3).images
    rgb = np.stack([cv2.cvtColor(cv2.resize(face, (SIDE, SIDE), interpolation=cv2.INTER_LINEAR), cv2.COLOR_GRAY2RGB)
                    for face in faces])
    classifier = EmotionClassifier(ModelConfig(str(faceapi_folder)))
    assert classifier.temperature == 1.0  # uncalibrated: the app shows face-api.js's own scores
    app = classifier.predict_crops([cv2.cvtColor(face, cv2.COLOR_RGB2BGR) for face in rgb])
    theirs = reference(extract(tarball, tmp_path / "unpacked"), rgb, tmp_path / "node")
    assert np.abs(app - theirs).max() <= TOLERANCE
    assert len(set(app.argmax(1))) >= 3  # faces of several classes, not one answer for all


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
    assert "MIT License" in (faceapi_folder / "LICENSE").read_text()


def _convert(out, tarball):
    return subprocess.run([sys.executable, str(TOOL), str(out), "--tarball", str(tarball)],
                          capture_output=True, text=True, timeout=120)


def test_a_tarball_that_is_not_npms_is_refused_in_one_line(node, tmp_path):
    fake = tmp_path / "vladmandic-face-api-1.7.15.tgz"
    fake.write_bytes(b"not the package")
    done = _convert(tmp_path / "out", fake)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: ") and "sha512" in done.stderr


def test_a_folder_holding_another_model_is_refused_not_mixed(node, tmp_path):
    """An int8 file left there would be run instead of the new model.onnx."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.int8.onnx").write_bytes(b"an older model")
    done = _convert(out, tmp_path / "unused.tgz")
    assert done.returncode == 2 and "model.int8.onnx" in done.stderr and "Traceback" not in done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["model.int8.onnx"]
