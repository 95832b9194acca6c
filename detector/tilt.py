"""Recovering a known face the upright detector lost because the head tilted (laughing,
talking): the pipeline stage after detection.

Haar's frontal cascade is trained on upright faces and loses heads tilted past ~15 degrees.
Searching every frame at several rotations would multiply detection cost; instead, only
when a face seen in the last ``keep_frames`` frames is missing now, the region around its
last box is rotated by each of ``angles`` and searched for a face of about its size
(:meth:`HaarFaceDetector.detect_near`). A face found there is mapped back to an upright box
of the same size around the rotated face's centre. Measured in docs (tools/tilt.py).
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from detector.faces import HaarFaceDetector, clamp_boxes
from detector.results import Faces, FrameResult

ANGLES = (15.0, -15.0, 30.0, -30.0)  # degrees, tried in order until one finds the face
KEEP_FRAMES = 12  # a lost face is looked for at a tilt this many frames after it was last seen


def _centre_inside(point: np.ndarray, boxes: np.ndarray) -> bool:
    x, y = point
    return bool(np.any((boxes[:, 0] <= x) & (x <= boxes[:, 0] + boxes[:, 2]) & (boxes[:, 1] <= y) & (y <= boxes[:, 1] + boxes[:, 3])))


class TiltRecovery:
    """``FrameResult -> FrameResult``: adds the known faces found again at a tilt."""

    def __init__(self, detector: HaarFaceDetector, angles: tuple[float, ...] = ANGLES, keep_frames: int = KEEP_FRAMES):
        self.detector = detector.copy()  # its own cascade: the detect stage's may be busy on a worker thread
        self.angles, self.keep_frames = angles, keep_frames
        self._source: str | None = None
        self._known: list[tuple[np.ndarray, int]] = []  # (last box, frames since it was seen)
        self.recovered = 0  # faces added over the run, for measurement

    def reset(self) -> None:
        self._known = []

    def close(self) -> None:
        """Nothing held beyond memory."""

    def __call__(self, result: FrameResult) -> FrameResult:
        if result.source != self._source:
            self._source, self._known = result.source, []
        boxes = result.faces.boxes
        lost = [(box, age) for box, age in self._known
                if age < self.keep_frames and not _centre_inside(box[:2] + box[2:] / 2, boxes)]
        found = []
        if lost:
            gray = cv2.cvtColor(result.image, cv2.COLOR_BGR2GRAY)
            for box, age in lost:
                again = self._search(gray, box)
                if again is not None and (not len(boxes) or not _centre_inside(again[:2] + again[2:] / 2, boxes)):
                    found.append(again)
                else:
                    found.append(None)
        recovered = [box for box in found if box is not None]
        self.recovered += len(recovered)
        self._known = [(box.astype(np.float64), 0) for box in list(boxes) + recovered]
        self._known += [(box, age + 1) for (box, age), again in zip(lost, found) if again is None]
        if not recovered:
            return result
        faces = Faces(np.concatenate([boxes, np.asarray(recovered, np.int32).reshape(-1, 4)]),
                      ids=np.concatenate([result.faces.ids, np.full(len(recovered), -1, np.int64)]))
        return replace(result, faces=faces)

    def _search(self, gray: np.ndarray, box: np.ndarray) -> np.ndarray | None:
        """The face around ``box`` at one of the tilts, as an upright box of its size; or None."""
        x, y, w, h = (float(v) for v in box)
        side = max(w, h)
        x0, y0 = int(max(0, x - side)), int(max(0, y - side))
        x1, y1 = int(min(gray.shape[1], x + w + side)), int(min(gray.shape[0], y + h + side))
        crop = gray[y0:y1, x0:x1]
        if min(crop.shape) < 24:
            return None
        centre = ((x1 - x0) / 2, (y1 - y0) / 2)
        for angle in self.angles:
            turn = cv2.getRotationMatrix2D(centre, angle, 1.0)
            turned = cv2.warpAffine(crop, turn, (crop.shape[1], crop.shape[0]), borderMode=cv2.BORDER_REPLICATE)
            cx, cy = np.array([x - x0 + w / 2, y - y0 + h / 2, 1.0]) @ turn.T  # where the old centre went
            hit = self.detector.detect_near(turned, np.array([cx - w / 2, cy - h / 2, w, h]))
            if hit is None:
                continue
            back = cv2.invertAffineTransform(turn)
            fx, fy = np.array([hit[0] + hit[2] / 2, hit[1] + hit[3] / 2, 1.0]) @ back.T
            size = float(hit[2])
            upright = np.round([fx - size / 2 + x0, fy - size / 2 + y0, size, size])
            inside = clamp_boxes(upright, gray.shape[1], gray.shape[0])
            return inside[0] if len(inside) else None
        return None
