"""Class names shared by training, evaluation and the app."""

from __future__ import annotations

from pathlib import Path

#: FER2013's own index order (the ``emotion`` column of ``fer2013.csv``).
FER2013_LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

LABELS_FILE = "labels.txt"


def read_labels(path: Path) -> list[str]:
    """One class name per line; blank lines are ignored."""
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_labels(path: Path, labels: list[str] | tuple[str, ...]) -> None:
    path.write_text("\n".join(labels) + "\n", encoding="utf-8")
