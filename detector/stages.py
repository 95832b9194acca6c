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

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._searcher.close()
        self.detector.close()


class ClassifyFaces(Stage):
    """All faces of a frame in one batched model call."""

    def __init__(self, classifier: EmotionClassifier):
        self.classifier = classifier

    def __call__(self, result: FrameResult) -> FrameResult:
        probs = self.classifier.classify(result.image, result.faces.boxes)
        faces = Faces(result.faces.boxes, probs, ids=result.faces.ids)
        return replace(result, faces=faces, labels=self.classifier.labels)
