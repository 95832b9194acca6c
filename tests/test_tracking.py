"""Face ids across frames (owned by the face finder) on real faces, and time-based smoothing on exact steps."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.config import TrackingConfig
from detector.faces import HaarFaceDetector, iou_matrix
from detector.pipeline import DetectFaces, Pipeline
from detector.results import Faces, FrameResult
from detector.sources import open_source
from detector.tracking import ProbabilitySmoother
from tools.scenes import (CASCADE, background, covered_scene, crossing_scene, detectable_faces, iou, leaving_scene,
                          scene_with, write_video, zoom_scene)

NO_IMAGE = np.zeros((1, 1, 3), np.uint8)


def frame(index, boxes, time=None, probs=None, ids=None, source="test"):
    faces = Faces(np.asarray(boxes).reshape(-1, 4), probs, ids=ids)
    return FrameResult(index=index, time=index / 30 if time is None else time, source=source, image=NO_IMAGE,
                       faces=faces, labels=("a", "b", "c") if probs is not None else ())


@pytest.fixture(scope="module")
def real_faces(fer2013_dir):
    return detectable_faces(fer2013_dir, "test", per_class=1)


def _detect_video(frames, tmp_path, fps=15.0):
    """The app's face stage over a real video file (written, then read back as the app reads it)."""
    clip = write_video(tmp_path / "clip.mp4", frames, fps)
    with Pipeline([("detect", DetectFaces(HaarFaceDetector(CASCADE)))]) as pipeline, open_source(str(clip)) as source:
        return [pipeline(f) for f in source]


def _ids_of_each_person(results, truth):
    """Person -> every id given to a box lying on that person's true box (IoU > 0.5)."""
    ids = {person: set() for person in truth[0]}
    for result, boxes in zip(results, truth):
        for person, box in boxes.items():
            overlaps = [iou(b, box) for b in result.faces.boxes] if box is not None else []
            if overlaps and max(overlaps) > 0.5:
                ids[person].add(int(result.faces.ids[int(np.argmax(overlaps))]))
    return ids


def test_ids_stay_with_real_faces_moving_across_a_video(real_faces, tmp_path):
    faces = [f.image for f in real_faces[:3]]
    frames, truth = [], []
    for k in range(40):  # three faces drifting in different directions for 40 frames
        positions = [(20 + 3 * k, 40), (470 - 3 * k, 60), (200 + k, 300 - 2 * k)]
        scene, boxes = scene_with(faces, positions, side=140)
        frames.append(scene)
        truth.append(dict(enumerate(boxes)))
    ids_of = _ids_of_each_person(_detect_video(frames, tmp_path), truth)
    assert all(len(ids) == 1 for ids in ids_of.values()), ids_of  # one id per face for the whole video
    assert set.union(*ids_of.values()) == {1, 2, 3}


def test_a_real_face_missing_for_two_frames_keeps_its_id(real_faces, tmp_path):
    frames = []
    for k in range(12):
        if k in (5, 6):
            frames.append(background())  # the face is gone: Haar finds nothing
        else:
            frames.append(scene_with([real_faces[3].image], [(200 + 4 * k, 150)])[0])
    results = _detect_video(frames, tmp_path)
    assert [len(r.faces) for r in results] == [1] * 5 + [0, 0] + [1] * 5
    assert {int(r.faces.ids[0]) for r in results if len(r.faces)} == {1}


SCENES = {
    "cross": crossing_scene,
    "cross-at-one-height": lambda faces: crossing_scene(faces, offset=0),
    "covered-for-10-frames": covered_scene,
    "leave-and-come-back": leaving_scene,
    "closer-and-back": zoom_scene,
}


