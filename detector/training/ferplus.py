"""FER+ crowd labels: ten people's votes per FER2013 face, as training targets and as the judge.

FER2013 has one annotator per face; FER+ (Barsoum et al., "Training Deep Networks for Facial
Expression Recognition with Crowd-Sourced Label Distribution", ICMI 2016; Microsoft, MIT
licence) asked ten. ``ferplus.csv`` beside a FER2013 folder tree holds those votes, one row
per image (``file`` relative to the tree, then the counts in :data:`VOTE_COLUMNS`).

Two facts are read from the votes, both over the model's own classes:

- the **majority**: the column with the most votes (ties go to the first column, FER+'s
  order, as numpy's ``argmax``); a face whose majority is contempt, unknown or not-a-face
  has none (``-1``) and is left out of FER+ accuracy and of training. On PrivateTest this
  keeps 3,517 of the 3,573 faces FER+ kept.
- the **vote distribution**: the share of votes for each class, after the FER+ paper's
  outlier removal (a class with a single vote is dropped) and without the contempt, unknown
  and not-a-face votes (FER2013's seven classes have no contempt). This is the paper's
  "probability" target.

The judge (majority, agreement) always drops contempt. Training may instead fold it into
disgust (``contempt="fold"``, ``--contempt fold``): contempt is the expression FER+'s
annotators most often chose beside disgust, and FER+'s disgust majority is rare (191 train
faces; 449 with contempt folded in).

A FER2013 copy without ``ferplus.csv`` still trains on its own labels; asking for FER+
labels there is a :class:`UserError`.
"""

from __future__ import annotations

import csv
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from detector.errors import UserError

FERPLUS_FILE = "ferplus.csv"

#: ``ferplus.csv``'s vote columns, in its order (``NF`` = not a face).
VOTE_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF")

#: FER+'s emotion columns under FER2013's class names; the other columns are not emotions a
#: seven-class model can say.
CLASS_OF_COLUMN = {"neutral": "neutral", "happiness": "happy", "surprise": "surprise", "sadness": "sad",
                   "anger": "angry", "disgust": "disgust", "fear": "fear"}

#: What ``--labels-from`` accepts.
LABEL_SOURCES = ("fer2013", "ferplus", "mix")

#: What ``--contempt`` accepts: FER+'s contempt votes dropped, or counted as disgust votes.
CONTEMPT_CHOICES = ("drop", "fold")


def votes_path(data: str | Path) -> Path:
    """Where a FER2013 folder tree keeps its FER+ votes (it may not exist)."""
    return Path(data) / FERPLUS_FILE


def has_votes(data: str | Path) -> bool:
    return Path(data).is_dir() and votes_path(data).is_file()


@lru_cache(maxsize=4)
def _read_votes(path: Path) -> dict[str, np.ndarray]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [column for column in ("file", *VOTE_COLUMNS) if column not in (reader.fieldnames or ())]
        if missing:
            raise UserError(f"{path} is not a FER+ vote file: no column(s) {', '.join(missing)}")
        return {row["file"]: np.asarray([float(row[c]) for c in VOTE_COLUMNS], np.float32) for row in reader}


def split_votes(data: str | Path, paths: Sequence[str]) -> np.ndarray:
    """``(N, 10)`` float32 vote counts in :data:`VOTE_COLUMNS` order for the images at ``paths``
    (files under the FER2013 tree ``data``); a row of zeros where FER+ has no row for the image.

    Raises:
        UserError: ``data`` has no ``ferplus.csv``, or the split has no image paths (a packed
            ``.npz`` or Kaggle's CSV: the votes are joined by file name).
    """
    if not has_votes(data):
        raise UserError(f"no FER+ votes: {votes_path(data)} not found (FER+ labels need a FER2013 folder tree with ferplus.csv)")
    if not paths:
        raise UserError("FER+ votes are joined to images by file name: give --data a FER2013 folder tree, not a packed file")
    table = _read_votes(votes_path(data).resolve())
    root = Path(data).resolve()
    zeros = np.zeros(len(VOTE_COLUMNS), np.float32)
    return np.stack([table.get(Path(p).resolve().relative_to(root).as_posix(), zeros) for p in paths])


def _columns(classes: Sequence[str]) -> np.ndarray:
    """Index into ``classes`` of each vote column, -1 for columns the classes do not have."""
    index = {name.casefold(): i for i, name in enumerate(classes)}
    return np.asarray([index.get(CLASS_OF_COLUMN.get(c, "").casefold(), -1) for c in VOTE_COLUMNS])


