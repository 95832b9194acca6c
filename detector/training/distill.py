"""Soft targets for distillation: several models averaged as a teacher, computed once.

    python -m detector.training.distill runs/a/best.keras runs/b/saved_model --out runs/teacher.npz
    python main.py train ... --teacher runs/teacher.npz --distill-weight 0.7

Each teacher is loaded the way the app loads a model (:class:`EmotionClassifier`: any
folder, ``.keras`` or ``.onnx``, labels matched to FER2013's classes by name), run on
every train face and its mirror image (flip TTA), and the teachers' probabilities are
averaged. The result is cached with the train faces' paths, so ``train`` can check that
row *i* is still face *i* before it mixes ``distill_weight * teacher + (1 - weight) *
one-hot`` into the targets. Method: Hinton, Vinyals & Dean (2015), "Distilling the
Knowledge in a Neural Network", at temperature 1 with cached targets.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from detector.errors import UserError, run_tool
from detector.paths import DEFAULT_DATA_DIR
from detector.training.data import Split, class_mapping, load_split

log = logging.getLogger(__name__)

BATCH = 256


def teacher_probabilities(model: str, split: Split) -> np.ndarray:
    """``(N, C)`` float32 probabilities of one model on ``split``'s faces and their mirror
    images, averaged, columns in ``split.classes`` order."""
    from detector.classifier import EmotionClassifier
    from detector.config import ModelConfig

    classifier = EmotionClassifier(ModelConfig(model))
    columns = class_mapping(split.classes, classifier.labels)  # data class i -> model column
    total = np.zeros((len(split), len(split.classes)), dtype=np.float64)
    for images in (split.images, split.images[:, :, ::-1]):
        for start in range(0, len(split), BATCH):
            probs = classifier.predict_crops(list(images[start : start + BATCH]))
            total[start : start + BATCH] += probs[:, columns]
    log.info("teacher %s: train accuracy %.4f", model, float((total.argmax(1) == split.labels).mean()))
    return (total / 2).astype(np.float32)


def write_soft_targets(models: Sequence[str], data: str, out: Path) -> Path:
    """Average of ``models`` on the train split of ``data``, saved to ``out`` (``.npz``)."""
    split = load_split(data, "train")
    if not split.paths:
        raise UserError("soft targets need a folder tree of FER2013 (image paths identify the faces)")
    targets = np.mean([teacher_probabilities(model, split) for model in models], axis=0)
    np.savez_compressed(out, targets=targets.astype(np.float32), paths=np.asarray(split.paths),
                        classes=np.asarray(split.classes), teachers=np.asarray([str(m) for m in models]))
    log.info("soft targets of %d teacher(s): train accuracy %.4f -> %s", len(models),
             float((targets.argmax(1) == split.labels).mean()), out)
    return out


def load_soft_targets(path: str | Path, split: Split) -> np.ndarray:
    """The cached ``(N, C)`` targets for ``split``'s faces, matched by image path (the cache
    covers every train face; ``--labels-from ferplus`` trains on the faces with a FER+ majority).

    Raises:
        UserError: the file is missing, lacks one of ``split``'s faces, or has other classes.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"soft targets not found: {path} (make them with python -m detector.training.distill)")
    with np.load(path) as cached:
        row = {face: i for i, face in enumerate(cached["paths"].tolist())}
        if tuple(cached["classes"]) != tuple(split.classes) or any(face not in row for face in split.paths):
            raise UserError(f"{path} was made from other train faces or classes than the {len(split)} faces here: make it again")
        return cached["targets"][[row[face] for face in split.paths]]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m detector.training.distill", description=__doc__.split("\n")[0])
    p.add_argument("models", nargs="+", help="teacher models: folders, .keras or .onnx files")
    p.add_argument("--data", default=DEFAULT_DATA_DIR, help="FER2013 folder tree (default: $FER2013_DIR, else %(default)s)")
    p.add_argument("--out", required=True, help="the .npz to write")
    args = p.parse_args(argv)
    return run_tool(lambda: print(write_soft_targets(args.models, args.data, Path(args.out))))


if __name__ == "__main__":
    sys.exit(main())
