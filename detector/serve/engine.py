"""The app's pipeline, shared by requests without sharing what it remembers.

A pipeline remembers faces, their ids and smoothed probabilities until it is reset. So
one-shot requests borrow a pipeline from a small pool, which resets it before the frame:
every stage starts from nothing, and nothing of one request reaches another. Building a
pipeline per request would do the same but costs about as much as the request itself
(docs/SERVING.md measures both). ``?whole=true`` borrows from a second pool, of pipelines
built in whole-image mode ``always`` (no detection: the picture is the face). A WebSocket connection gets a
pipeline of its own, so the face finder in its detect stage keeps each face's id across
frames and its smoother follows them.

Every pipeline shares the one classifier the server loaded (:func:`shared_classifier`):
a model is loaded once per server, not per pipeline or connection.
"""

from __future__ import annotations

import queue
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from typing import Iterator

import numpy as np

from detector.classifier import EmotionClassifier
from detector.config import ModelConfig, PipelineConfig
from detector.pipeline import Pipeline, create_pipeline
from detector.results import FrameResult


class _OneCallAtATime:
    """A backend whose ``predict`` runs one call at a time. ONNX Runtime's ``InferenceSession.run``
    is safe to call from many threads at once; a TensorFlow signature or Keras model shared by
    threads is not documented to be, so the server takes turns on it."""

    def __init__(self, backend):
        self._backend, self._lock = backend, threading.Lock()
        self.name = backend.name

    def predict(self, batch: np.ndarray) -> np.ndarray:
        with self._lock:
            return self._backend.predict(batch)

    def __getattr__(self, name: str):  # input_hwc, max_batch, num_outputs...: the wrapped backend's
        return getattr(self._backend, name)


def shared_classifier(config: ModelConfig) -> EmotionClassifier:
    """The model, loaded once, for every pipeline of the server to call from its own thread.

    Raises:
        ModelError, UserError: as :class:`EmotionClassifier` does (missing or unusable model).
    """
    classifier = EmotionClassifier(config)
    if classifier.backend.name != "onnx":
        classifier.backend = _OneCallAtATime(classifier.backend)
    return classifier


class PipelinePool:
    """``size`` pipelines for stateless one-shot calls, and ``size`` in whole-image mode; a
    call waits while all of its kind are busy. Thread-safe: each pipeline serves one call at
    a time. ``close()`` stops their threads."""

    def __init__(self, config: PipelineConfig, size: int, classifier: EmotionClassifier):
        whole = replace(config, whole_image="always")
        self._idle: dict[bool, queue.Queue[Pipeline]] = {False: queue.Queue(), True: queue.Queue()}
        self._pipelines: list[Pipeline] = []
        for kind, settings in ((False, config), (True, whole)):
            for _ in range(size):
                self._pipelines.append(create_pipeline(settings, classifier))
                self._idle[kind].put(self._pipelines[-1])
        self.classifier = classifier  # for /model

    def close(self) -> None:
        for pipeline in self._pipelines:
            pipeline.close()

    @contextmanager
    def _borrowed(self, whole: bool) -> Iterator[Pipeline]:
        pipeline = self._idle[whole].get()
        try:
            pipeline.reset()  # as if it had never seen a frame
            yield pipeline
        finally:
            self._idle[whole].put(pipeline)

    def predict(self, image: np.ndarray, whole: bool = False) -> FrameResult:
        """The faces of one ``(H, W, 3)`` BGR image, as if the pipeline had never seen a frame.
        ``whole``: skip detection and classify the whole picture as one face."""
        with self._borrowed(whole) as pipeline:
            return pipeline(FrameResult(index=0, time=0.0, source="request", image=image))


class Stream:
    """One connection's frames: its own pipeline, so ids and smoothing follow its faces.
    Frame times are seconds since the connection opened, which the smoother's time
    constant is measured in. Not thread-safe: one frame at a time. ``close()`` when the
    connection ends: it stops the pipeline's face-search thread."""

    def __init__(self, config: PipelineConfig, name: str, classifier: EmotionClassifier):
        self.pipeline = create_pipeline(config, classifier)
        self.name = name
        self._started = time.perf_counter()
        self._frames = 0

    def __call__(self, image: np.ndarray) -> FrameResult:
        frame = FrameResult(index=self._frames, time=time.perf_counter() - self._started, source=self.name, image=image)
        self._frames += 1
        return self.pipeline(frame)

    def close(self) -> None:
        self.pipeline.close()
