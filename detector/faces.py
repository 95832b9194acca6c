"""Face detection with OpenCV's Haar cascade, on a downscaled grayscale frame.

Haar cost grows with pixels and with the number of scales tried, so the frame is
shrunk to ``detect_width`` and faces smaller than ``min_face`` (a fraction of the
frame's shorter side) are not searched for. Boxes come back in frame pixels.
No histogram equalisation: the cascade normalises each window's contrast itself, and
equalising the whole frame lost faces next to bright or dark regions (4-face bench
recall 94% with it, 99.9% without).
"""

from __future__ import annotations

from concurrent.futures import Executor, Future
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from detector.errors import UserError


@dataclass(frozen=True)
class DetectorConfig:
    scale_factor: float = 1.1
    min_neighbors: int = 5
    min_face: float = 0.1  # smallest face side, as a fraction of the frame's shorter side
    detect_width: int = 320  # frames wider than this are downscaled for detection (0 = never)
    full_every: int = 6  # a full-frame search for new faces every N frames; known faces are re-found every frame
    full_lag: int = 2  # the full search runs on a worker thread; its faces join this many frames later (0 = inline)
    min_neighbors_near: int = 3  # votes to re-find a known face in its own region (fewer than to find a new one)
    keep_missed: int = 3  # a known face not re-found is still looked for around its last box this many frames
    roi_margin: float = 0.5  # search region around a known face, in face sides on each side
    roi_face_px: int = 48  # known faces are re-detected at about this size, which keeps it cheap
    roi_scale_factor: float = 1.15  # coarser steps around a known face: its size is about known


def clip_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """``x, y, w, h`` boxes cut to the frame (a box outside it is left with no area)."""
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    x0 = np.clip(boxes[:, 0], 0, width)
    y0 = np.clip(boxes[:, 1], 0, height)
    x1 = np.clip(boxes[:, 0] + boxes[:, 2], 0, width)
    y1 = np.clip(boxes[:, 1] + boxes[:, 3], 0, height)
    return np.stack([x0, y0, x1 - x0, y1 - y0], axis=1).astype(np.int32)


def clamp_boxes(boxes: np.ndarray, width: int, height: int, min_side: int = 2) -> np.ndarray:
    """Clip ``x, y, w, h`` boxes to the frame; drop those left smaller than ``min_side``."""
    clipped = clip_boxes(boxes, width, height)
    return clipped[(clipped[:, 2] >= min_side) & (clipped[:, 3] >= min_side)]


