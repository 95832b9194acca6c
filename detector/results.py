"""The one result type that flows through the pipeline: source -> faces -> classes -> outputs.

Each stage takes a :class:`FrameResult` and returns a new one
(``dataclasses.replace``); no stage reaches back into an earlier one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class Faces:
    """Parallel arrays, one row per face (supervision's ``Detections`` idea).

    ``boxes`` are ``x, y, w, h`` in frame pixels, clamped to the frame.
    ``probs`` has one column per class once classified (zero columns before).
    ``raw_probs`` are the classifier's own, before temporal smoothing.
    ``ids`` are face ids: the face finder's, or the whole-image stage's (-1: none yet).
    ``keypoints`` are ``(N, K, 2)`` float32 ``x, y`` frame pixels from a detector that gives them
    (BlazeFace: ``detector.detection.BLAZEFACE_KEYPOINTS``; NaN for a face found without them),
    else None.
    """

    boxes: np.ndarray
    probs: np.ndarray = None  # type: ignore[assignment]
    raw_probs: np.ndarray = None  # type: ignore[assignment]
    ids: np.ndarray = None  # type: ignore[assignment]
    keypoints: np.ndarray | None = None

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes, dtype=np.int32).reshape(-1, 4)
        n = len(boxes)
        probs = np.zeros((n, 0), np.float32) if self.probs is None else np.asarray(self.probs, np.float32)
        raw = probs if self.raw_probs is None else np.asarray(self.raw_probs, np.float32)
        ids = np.full(n, -1, np.int64) if self.ids is None else np.asarray(self.ids, np.int64)
        if probs.ndim != 2 or len(probs) != n or raw.shape != probs.shape or ids.shape != (n,):
            raise ValueError(
                f"Faces: expected boxes (N, 4), probs and raw_probs (N, C), ids (N,); got boxes {boxes.shape}, "
                f"probs {probs.shape}, raw_probs {raw.shape}, ids {ids.shape}"
            )
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "probs", probs)
        object.__setattr__(self, "raw_probs", raw)
        object.__setattr__(self, "ids", ids)
        if self.keypoints is not None:
            keypoints = np.asarray(self.keypoints, np.float32)
            if keypoints.ndim != 3 or len(keypoints) != n or keypoints.shape[2] != 2:
                raise ValueError(f"Faces: keypoints must be ({n}, K, 2) or None, got {keypoints.shape}")
            object.__setattr__(self, "keypoints", keypoints)

    def take(self, index) -> "Faces":
        """The rows ``index`` selects (a boolean mask or integer indices), every array alike."""
        keypoints = None if self.keypoints is None else self.keypoints[index]
        return Faces(self.boxes[index], self.probs[index], self.raw_probs[index], self.ids[index], keypoints)

    @classmethod
    def empty(cls) -> "Faces":
        return cls(np.zeros((0, 4), np.int32))

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def classified(self) -> bool:
        return self.probs.shape[1] > 0

    @property
    def areas(self) -> np.ndarray:
        return self.boxes[:, 2].astype(np.int64) * self.boxes[:, 3]

    def largest(self) -> int | None:
        """Index of the largest face, the one the window shows class bars for."""
        return int(np.argmax(self.areas)) if len(self) else None


@dataclass(frozen=True)
class FrameResult:
    """One frame and everything learnt about it so far."""

    index: int  # frame number in the source, from 0
    time: float  # seconds since the source started (video position for files)
    source: str  # camera/video name, or the image file name for folders
    image: np.ndarray  # BGR uint8, as read
    faces: Faces = field(default_factory=Faces.empty)
    labels: tuple[str, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)  # stage -> milliseconds
    whole_image: bool = False  # the one face is the whole picture, not a detection (detector.whole_image)

    @cached_property
    def records(self) -> list[dict]:
        """Faces as plain JSON-ready dicts (the JSON-lines contract); built once per result,
        for the overlay and the sinks alike, so treat them as read-only."""
        records = []
        for i, box in enumerate(self.faces.boxes):
            record: dict = {"box": [int(v) for v in box]}
            if int(self.faces.ids[i]) >= 0:
                record["id"] = int(self.faces.ids[i])
            if self.whole_image:
                record["whole_image"] = True
            if self.faces.keypoints is not None and np.isfinite(self.faces.keypoints[i]).all():
                record["keypoints"] = [[round(float(x), 1), round(float(y), 1)] for x, y in self.faces.keypoints[i]]
            if self.faces.classified:
                probs = self.faces.probs[i]
                best = int(np.argmax(probs))
                record["label"] = self.labels[best]
                record["score"] = round(float(probs[best]), 4)
                record["probs"] = {name: round(float(p), 4) for name, p in zip(self.labels, probs)}
                if self.faces.raw_probs is not self.faces.probs and not np.array_equal(self.faces.raw_probs[i], probs):
                    record["raw_probs"] = {name: round(float(p), 4) for name, p in zip(self.labels, self.faces.raw_probs[i])}
            records.append(record)
        return records

    def to_json(self) -> dict:
        return {"frame": self.index, "time": round(self.time, 4), "source": self.source, "faces": self.records}


@runtime_checkable
class Stage(Protocol):
    """One step of the pipeline (``detector.pipeline``): ``FrameResult -> FrameResult``, plus
    ``reset`` (forget the current source) and ``close``. Stages that subclass it and keep no
    state inherit the no-op ``reset`` and ``close``."""

    def __call__(self, result: FrameResult) -> FrameResult:
        ...

    def reset(self) -> None:
        """Forget everything about the current source: the next frame starts a new one."""

    def close(self) -> None:
        """Release threads and files; the stage is not called again."""
