"""Stages that turn a frame into a classified, tracked :class:`FrameResult`, timed one by one.

Every stage is a :class:`Stage`: ``FrameResult -> FrameResult``, plus ``reset()`` (forget
the current source) and ``close()`` (release threads). The pipeline runs them in order,
records each stage's milliseconds in ``result.timings``, and owns the "new source" rule:
when ``result.source`` changes (the next file of an image folder, a new video) it resets
every stage before the frame, once, here and nowhere else.
"""

from __future__ import annotations

import itertools
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Iterator, Sequence

from detector.classifier import EmotionClassifier
from detector.config import TrackingConfig
from detector.faces import FaceFinder, HaarFaceDetector
from detector.results import Faces, FrameResult


class Stage:
    """One step of the pipeline. Stateless stages keep the no-op ``reset`` and ``close``."""

    def __call__(self, result: FrameResult) -> FrameResult:
        raise NotImplementedError

    def reset(self) -> None:
        """Forget everything about the current source: the next frame starts a new one."""

    def close(self) -> None:
        """Release threads and files; the stage is not called again."""


class DetectFaces(Stage):
    """Faces of a stream of frames, each with its id (``Faces.ids``): the finder re-finds
    each known face, so it is the one owner of which face is which. Full-frame searches
    run on one worker thread with a cascade of their own. Ids come from one counter for
    the whole run, so a new source never reuses an id."""

    def __init__(self, detector: HaarFaceDetector, tracking: TrackingConfig = TrackingConfig(),
                 ids: Iterator[int] | None = None):
        self.detector, self.tracking = detector, tracking
        self._searcher = detector.copy()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="face-search")
        self._ids = ids if ids is not None else itertools.count(1)
        self._find = self._finder()

    def _finder(self) -> FaceFinder:
        return FaceFinder(self.detector, self._searcher, self._executor, self.tracking, self._ids)

    def __call__(self, result: FrameResult) -> FrameResult:
        return replace(result, faces=self._find(result.image, result.time))

    def reset(self) -> None:
        self._find.cancel()  # its search may still run on the worker, on the cascade the next finder uses
        self._find = self._finder()

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


class ClassifyFaces(Stage):
    """All faces of a frame in one batched model call."""

    def __init__(self, classifier: EmotionClassifier):
        self.classifier = classifier

    def __call__(self, result: FrameResult) -> FrameResult:
        probs = self.classifier.classify(result.image, result.faces.boxes)
        faces = Faces(result.faces.boxes, probs, ids=result.faces.ids)
        return replace(result, faces=faces, labels=self.classifier.labels)


class Pipeline:
    """Named stages run in order. A context manager: leaving it closes every stage."""

    def __init__(self, stages: Sequence[tuple[str, Stage]]):
        self.stages = list(stages)
        self._source: str | None = None

    def __call__(self, result: FrameResult) -> FrameResult:
        if result.source != self._source:
            if self._source is not None:
                self.reset()
            self._source = result.source
        timings = dict(result.timings)
        started = time.perf_counter()
        for name, stage in self.stages:
            t0 = time.perf_counter()
            result = stage(result)
            timings[name] = (time.perf_counter() - t0) * 1000
        timings["total"] = (time.perf_counter() - started) * 1000
        return replace(result, timings=timings)

    def reset(self) -> None:
        """A new source starts: no face, id or average carries over (ids are not reused)."""
        for _, stage in self.stages:
            stage.reset()
        self._source = None

    def close(self) -> None:
        """Stop the stages' threads (the face search's worker); idempotent."""
        for _, stage in self.stages:
            stage.close()

    def __enter__(self) -> "Pipeline":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