def majority(votes: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """``(N,)`` int64: the index in ``classes`` of each face's most-voted column, or -1 where
    that column is not one of ``classes`` (contempt, unknown, not a face) or nobody voted."""
    columns = _columns(classes)
    winner = columns[np.argmax(votes, axis=1)]
    return np.where(votes.sum(axis=1) > 0, winner, -1).astype(np.int64)


def _class_counts(votes: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """``(N, C)`` float64 votes per class of ``classes`` (other columns dropped)."""
    counts = np.zeros((len(votes), len(classes)), np.float64)
    for column, target in enumerate(_columns(classes)):
        if target >= 0:
            counts[:, target] += votes[:, column]
    return counts


def vote_distribution_raw(votes: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """``(N, C)`` float32: each face's votes for ``classes`` as shares of those votes, every
    vote kept (the judge's target: cross-entropy and the temperature fit); zero rows where none."""
    counts = _class_counts(votes, classes)
    total = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, total, out=np.zeros_like(counts), where=total > 0).astype(np.float32)


def vote_distribution(votes: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """``(N, C)`` float32: each face's share of votes per class of ``classes``, single votes
    removed (the FER+ paper's outlier removal, kept only where it would empty the row); rows
    with no vote for any of ``classes`` are all zero."""
    counts = _class_counts(votes, classes)
    trimmed = np.where(counts > 1, counts, 0)
    counts = np.where(trimmed.sum(axis=1, keepdims=True) > 0, trimmed, counts)
    total = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, total, out=np.zeros_like(counts), where=total > 0).astype(np.float32)


def fold_contempt(votes: np.ndarray) -> np.ndarray:
    """``(N, 10)`` votes with each face's contempt votes moved to its disgust column."""
    contempt, disgust = VOTE_COLUMNS.index("contempt"), VOTE_COLUMNS.index("disgust")
    folded = votes.copy()
    folded[:, disgust] += folded[:, contempt]
    folded[:, contempt] = 0
    return folded


def relabel(split, data: str | Path, source: str, fer2013_weight: float = 0.0, contempt: str = "drop"):
    """``split`` (a :class:`detector.training.data.Split`) with FER+ labels: only the faces
    with a seven-class majority, ``labels`` = that majority, ``soft_targets`` = the vote
    distribution (``source="ferplus"``) or ``(1 - w) * votes + w * one-hot FER2013 label``
    (``source="mix"``, ``w = fer2013_weight``); with ``contempt="fold"`` contempt votes count
    as disgust votes in both (:func:`fold_contempt`; for training targets, never the judge).

    Raises:
        UserError: an unknown ``source`` or ``contempt``, or no FER+ votes for this data (see
            :func:`split_votes`).
    """
    if source not in LABEL_SOURCES:
        raise UserError(f"unknown label source {source!r}: choose one of {', '.join(LABEL_SOURCES)}")
    if contempt not in CONTEMPT_CHOICES:
        raise UserError(f"unknown contempt handling {contempt!r}: choose one of {', '.join(CONTEMPT_CHOICES)}")
    if source == "fer2013":
        return split
    votes = split_votes(data, split.paths)
    if contempt == "fold":
        votes = fold_contempt(votes)
    winner = majority(votes, split.classes)
    keep = np.flatnonzero(winner >= 0)
    targets = vote_distribution(votes, split.classes)[keep]
    if source == "mix":
        targets = (1 - fer2013_weight) * targets + fer2013_weight * np.eye(len(split.classes), dtype=np.float32)[split.labels[keep]]
    return replace(split, images=split.images[keep], labels=winner[keep], paths=tuple(split.paths[i] for i in keep),
                   soft_targets=targets.astype(np.float32))


ECE_BINS = 15  # Guo et al. 2017's choice; the issue's 0.075 baseline was measured with it


def vote_share(votes: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """``(N, C)`` float32: the share of *all* of a face's votes (contempt, unknown and not-a-face
    included) that went to each class: "how many people in ten chose this label"."""
    return (_class_counts(votes, classes) / np.maximum(votes.sum(axis=1, keepdims=True), 1e-9)).astype(np.float32)


def expected_calibration_error(scores: np.ndarray, truth: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE: the mean, over equal-width score bins weighted by their share of faces, of
    ``|mean score - mean truth|``. ``scores`` (N,) in [0, 1] are the shown scores; ``truth``
    (N,) what they should equal on average (1/0 correctness, or the share of voters)."""
    scores, truth = np.asarray(scores, np.float64), np.asarray(truth, np.float64)
    which = np.minimum((scores * bins).astype(np.int64), bins - 1)
    error = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            error += inside.mean() * abs(scores[inside].mean() - truth[inside].mean())
    return float(error)


def agreement(probabilities: np.ndarray, votes: np.ndarray, classes: Sequence[str]) -> dict:
    """How a model's ``(N, C)`` probabilities (columns in ``classes`` order) agree with the ten
    FER+ votes per face ``(N, 10)``:

    - ``majority_accuracy``, ``majority_macro_f1``: against the majority, over the ``faces``
      that have a seven-class one (:func:`majority`);
    - ``cross_entropy``: mean ``-sum q log p`` against the vote distribution ``q`` over the
      model's classes (nats), on the same faces;
    - ``ece``: expected calibration error of the shown score (the top probability) against
      the share of all ten voters who chose that label (:func:`vote_share`), 15 bins.
    """
    from detector.training.evaluate import classification_metrics

    winner = majority(votes, classes)
    keep = winner >= 0
    probabilities, votes = probabilities[keep], votes[keep]
    predicted = probabilities.argmax(axis=1)
    metrics = classification_metrics(winner[keep], predicted, list(classes))
    target_share = vote_distribution_raw(votes, classes)
    cross_entropy = -(target_share * np.log(np.maximum(probabilities, 1e-12))).sum(axis=1).mean()
    shown = probabilities[np.arange(len(predicted)), predicted]
    people = vote_share(votes, classes)[np.arange(len(predicted)), predicted]
    return {"faces": int(keep.sum()), "majority_accuracy": metrics["accuracy"], "majority_macro_f1": metrics["macro_f1"],
            "majority_per_class": metrics["per_class"], "cross_entropy": float(cross_entropy),
            "ece": expected_calibration_error(shown, people), "mean_score": float(shown.mean()),
            "mean_vote_share": float(people.mean())}
