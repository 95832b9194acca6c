"""The model-running stages of the pipeline, each a :class:`~detector.results.Stage`.

``detector.pipeline.Pipeline`` runs the stages in order: the
face detection with identity and the classification here, the whole-image fallback in
``detector.whole_image``, the smoothing in ``detector.tracking``.
"""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Iterator

from detector.align import face_crops
from detector.classifier import EmotionClassifier
from detector.config import IdentityConfig
from detector.detection import FaceDetector
from detector.identity import FaceFinder
from detector.results import Faces, FrameResult, Stage


class DetectFaces(Stage):
    """Faces of a stream of frames, each with its id (``Faces.ids``): the finder re-finds
    each known face, so it is the one owner of which face is which. Full-frame searches
    run on one worker thread with a detector copy of their own. Ids come from one counter
    for the whole run, so a new source never reuses an id. Closing it closes the detectors."""

    def __init__(self, detector: FaceDetector, identity: IdentityConfig = IdentityConfig(),
                 ids: Iterator[int] | None = None):
        self.detector, self.identity = detector, identity
        self._searcher = detector.copy()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="face-search")
        self._ids = ids if ids is not None else itertools.count(1)
        self._find = self._finder()

    def _finder(self) -> FaceFinder:
        return FaceFinder(self.detector, self._searcher, self._executor, self.identity, self._ids)

    def __call__(self, result: FrameResult) -> FrameResult:
        return replace(result, faces=self._find(result.image, result.time))

    def reset(self) -> None:
        self._find.cancel()  # its search may still run on the worker, on the detector the next finder uses
        self._find = self._finder()

    def use_detector(self, detector: FaceDetector) -> None:
        """Go on with ``detector`` from the next frame (the window's detector key): the known
        faces stay, re-found by it in their own regions, so they keep their ids."""
        self._find.cancel()  # the old searcher may be running on the worker
        old = (self.detector, self._searcher)
        self.detector, self._searcher = detector, detector.copy()
        self._find.use(self.detector, self._searcher)
        for replaced in old:
            replaced.close()

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._searcher.close()
        self.detector.close()


class ClassifyFaces(Stage):
    """All faces of a frame in one batched model call. Where the detector gave keypoints and
    ``align`` is on, each crop is levelled by its eye line first (``detector.align``)."""

    def __init__(self, classifier: EmotionClassifier, align: bool = True):
        self.classifier, self.align = classifier, align

    def __call__(self, result: FrameResult) -> FrameResult:
        faces = result.faces
        probs = self.classifier.predict_crops(face_crops(result.image, faces.boxes, faces.keypoints, self.align))
        return replace(result, faces=Faces(faces.boxes, probs, ids=faces.ids, keypoints=faces.keypoints),
                       labels=self.classifier.labels)
