"""Face detection with OpenCV's Haar cascade, on a downscaled grayscale frame.

Haar cost grows with pixels and with the number of scales tried, so the frame is
shrunk to ``detect_width`` and faces smaller than ``min_face`` (a fraction of the
frame's shorter side) are not searched for. Boxes come back in frame pixels.
"""

from __future__ import annotations

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
    full_every: int = 24  # full-frame detection every N frames; between them, only around known faces (1 = always full)
    roi_margin: float = 0.5  # search region around a known face, in face sides on each side
    roi_face_px: int = 48  # known faces are re-detected at about this size, which keeps it cheap


def clamp_boxes(boxes: np.ndarray, width: int, height: int, min_side: int = 2) -> np.ndarray:
    """Clip ``x, y, w, h`` boxes to the frame; drop those left smaller than ``min_side``."""
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    x0 = np.clip(boxes[:, 0], 0, width)
    y0 = np.clip(boxes[:, 1], 0, height)
    x1 = np.clip(boxes[:, 0] + boxes[:, 2], 0, width)
    y1 = np.clip(boxes[:, 1] + boxes[:, 3], 0, height)
    clamped = np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)
    keep = (clamped[:, 2] >= min_side) & (clamped[:, 3] >= min_side)
    return clamped[keep].astype(np.int32)


class HaarFaceDetector:
    def __init__(self, cascade_path: str | Path, config: DetectorConfig = DetectorConfig()):
        path = Path(cascade_path)
        if not path.is_file():
            raise UserError(f"Haar cascade not found: {path}")
        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise UserError(f"not a valid Haar cascade file: {path}")
        self.config = config

    def detect(self, image: np.ndarray) -> np.ndarray:
        """``(N, 4)`` int32 boxes ``x, y, w, h`` in ``image`` pixels, largest first."""
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        height, width = gray.shape
        scale = 1.0
        if self.config.detect_width and width > self.config.detect_width:
            scale = self.config.detect_width / width
            gray = cv2.resize(gray, (self.config.detect_width, max(1, round(height * scale))), interpolation=cv2.INTER_AREA)
        gray = cv2.equalizeHist(gray)
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

    def detect_near(self, gray: np.ndarray, box: np.ndarray) -> np.ndarray | None:
        """Re-find a known face in a small region around ``box``, searching only sizes near
        its own: a handful of scales on a ~200 px patch instead of the whole frame."""
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
            cv2.equalizeHist(patch),
            scaleFactor=self.config.scale_factor,
            # confirming a face already found: fewer votes are needed than to find a new one
            minNeighbors=max(2, self.config.min_neighbors - 2),
            minSize=(max(20, int(side * 0.7)),) * 2,
            maxSize=(int(side * 1.45),) * 2,
        )
        if len(found) == 0:
            return None
        found = np.asarray(found, dtype=np.float64) / scale + [x0, y0, 0, 0]
        centre = np.array([x + w / 2, y + h / 2])
        nearest = found[np.argmin(np.linalg.norm(found[:, :2] + found[:, 2:] / 2 - centre, axis=1))]
        return np.round(nearest).astype(np.int64)


class FaceFinder:
    """Full detection every ``full_every`` frames, cheap re-detection around known faces between.

    Full-frame Haar is the most expensive step of the frame; faces move little in
    1/6 s, so most frames only need to confirm where they are now. New faces are
    picked up at the next full detection.
    """

    def __init__(self, detector: HaarFaceDetector):
        self.detector = detector
        self._boxes = np.zeros((0, 4), np.int32)
        self._since_full = 0

    def __call__(self, image: np.ndarray) -> np.ndarray:
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        every = max(1, self.detector.config.full_every)
        if self._since_full + 1 >= every or len(self._boxes) == 0:
            self._boxes, self._since_full = self.detector.detect(gray), 0
            return self._boxes
        self._since_full += 1
        found = [self.detector.detect_near(gray, box) for box in self._boxes]
        kept = [box for box in found if box is not None]
        boxes = clamp_boxes(np.array(kept), gray.shape[1], gray.shape[0]) if kept else np.zeros((0, 4), np.int32)
        if len(boxes) < len(self._boxes):
            self._since_full = every  # a face was lost: look at the whole frame next time
        self._boxes = boxes
        return boxes