@pytest.mark.parametrize("pair", [(0, 1), (4, 6)], ids=["angry+disgust", "sad+neutral"])
@pytest.mark.parametrize("scene", SCENES, ids=list(SCENES))
def test_each_real_face_keeps_one_id_of_its_own(scene, pair, real_faces, tmp_path):
    """Faces that pass in front of each other, are covered, leave and return, or double in size:
    each person gets exactly one id for the whole video, and no two people share one."""
    frames, truth = SCENES[scene]([real_faces[i].image for i in pair])
    results = _detect_video(frames, tmp_path)
    ids_of = _ids_of_each_person(results, truth)
    assert all(len(ids) == 1 for ids in ids_of.values()), ids_of
    assert len(set.union(*ids_of.values())) == len(ids_of), ids_of
    hidden = [k for k, boxes in enumerate(truth) if any(b is None for b in boxes.values())]
    if scene != "closer-and-back":  # the scene really hides a face for a while
        assert len(hidden) >= 7


def test_a_new_face_gets_a_new_id(real_faces, tmp_path):
    """One face leaves on the right; later another face appears far from it, on the left."""
    frames = [scene_with([real_faces[0].image], [(420, 160)])[0] for _ in range(10)]
    frames += [background() for _ in range(5)]
    frames += [scene_with([real_faces[5].image], [(30, 170)])[0] for _ in range(10)]
    results = _detect_video(frames, tmp_path)
    assert {int(i) for r in results[:10] for i in r.faces.ids} == {1}
    assert {int(i) for r in results[-5:] for i in r.faces.ids} == {2}


def test_ids_are_never_reused_across_sources(real_faces):
    """Each file of an image folder is a scene of its own, but ids count on through the run."""
    image = scene_with([real_faces[2].image], [(240, 160)])[0]
    with Pipeline([("detect", DetectFaces(HaarFaceDetector(CASCADE)))]) as pipeline:
        ids = [pipeline(FrameResult(0, 0.0, name, image)).faces.ids.tolist() for name in ("a.png", "b.png", "a.png")]
    assert ids == [[1], [2], [3]]


def test_closing_the_pipeline_stops_the_face_search_thread(real_faces):
    image = scene_with([real_faces[2].image], [(240, 160)])[0]
    pipeline = Pipeline([("detect", DetectFaces(HaarFaceDetector(CASCADE)))])
    for k in range(8):  # past the first full search on the worker thread
        pipeline(FrameResult(k, k / 15, "clip", image))
    assert any(t.name.startswith("face-search") for t in threading.enumerate())
    pipeline.close()
    assert not any(t.name.startswith("face-search") for t in threading.enumerate())


@pytest.mark.parametrize("kwargs, error", [
    ({"duplicate_iou": 1.5}, "duplicate_iou"),
    ({"velocity_weight": 0}, "velocity_weight"),
    ({"remember_s": -1}, "remember_s"),
    ({"reid_scale": 0.5}, "reid_scale"),
])
def test_tracking_config_rejects_bad_settings(kwargs, error):
    with pytest.raises(ValueError, match=error):
        TrackingConfig(**kwargs)


def test_iou_matrix_matches_the_scalar_iou():
    a = np.array([[0, 0, 10, 10], [5, 5, 10, 10]])
    b = np.array([[5, 0, 10, 10], [100, 100, 5, 5]])
    expected = [[iou(x, y) for y in b] for x in a]
    assert np.allclose(iou_matrix(a, b), expected)


def _step_crossing_time(fps: float, tau: float, step_at: float = 1.0) -> float:
    """Seconds after a step from class 0 to class 1 until the smoothed class 1 reaches 1 - 1/e."""
    smoother = ProbabilitySmoother(tau)
    for k in range(int(4 * fps)):
        t = k / fps
        raw = [[0.0, 1.0, 0.0]] if t >= step_at else [[1.0, 0.0, 0.0]]
        result = smoother(frame(k, [(0, 0, 10, 10)], time=t, probs=raw, ids=[1]))
        if t >= step_at and result.faces.probs[0, 1] >= 1 - math.exp(-1) - 1e-6:
            return t - step_at
    raise AssertionError("never reached 63%")


@pytest.mark.parametrize("tau", [0.25, 0.5, 1.0])
def test_smoothing_is_frame_rate_independent(tau):
    slow, fast = _step_crossing_time(8.0, tau), _step_crossing_time(30.0, tau)
    assert abs(slow - fast) <= 1 / 8
    assert abs(slow - tau) <= 1 / 8 + 1e-9 and abs(fast - tau) <= 1 / 30 + 1e-9  # 63% after tau seconds, to a frame


