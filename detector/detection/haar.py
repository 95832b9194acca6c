"""Face detection with OpenCV's Haar cascade, on a downscaled grayscale frame (``--detector haar``).

Haar cost grows with pixels and with the number of scales tried, so the frame is
shrunk to ``detect_width`` and faces smaller than ``min_face`` (a fraction of the
frame's shorter side) are not searched for. Boxes come back in frame pixels.
No histogram equalisation: the cascade normalises each window's contrast itself, and
equalising the whole frame lost faces next to bright or dark regions (4-face bench
recall 94% with it, 99.9% without). The cascade gives no score: every score is 1.0.

OpenCV is imported where the cascade runs, not at the top: every front end imports this
module to list its flags, and ``serve`` must set OpenCV's decoder pixel limit before cv2 loads.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from detector.detection import FaceDetections, register_detector
from detector.detection.boxes import centres, clamp_boxes
from detector.errors import UserError, check_settings
from detector.paths import DEFAULT_CASCADE, resource


def _gray(image: np.ndarray) -> np.ndarray:
    """A BGR image (or a region of one) as the cascade reads it; a gray one as it is."""
    import cv2

    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


@dataclass(frozen=True)
class HaarConfig:
    """The cascade and its settings; docs/PERFORMANCE.md measured the defaults.

    Raises:
        SettingsError: a value the cascade cannot run with (it would fail on every frame),
        named by its flag.
    """

    cascade: str = field(default_factory=lambda: str(resource(DEFAULT_CASCADE)))  # Haar cascade XML
    scale_factor: float = 1.1
    min_neighbors: int = 5
    min_face: float = 0.1  # smallest face side, as a fraction of the frame's shorter side
    detect_width: int = 320  # frames wider than this are downscaled for detection (0 = never)
    min_neighbors_near: int = 3  # votes to re-find a known face in its own region (fewer than to find a new one)
    roi_margin: float = 0.5  # search region around a known face, in face sides on each side
    roi_face_px: int = 48  # known faces are re-detected at about this size, which keeps it cheap
    roi_scale_factor: float = 1.15  # coarser steps around a known face: its size is about known

    def __post_init__(self) -> None:
        check_settings(
            f"--scale-factor must be above 1, got {self.scale_factor}" if self.scale_factor <= 1 else "",
            f"--min-neighbors must be 0 or more, got {self.min_neighbors}" if self.min_neighbors < 0 else "",
            f"--min-face must be 0 or more and below 1, got {self.min_face}" if not 0 <= self.min_face < 1 else "",
            f"--detect-width must be 0 or more, got {self.detect_width}" if self.detect_width < 0 else "",
            f"min_neighbors_near must be 0 or more, got {self.min_neighbors_near}" if self.min_neighbors_near < 0 else "",
            f"roi_margin must be 0 or more, got {self.roi_margin}" if self.roi_margin < 0 else "",
            f"roi_face_px must be 24 or more, got {self.roi_face_px}" if self.roi_face_px < 24 else "",
            f"roi_scale_factor must be above 1, got {self.roi_scale_factor}" if self.roi_scale_factor <= 1 else "",
        )


@register_detector("haar")
class HaarFaceDetector:
    """OpenCV's frontal-face cascade: upright faces only (the identity stage searches a lost
    face at a tilt), no scores, no keypoints.

    Raises:
        UserError: the cascade file is missing or is not a cascade.
    """

    Config = HaarConfig
    name = "haar"
    rotation_tolerant = False

    def __init__(self, config: HaarConfig | None = None):
        import cv2

        config = config or HaarConfig()
        path = Path(config.cascade)
        if not path.is_file():
            raise UserError(f"Haar cascade not found: {path}")
        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise UserError(f"not a valid Haar cascade file: {path}")
        self.path, self.config = path, config

    def copy(self) -> "HaarFaceDetector":
        """The same detector with its own cascade: one cascade must not run on two threads at once."""
        return HaarFaceDetector(self.config)

    def close(self) -> None:
        """Nothing to release: the cascade is freed with the object."""

    def detect(self, frame: np.ndarray, region: np.ndarray | None = None, *, strict: bool = False) -> FaceDetections:
        """See :meth:`detector.detection.FaceDetector.detect`. ``strict`` re-finds with
        ``min_neighbors`` votes instead of ``min_neighbors_near``."""
        if region is None:
            return FaceDetections.from_boxes(self._detect_frame(_gray(frame)))
        config = self.config
        return FaceDetections.from_boxes(self._detect_near(frame, region, config.min_neighbors if strict else config.min_neighbors_near))

    def _detect_frame(self, gray: np.ndarray) -> np.ndarray:
        """``(N, 4)`` boxes in ``gray`` pixels, largest first."""
        import cv2

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

    def _detect_near(self, frame: np.ndarray, box: np.ndarray, min_neighbors: int) -> np.ndarray:
        """Faces in a small region around ``box``, searching only sizes near its own (a
        handful of scales on a ~100 px patch instead of the whole frame), nearest first.
        Only the region is made gray: the identity stage calls this several times a frame."""
        import cv2

        x, y, w, h = (int(v) for v in box)
        margin = int(self.config.roi_margin * max(w, h))
        x0, y0 = max(0, x - margin), max(0, y - margin)
        x1, y1 = min(frame.shape[1], x + w + margin), min(frame.shape[0], y + h + margin)
        if x1 - x0 < 2 or y1 - y0 < 2:  # the frame shrank under a known face (a stream changed size)
            return np.zeros((0, 4), np.int32)
        scale = self.config.roi_face_px / max(w, 1)
        patch = cv2.resize(_gray(frame[y0:y1, x0:x1]), None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        if min(patch.shape) < 24:
            return np.zeros((0, 4), np.int32)
        side = self.config.roi_face_px
        found = self._cascade.detectMultiScale(
            patch,
            scaleFactor=self.config.roi_scale_factor,
            minNeighbors=min_neighbors,
            minSize=(max(20, int(side * 0.7)),) * 2,
            maxSize=(int(side * 1.45),) * 2,
        )
        if len(found) == 0:
            return np.zeros((0, 4), np.int32)
        found = np.asarray(found, dtype=np.float64) / scale + [x0, y0, 0, 0]
        distance = np.linalg.norm(centres(found) - [x + w / 2, y + h / 2], axis=1)
        return np.round(found[np.argsort(distance, kind="stable")]).astype(np.int32)

    @staticmethod
    def add_flags(parser: argparse.ArgumentParser) -> None:
        """``--cascade --scale-factor --min-neighbors --min-face --detect-width``, defaults from :class:`HaarConfig`."""
        d = HaarConfig.__dataclass_fields__
        group = parser.add_argument_group("haar detector (--detector haar)")
        group.add_argument("--cascade", help="Haar cascade XML (default: haarcascade_frontalface_default.xml next to the app)")
        group.add_argument("--scale-factor", type=float, default=d["scale_factor"].default,
                           help=f"Haar scale step (default {d['scale_factor'].default})")
        group.add_argument("--min-neighbors", type=int, default=d["min_neighbors"].default,
                           help=f"Haar min neighbours (default {d['min_neighbors'].default})")
        group.add_argument("--min-face", type=float, default=d["min_face"].default,
                           help=f"smallest face, as a fraction of the frame's shorter side (default {d['min_face'].default})")
        group.add_argument("--detect-width", type=int, default=d["detect_width"].default,
                           help=f"downscale wider frames to this width for detection, 0 = never (default {d['detect_width'].default})")

    @staticmethod
    def config_from_flags(args: argparse.Namespace) -> HaarConfig:
        """:class:`HaarConfig` from :meth:`add_flags`' values (``SettingsError`` as the dataclass raises it)."""
        cascade = {"cascade": args.cascade} if args.cascade else {}
        return HaarConfig(scale_factor=args.scale_factor, min_neighbors=args.min_neighbors, min_face=args.min_face,
                          detect_width=args.detect_width, **cascade)
