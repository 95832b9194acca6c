"""Finding a known face again when the upright detector lost it because the head tilted
(laughing, talking).

Haar's frontal cascade is trained on upright faces and loses heads tilted past ~15 degrees.
Searching every frame at several rotations would multiply detection cost; instead the face
finder (``detector.identity.FaceFinder``), only for a known face it did not re-find upright,
rotates the region around the face's last box by each of ``IdentityConfig.tilt_angles`` in
turn and searches it for a face of about its size. A face found there is mapped back to an
upright box of the same size around the rotated face's centre, and keeps its id. Measured
in docs/TILT.md (``python tools/tilt.py``).
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

#: ``near(gray, box) -> box | None``: a face of about ``box``'s size around it (``FaceFinder._near``, a detector's region search).
DetectNear = Callable[[np.ndarray, np.ndarray], "np.ndarray | None"]


def find_tilted(detect_near: DetectNear, gray: np.ndarray, box: np.ndarray, angles: tuple[float, ...]) -> np.ndarray | None:
    """The face around ``box`` (``[x, y, w, h]``, frame pixels) at the first of ``angles``
    (degrees) that shows it, as an upright ``int64`` box of its size inside ``gray`` (a gray or BGR frame); or None."""
    x, y, w, h = (float(v) for v in box)
    side = max(w, h)
    x0, y0 = int(max(0, x - side)), int(max(0, y - side))
    x1, y1 = int(min(gray.shape[1], x + w + side)), int(min(gray.shape[0], y + h + side))
    crop = gray[y0:y1, x0:x1]
    crop = crop if crop.ndim == 2 else cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)  # only the region: the same pixels as a gray frame's
    if min(crop.shape) < 24:
        return None
    centre = ((x1 - x0) / 2, (y1 - y0) / 2)
    for angle in angles:
        turn = cv2.getRotationMatrix2D(centre, angle, 1.0)
        turned = cv2.warpAffine(crop, turn, (crop.shape[1], crop.shape[0]), borderMode=cv2.BORDER_REPLICATE)
        cx, cy = np.array([x - x0 + w / 2, y - y0 + h / 2, 1.0]) @ turn.T  # where the old centre went
        hit = detect_near(turned, np.array([cx - w / 2, cy - h / 2, w, h]))
        if hit is None:
            continue
        fx, fy = np.array([hit[0] + hit[2] / 2, hit[1] + hit[3] / 2, 1.0]) @ cv2.invertAffineTransform(turn).T
        size = float(hit[2])
        left, top = max(0.0, fx - size / 2 + x0), max(0.0, fy - size / 2 + y0)
        right, bottom = min(gray.shape[1], fx + size / 2 + x0), min(gray.shape[0], fy + size / 2 + y0)
        if right - left >= 2 and bottom - top >= 2:
            return np.round([left, top, right - left, bottom - top]).astype(np.int64)
        return None
    return None
