"""SSD anchor decoding and weighted non-maximum suppression, as MediaPipe's calculators do them.

BlazeFace (Bazarevsky et al., "BlazeFace: Sub-millisecond Neural Face Detection on Mobile GPUs",
CVPR-W 2019) regresses, for each anchor, a box and keypoints relative to that anchor, and a
face score. MediaPipe turns those into detections in three steps, each reproduced here:

- ``SsdAnchorsCalculator`` (``ssd_anchors_calculator.cc``): one anchor centre per feature-map
  cell and aspect ratio, with ``fixed_anchor_size`` (every anchor 1 x 1, so offsets are in input
  pixels / input size): :func:`ssd_anchors`;
- ``TensorsToDetectionsCalculator`` (``tensors_to_detections_calculator.cc``): raw scores clipped
  to ``±score_clipping_thresh`` then a sigmoid; ``x, y, w, h`` and each keypoint ``x, y`` divided by
  the input size and added to the anchor centre: :func:`decode`;
- ``NonMaxSuppressionCalculator`` with ``algorithm: WEIGHTED`` and intersection over union:
  each cluster of boxes overlapping the best one by more than the threshold becomes one
  detection whose box and keypoints are the cluster's score-weighted mean, and whose score is
  the best one's: :func:`weighted_nms`.

Everything here is in normalised input coordinates (0-1 of the square model input).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def ssd_anchors(input_size: int, strides: tuple[int, ...], interpolated_scale_aspect_ratio: float = 1.0,
                offset: float = 0.5) -> np.ndarray:
    """``(A, 2)`` float32 anchor centres ``x, y`` (0-1) in MediaPipe's order.

    Consecutive layers with the same stride share one feature map; each of its cells gets one
    anchor per layer (aspect ratio 1.0), plus one more per layer when
    ``interpolated_scale_aspect_ratio`` is 1.0 (MediaPipe's options for BlazeFace use exactly
    these two values). Short-range (128 px, strides 8, 16, 16, 16): 16*16*2 + 8*8*6 = 896 anchors;
    full-range (192 px, stride 4, no interpolated anchor): 48*48 = 2304.
    """
    anchors, layer = [], 0
    while layer < len(strides):
        same = layer
        repeats = 0
        while same < len(strides) and strides[same] == strides[layer]:
            repeats += 2 if interpolated_scale_aspect_ratio == 1.0 else 1
            same += 1
        cells = int(np.ceil(input_size / strides[layer]))
        centres = (np.arange(cells) + offset) / cells
        ys, xs = np.meshgrid(centres, centres, indexing="ij")
        grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
        anchors.append(np.repeat(grid, repeats, axis=0))
        layer = same
    return np.concatenate(anchors).astype(np.float32)


@dataclass(frozen=True)
class Decoded:
    """Candidate detections in normalised input coordinates, one row each."""

    boxes: np.ndarray  # (M, 4) float32 x0, y0, x1, y1 (detector.detection.blazeface's find: x, y, w, h)
    keypoints: np.ndarray  # (M, K, 2) float32 x, y
    scores: np.ndarray  # (M,) float32, sigmoid of the clipped raw score

    def take(self, index) -> "Decoded":
        """The rows ``index`` selects (a boolean mask or integer indices)."""
        return Decoded(self.boxes[index], self.keypoints[index], self.scores[index])

    @staticmethod
    def concat(parts: "list[Decoded]") -> "Decoded":
        """The rows of every part, in order (candidates of several windows or looks)."""
        return Decoded(*(np.concatenate([getattr(part, name) for part in parts]) for name in ("boxes", "keypoints", "scores")))


def decode(raw_boxes: np.ndarray, raw_scores: np.ndarray, anchors: np.ndarray, input_size: int,
           min_score: float, score_clip: float = 100.0) -> Decoded:
    """The model's raw outputs -> the candidates scoring at least ``min_score``.

    ``raw_boxes``: ``(A, 4 + 2K)`` (``x, y, w, h`` then ``K`` keypoints ``x, y``, input pixels
    relative to the anchor); ``raw_scores``: ``(A,)`` or ``(A, 1)`` logits; ``anchors``: ``(A, 2)``.
    Boxes with no area are dropped, as MediaPipe drops them.
    """
    raw_boxes = np.asarray(raw_boxes, np.float32).reshape(len(anchors), -1)
    logits = np.clip(np.asarray(raw_scores, np.float32).reshape(len(anchors)), -score_clip, score_clip)
    scores = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))  # float32 overflows at exp(100)
    keep = scores >= min_score
    values, centres, scores = raw_boxes[keep] / input_size, anchors[keep], scores[keep]
    centre = values[:, 0:2] + centres
    half = values[:, 2:4] / 2
    boxes = np.concatenate([centre - half, centre + half], axis=1)
    keypoints = values[:, 4:].reshape(len(values), (raw_boxes.shape[1] - 4) // 2, 2) + centres[:, None, :]
    valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return Decoded(boxes[valid], keypoints[valid].astype(np.float32), scores[valid].astype(np.float32))


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one ``x0, y0, x1, y1`` box with each of ``boxes``."""
    x0, y0 = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
    x1, y1 = np.minimum(box[2], boxes[:, 2]), np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = (box[2] - box[0]) * (box[3] - box[1]) + areas - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def weighted_nms(candidates: Decoded, iou_threshold: float) -> Decoded:
    """MediaPipe's WEIGHTED non-maximum suppression: best first, each cluster (IoU above
    ``iou_threshold`` with its best box, the best box included) merged into one detection:
    box and keypoints averaged with the scores as weights, the best score kept."""
    order = np.argsort(-candidates.scores, kind="stable")
    boxes, keypoints, scores = candidates.boxes[order], candidates.keypoints[order], candidates.scores[order]
    out_boxes, out_keypoints, out_scores = [], [], []
    remaining = np.arange(len(scores))
    while len(remaining):
        best = remaining[0]
        cluster = _iou(boxes[best], boxes[remaining]) > iou_threshold
        members = remaining[cluster]
        if not len(members):  # only a box with no area overlaps nothing, itself included
            members = remaining[:1]
            cluster = np.arange(len(remaining)) == 0
        weights = scores[members] / scores[members].sum()
        out_boxes.append((boxes[members] * weights[:, None]).sum(axis=0))
        out_keypoints.append((keypoints[members] * weights[:, None, None]).sum(axis=0))
        out_scores.append(scores[best])
        remaining = remaining[~cluster]
    k = candidates.keypoints.shape[1]
    return Decoded(np.asarray(out_boxes, np.float32).reshape(-1, 4),
                   np.asarray(out_keypoints, np.float32).reshape(-1, k, 2),
                   np.asarray(out_scores, np.float32))
