"""Labelled photos, judged as the app sees them: end to end (the app's own face detection) and whole.

A folder laid out like ``../shared/wild-dev`` (``<class>/<file>``, real web photos) tells how
a model does on the faces users show it, which FER2013's aligned 48x48 crops do not. Each
photo runs through the app's own source and pipeline (:func:`detector.sources.open_source`,
:func:`detector.pipeline.create_pipeline`, no smoothing), and the largest face's label is its answer;
a photo where no face is found counts as wrong, and the share of such photos is reported.
With ``whole_image="always"`` the whole photo is classified instead (no detection).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from detector.errors import UserError

log = logging.getLogger(__name__)

#: Answers that are no photo class: a photo with no face found, and a model class the photos
#: lack (both wrong for every class), as codes among the class indices and as confusion columns.
NO_FACE_CODE, OTHER_CODE = -1, -2
NO_FACE, OTHER = "no face", "another class"


def photo_classes(folder: Path) -> list[str]:
    """The class folders of ``folder``, sorted.

    Raises:
        UserError: ``folder`` is missing or has no class folders.
    """
    if not folder.is_dir():
        raise UserError(f"photo folder not found: {folder}")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise UserError(f"no <class>/ folders in {folder}: lay labelled photos out as {folder}/<class>/<file>")
    return classes


def recall_metrics(true: np.ndarray, predicted: np.ndarray, classes: list[str]) -> dict:
    """Accuracy, balanced accuracy (mean of per-class recalls), per-class recall and the
    confusion counts (``confusion[true class][answer]``; answers: ``classes``, :data:`OTHER`
    and :data:`NO_FACE`). ``true`` and ``predicted`` are ``(N,)`` int class indices, predictions
    also :data:`NO_FACE_CODE` or :data:`OTHER_CODE`."""
    codes = {**{name: j for j, name in enumerate(classes)}, OTHER: OTHER_CODE, NO_FACE: NO_FACE_CODE}
    confusion = {name: {answer: int(((true == i) & (predicted == code)).sum()) for answer, code in codes.items()}
                 for i, name in enumerate(classes) if (true == i).any()}
    recalls = {name: counts[name] / sum(counts.values()) for name, counts in confusion.items()}
    return {"photos": int(len(true)), "accuracy": float((predicted == true).mean()) if len(true) else 0.0,
            "balanced_accuracy": float(np.mean(list(recalls.values()))) if recalls else 0.0,
            "recall": recalls, "no_face": float((predicted == NO_FACE_CODE).mean()) if len(true) else 0.0, "confusion": confusion}


def evaluate_photos(classifier, folder: str | Path, whole_image: str = "auto") -> dict:
    """:func:`recall_metrics` of ``classifier`` (a loaded :class:`EmotionClassifier`) on the
    labelled photos under ``folder``, through the app's pipeline in ``whole_image`` mode."""
    from detector.config import PipelineConfig, SmoothingConfig
    from detector.pipeline import create_pipeline
    from detector.sources import open_source

    folder = Path(folder)
    classes = photo_classes(folder)
    model_index = {name.casefold(): i for i, name in enumerate(classifier.labels)}
    unknown = [name for name in classes if name.casefold() not in model_index]
    if unknown:
        raise UserError(f"the model does not know the photo class(es) {', '.join(unknown)}; its labels are {', '.join(classifier.labels)}")
    true, predicted = [], []
    config = PipelineConfig(smoothing=SmoothingConfig(0.0), whole_image=whole_image)
    with create_pipeline(config, classifier, still=True) as pipeline:  # photos are stills, as the app treats them
        for index, name in enumerate(classes):
            with open_source(str(folder / name)) as source:
                for frame in source:
                    result = pipeline(frame)
                    largest = result.faces.largest()
                    guess = None if largest is None else int(np.argmax(result.faces.probs[largest]))
                    true.append(index)
                    predicted.append(NO_FACE_CODE if guess is None else _index_in(classes, classifier.labels[guess]))
    metrics = recall_metrics(np.asarray(true), np.asarray(predicted), classes)
    log.info("%s, whole-image %s: accuracy %.3f, balanced accuracy %.3f, no face %.1f%%", folder, whole_image,
             metrics["accuracy"], metrics["balanced_accuracy"], 100 * metrics["no_face"])
    return {"folder": str(folder), "whole_image": whole_image, **metrics}


def _index_in(classes: list[str], label: str) -> int:
    """Where the model's ``label`` stands among the photo classes (:data:`OTHER_CODE`: a class the photos lack,
    wrong for every photo but not a missing face)."""
    folded = [name.casefold() for name in classes]
    return folded.index(label.casefold()) if label.casefold() in folded else OTHER_CODE


def confusion_markdown(row: dict) -> str:
    """One :func:`evaluate_photos` result's confusion counts as a markdown table: a row per
    labelled class, a column per answer (columns that no photo got are left out)."""
    confusion = row["confusion"]
    answers = [a for a in next(iter(confusion.values())) if any(counts[a] for counts in confusion.values())]
    lines = ["| photos labelled \\ answered | " + " | ".join(answers) + " | recall |", "|---" * (len(answers) + 2) + "|"]
    for name, counts in confusion.items():
        cells = [f"**{counts[a]}**" if a == name else str(counts[a]) for a in answers]
        lines.append(f"| {name} ({sum(counts.values())}) | " + " | ".join(cells) + f" | {row['recall'][name]:.2f} |")
    return "\n".join(lines)
