"""Face crops levelled by the eye line, for the classifier.

FER2013's faces are upright (the dataset's crops were aligned), so a classifier trained on them
reads a tilted head worse. Where the detector gives eye keypoints (BlazeFace), the crop is taken
from the frame rotated about the box centre so that the eyes lie level: one ``warpAffine`` per
face straight into a box-sized crop, never a rotation of the whole frame. docs/DETECTORS.md
measures what it does to label agreement under rotation (``python tools/detector_compare.py``).
"""

from __future__ import annotations

import cv2
import numpy as np

RIGHT_EYE, LEFT_EYE = 0, 1  # BlazeFace's keypoint order (detector.blazeface.KEYPOINTS)


def eye_angle(keypoints: np.ndarray) -> float:
    """Roll of the eye line in degrees, counter-clockwise positive as the image shows it (OpenCV's
    ``getRotationMatrix2D`` sense): 0 for level eyes. ``keypoints``: ``(K, 2)`` frame pixels, the
    person's right eye first (on the image's left when upright)."""
    dx, dy = keypoints[LEFT_EYE] - keypoints[RIGHT_EYE]
    return float(-np.degrees(np.arctan2(dy, dx)))


def levelled_crop(image: np.ndarray, box: np.ndarray, angle: float) -> np.ndarray:
    """The ``x, y, w, h`` box of ``image`` with the picture turned by ``-angle`` degrees about the
    box centre (so an eye line at ``angle`` comes out level), ``h x w`` like ``image``'s own crop;
    pixels from beyond the frame edge repeat the edge."""
    x, y, w, h = (float(v) for v in box)
    turn = cv2.getRotationMatrix2D((x + w / 2, y + h / 2), -angle, 1.0)
    turn[:, 2] -= (x, y)  # then shift the box's corner to the crop's origin
    return cv2.warpAffine(image, turn, (max(1, int(round(w))), max(1, int(round(h)))),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def face_crops(image: np.ndarray, boxes: np.ndarray, keypoints: np.ndarray | None, level: bool = True) -> list[np.ndarray]:
    """One crop per ``x, y, w, h`` box (clamped to the frame): levelled by its eyes when
    ``keypoints`` (``(N, K, 2)``; NaN rows: a face found without them) are given and ``level``
    is on, else the frame's own pixels."""
    boxes = np.asarray(boxes, np.int64).reshape(-1, 4)
    crops = []
    for i, (x, y, w, h) in enumerate(boxes):
        eyes = None if keypoints is None or not level else keypoints[i, [RIGHT_EYE, LEFT_EYE]]
        if eyes is not None and np.isfinite(eyes).all():
            crops.append(levelled_crop(image, boxes[i], eye_angle(keypoints[i])))
        else:
            crops.append(image[y:y + h, x:x + w])
    return crops
