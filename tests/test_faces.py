"""Finding faces across frames: the full-frame search runs beside the frame loop, known
faces are re-found around where they were, and a video gives the same boxes on every run.

Real faces only: the bundled sample clip, letterboxed into 640x480 scenes as the bench does.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import pytest

from detector.bench import SIZE, letterbox, mosaic, recall, sample_frames
from detector.faces import FaceFinder, HaarFaceDetector
from detector.config import DetectorConfig
from tools.scenes import CASCADE, background


@pytest.fixture(scope="module")
def clip_frames() -> list[np.ndarray]:
    return sample_frames()[0]


def four_faces(frames: list[np.ndarray], count: int) -> list[np.ndarray]:
    """The bench's 4-face clip: four real faces in every frame."""
    return [mosaic(frames, i) for i in range(count)]


def find_all(frames: list[np.ndarray], config: DetectorConfig = DetectorConfig(), searcher=None) -> list[np.ndarray]:
    detector = HaarFaceDetector(CASCADE, config)
    with ThreadPoolExecutor(max_workers=1) as executor:
        finder = FaceFinder(detector, searcher or detector.copy(), executor)
        return [finder(frame).boxes for frame in frames]


class SlowSearch(HaarFaceDetector):
    """The real detector on a machine where the full search takes 150 ms."""

    def detect(self, image):
        time.sleep(0.15)
        return super().detect(image)


def test_four_faces_are_kept_in_nearly_every_frame(clip_frames):
    frames = four_faces(clip_frames, 300)
    boxes = find_all(frames)
    found = recall(2, boxes)
    assert found >= 0.98, f"four-face recall {found:.3f}"
    assert max(len(b) for b in boxes) == 4, "a face was counted twice"


def test_boxes_do_not_depend_on_how_fast_the_search_is(clip_frames):
    frames = four_faces(clip_frames, 40)
    fast = find_all(frames)
    slow = find_all(frames, searcher=SlowSearch(CASCADE))
    assert all(np.array_equal(a, b) for a, b in zip(fast, slow))
    assert sum(len(b) for b in fast) >= 0.9 * 4 * len(frames)


def test_a_new_face_joins_at_the_next_search(clip_frames):
    """Left half: a face from the start. Right half: the wall, then a face from frame 8 on."""
    half = (SIZE[0] // 2, SIZE[1])
    wall = letterbox(background(), half)
    frames = [np.hstack([letterbox(clip_frames[i], half), wall if i < 8 else letterbox(clip_frames[-1 - i], half)])
              for i in range(40)]
    config = replace(DetectorConfig(), full_every=12, full_lag=4)
    boxes = find_all(frames, config)

    def right(b):
        return int(np.sum(b[:, 0] + b[:, 2] / 2 > half[0]))

    assert len(boxes[0]) == 1 and right(boxes[0]) == 0, "the first frame is searched at once"
    joined = next(i for i, b in enumerate(boxes) if right(b))
    assert 8 < joined <= 8 + config.full_every + config.full_lag
    assert all(right(b) == 1 for b in boxes[joined:])
