"""Which face is which: the identity stage's face finder, over any face detector.

Full-frame detection is the most expensive step of a frame, and faces move little between
frames, so most frames only confirm where the known faces are now, each in its own region
(``FaceDetector.detect(frame, region)``). That is also what gives each face its id: the
finder re-finds each face where it was, so it knows which box is which. Its settings are
:class:`~detector.config.IdentityConfig`; the detector's own are the detector's.
"""

from __future__ import annotations

import itertools
from concurrent.futures import Executor, Future
from dataclasses import dataclass, fields
from typing import Iterator

import numpy as np

from detector.config import IdentityConfig
from detector.detection import FaceDetections, FaceDetector
from detector.detection.boxes import centres as _centres
from detector.detection.boxes import clip_boxes, iou_matrix, same_face as _same_face
from detector.results import Faces
from detector.tilt import find_tilted


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
    ``keep_missed`` frames is remembered for ``remember_s`` seconds: found again
    near where it was (``reid_distance`` face sides, ``reid_scale`` size), it gets its id
    back; anything else is a new face with a new id from ``ids`` (shared across sources,
    so ids are never reused in a run).
    """

    def __init__(self, detector: FaceDetector, searcher: FaceDetector | None = None,
                 executor: Executor | None = None, config: IdentityConfig | None = None,
                 ids: Iterator[int] | None = None):
        self.detector, self.config = detector, config or IdentityConfig()
        self._searcher = searcher or detector  # full searches; its own copy when on another thread
        self._executor = executor
        self._ids = ids if ids is not None else itertools.count(1)
        self._known = _Known.new(np.zeros((0, 4)), np.zeros(0))
        self._lost: list[_Lost] = []
        self._frame = 0
        self._next_search = 0
        self._pending: tuple[int, int, Future] | None = None  # (frame searched, frame its faces join at, the search)

    def __call__(self, frame: np.ndarray, time: float = 0.0) -> Faces:
        """Faces seen in ``frame`` (``(H, W, 3)`` BGR or ``(H, W)`` gray, handed to the detector
        as it is), largest first, with ids and, from a detector that gives them, keypoints;
        ``time`` in seconds (the frame's own), for how long a lost face is remembered."""
        self._keypoints = {}
        config = self.config
        if self._frame == 0:
            self._set(self._new_faces(self._remember(self._searcher.detect(frame)), time), frame.shape[:2])
            self._next_search = max(1, config.full_every)
        else:
            lost = self._refind(frame, time)
            if self._pending is None and (self._frame >= self._next_search or lost or len(self._known) == 0):
                self._search(frame)
            if self._pending is not None and self._pending[1] <= self._frame:
                searched_frame, _, search = self._pending
                self._merge(frame, search.result(), searched_frame, time)
                self._pending = None
        self._frame += 1
        seen = self._known.take(self._known.missed == 0)  # only faces seen in this frame: no box over where one was
        return Faces(seen.boxes, ids=seen.ids, keypoints=self._keypoints_of(seen.boxes))

    def _remember(self, found: FaceDetections) -> np.ndarray:
        """``found``'s boxes, its keypoints kept by box for this frame's result."""
        if found.keypoints is not None:
            self._keypoints.update((tuple(int(v) for v in box), points) for box, points in zip(found.boxes, found.keypoints))
        return found.boxes

    def _keypoints_of(self, boxes: np.ndarray) -> np.ndarray | None:
        """Each box's keypoints as found in this frame (NaN for a box found without them); None
        for a detector without keypoints."""
        if not self._keypoints:
            return None
        k = len(next(iter(self._keypoints.values())))
        missing = np.full((k, 2), np.nan, np.float32)
        return np.array([self._keypoints.get(tuple(int(v) for v in box), missing) for box in boxes], np.float32).reshape(-1, k, 2)

    def use(self, detector: FaceDetector, searcher: FaceDetector) -> None:
        """Re-find and search with these detectors from the next frame on (call :meth:`cancel` first)."""
        self.detector, self._searcher = detector, searcher

    def cancel(self) -> None:
        """Wait for a full search still running on the worker thread (or drop one not yet
        started): the finder that replaces this one uses the same cascade, which must not
        run on two threads at once."""
        if self._pending is not None:
            future = self._pending[2]
            if not future.cancel():
                future.exception()  # waits; a failed search is of no interest to a finder being dropped
            self._pending = None

    def _refind(self, frame: np.ndarray, time: float) -> bool:
        """Re-find each known face near its predicted box; True when a face just slipped."""
        known, weight = self._known, self.config.velocity_weight
        predicted = known.predicted()
        found = self._one_face_each([self._look(frame, known.boxes[i], predicted[i]) for i in range(len(known))], predicted)
        found = self._tilted(frame, known.boxes, found)
        boxes, velocity, missed = known.boxes.copy(), known.velocity.copy(), known.missed.copy()
        for i, box in enumerate(found):
            if box is None:
                missed[i] += 1
                continue
            step = (_centres(box)[0] - _centres(known.boxes[i])[0]) / (known.missed[i] + 1)
            velocity[i] = (1 - weight) * velocity[i] + weight * step
            boxes[i], missed[i] = box, 0
        known = _Known(boxes, known.ids, velocity, missed, known.doubted)
        keep = missed <= self.config.keep_missed
        self._forget(known.take(~keep), time)
        self._set(known.take(keep), frame.shape[:2])
        return bool(np.any(missed == 1))

    def _look(self, frame: np.ndarray, last: np.ndarray, predicted: np.ndarray) -> np.ndarray | None:
        """Re-find one face around its last box, then, for a face missed for a while, around
        where its velocity took it (it went on behind something)."""
        box = self._near(frame, last)
        moved = np.round(predicted).astype(np.int64)
        if box is None and not np.array_equal(moved, last):
            box = self._near(frame, moved)
        return box

    def _near(self, frame: np.ndarray, box: np.ndarray, strict: bool = False) -> np.ndarray | None:
        """The face the detector finds nearest ``box``, of about its size, as an int64 box; or None."""
        found = self.detector.detect(frame, region=box, strict=strict)
        return self._remember(found.take([0]))[0].astype(np.int64) if len(found) else None

    def _tilted(self, frame: np.ndarray, last: np.ndarray, found: list) -> list:
        """Look for each face not re-found upright at a tilt (``detector.tilt``), but only a
        face with no other known face near it: next to another face, the tilted search would
        find that one (two faces crossing), and the finder would give it the wrong id."""
        angles, missed = self.config.tilt_angles, [i for i, box in enumerate(found) if box is None]
        if not angles or not missed or self.detector.rotation_tolerant:  # the usual frame: every known face re-found upright
            return found
        centres, sides = _centres(last), np.sqrt(last[:, 2:].astype(np.float64).prod(axis=1))
        for i in missed:
            others = np.delete(np.arange(len(last)), i)
            apart = np.linalg.norm(centres[others] - centres[i], axis=1) > self.config.reid_distance * (sides[others] + sides[i]) / 2
            if apart.all():
                found[i] = find_tilted(self._near, frame, last[i], angles)
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
            if kept and iou_matrix(boxes[k], boxes[kept]).max() >= self.config.duplicate_iou:
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
        self._lost = [lost for lost in self._lost if time - lost.time <= self.config.remember_s]
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
        tracking, pairs, used_b, used_l = self.config, [], set(), set()
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

    def _search(self, frame: np.ndarray) -> None:
        config = self.config
        lag = max(0, config.full_lag) if self._executor is not None else 0
        if lag:
            future = self._executor.submit(self._full_search, frame)
        else:
            future = Future()
            future.set_result(self._full_search(frame))
        self._pending = (self._frame, self._frame + lag, future)
        self._next_search = self._frame + max(1, config.full_every)

    def _full_search(self, frame: np.ndarray) -> FaceDetections:
        return self._searcher.detect(frame)

    def _merge(self, frame: np.ndarray, search: FaceDetections, searched_frame: int, time: float) -> None:
        """Add the search's new faces, re-found in this frame when the search looked at an
        earlier one (a face may have left since). A known face the search missed (it looks at
        a smaller frame) is doubted unless its own region holds a face at full strength; a
        face doubted by two searches in a row is dropped, so a region that only looks a
        little like a face cannot hold on to a box for long."""
        known, searched = self._known, search.boxes
        same = _same_face(known.boxes, searched)
        doubted = np.where(same.any(axis=1), 0, known.doubted + 1)
        for i in np.flatnonzero(doubted):
            if self._near(frame, known.boxes[i], strict=True) is not None:
                doubted[i] = 0
        known = _Known(known.boxes, known.ids, known.velocity, known.missed, doubted.astype(np.int32))
        self._forget(known.take(doubted >= 2), time)
        new = searched[~same.any(axis=0)]
        if searched_frame == self._frame:
            self._remember(search)
        elif len(new):
            found = [self._near(frame, box) for box in new]
            new = np.array([box for box in found if box is not None], np.int64).reshape(-1, 4)
        kept = known.take(doubted < 2)
        self._forget(kept.take(kept.missed > 0), time)  # a face its region lost may be one the search found elsewhere
        fresh = self._new_faces(new, time)
        kept = kept.take(~np.isin(kept.ids, fresh.ids))
        followed = set(kept.ids.tolist())
        self._lost = [lost for lost in self._lost if lost.id not in followed]
        self._set(kept + fresh, frame.shape[:2])
