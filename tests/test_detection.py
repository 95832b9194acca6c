"""Face detectors behind one interface (``detector.detection``): every registered detector
is run on the sample clip's real face, as ``--detector`` would pick it; the results type
and the registry's errors, table-driven."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from detector.bench import sample_frames
from detector.detection import FaceDetections, FaceDetector, create_detector, detector_names
from detector.detection.boxes import iou_matrix
from detector.detection.haar import HaarConfig
from detector.errors import SettingsError, UserError
from tools.scenes import background, iou


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    """A sample-clip frame with its one real face."""
    return sample_frames()[0][0]


@pytest.mark.parametrize("name", detector_names())
def test_every_registered_detector_finds_the_real_face_and_refinds_it_in_its_region(name, frame):
    detector = create_detector(name)
    try:
        assert isinstance(detector, FaceDetector) and detector.name == name
        found = detector.detect(frame)
        assert len(found) == 1 and found.boxes.dtype == np.int32 and found.scores.dtype == np.float32
        x, y, w, h = found.boxes[0]
        assert 0 <= x and 0 <= y and x + w <= frame.shape[1] and y + h <= frame.shape[0] and min(w, h) >= 100
        near = detector.detect(frame, region=found.boxes[0])
        assert len(near) >= 1 and iou(near.boxes[0], found.boxes[0]) > 0.7
        assert len(detector.detect(frame, region=found.boxes[0], strict=True)) >= 1
        assert len(detector.detect(background())) == 0  # the clip's bare wall
        gray = frame.mean(axis=2).astype(np.uint8)
        assert iou(detector.detect(gray).boxes[0], found.boxes[0]) > 0.7  # gray frames are taken too
    finally:
        detector.close()


@pytest.mark.parametrize("name", detector_names())
def test_copies_of_a_detector_run_on_two_threads_with_the_same_results(name, frame):
    detector = create_detector(name)
    results: list = [None, None]

    def run(slot: int, instance) -> None:
        results[slot] = [instance.detect(frame).boxes for _ in range(5)]

    threads = [threading.Thread(target=run, args=(k, d)) for k, d in enumerate((detector, detector.copy()))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(np.array_equal(a, b) for a, b in zip(*results))


def test_an_unknown_detector_name_lists_the_valid_ones():
    with pytest.raises(SettingsError, match="unknown face detector 'nope'; choose one of: blazeface, haar"):
        create_detector("nope")


def test_a_detector_refuses_another_detectors_settings():
    with pytest.raises(SettingsError, match="takes HaarConfig settings, got str"):
        create_detector("haar", "fast")


def test_a_missing_cascade_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="Haar cascade not found"):
        create_detector("haar", HaarConfig(cascade=str(tmp_path / "none.xml")))


@pytest.mark.parametrize("settings, error", [
    ({"scale_factor": 1.0}, "--scale-factor must be above 1, got 1.0"),
    ({"min_neighbors": -1}, "--min-neighbors must be 0 or more"),
    ({"min_face": 1.0}, "--min-face must be 0 or more and below 1"),
    ({"detect_width": -5, "scale_factor": 0.5}, "--scale-factor must be above 1, got 0.5; --detect-width must be 0 or more"),
    ({"roi_face_px": 10}, "roi_face_px must be 24 or more"),
])
def test_haar_settings_are_checked_where_they_are_made(settings, error):
    with pytest.raises(SettingsError, match=error):
        HaarConfig(**settings)


@pytest.mark.parametrize("boxes, scores, keypoints, error", [
    (np.zeros((2, 4), np.int32), np.ones(2), None, None),
    (np.zeros((2, 4), np.int32), np.ones(2), np.zeros((2, 6, 2)), None),
    (np.zeros((0, 4), np.int64), np.zeros(0), None, None),
    (np.zeros((2, 4)), np.ones(2), None, "integer"),
    (np.zeros((2, 3), np.int32), np.ones(2), None, r"\(N, 4\)"),
    (np.zeros((2, 4), np.int32), np.ones(3), None, r"scores must be \(2,\)"),
    (np.zeros((1, 4), np.int32), np.array([1.5]), None, r"in \[0, 1\]"),
    (np.zeros((2, 4), np.int32), np.ones(2), np.zeros((2, 6)), r"keypoints must be \(2, K, 2\)"),
])
def test_face_detections_check_their_shapes(boxes, scores, keypoints, error):
    if error is None:
        found = FaceDetections(boxes, scores, keypoints)
        assert found.boxes.dtype == np.int32 and found.scores.dtype == np.float32 and len(found) == len(boxes)
        assert len(found.take(np.arange(len(found)) < 1)) == min(1, len(boxes))
    else:
        with pytest.raises(ValueError, match=error):
            FaceDetections(boxes, scores, keypoints)


@pytest.mark.parametrize("command", [[], ["serve"], ["batch"], ["bench"]], ids=["app", "serve", "batch", "bench"])
def test_every_front_end_offers_the_registry_as_detector_choices(command):
    from conftest import run_main

    done = run_main(*command, "--help", timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--detector {" + ",".join(detector_names()) + "}" in done.stdout


def test_iou_matrix_matches_the_scalar_iou():
    a = np.array([[0, 0, 10, 10], [5, 5, 10, 10]])
    b = np.array([[5, 0, 10, 10], [100, 100, 5, 5]])
    expected = [[iou(x, y) for y in b] for x in a]
    assert np.allclose(iou_matrix(a, b), expected)


