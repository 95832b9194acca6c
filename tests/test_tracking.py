"""Time-based probability smoothing per face id (``detector.tracking``), on exact steps."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.config import SmoothingConfig
from detector.errors import SettingsError
from detector.pipeline import Pipeline
from detector.results import Faces, FrameResult
from detector.tracking import ProbabilitySmoother

NO_IMAGE = np.zeros((1, 1, 3), np.uint8)


def frame(index, boxes, time=None, probs=None, ids=None, source="test"):
    faces = Faces(np.asarray(boxes).reshape(-1, 4), probs, ids=ids)
    return FrameResult(index=index, time=index / 30 if time is None else time, source=source, image=NO_IMAGE,
                       faces=faces, labels=("a", "b", "c") if probs is not None else ())


def _step_crossing_time(fps: float, tau: float, step_at: float = 1.0) -> float:
    """Seconds after a step from class 0 to class 1 until the smoothed class 1 reaches 1 - 1/e."""
    smoother = ProbabilitySmoother(SmoothingConfig(tau))
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
    smoother = ProbabilitySmoother(SmoothingConfig(0))
    assert smoother(result) is result
    assert smoother(frame(1, [(0, 0, 10, 10)], probs=[[0.9, 0.05, 0.05]], ids=[1])).faces.probs[0, 0] == pytest.approx(0.9)


def test_smoothing_keeps_raw_probs_and_emits_both_in_json():
    smoother = ProbabilitySmoother(SmoothingConfig(0.5))
    first = smoother(frame(0, [(0, 0, 10, 10)], time=0.0, probs=[[0.8, 0.1, 0.1]], ids=[7]))
    assert np.array_equal(first.faces.probs, first.faces.raw_probs)  # a track's first frame is raw
    second = smoother(frame(1, [(0, 0, 10, 10)], time=0.1, probs=[[0.1, 0.8, 0.1]], ids=[7]))
    assert np.allclose(second.faces.raw_probs, [[0.1, 0.8, 0.1]])
    assert second.faces.probs[0, 0] > 0.5  # still mostly the old class after 0.1 s of 0.5 s
    record = second.records[0]
    assert record["id"] == 7 and record["label"] == "a" and record["raw_probs"]["b"] == pytest.approx(0.8)


def test_smoother_forgets_tracks_that_disappeared_and_leaves_untracked_faces_raw():
    smoother = ProbabilitySmoother(SmoothingConfig(0.5, forget_after_s=1.0))
    smoother(frame(0, [(0, 0, 10, 10)], time=0.0, probs=[[1.0, 0.0, 0.0]], ids=[1]))
    smoother(frame(1, np.zeros((0, 4)), time=2.0, probs=np.zeros((0, 3)), ids=np.zeros(0)))
    assert 1 not in smoother._state
    untracked = smoother(frame(2, [(0, 0, 10, 10)], time=2.1, probs=[[0.0, 1.0, 0.0]]))
    assert untracked.faces.probs.tolist() == [[0.0, 1.0, 0.0]]


def test_each_image_of_a_folder_is_smoothed_on_its_own():
    """Image folders give every file time 0 and its own source name: nothing carries over."""
    smoother = Pipeline([("smooth", ProbabilitySmoother(SmoothingConfig(0.5)))])  # the pipeline resets its stages on a new source
    smoother(frame(0, [(0, 0, 10, 10)], time=0.0, probs=[[1.0, 0.0, 0.0]], ids=[1], source="a.png"))
    second = smoother(frame(0, [(0, 0, 10, 10)], time=1.0, probs=[[0.0, 1.0, 0.0]], ids=[1], source="b.png"))  # a later time: only the reset keeps a from b
    assert second.faces.probs.tolist() == [[0.0, 1.0, 0.0]]


def test_smoothing_config_rejects_a_negative_time_constant():
    with pytest.raises(SettingsError, match="--smoothing must be 0 or more seconds, got -0.1"):
        SmoothingConfig(-0.1)


probability_rows = st.lists(st.floats(0.0, 1.0), min_size=4, max_size=4).filter(lambda r: sum(r) > 1e-3)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(probability_rows, st.floats(0.0, 0.5), st.booleans()), min_size=1, max_size=40),
       st.floats(0.01, 2.0))
def test_smoothed_rows_stay_probability_vectors(steps, tau):
    smoother, t = ProbabilitySmoother(SmoothingConfig(tau)), 0.0
    for k, (row, dt, seen) in enumerate(steps):
        t += dt
        probs = np.array([row]) / sum(row)
        boxes, ids = ([(0, 0, 10, 10)], [1]) if seen else (np.zeros((0, 4)), np.zeros(0))
        result = smoother(frame(k, boxes, time=t, probs=probs if seen else np.zeros((0, 4)), ids=ids))
        if seen:
            assert np.all(result.faces.probs >= 0)
            assert result.faces.probs.sum() == pytest.approx(1.0, abs=1e-5)
