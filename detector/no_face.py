"""Why a frame or picture got no face, measured from the frame, for the end-of-run summary.

A person who sees a face the app missed wants to know what to change. Three causes are
checked, in this order (the first that holds is counted), on a sample of the frames without a face (every one of the first
:data:`LOOK_FIRST`, then one in :data:`LOOK_EVERY`, so a long video costs little):

* **too small**: the same cascade at full resolution, down to its 24 px window, finds faces
  smaller than the smallest the run's detection allows (``--min-face``, ``--detect-width``).
* **tilted**: the frame turned by each of :data:`TILT_ANGLES` shows a face the upright search missed.
* **too dark**: mean brightness under :data:`DARK_MEAN` of 255, or almost no contrast
  (5th to 95th percentile under :data:`FLAT_RANGE`): the cascade's features vanish in noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from detector.detection.haar import HaarFaceDetector

DARK_MEAN = 40.0
FLAT_RANGE = 24.0
TILT_ANGLES = (-35.0, -20.0, 20.0, 35.0)
LOOK_FIRST, LOOK_EVERY = 10, 25


@dataclass
class NoFaceReasons:
    """Counts of measured causes over the frames looked at (``look``), for :meth:`describe`."""

    detector: HaarFaceDetector
    looked: int = 0
    seen: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    small_sides: list[int] = field(default_factory=list)  # px, of the faces found under the limit
    limit: int = 0  # px, the smallest face the detection allows in the frames looked at
    brightness: list[float] = field(default_factory=list)

    def look(self, image: np.ndarray) -> None:
        """Note one frame without a face; measured when it falls in the sample."""
        self.seen += 1
        if self.seen > LOOK_FIRST and self.seen % LOOK_EVERY:
            return
        self.looked += 1
        reason = self._measure(image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
        if reason:
            self.counts[reason] = self.counts.get(reason, 0) + 1

    def _measure(self, gray: np.ndarray) -> str | None:
        height, width = gray.shape
        self.limit = self.detector.smallest_face(width, height)
        small = self.detector.detect_under(gray, self.limit)
        if len(small):
            self.small_sides.extend(int(side) for side in small[:, 2])
            return "small"
        centre = (width / 2, height / 2)
        for angle in TILT_ANGLES:
            turned = cv2.warpAffine(gray, cv2.getRotationMatrix2D(centre, angle, 1.0), (width, height),
                                    borderMode=cv2.BORDER_REPLICATE)
            if len(self.detector.detect(turned)):
                return "tilted"
        low, high = np.percentile(gray, (5, 95))
        if gray.mean() < DARK_MEAN or high - low < FLAT_RANGE:
            self.brightness.append(float(gray.mean()))
            return "dark"
        return None

    def describe(self, unit: str = "frames") -> str:
        """``may be why (of 20 looked at): 12 too dark (brightness 18 of 255), ...``; "" when none measured."""
        if not self.looked:
            return ""
        parts = []
        if self.counts.get("dark"):
            parts.append(f"{self.counts['dark']} too dark or flat (mean brightness {np.mean(self.brightness):.0f} of 255)")
        if self.counts.get("small"):
            parts.append(f"{self.counts['small']} with faces of {min(self.small_sides)}-{max(self.small_sides)} px, smaller "
                         f"than the {self.limit} px the detection allows (lower --min-face, or --detect-width 0)")
        if self.counts.get("tilted"):
            parts.append(f"{self.counts['tilted']} with a face tilted 20-35 degrees (the detector looks for upright faces)")
        unexplained = self.looked - sum(self.counts.values())
        if unexplained:
            parts.append(f"{unexplained} with no measured cause (no face, or one turned away or covered)")
        sample = f"all {self.looked}" if self.looked == self.seen else f"{self.looked} of {self.seen} looked at"
        return f"no face, may be why ({sample} {unit}): " + "; ".join(parts)
