"""The pipeline: its stages run in order, timed one by one, built in one place.

:func:`create_pipeline` is how every front end (the window, the server, batch, benches and
tools) gets one; none builds stages itself. The pipeline owns the "new source" rule: when
``result.source`` changes (the next file of an image folder, a new video) it resets every
stage before the frame, once, here and nowhere else; a caller that knows better (the
server, between requests) calls :meth:`Pipeline.reset` itself.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import replace
from typing import Sequence

from detector.classifier import EmotionClassifier
from detector.config import DetectionConfig, PipelineConfig
from detector.detection import FaceDetector, create_detector, detector_class
from detector.results import FrameResult, Stage
from detector.stages import ClassifyFaces, DetectFaces
from detector.tracking import ProbabilitySmoother
from detector.whole_image import WholeImageFallback


def create_face_detector(config: DetectionConfig, still: bool = False) -> FaceDetector:
    """``config``'s detector. ``still``: the frames are still images (no real-time budget); a
    detector whose settings have a ``still`` field is told so (Haar then searches them at the
    size ``--min-face`` needs instead of shrinking them to ``--detect-width``).

    Raises:
        SettingsError, UserError: as :func:`detector.detection.create_detector`.
    """
    settings = config.settings
    if still:
        settings_type = getattr(detector_class(config.name), "Config", None)
        settings = settings if settings is not None or settings_type is None else settings_type()
        if "still" in getattr(settings, "__dataclass_fields__", {}):
            settings = replace(settings, still=True)
    return create_detector(config.name, settings)


def create_pipeline(config: PipelineConfig, classifier: EmotionClassifier | None = None, still: bool = False) -> "Pipeline":
    """detect (with face ids) -> whole-image fallback -> classify -> smooth: each stage reads
    what the earlier ones added. In whole-image mode ``always`` there is no detect stage.
    ``classifier``: one already loaded (a batch worker or the server loads its model once for
    many pipelines); None loads ``config.model``. ``still``: the frames are still images
    (:func:`create_face_detector`). The caller closes the pipeline (``with``,
    or ``close()``): it owns the face-search thread.

    Raises:
        SettingsError, UserError, ModelError: an unknown detector, a missing cascade, an unusable model.
    """
    classifier = classifier or EmotionClassifier(config.model)
    ids = itertools.count(1)  # face ids: one counter for the run, so no id is ever reused
    whole = WholeImageFallback(config.whole_image, ids)
    stages: list[tuple[str, Stage]] = []
    if whole.mode != "always":
        detector = create_face_detector(config.detection, still)
        stages.append(("detect", DetectFaces(detector, config.identity, ids)))
    stages += [("whole_image", whole), ("classify", ClassifyFaces(classifier, config.align))]
    if config.smoothing.seconds > 0:
        stages.append(("smooth", ProbabilitySmoother(config.smoothing)))
    return Pipeline(stages)


def detection_pipeline(config: PipelineConfig = PipelineConfig()) -> "Pipeline":
    """The detect stage alone (faces with ids, no model): what identity is measured on."""
    detector = create_detector(config.detection.name, config.detection.settings)
    return Pipeline([("detect", DetectFaces(detector, config.identity))])


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

    def switch_detector(self, name: str, settings=None) -> bool:
        """Detect faces with the registered detector ``name`` from the next frame on (``settings``:
        its ``Config``; None: its defaults); face ids carry on. False when the pipeline has no
        detect stage (whole-image mode ``always``).

        Raises:
            SettingsError, UserError: an unknown name, or a detector that cannot load its files.
        """
        stage = dict(self.stages).get("detect")
        if not isinstance(stage, DetectFaces):
            return False
        stage.use_detector(create_detector(name, settings))
        return True

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