class HaarFaceDetector:
    def __init__(self, cascade_path: str | Path, config: DetectorConfig = DetectorConfig()):
        path = Path(cascade_path)
        if not path.is_file():
            raise UserError(f"Haar cascade not found: {path}")
        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise UserError(f"not a valid Haar cascade file: {path}")
        self.path, self.config = path, config

    def copy(self) -> "HaarFaceDetector":
        """The same detector with its own cascade: one cascade must not run on two threads at once."""
        return HaarFaceDetector(self.path, self.config)

    def detect(self, image: np.ndarray) -> np.ndarray:
        """``(N, 4)`` int32 boxes ``x, y, w, h`` in ``image`` pixels, largest first."""
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        height, width = gray.shape
        scale = 1.0
        if self.config.detect_width and width > self.config.detect_width:
            scale = self.config.detect_width / width
            gray = cv2.resize(gray, (self.config.detect_width, max(1, round(height * scale))), interpolation=cv2.INTER_AREA)
        min_side = max(12, int(min(gray.shape) * self.config.min_face))
        found = self._cascade.detectMultiScale(
            gray,
            scaleFactor=self.config.scale_factor,
            minNeighbors=self.config.min_neighbors,
            minSize=(min_side, min_side),
        )
        if len(found) == 0:
            return np.zeros((0, 4), np.int32)
        boxes = np.round(np.asarray(found, dtype=np.float64) / scale).astype(np.int64)
        boxes = clamp_boxes(boxes, width, height)
        return boxes[np.argsort(-(boxes[:, 2] * boxes[:, 3]), kind="stable")]

    def detect_near(self, gray: np.ndarray, box: np.ndarray, min_neighbors: int | None = None) -> np.ndarray | None:
        """Re-find a known face in a small region around ``box``, searching only sizes near
        its own: a handful of scales on a ~100 px patch instead of the whole frame."""
        x, y, w, h = (int(v) for v in box)
        margin = int(self.config.roi_margin * max(w, h))
        x0, y0 = max(0, x - margin), max(0, y - margin)
        x1, y1 = min(gray.shape[1], x + w + margin), min(gray.shape[0], y + h + margin)
        if x1 - x0 < 2 or y1 - y0 < 2:  # the frame shrank under a known face (a stream changed size)
            return None
        scale = self.config.roi_face_px / max(w, 1)
        patch = cv2.resize(gray[y0:y1, x0:x1], None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        if min(patch.shape) < 24:
            return None
        side = self.config.roi_face_px
        found = self._cascade.detectMultiScale(
            patch,
            scaleFactor=self.config.roi_scale_factor,
            minNeighbors=self.config.min_neighbors_near if min_neighbors is None else min_neighbors,
            minSize=(max(20, int(side * 0.7)),) * 2,
            maxSize=(int(side * 1.45),) * 2,
        )
        if len(found) == 0:
            return None
        found = np.asarray(found, dtype=np.float64) / scale + [x0, y0, 0, 0]
        centre = np.array([x + w / 2, y + h / 2])
        nearest = found[np.argmin(np.linalg.norm(found[:, :2] + found[:, 2:] / 2 - centre, axis=1))]
        return np.round(nearest).astype(np.int64)


def _same_face(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(len(a), len(b))``: True where one box's centre lies inside the other box."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)

    def centre_in(p: np.ndarray, q: np.ndarray) -> np.ndarray:
        cx, cy = p[:, None, 0] + p[:, None, 2] / 2, p[:, None, 1] + p[:, None, 3] / 2
        return (cx >= q[None, :, 0]) & (cx <= q[None, :, 0] + q[None, :, 2]) & (cy >= q[None, :, 1]) & (cy <= q[None, :, 1] + q[None, :, 3])

    return centre_in(a, b) | centre_in(b, a).T


class FaceFinder:
    """Faces of one stream: known faces are re-found around where they were, every frame;
    a full-frame search for new faces runs every ``full_every`` frames.

    Full-frame Haar is the most expensive step of the frame, and faces move little in a
    frame, so most frames only need to confirm where the known faces are now. The full
    search runs on a worker thread and its new faces join exactly ``full_lag`` frames
    later: its cost leaves the frame's critical path, yet a video file gives the same
    boxes on every run, however fast the machine. The search only adds faces: a known face
    it missed (it looks at a smaller frame) stays while its own region still holds a face
    at full strength. A known face not re-found is still looked for around its last box for
    ``keep_missed`` frames (a turned head, a blink of the cascade), but not reported, and a
    search starts at once. The first frame of a stream, and so every still image, is
    searched in full.
    """

    def __init__(self, detector: HaarFaceDetector, searcher: HaarFaceDetector | None = None,
                 executor: Executor | None = None):
        self.detector = detector
        self._searcher = searcher or detector  # full searches; its own cascade when on another thread
        self._executor = executor
        self._boxes = np.zeros((0, 4), np.int32)
        self._missed = np.zeros(0, np.int32)  # frames since each known face was last re-found
        self._doubted = np.zeros(0, np.int32)  # full searches in a row that did not confirm it
        self._frame = 0
        self._next_search = 0
        self._pending: tuple[int, int, Future] | None = None  # (frame searched, frame its faces join at, the search)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        config = self.detector.config
        if self._frame == 0:
            detected = self._searcher.detect(gray)
            none = np.zeros(len(detected), np.int32)
            self._set(detected, none, gray.shape, none)
            self._next_search = max(1, config.full_every)
        else:
            found = [self.detector.detect_near(gray, box) for box in self._boxes]
            missed = np.array([0 if box is not None else m + 1 for box, m in zip(found, self._missed)], np.int32)
            lost = bool(np.any(missed == 1))  # a face just slipped: look at the whole frame
            boxes = [box if box is not None else old for box, old in zip(found, self._boxes)]
            keep = missed <= config.keep_missed
            self._set(np.array(boxes, np.int64).reshape(-1, 4)[keep], missed[keep], gray.shape, self._doubted[keep])
            if self._pending is None and (self._frame >= self._next_search or lost or len(self._boxes) == 0):
                self._search(gray)
            if self._pending is not None and self._pending[1] <= self._frame:
                searched_frame, _, search = self._pending
                self._merge(gray, search.result(), searched_frame)
                self._pending = None
        self._frame += 1
        return self._boxes[self._missed == 0]  # only faces seen in this frame: no box over where one was

    def _set(self, boxes: np.ndarray, missed: np.ndarray, shape: tuple[int, ...], doubted: np.ndarray) -> None:
        """Known faces, largest first, with their counters."""
        boxes = clip_boxes(boxes, shape[1], shape[0])  # a re-found box may reach past the frame's edge
        keep = (boxes[:, 2] >= 2) & (boxes[:, 3] >= 2)
        order = np.argsort(-(boxes[keep, 2] * boxes[keep, 3]), kind="stable")
        self._boxes = boxes[keep][order]
        self._missed = np.asarray(missed, np.int32)[keep][order]
        self._doubted = np.asarray(doubted, np.int32)[keep][order]

    def _search(self, gray: np.ndarray) -> None:
        config = self.detector.config
        lag = max(0, config.full_lag) if self._executor is not None else 0
        if lag:
            future = self._executor.submit(self._searcher.detect, gray)
        else:
            future = Future()
            future.set_result(self._searcher.detect(gray))
        self._pending = (self._frame, self._frame + lag, future)
        self._next_search = self._frame + max(1, config.full_every)

    def _merge(self, gray: np.ndarray, searched: np.ndarray, searched_frame: int) -> None:
        """Add the search's new faces, re-found in this frame when the search looked at an
        earlier one (a face may have left since). A known face the search missed (it looks at
        a smaller frame) is doubted unless its own region holds a face at full strength; a
        face doubted by two searches in a row is dropped, so a region that only looks a
        little like a face cannot hold on to a box for long."""
        same = _same_face(self._boxes, searched)
        doubted = np.where(same.any(axis=1), 0, self._doubted + 1)
        for i in np.flatnonzero(doubted):
            if self.detector.detect_near(gray, self._boxes[i], self.detector.config.min_neighbors) is not None:
                doubted[i] = 0
        keep = doubted < 2
        new = searched[~same.any(axis=0)]
        if searched_frame != self._frame and len(new):
            found = [self.detector.detect_near(gray, box) for box in new]
            new = np.array([box for box in found if box is not None], np.int64).reshape(-1, 4)
        none = np.zeros(len(new), np.int32)
        self._set(np.concatenate([self._boxes[keep], new]), np.concatenate([self._missed[keep], none]), gray.shape,
                  np.concatenate([doubted[keep], none]))
