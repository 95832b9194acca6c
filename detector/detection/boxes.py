"""Box maths on ``(N, 4)`` ``[x, y, w, h]`` arrays in frame pixels, shared by detectors and identity."""

from __future__ import annotations

import numpy as np


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


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(len(a), len(b))`` intersection over union of ``x, y, w, h`` boxes."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 0] + a[:, None, 2], b[None, :, 0] + b[None, :, 2])
    y1 = np.minimum(a[:, None, 1] + a[:, None, 3], b[None, :, 1] + b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def centres(boxes: np.ndarray) -> np.ndarray:
    """``(N, 2)`` float64 box centres."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return boxes[:, :2] + boxes[:, 2:] / 2


def same_face(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(len(a), len(b))``: True where one box's centre lies inside the other box."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)

    def centre_in(p: np.ndarray, q: np.ndarray) -> np.ndarray:
        c = centres(p)
        cx, cy = c[:, None, 0], c[:, None, 1]
        return (cx >= q[None, :, 0]) & (cx <= q[None, :, 0] + q[None, :, 2]) & (cy >= q[None, :, 1]) & (cy <= q[None, :, 1] + q[None, :, 3])

    return centre_in(a, b) | centre_in(b, a).T
