"""Where the window's overlays go on real frames: labels keep out from under the FPS strip,
the notice banner and the timeline keep off the faces."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from detector.config import ModelConfig, PipelineConfig, SmoothingConfig
from detector.pipeline import create_pipeline
from detector.overlay import Overlay, ProbabilityHistory, color_for
from detector.results import FrameResult
from tools.scenes import SAMPLE_CLIP, background

NOTICE = "No camera found: playing the sample clip"


@pytest.fixture(scope="module")
def pipeline(shipped_model):
    return create_pipeline(PipelineConfig(model=ModelConfig(str(shipped_model)), smoothing=SmoothingConfig(0)))


def _clip_frame(index: int = 60) -> np.ndarray:
    capture = cv2.VideoCapture(str(SAMPLE_CLIP))
    capture.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, frame = capture.read()
    capture.release()
    assert ok
    return frame


def _moved(pipeline, x: int, y: int) -> FrameResult:
    """The clip's face (and hand) pasted at ``x, y`` of a 960x540 picture of the clip's own wall, detected and classified."""
    image = background((960, 540))
    face = _clip_frame()[20:360, 250:600]
    image[y : y + face.shape[0], x : x + face.shape[1]] = face
    result = pipeline(FrameResult(index=0, time=0.0, source=f"moved {x},{y}", image=image))
    assert len(result.faces) == 1
    return result


def _face_pixels_kept(drawn: np.ndarray, image: np.ndarray, box, margin: int = 4) -> bool:
    x, y, w, h = box  # inside the box line, which is drawn on the face's edge
    inner = (slice(y + margin, y + h - margin), slice(x + margin, x + w - margin))
    return np.array_equal(drawn[inner], image[inner])


def test_label_of_a_face_under_the_fps_strip_goes_below_the_box(pipeline):
    result = _moved(pipeline, 960 - 350, 0)  # the face in the top-right corner
    overlay = Overlay(bars=False)
    x, y, w, h = result.faces.boxes[0].tolist()
    hud = overlay.hud.rect(result.image, 0.0, 0.0, 1)
    assert x + w > hud[0] and y < hud[1] + hud[3] + 20, "the face is not near the FPS strip"
    drawn = overlay.draw(result)
    color = np.array(color_for(result.records[0]["label"]), np.uint8)
    below = np.all(drawn[y + h + 2 : y + h + 40, x : x + w] == color, axis=2).sum()
    assert below > 100, "no label below the box"


def test_notice_moves_off_a_face_in_the_bottom_left(pipeline):
    result = _moved(pipeline, 0, 540 - 340)  # the face in the bottom-left corner, where the notice goes first
    drawn = Overlay(bars=False).draw(result, notice=NOTICE)
    assert _face_pixels_kept(drawn, result.image, result.faces.boxes[0])
    banner = np.all(drawn == np.array((0, 200, 255), np.uint8), axis=2)
    assert banner.sum() > 1000  # shown somewhere else


def test_timeline_keeps_off_the_face_the_notice_and_the_bars(pipeline):
    result = _moved(pipeline, 960 - 350, 200)
    overlay = Overlay()
    history = ProbabilityHistory(seconds=10)
    for k in range(30):
        history.update(FrameResult(index=k, time=k / 24, source="clip", image=result.image, faces=result.faces, labels=result.labels))
    drawn = overlay.draw(result, notice=NOTICE)
    with_timeline = overlay.timeline(drawn.copy(), result, history, NOTICE)
    changed = np.any(with_timeline != drawn, axis=2)
    assert changed.sum() > 2000
    x, y, w, h = result.faces.boxes[0].tolist()
    assert not changed[y : y + h, x : x + w].any(), "the timeline covers the face"
    bx, by, bw, bh = overlay.hud.notice_rect(drawn, NOTICE, result.faces.boxes.tolist())
    assert not changed[by : by + bh, bx : bx + bw].any(), "the timeline covers the notice"


def test_paused_banner_dims_the_frame_and_says_how_to_resume(pipeline):
    result = _moved(pipeline, 960 - 350, 200)
    drawn = Overlay().draw(result)
    paused = Overlay().hud.paused(drawn)
    white = np.all(paused == 255, axis=2)
    assert white[paused.shape[0] // 2 - 20 : paused.shape[0] // 2 + 20].sum() > 2000  # the white banner mid-frame
    assert paused[:40, :40].mean() < drawn[:40, :40].mean()  # the rest dimmed
