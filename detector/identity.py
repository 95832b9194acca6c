"""Face detection with OpenCV's Haar cascade, on a downscaled grayscale frame.

Haar cost grows with pixels and with the number of scales tried, so the frame is
shrunk to ``detect_width`` and faces smaller than ``min_face`` (a fraction of the
frame's shorter side) are not searched for. Boxes come back in frame pixels.
No histogram equalisation: the cascade normalises each window's contrast itself, and
equalising the whole frame lost faces next to bright or dark regions (4-face bench
recall 94% with it, 99.9% without).
"""

from __future__ import annotations

import itertools
from concurrent.futures import Executor, Future
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from detector.config import DetectorConfig, TrackingConfig
from detector.errors import UserError
from detector.results import Faces
from detector.tilt import find_tilted



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


def _centres(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return boxes[:, :2] + boxes[:, 2:] / 2


def _same_face(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(len(a), len(b))``: True where one box's centre lies inside the other box."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)

    def centre_in(p: np.ndarray, q: np.ndarray) -> np.ndarray:
        c = _centres(p)
        cx, cy = c[:, None, 0], c[:, None, 1]
        return (cx >= q[None, :, 0]) & (cx <= q[None, :, 0] + q[None, :, 2]) & (cy >= q[None, :, 1]) & (cy <= q[None, :, 1] + q[None, :, 3])

    return centre_in(a, b) | centre_in(b, a).T


@dataclass(frozen=True)
class _Known:
    """The known faces of a stream: parallel arrays, one row per face."""

    boxes: np.ndarray  # (N, 4) int64 x, y, w, h where each face was last re-found, frame pixels
    ids: np.ndarray  # (N,) int64, >= 1, the face's id for as long as it is followed
    velocity: np.ndarray  # (N, 2) float64, centre pixels per frame (an EMA of its steps)
    missed: np.ndarray  # (N,) int32, frames since it was last re-found
    doubted: np.ndarray  # (N,) int32, full searches in a row that did not confirm it

    @classmethod
    def new(cls, boxes: np.ndarray, ids: np.ndarray) -> "_Known":
        n = len(boxes)
        return cls(np.asarray(boxes, np.int64).reshape(-1, 4), np.asarray(ids, np.int64), np.zeros((n, 2)),
                   np.zeros(n, np.int32), np.zeros(n, np.int32))

    def take(self, index: np.ndarray) -> "_Known":
        return _Known(*(getattr(self, f.name)[index] for f in fields(self)))

    def __add__(self, other: "_Known") -> "_Known":
        return _Known(*(np.concatenate([getattr(self, f.name), getattr(other, f.name)]) for f in fields(self)))

    def __len__(self) -> int:
        return len(self.ids)

    def predicted(self) -> np.ndarray:
        """``(N, 4)`` float boxes: each last box moved on by its velocity for the frames the
        face has been missed (a face seen in the last frame: its last box)."""
        shift = self.velocity * self.missed[:, None]
        return self.boxes + np.concatenate([shift, np.zeros_like(shift)], axis=1)


@dataclass(frozen=True)
class _Lost:
    """A face no longer followed, remembered a while so it gets its id back if it returns."""

    id: int
    box: np.ndarray  # last box seen
    velocity: np.ndarray  # centre pixels per frame when it was lost
    frame: int  # frame it was dropped at
    time: float  # seconds, when it was dropped


class FaceFinder:
    """Faces of one stream, each with its id: known faces are re-found around where they
    were, every frame; a full-frame search for new faces runs every ``full_every`` frames.

    Full-frame Haar is the most expensive step of the frame, and faces move little in a
    frame, so most frames only need to confirm where the known faces are now. The full
    search runs on a worker thread and its new faces join exactly ``full_lag`` frames
    later: its cost leaves the frame's critical path, yet a video file gives the same
    boxes on every run, however fast the machine. The search only adds faces: a known face
    it missed (it looks at a smaller frame) stays while its own region still holds a face
    at full strength. A known face not re-found is still looked for, around its last box and
    where its velocity took it, for ``keep_missed`` frames (a turned head, a blink of the cascade), but not
    reported, and a search starts at once. The first frame of a stream, and so every still
    image, is searched in full.

    Identity lives here and nowhere else: the finder re-finds each face in its own region,
    so it knows which face each box is. Two known faces re-found on one face (they cross)
    leave it to the one predicted nearer; the other counts as missed. A face dropped after
    ``keep_missed`` frames is remembered for ``tracking.remember_s`` seconds: found again
    near where it was (``reid_distance`` face sides, ``reid_scale`` size), it gets its id
    back; anything else is a new face with a new id from ``ids`` (shared across sources,
    so ids are never reused in a run).
    """

    def __init__(self, detector: HaarFaceDetector, searcher: HaarFaceDetector | None = None,
                 executor: Executor | None = None, tracking: TrackingConfig | None = None,
                 ids: Iterator[int] | None = None):
        tracking = tracking or TrackingConfig()
        self.detector, self.tracking = detector, tracking
        self._searcher = searcher or detector  # full searches; its own cascade when on another thread
        self._executor = executor
        self._ids = ids if ids is not None else itertools.count(1)
        self._known = _Known.new(np.zeros((0, 4)), np.zeros(0))
        self._lost: list[_Lost] = []
        self._frame = 0
        self._next_search = 0
        self._pending: tuple[int, int, Future] | None = None  # (frame searched, frame its faces join at, the search)

    def __call__(self, image: np.ndarray, time: float = 0.0) -> Faces:
        """Faces seen in ``image`` (BGR or gray), largest first, with ids; ``time`` in seconds
        (the frame's own), for how long a lost face is remembered."""
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        config = self.detector.config
        if self._frame == 0:
            self._set(self._new_faces(self._searcher.detect(gray), time), gray.shape)
            self._next_search = max(1, config.full_every)
        else:
            lost = self._refind(gray, time)
            if self._pending is None and (self._frame >= self._next_search or lost or len(self._known) == 0):
                self._search(gray)
            if self._pending is not None and self._pending[1] <= self._frame:
                searched_frame, _, search = self._pending
                self._merge(gray, search.result(), searched_frame, time)
                self._pending = None
        self._frame += 1
        seen = self._known.take(self._known.missed == 0)  # only faces seen in this frame: no box over where one was
        return Faces(seen.boxes, ids=seen.ids)

    def cancel(self) -> None:
        """Wait for a full search still running on the worker thread (or drop one not yet
        started): the finder that replaces this one uses the same cascade, which must not
        run on two threads at once."""
        if self._pending is not None:
            future = self._pending[2]
            if not future.cancel():
                future.exception()  # waits; a failed search is of no interest to a finder being dropped
            self._pending = None

    def _refind(self, gray: np.ndarray, time: float) -> bool:
        """Re-find each known face near its predicted box; True when a face just slipped."""
        known, weight = self._known, self.tracking.velocity_weight
        predicted = known.predicted()
        found = self._one_face_each([self._look(gray, known.boxes[i], predicted[i]) for i in range(len(known))], predicted)
        found = self._tilted(gray, known.boxes, found)
        boxes, velocity, missed = known.boxes.copy(), known.velocity.copy(), known.missed.copy()
        for i, box in enumerate(found):
            if box is None:
                missed[i] += 1
                continue
            step = (_centres(box)[0] - _centres(known.boxes[i])[0]) / (known.missed[i] + 1)
            velocity[i] = (1 - weight) * velocity[i] + weight * step
            boxes[i], missed[i] = box, 0
        known = _Known(boxes, known.ids, velocity, missed, known.doubted)
        keep = missed <= self.detector.config.keep_missed
        self._forget(known.take(~keep), time)
        self._set(known.take(keep), gray.shape)
        return bool(np.any(missed == 1))

    def _look(self, gray: np.ndarray, last: np.ndarray, predicted: np.ndarray) -> np.ndarray | None:
        """Re-find one face around its last box, then, for a face missed for a while, around
        where its velocity took it (it went on behind something)."""
        box = self.detector.detect_near(gray, last)
        moved = np.round(predicted).astype(np.int64)
        if box is None and not np.array_equal(moved, last):
            box = self.detector.detect_near(gray, moved)
        return box

    def _tilted(self, gray: np.ndarray, last: np.ndarray, found: list) -> list:
        """Look for each face not re-found upright at a tilt (``detector.tilt``), but only a
        face with no other known face near it: next to another face, the tilted search would
        find that one (two faces crossing), and the finder would give it the wrong id."""
        angles, missed = self.detector.config.tilt_angles, [i for i, box in enumerate(found) if box is None]
        if not angles or not missed:  # the usual frame: every known face re-found upright
            return found
        centres, sides = _centres(last), np.sqrt(last[:, 2:].astype(np.float64).prod(axis=1))
        for i in missed:
            others = np.delete(np.arange(len(last)), i)
            apart = np.linalg.norm(centres[others] - centres[i], axis=1) > self.tracking.reid_distance * (sides[others] + sides[i]) / 2
            if apart.all():
                found[i] = find_tilted(self.detector.detect_near, gray, last[i], angles)
        return found

    def _one_face_each(self, found: list, predicted: np.ndarray) -> list:
        """Where two known faces were re-found on one face (``duplicate_iou``), the one whose
        predicted centre is nearer keeps it and the other is missed (it is behind, or gone)."""
        rows = [i for i, box in enumerate(found) if box is not None]
        if len(rows) < 2:
            return found
        boxes = np.array([found[i] for i in rows])
        distance = np.linalg.norm(_centres(boxes) - _centres(predicted[rows]), axis=1)
        kept: list[int] = []
        for k in np.argsort(distance, kind="stable"):
            if kept and iou_matrix(boxes[k], boxes[kept]).max() >= self.tracking.duplicate_iou:
                found[rows[k]] = None
            else:
                kept.append(int(k))
        return found

    def _set(self, known: _Known, shape: tuple[int, ...]) -> None:
        """Known faces, largest first, boxes clipped to the frame (a re-found box may reach past its edge)."""
        boxes = clip_boxes(known.boxes, shape[1], shape[0]).astype(np.int64)
        known = _Known(boxes, known.ids, known.velocity, known.missed, known.doubted)
        keep = np.flatnonzero((boxes[:, 2] >= 2) & (boxes[:, 3] >= 2))
        self._known = known.take(keep[np.argsort(-(boxes[keep, 2] * boxes[keep, 3]), kind="stable")])

    def _forget(self, dropped: _Known, time: float) -> None:
        """Remember dropped faces for ``remember_s``; forget those remembered longer."""
        self._lost = [lost for lost in self._lost if time - lost.time <= self.tracking.remember_s]
        self._lost += [_Lost(int(dropped.ids[i]), dropped.boxes[i], dropped.velocity[i], self._frame, time)
                       for i in range(len(dropped))]

    def _new_faces(self, boxes: np.ndarray, time: float) -> _Known:
        """Faces not followed until now: a remembered face's id where one fits, else a new id."""
        boxes = np.asarray(boxes, np.int64).reshape(-1, 4)
        self._forget(_Known.new(np.zeros((0, 4)), np.zeros(0)), time)
        ids = np.zeros(len(boxes), np.int64)
        if len(boxes) and self._lost:
            for b, lost in self._reid_pairs(boxes):
                ids[b] = self._lost[lost].id
            self._lost = [lost for lost in self._lost if lost.id not in set(ids.tolist())]
        for b in np.flatnonzero(ids == 0):
            ids[b] = next(self._ids)
        return _Known.new(boxes, ids)

    def _reid_pairs(self, boxes: np.ndarray) -> list[tuple[int, int]]:
        """(new box, remembered face) pairs, nearest first, each used once. Distance: in face
        sides, to the nearer of where the face was last seen and where its velocity took it."""
        tracking, pairs, used_b, used_l = self.tracking, [], set(), set()
        last = np.array([lost.box for lost in self._lost], np.float64)
        moved = last[:, :2] + np.array([lost.velocity * (self._frame - lost.frame) for lost in self._lost])
        side = (np.sqrt(last[:, None, 2:].prod(axis=2)) + np.sqrt(boxes[None, :, 2:].astype(np.float64).prod(axis=2))) / 2
        centre = _centres(boxes)[None]
        distance = np.minimum(np.linalg.norm(_centres(last)[:, None] - centre, axis=2),
                              np.linalg.norm(moved[:, None] + last[:, None, 2:] / 2 - centre, axis=2)) / np.maximum(side, 1.0)
        scale = np.sqrt(boxes[None, :, 2:].astype(np.float64).prod(axis=2) / np.maximum(last[:, None, 2:].prod(axis=2), 1.0))
        fits = (distance <= tracking.reid_distance) & (np.maximum(scale, 1 / np.maximum(scale, 1e-9)) <= tracking.reid_scale)
        for flat in np.argsort(np.where(fits, distance, np.inf), axis=None, kind="stable"):
            lost, b = np.unravel_index(flat, distance.shape)
            if not fits[lost, b] or lost in used_l or b in used_b:
                continue
            pairs.append((int(b), int(lost)))
            used_l.add(lost)
            used_b.add(b)
        return pairs

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

    def _merge(self, gray: np.ndarray, searched: np.ndarray, searched_frame: int, time: float) -> None:
        """Add the search's new faces, re-found in this frame when the search looked at an
        earlier one (a face may have left since). A known face the search missed (it looks at
        a smaller frame) is doubted unless its own region holds a face at full strength; a
        face doubted by two searches in a row is dropped, so a region that only looks a
        little like a face cannot hold on to a box for long."""
        known = self._known
        same = _same_face(known.boxes, searched)
        doubted = np.where(same.any(axis=1), 0, known.doubted + 1)
        for i in np.flatnonzero(doubted):
            if self.detector.detect_near(gray, known.boxes[i], self.detector.config.min_neighbors) is not None:
                doubted[i] = 0
        known = _Known(known.boxes, known.ids, known.velocity, known.missed, doubted.astype(np.int32))
        self._forget(known.take(doubted >= 2), time)
        new = searched[~same.any(axis=0)]
        if searched_frame != self._frame and len(new):
            found = [self.detector.detect_near(gray, box) for box in new]
            new = np.array([box for box in found if box is not None], np.int64).reshape(-1, 4)
        kept = known.take(doubted < 2)
        self._forget(kept.take(kept.missed > 0), time)  # a face its region lost may be one the search found elsewhere
        fresh = self._new_faces(new, time)
        kept = kept.take(~np.isin(kept.ids, fresh.ids))
        followed = set(kept.ids.tolist())
        self._lost = [lost for lost in self._lost if lost.id not in followed]
        self._set(kept + fresh, gray.shape)
