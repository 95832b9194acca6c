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