def test_tau_0_passes_results_unchanged():
    result = frame(0, [(0, 0, 10, 10)], probs=[[0.2, 0.5, 0.3]], ids=[1])
    smoother = ProbabilitySmoother(0)
    assert smoother(result) is result
    assert smoother(frame(1, [(0, 0, 10, 10)], probs=[[0.9, 0.05, 0.05]], ids=[1])).faces.probs[0, 0] == pytest.approx(0.9)


def test_smoothing_keeps_raw_probs_and_emits_both_in_json():
    smoother = ProbabilitySmoother(0.5)
    first = smoother(frame(0, [(0, 0, 10, 10)], time=0.0, probs=[[0.8, 0.1, 0.1]], ids=[7]))
    assert np.array_equal(first.faces.probs, first.faces.raw_probs)  # a track's first frame is raw
    second = smoother(frame(1, [(0, 0, 10, 10)], time=0.1, probs=[[0.1, 0.8, 0.1]], ids=[7]))
    assert np.allclose(second.faces.raw_probs, [[0.1, 0.8, 0.1]])
    assert second.faces.probs[0, 0] > 0.5  # still mostly the old class after 0.1 s of 0.5 s
    record = second.records[0]
    assert record["id"] == 7 and record["label"] == "a" and record["raw_probs"]["b"] == pytest.approx(0.8)


def test_smoother_forgets_tracks_that_disappeared_and_leaves_untracked_faces_raw():
    smoother = ProbabilitySmoother(0.5, TrackingConfig(forget_after_s=1.0))
    smoother(frame(0, [(0, 0, 10, 10)], time=0.0, probs=[[1.0, 0.0, 0.0]], ids=[1]))
    smoother(frame(1, np.zeros((0, 4)), time=2.0, probs=np.zeros((0, 3)), ids=np.zeros(0)))
    assert 1 not in smoother._state
    untracked = smoother(frame(2, [(0, 0, 10, 10)], time=2.1, probs=[[0.0, 1.0, 0.0]]))
    assert untracked.faces.probs.tolist() == [[0.0, 1.0, 0.0]]


def test_each_image_of_a_folder_is_smoothed_on_its_own():
    """Image folders give every file time 0 and its own source name: nothing carries over."""
    smoother = Pipeline([("smooth", ProbabilitySmoother(0.5))])  # the pipeline resets its stages on a new source
    smoother(frame(0, [(0, 0, 10, 10)], time=0.0, probs=[[1.0, 0.0, 0.0]], ids=[1], source="a.png"))
    second = smoother(frame(0, [(0, 0, 10, 10)], time=1.0, probs=[[0.0, 1.0, 0.0]], ids=[1], source="b.png"))  # a later time: only the reset keeps a from b
    assert second.faces.probs.tolist() == [[0.0, 1.0, 0.0]]


def test_smoother_rejects_negative_tau():
    with pytest.raises(ValueError, match="tau"):
        ProbabilitySmoother(-0.1)


probability_rows = st.lists(st.floats(0.0, 1.0), min_size=4, max_size=4).filter(lambda r: sum(r) > 1e-3)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(probability_rows, st.floats(0.0, 0.5), st.booleans()), min_size=1, max_size=40),
       st.floats(0.01, 2.0))
def test_smoothed_rows_stay_probability_vectors(steps, tau):
    smoother, t = ProbabilitySmoother(tau), 0.0
    for k, (row, dt, seen) in enumerate(steps):
        t += dt
        probs = np.array([row]) / sum(row)
        boxes, ids = ([(0, 0, 10, 10)], [1]) if seen else (np.zeros((0, 4)), np.zeros(0))
        result = smoother(frame(k, boxes, time=t, probs=probs if seen else np.zeros((0, 4)), ids=ids))
        if seen:
            assert np.all(result.faces.probs >= 0)
            assert result.faces.probs.sum() == pytest.approx(1.0, abs=1e-5)
