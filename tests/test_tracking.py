"""Face ids across frames and time-based smoothing: real faces for the tracker, exact steps for the smoother."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.faces import HaarFaceDetector
from detector.pipeline import DetectFaces
from detector.results import Faces, FrameResult
from detector.sources import open_source
from detector.tracking import FaceTracker, ProbabilitySmoother, iou_matrix
from scenes import CASCADE, background, detectable_faces, iou, scene_with, write_video

NO_IMAGE = np.zeros((1, 1, 3), np.uint8)


def frame(index, boxes, time=None, probs=None, ids=None, source="test"):
    faces = Faces(np.asarray(boxes).reshape(-1, 4), probs, ids=ids)
    return FrameResult(index=index, time=index / 30 if time is None else time, source=source, image=NO_IMAGE,
                       faces=faces, labels=("a", "b", "c") if probs is not None else ())


@pytest.fixture(scope="module")
def real_faces(fer2013_dir):
    return detectable_faces(fer2013_dir, "test", per_class=1)


def _track_real_video(frames, tmp_path):
    """Haar + tracker over a real video file, as the app runs them."""
    clip = write_video(tmp_path / "clip.mp4", frames)
    detect, tracker = DetectFaces(HaarFaceDetector(CASCADE)), FaceTracker()
    with open_source(str(clip)) as source:
        return [tracker(detect(f)) for f in source]


def test_ids_stay_with_real_faces_moving_across_a_video(real_faces, tmp_path):
    faces = [f.image for f in real_faces[:3]]
    frames, truth = [], []
    for k in range(40):  # three faces drifting in different directions for 40 frames
        positions = [(20 + 3 * k, 40), (470 - 3 * k, 60), (200 + k, 300 - 2 * k)]
        scene, boxes = scene_with(faces, positions, side=140)
        frames.append(scene)
        truth.append(boxes)
    ids_of = [set(), set(), set()]
    for result, boxes in zip(_track_real_video(frames, tmp_path), truth):
        for i, box in enumerate(boxes):
            overlaps = [iou(b, box) for b in result.faces.boxes]
            if overlaps and max(overlaps) > 0.5:
                ids_of[i].add(int(result.faces.ids[int(np.argmax(overlaps))]))
    assert all(len(ids) == 1 for ids in ids_of), ids_of  # one id per face for the whole video
    assert len(set.union(*ids_of)) == 3 and min(set.union(*ids_of)) >= 1


def test_a_real_face_missing_for_two_frames_keeps_its_id(real_faces, tmp_path):
    frames = []
    for k in range(12):
        if k in (5, 6):
            frames.append(background())  # the face is gone: Haar finds nothing
        else:
            frames.append(scene_with([real_faces[3].image], [(200 + 4 * k, 150)])[0])
    results = _track_real_video(frames, tmp_path)
    assert [len(r.faces) for r in results] == [1] * 5 + [0, 0] + [1] * 5
    assert {int(r.faces.ids[0]) for r in results if len(r.faces)} == {1}


@pytest.mark.parametrize("occluded", [False, True], ids=["both-seen", "one-hidden-while-crossing"])
def test_two_faces_crossing_keep_distinct_ids(occluded):
    tracker, seen = FaceTracker(), {"left": set(), "right": set()}
    for k in range(25):
        left, right = (40 + 16 * k, 100, 100, 100), (440 - 16 * k, 110, 100, 100)  # they cross around k = 12
        hide_right = occluded and 11 <= k <= 13  # the face behind is not detected while they overlap
        boxes = [left] if hide_right else [left, right]
        result = tracker(frame(k, boxes))
        seen["left"].add(int(result.faces.ids[0]))
        if not hide_right:
            seen["right"].add(int(result.faces.ids[1]))
    assert len(seen["left"]) == len(seen["right"]) == 1 and seen["left"] != seen["right"], seen


def test_ids_start_at_1_and_are_never_reused():
    tracker = FaceTracker(max_missed=2)
    assert tracker(frame(0, [(10, 10, 50, 50)])).faces.ids.tolist() == [1]
    for k in range(1, 4):  # gone longer than max_missed: the track ends
        tracker(frame(k, np.zeros((0, 4))))
    assert tracker(frame(4, [(10, 10, 50, 50), (300, 10, 50, 50)])).faces.ids.tolist() == [2, 3]


def test_a_new_source_starts_new_tracks():
    """An image folder's files are unrelated scenes: a face in each gets its own id."""
    tracker = FaceTracker()
    first = tracker(frame(0, [(10, 10, 50, 50)], time=0.0, source="a.png"))
    second = tracker(frame(0, [(10, 10, 50, 50)], time=0.0, source="b.png"))
    assert first.faces.ids.tolist() == [1] and second.faces.ids.tolist() == [2]


@pytest.mark.parametrize("kwargs, error", [
    ({"iou_threshold": 1.5}, "iou_threshold"),
    ({"max_missed": -1}, "max_missed"),
    ({"max_distance": -0.1}, "max_distance"),
])
def test_tracker_rejects_bad_settings(kwargs, error):
    with pytest.raises(ValueError, match=error):
        FaceTracker(**kwargs)


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
    smoother = ProbabilitySmoother(0.5, forget_after=1.0)
    smoother(frame(0, [(0, 0, 10, 10)], time=0.0, probs=[[1.0, 0.0, 0.0]], ids=[1]))
    smoother(frame(1, np.zeros((0, 4)), time=2.0, probs=np.zeros((0, 3)), ids=np.zeros(0)))
    assert 1 not in smoother._state
    untracked = smoother(frame(2, [(0, 0, 10, 10)], time=2.1, probs=[[0.0, 1.0, 0.0]]))
    assert untracked.faces.probs.tolist() == [[0.0, 1.0, 0.0]]


def test_each_image_of_a_folder_is_smoothed_on_its_own():
    """Image folders give every file time 0 and its own source name: nothing carries over."""
    smoother = ProbabilitySmoother(0.5)
    smoother(frame(0, [(0, 0, 10, 10)], time=0.0, probs=[[1.0, 0.0, 0.0]], ids=[1], source="a.png"))
    second = smoother(frame(0, [(0, 0, 10, 10)], time=0.0, probs=[[0.0, 1.0, 0.0]], ids=[1], source="b.png"))
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
