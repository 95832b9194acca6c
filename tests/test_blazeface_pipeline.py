"""BlazeFace through the whole pipeline: ids, keypoints in the JSON lines, levelled crops, the live
switch between detectors, and the app on the cases about faces not found."""

from __future__ import annotations

import json
from dataclasses import replace

import cv2
import numpy as np
import pytest

from conftest import REPO_ROOT, require_shared, run_main
from detector.config import DetectionConfig, PipelineConfig
from detector.pipeline import create_pipeline
from detector.results import FrameResult

CASES = REPO_ROOT.parent / "shared" / "cases"


@pytest.fixture(scope="module")
def clip() -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(REPO_ROOT / "samples" / "sample_face.mp4"))
    frames = [capture.read()[1] for _ in range(60)]
    capture.release()
    return frames


def run(pipeline, frames, start: int = 0) -> list[FrameResult]:
    return [pipeline(FrameResult(start + i, (start + i) / 24, "clip", frame)) for i, frame in enumerate(frames)]


def test_blazeface_keeps_one_id_and_reports_keypoints(clip, shipped_model):
    config = PipelineConfig(detection=DetectionConfig("blazeface"))
    with create_pipeline(config) as pipeline:
        results = run(pipeline, clip)
    assert all(len(r.faces) == 1 for r in results)
    assert {int(r.faces.ids[0]) for r in results} == {1}
    record = results[-1].records[0]
    assert len(record["keypoints"]) == 6 and all(len(point) == 2 for point in record["keypoints"])
    x, y, w, h = record["box"]
    assert all(x <= px <= x + w and y <= py <= y + h for px, py in record["keypoints"][:4])  # eyes, nose, mouth


def test_levelling_changes_what_the_classifier_sees_only_with_keypoints(clip, shipped_model):
    """On a head turned 30 degrees the levelled crop gives other probabilities than the frame's own
    crop; with Haar (no keypoints) --no-align changes nothing."""
    height, width = clip[0].shape[:2]
    turned = [cv2.warpAffine(f, cv2.getRotationMatrix2D((width / 2, height / 2), 30, 1.0), (width, height),
                             borderMode=cv2.BORDER_REPLICATE) for f in clip[:8]]
    probs = {}
    for name in ("blazeface", "haar"):
        for align in (True, False):
            config = replace(PipelineConfig(detection=DetectionConfig(name)), align=align)
            with create_pipeline(config) as pipeline:
                probs[name, align] = [r.faces.raw_probs for r in run(pipeline, turned if name == "blazeface" else clip[:8])]
    assert all(len(p) == 1 for p in probs["blazeface", True])
    differences = [np.abs(a - b).max() for a, b in zip(probs["blazeface", True], probs["blazeface", False])]
    assert min(differences) > 0.01
    assert all(np.array_equal(a, b) for a, b in zip(probs["haar", True], probs["haar", False]))


def test_switching_detector_mid_stream_keeps_the_face_and_its_id(clip, shipped_model):
    with create_pipeline(PipelineConfig()) as pipeline:
        before = run(pipeline, clip[:20])
        assert before[-1].faces.keypoints is None  # Haar
        assert pipeline.switch_detector("blazeface")
        after = run(pipeline, clip[20:40], start=20)
        assert pipeline.switch_detector("haar")
        back = run(pipeline, clip[40:], start=40)
    assert all(len(r.faces) == 1 for r in before + after + back)
    assert {int(r.faces.ids[0]) for r in before + after + back} == {1}
    assert all(r.faces.keypoints is not None and np.isfinite(r.faces.keypoints).all() for r in after[1:])
    assert back[-1].faces.keypoints is None


def test_window_key_cycles_through_the_registry(shipped_model, capsys):
    from detector.app import next_detector
    from detector.config import AppConfig

    config = AppConfig()
    with create_pipeline(config.pipeline) as pipeline:
        assert next_detector(pipeline, config, "haar") == "blazeface"
        assert next_detector(pipeline, config, "blazeface") == "haar"
    assert "face detector: blazeface" in capsys.readouterr().err


@pytest.mark.parametrize("case, source, faces", [
    ("far-faces-downscaled", "far_120px_1080p.png", 5),
    ("far-faces-downscaled", "far_90px_1080p.png", 5),
    ("precropped-face", "crops", 12),
])
def test_cases_about_a_face_not_found_are_found(case, source, faces, tmp_path, shipped_model):
    folder = require_shared(CASES / case, f"../shared/cases/{case} missing")
    log = tmp_path / "r.jsonl"
    done = run_main("--source", str(folder / source), "--detector", "blazeface", "--whole-image", "never",
                    "--no-display", "--log", str(log))
    assert done.returncode == 0, done.stderr
    found = [face for line in log.read_text().splitlines() for face in json.loads(line)["faces"]]
    assert len(found) == faces and all("keypoints" in face for face in found)
