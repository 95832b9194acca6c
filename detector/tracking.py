"""Stable face ids across frames, and class probabilities smoothed per id.

Two stages, each ``FrameResult -> FrameResult`` (supervision's tracker and
smoother idea). :class:`FaceTracker` only needs boxes, so it can run before or
after classification; :class:`ProbabilitySmoother` needs both probabilities and
ids, so it runs after both. Pure numpy: no tracker library for a handful of faces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from detector.results import Faces, FrameResult


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every ``x, y, w, h`` box in ``a`` with every one in ``b``."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 0] + a[:, None, 2], b[None, :, 0] + b[None, :, 2])
    y1 = np.minimum(a[:, None, 1] + a[:, None, 3], b[None, :, 1] + b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def _greedy(score: np.ndarray, accept) -> list[tuple[int, int]]:
    """Pairs (row, col), best score first, each row and column used once.

    Greedy instead of Hungarian: with a few faces that are rarely ambiguous it
    gives the same answer, and needs no scipy.
    """
    pairs, rows, cols = [], set(), set()
    for flat in np.argsort(-score, axis=None, kind="stable"):
        r, c = np.unravel_index(flat, score.shape)
        if r in rows or c in cols or not accept(score[r, c]):
            continue
        pairs.append((int(r), int(c)))
        rows.add(r)
        cols.add(c)
    return pairs


@dataclass
class _Track:
    id: int
    box: np.ndarray  # last seen x, y, w, h (float)
    velocity: np.ndarray  # smoothed box change per frame, so crossing faces are predicted past each other
    missed: int = 0

    def predicted(self) -> np.ndarray:
        box = self.box + self.velocity * (self.missed + 1)
        box[2:] = np.maximum(box[2:], 1.0)
        return box


class FaceTracker:
    """Gives each face an id that stays with it across frames (``Faces.ids``).

    Detections are matched to where each track is predicted to be (last box plus
    its velocity): first by IoU, then, for what is left, by centre distance
    relative to face size, which catches fast moves and Haar's jumpy boxes.
    A track survives ``max_missed`` frames without a detection (Haar misses
    faces now and then); ids start at 1 and are never reused. A new source name
    (the next file of an image folder) starts afresh: those are unrelated scenes.
    """

    def __init__(self, iou_threshold: float = 0.3, max_distance: float = 0.8, max_missed: int = 10):
        if not 0 <= iou_threshold <= 1 or max_distance < 0 or max_missed < 0:
            raise ValueError("FaceTracker: iou_threshold must be in [0, 1], max_distance and max_missed >= 0")
        self.iou_threshold, self.max_distance, self.max_missed = iou_threshold, max_distance, max_missed
        self.tracks: list[_Track] = []
        self.next_id = 1
        self._source: str | None = None

    def __call__(self, result: FrameResult) -> FrameResult:
        if result.source != self._source:
            self.tracks, self._source = [], result.source
        boxes = result.faces.boxes.astype(np.float64)
        ids = np.full(len(boxes), -1, np.int64)
        pairs = self._match(boxes)
        matched_tracks = set()
        for t, d in pairs:
            track = self.tracks[t]
            step = (boxes[d] - track.box) / (track.missed + 1)
            track.velocity = 0.5 * track.velocity + 0.5 * step
            track.box, track.missed = boxes[d], 0
            ids[d] = track.id
            matched_tracks.add(t)
        for t, track in enumerate(self.tracks):
            if t not in matched_tracks:
                track.missed += 1
        self.tracks = [track for track in self.tracks if track.missed <= self.max_missed]
        for d in np.flatnonzero(ids < 0):
            self.tracks.append(_Track(self.next_id, boxes[d], np.zeros(4)))
            ids[d] = self.next_id
            self.next_id += 1
        faces = Faces(result.faces.boxes, result.faces.probs, result.faces.raw_probs, ids)
        return replace(result, faces=faces)

    def _match(self, boxes: np.ndarray) -> list[tuple[int, int]]:
        if not self.tracks or not len(boxes):
            return []
        predicted = np.array([track.predicted() for track in self.tracks])
        pairs = _greedy(iou_matrix(predicted, boxes), lambda s: s >= self.iou_threshold)
        rows = [t for t in range(len(self.tracks)) if t not in {p[0] for p in pairs}]
        cols = [d for d in range(len(boxes)) if d not in {p[1] for p in pairs}]
        if rows and cols:
            centre_t = predicted[rows, :2] + predicted[rows, 2:] / 2
            centre_d = boxes[cols, :2] + boxes[cols, 2:] / 2
            size = np.sqrt(predicted[rows, 2:].prod(axis=1))[:, None] + np.sqrt(boxes[cols, 2:].prod(axis=1))[None, :]
            distance = np.linalg.norm(centre_t[:, None] - centre_d[None, :], axis=2) / np.maximum(size / 2, 1.0)
            near = _greedy(-distance, lambda s: -s <= self.max_distance)
            pairs += [(rows[r], cols[c]) for r, c in near]
        return pairs


class ProbabilitySmoother:
    """Per-track exponential moving average of class probabilities, by time, not frames.

    ``alpha = 1 - exp(-dt / tau)`` with ``dt`` from ``result.time``, so a step
    change reaches 63% after ``tau`` seconds at 8 fps and at 30 fps alike, and a
    frame that took longer to process counts for more. A track's first frame is
    its raw probabilities; ``tau == 0`` turns smoothing off (results pass
    unchanged). ``raw_probs`` keep the classifier's own output for the JSON lines.
    Tracks not seen for ``forget_after`` seconds are dropped (their weight is
    negligible by then, and ids are never reused). Faces without an id pass raw.
    """

    def __init__(self, tau: float = 0.25, forget_after: float = 2.0):
        if tau < 0 or forget_after < 0:
            raise ValueError(f"ProbabilitySmoother: tau and forget_after must be >= 0 seconds, got {tau}, {forget_after}")
        self.tau, self.forget_after = tau, forget_after
        self._state: dict[int, tuple[float, np.ndarray]] = {}  # id -> (time, smoothed probs)
        self._source: str | None = None

    def __call__(self, result: FrameResult) -> FrameResult:
        faces = result.faces
        if self.tau == 0 or not faces.classified:
            return result
        if result.source != self._source:
            self._state, self._source = {}, result.source
        raw = faces.raw_probs
        smoothed = raw.copy()
        for i, track_id in enumerate(faces.ids.tolist()):
            if track_id < 0:
                continue
            previous = self._state.get(track_id)
            if previous is not None and previous[1].shape == raw[i].shape and result.time > previous[0]:
                alpha = 1.0 - math.exp(-(result.time - previous[0]) / self.tau)
                smoothed[i] = previous[1] + alpha * (raw[i] - previous[1])
            self._state[track_id] = (result.time, smoothed[i])
        self._state = {k: v for k, v in self._state.items() if result.time - v[0] <= self.forget_after}
        return replace(result, faces=Faces(faces.boxes, smoothed, raw, faces.ids))
