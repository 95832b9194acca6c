"""Face detectors behind one interface, chosen by name (``--detector NAME``).

A detector takes a frame, and optionally a region around a known face, and returns
:class:`FaceDetections`: boxes, scores and, where the detector finds them, keypoints. It
knows nothing of identity (``detector.identity``) or smoothing. Detectors register under
a name (timm's ``register_model`` idea); :func:`create_detector` builds one by that name and
an unknown name is an error listing the valid ones.

Adding a detector is one new module that defines a class decorated with
:func:`register_detector` plus one import line at the end of this file (the registry entry:
a plain import, so PyInstaller bundles it and ``--detector`` lists it). A detector module
imports its heavy libraries where it runs, not at the top: every front end imports them
all to list their flags.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Protocol, TypeVar, runtime_checkable

import numpy as np

from detector.errors import SettingsError

#: BlazeFace's keypoint order (K = 6); other detectors with keypoints document their own.
BLAZEFACE_KEYPOINTS = ("right_eye", "left_eye", "nose_tip", "mouth", "right_ear", "left_ear")


@dataclass(frozen=True)
class FaceDetections:
    """Faces a detector found in one frame: parallel arrays, one row per face.

    ``boxes``: ``(N, 4)`` int32 ``[x, y, w, h]`` in frame pixels. ``scores``: ``(N,)`` float32
    in ``[0, 1]`` (a detector without a score, Haar, gives 1.0). ``keypoints``: ``(N, K, 2)``
    float32 ``x, y`` frame pixels, or None for a detector without keypoints.

    Raises:
        ValueError: an array of another shape, non-integer boxes, or a score outside ``[0, 1]``.
    """

    boxes: np.ndarray
    scores: np.ndarray
    keypoints: np.ndarray | None = None

    def __post_init__(self) -> None:
        boxes, scores = np.asarray(self.boxes), np.asarray(self.scores, np.float32)
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4).astype(np.int32)
        if boxes.ndim != 2 or boxes.shape[1] != 4 or not np.issubdtype(boxes.dtype, np.integer):
            raise ValueError(f"FaceDetections: boxes must be (N, 4) integer [x, y, w, h], got {boxes.dtype} {boxes.shape}")
        n = len(boxes)
        if scores.shape != (n,) or (n and not (scores.min() >= 0 and scores.max() <= 1)):
            raise ValueError(f"FaceDetections: scores must be ({n},) in [0, 1], got {scores.shape}")
        keypoints = self.keypoints
        if keypoints is not None:
            keypoints = np.asarray(keypoints, np.float32)
            if keypoints.ndim != 3 or len(keypoints) != n or keypoints.shape[2] != 2:
                raise ValueError(f"FaceDetections: keypoints must be ({n}, K, 2) or None, got {keypoints.shape}")
        object.__setattr__(self, "boxes", boxes.astype(np.int32, copy=False))
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "keypoints", keypoints)

    @classmethod
    def from_boxes(cls, boxes: np.ndarray) -> "FaceDetections":
        """Boxes of a detector without scores or keypoints: every score 1.0."""
        boxes = np.asarray(boxes).reshape(-1, 4)
        return cls(boxes, np.ones(len(boxes), np.float32))

    @classmethod
    def empty(cls) -> "FaceDetections":
        return cls(np.zeros((0, 4), np.int32), np.zeros(0, np.float32))

    def __len__(self) -> int:
        return len(self.boxes)

    def take(self, index) -> "FaceDetections":
        """The rows ``index`` selects (a boolean mask or integer indices), in that order."""
        keypoints = None if self.keypoints is None else self.keypoints[index]
        return FaceDetections(self.boxes[index], self.scores[index], keypoints)


@runtime_checkable
class FaceDetector(Protocol):
    """What the pipeline needs of a face detector.

    ``name``: the registry name. ``rotation_tolerant``: it finds tilted heads itself, so the
    identity stage does not search rotated copies for a lost face (``detector.tilt``).
    One instance must not run on two threads at once: :meth:`copy` makes one per thread.
    """

    name: ClassVar[str]
    rotation_tolerant: ClassVar[bool]

    def detect(self, frame: np.ndarray, region: np.ndarray | None = None, *, strict: bool = False) -> FaceDetections:
        """Faces in ``frame`` (``(H, W, 3)`` uint8 BGR or ``(H, W)`` uint8 gray).

        ``region``: None for the whole frame (largest face first); else a known face's box
        ``[x, y, w, h]`` in frame pixels: faces of about its size around it, nearest its
        centre first (re-finding a face costs a fraction of a full search). ``strict``: with
        a region, only a face the detector is as sure of as in a full search (the identity
        stage confirms a face a full search missed); a detector with one threshold ignores it.
        Boxes and keypoints are in ``frame``'s pixels either way.
        """
        ...

    def copy(self) -> "FaceDetector":
        """The same detector with its own state, for another thread."""
        ...

    def close(self) -> None:
        """Release what the detector holds (sessions, files); it is not called again."""
        ...


_REGISTRY: dict[str, type] = {}
_T = TypeVar("_T")


def register_detector(name: str) -> Callable[[type[_T]], type[_T]]:
    """Class decorator: ``create_detector(name, config)`` builds this class.

    The class takes its settings object as its only argument (``cls(config)``; ``cls.Config``,
    a dataclass, gives the defaults when ``config`` is None) and sets ``name`` to ``name``.
    """

    def register(cls: type[_T]) -> type[_T]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"face detector {name!r} is registered twice")
        cls.name = name  # type: ignore[attr-defined]
        _REGISTRY[name] = cls
        return cls

    return register


def detector_names() -> tuple[str, ...]:
    """Every name ``--detector`` takes, in the order they registered (the default first)."""
    return tuple(_REGISTRY)


def detector_class(name: str) -> type:
    """The class registered as ``name``.

    Raises:
        SettingsError: no detector has that name (the message lists the valid ones).
    """
    if name not in _REGISTRY:
        raise SettingsError(f"unknown face detector {name!r}; choose one of: {', '.join(detector_names())}")
    return _REGISTRY[name]


def create_detector(name: str, config: Any = None) -> FaceDetector:
    """A new detector ``name`` with ``config`` (its class's ``Config``; None: the defaults).

    Raises:
        SettingsError: an unknown name, or a ``config`` of another detector's type.
        UserError: the detector cannot load what it needs (a missing cascade or model file).
    """
    cls = detector_class(name)
    settings_type = getattr(cls, "Config", None)
    if config is None:
        config = settings_type() if settings_type is not None else None
    elif settings_type is not None and not isinstance(config, settings_type):
        raise SettingsError(f"face detector {name!r} takes {settings_type.__name__} settings, got {type(config).__name__}")
    return cls(config)


# The registry: each built-in detector registers itself when imported here.
from detector.detection import blazeface, haar  # noqa: E402,F401
