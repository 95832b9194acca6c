"""Second looks for a still picture in which a full search found no face: turned and brightened copies.

A still has no real-time budget, so where BlazeFace finds nothing it looks again at the picture
turned by ±45 degrees (a head rolled 45-90 degrees comes out near upright in one of them) and, for
a dark picture, at a copy stretched to full brightness. Boxes found on a copy are mapped back
into the picture's own pixels here. docs/DETECTORS.md measures what these looks add on rotated,
dark and face-free pictures (``python tools/detector_compare.py``).
"""

from __future__ import annotations

import numpy as np

#: The turns a still with no face found is searched at, degrees counter-clockwise (OpenCV's sense).
TURNS = (-45.0, 45.0)
#: A picture whose 99th-percentile value lies below this is dark: it gets a brightened look.
DARK_BELOW = 128
#: The brightened copy's 99th percentile, and the most it is multiplied by.
LIFT_TO, MAX_GAIN = 220.0, 8.0
#: A second look keeps only faces of at least this share of the picture's shorter side (Haar's
#: ``--min-face`` default): brightening a dark scene also brightens its noise, and on clip frames with
#: the face cut out it showed faces of 17 px (5%) that are not there (docs/DETECTORS.md, as stills).
MIN_FACE = 0.1


def turn(image: np.ndarray, degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """``image`` turned by ``degrees`` about its centre onto a canvas large enough to hold all of
    it (black corners). Returns ``(turned, back)``: ``back`` is the ``(2, 3)`` float64 affine map
    from the turned copy's pixels to ``image``'s."""
    import cv2  # here, not at the top: serve sets OpenCV's pixel limit before cv2 loads

    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), degrees, 1.0)
    cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
    size = (int(np.ceil(width * cos + height * sin)), int(np.ceil(width * sin + height * cos)))
    matrix[:, 2] += (size[0] - width) / 2, (size[1] - height) / 2
    return cv2.warpAffine(image, matrix, size), cv2.invertAffineTransform(matrix)


def map_back(boxes: np.ndarray, keypoints: np.ndarray, back: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boxes ``(N, 4)`` float ``x, y, w, h`` and keypoints ``(N, K, 2)`` found on a turned copy,
    in the picture's pixels: each box keeps its sides and moves with its centre (the face is
    upright in the copy, so its box's size is the face's); keypoints move point by point."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    centre = boxes[:, :2] + boxes[:, 2:] / 2
    centre = centre @ back[:, :2].T + back[:, 2]
    points = np.asarray(keypoints, np.float64) @ back[:, :2].T + back[:, 2]
    return np.concatenate([centre - boxes[:, 2:] / 2, boxes[:, 2:]], axis=1), points.astype(np.float32)


def lift(image: np.ndarray) -> np.ndarray | None:
    """A dark ``image`` (uint8) scaled so its 99th percentile reaches :data:`LIFT_TO` (at most
    x :data:`MAX_GAIN`), or None for a picture that is not dark."""
    import cv2

    high = float(np.percentile(image[::4, ::4], 99))  # every 16th pixel: as good a percentile, far faster
    if high >= DARK_BELOW:
        return None
    return cv2.convertScaleAbs(image, alpha=min(MAX_GAIN, LIFT_TO / max(high, 1.0)))
