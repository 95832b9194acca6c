"""Stages that turn a frame into a classified :class:`FrameResult`, timed one by one.

Every stage is a callable ``FrameResult -> FrameResult``; the pipeline runs them in
order and records each stage's milliseconds in ``result.timings``.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Callable, Sequence

from detector.classifier import EmotionClassifier
from detector.faces import FaceFinder, HaarFaceDetector
from detector.results import Faces, FrameResult

Stage = Callable[[FrameResult], FrameResult]


class DetectFaces:
    """Faces of a stream of frames; it remembers the last faces of the current source,
    and starts afresh when the source changes (each image of a folder stands alone).
    Full-frame searches run on one worker thread with a cascade of their own."""

    def __init__(self, detector: HaarFaceDetector):
        self.detector = detector
        self._searcher = detector.copy()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="face-search")
        self._source: str | None = None
        self._find = self._finder()

    def _finder(self) -> FaceFinder:
        return FaceFinder(self.detector, self._searcher, self._executor)

    def __call__(self, result: FrameResult) -> FrameResult:
        if result.source != self._source:
            self._source, self._find = result.source, self._finder()
        return replace(result, faces=Faces(self._find(result.image)))


class ClassifyFaces:
    """All faces of a frame in one batched model call."""

    def __init__(self, classifier: EmotionClassifier):
        self.classifier = classifier

    def __call__(self, result: FrameResult) -> FrameResult:
        probs = self.classifier.classify(result.image, result.faces.boxes)
        faces = Faces(result.faces.boxes, probs, ids=result.faces.ids)
        return replace(result, faces=faces, labels=self.classifier.labels)


class Pipeline:
    def __init__(self, stages: Sequence[tuple[str, Stage]]):
        self.stages = list(stages)

    def __call__(self, result: FrameResult) -> FrameResult:
        timings = dict(result.timings)
        started = time.perf_counter()
        for name, stage in self.stages:
            t0 = time.perf_counter()
            result = stage(result)
            timings[name] = (time.perf_counter() - t0) * 1000
        timings["total"] = (time.perf_counter() - started) * 1000
        return replace(result, timings=timings)
