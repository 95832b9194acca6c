"""Class probabilities smoothed per face id, over time.

Face ids come from the face finder (``detector.identity.FaceFinder``, the one owner of which
face is which); this stage only reads them. ``FrameResult -> FrameResult``, after
classification (supervision's smoother idea).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from detector.config import SmoothingConfig
from detector.results import Faces, FrameResult, Stage


class ProbabilitySmoother(Stage):
    """Per-track exponential moving average of class probabilities, by time, not frames.

    ``alpha = 1 - exp(-dt / tau)`` (``tau``: ``config.seconds``) with ``dt`` from ``result.time``, so a step
    change reaches 63% after ``tau`` seconds at 8 fps and at 30 fps alike, and a
    frame that took longer to process counts for more. A track's first frame is
    its raw probabilities; ``tau == 0`` turns smoothing off (results pass
    unchanged). ``raw_probs`` keep the classifier's own output for the JSON lines.
    Faces not seen for ``config.forget_after_s`` seconds are dropped (their weight is
    negligible by then, and ids are never reused). Faces without an id pass raw. The
    pipeline calls :meth:`reset` when the source changes.
    """

    def __init__(self, config: SmoothingConfig = SmoothingConfig()):
        self.tau, self.forget_after = config.seconds, config.forget_after_s
        self._state: dict[int, tuple[float, np.ndarray]] = {}  # id -> (time, smoothed probs)

    def reset(self) -> None:
        self._state = {}

    def __call__(self, result: FrameResult) -> FrameResult:
        faces = result.faces
        if self.tau == 0 or not faces.classified:
            return result
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
        return replace(result, faces=Faces(faces.boxes, smoothed, raw, faces.ids, faces.keypoints))
