"""Class names shared by training, evaluation and the app (a model's own are its card's: ``detector.model_card``)."""

from __future__ import annotations

#: FER2013's own index order (the ``emotion`` column of ``fer2013.csv``).
FER2013_LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
