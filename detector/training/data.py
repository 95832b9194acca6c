"""FER2013 loading: the per-class folder layout, Kaggle's ``fer2013.csv``, or a packed archive.

Everything is decoded once into uint8 arrays (the whole data set is ~83 MB), which
keeps the input pipeline backend-agnostic: the same arrays feed Keras on TensorFlow
here and on PyTorch on a GPU machine that has no TensorFlow.
"""

from __future__ import annotations

import csv
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from detector.errors import UserError
from detector.labels import FER2013_LABELS
from detector.sources import IMAGE_SUFFIXES

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")

#: Kaggle's ``Usage`` column -> our split names (val = PublicTest, test = PrivateTest).
CSV_USAGE = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # (N, H, W) uint8 grayscale
    labels: np.ndarray  # (N,) int64 class indices into ``classes``
    classes: tuple[str, ...]
    paths: tuple[str, ...] = ()
    soft_targets: np.ndarray | None = None  # (N, C) float32 teacher probabilities, for distillation

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, count: int, seed: int = 0) -> "Split":
        """A stratified-enough random subset, for smoke runs."""
        if count >= len(self):
            return self
        index = np.random.default_rng(seed).permutation(len(self))[:count]
        paths = tuple(self.paths[i] for i in index) if self.paths else ()
        soft = None if self.soft_targets is None else self.soft_targets[index]
        return Split(self.images[index], self.labels[index], self.classes, paths, soft)


def folder_classes(split_dir: Path) -> tuple[str, ...]:
    """Class folders in FER2013's order when they are FER2013's classes, else sorted."""
    names = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    if set(names) == set(FER2013_LABELS):
        return FER2013_LABELS
    return tuple(names)


def _read_gray(path: str) -> np.ndarray:
    import cv2

    image = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise ValueError(f"cannot decode image: {path}")
    return image


def load_folder_split(root: Path, split: str, classes: tuple[str, ...] | None = None) -> Split:
    split_dir = root / split
    if not split_dir.is_dir():
        raise FileNotFoundError(f"no '{split}' folder in {root}")
    classes = classes or folder_classes(split_dir)
    paths: list[str] = []
    labels: list[int] = []
    for index, name in enumerate(classes):
        class_dir = split_dir / name
        files = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if class_dir.is_dir() else []
        paths += [str(p) for p in files]
        labels += [index] * len(files)
    if not paths:
        raise FileNotFoundError(f"no images under {split_dir}/<class>/")
    with ThreadPoolExecutor() as pool:
        images = list(pool.map(_read_gray, paths, chunksize=256))
    return Split(np.stack(images), np.asarray(labels, dtype=np.int64), tuple(classes), tuple(paths))


def load_csv_split(csv_path: Path, split: str) -> Split:
    """Kaggle's ``emotion,pixels,Usage`` file; rows are 48x48 space-separated pixels."""
    images, labels = [], []
    with csv_path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            if CSV_USAGE.get(row["Usage"]) != split:
                continue
            pixels = np.asarray(row["pixels"].split(), dtype=np.uint8)
            side = int(round(len(pixels) ** 0.5))
            images.append(pixels.reshape(side, side))
            labels.append(int(row["emotion"]))
    if not images:
        raise FileNotFoundError(f"no '{split}' rows in {csv_path}")
    return Split(np.stack(images), np.asarray(labels, dtype=np.int64), FER2013_LABELS)


def pack(root: Path, out: Path) -> None:
    """Write all splits to one compressed ``.npz`` so a run can move to another machine."""
    arrays = {}
    for split in SPLITS:
        data = load_split(root, split)
        arrays[f"{split}_images"] = data.images
        arrays[f"{split}_labels"] = data.labels
        arrays["classes"] = np.asarray(data.classes)
    np.savez_compressed(out, **arrays)


def load_packed_split(archive: Path, split: str) -> Split:
    with np.load(archive) as data:
        classes = tuple(str(c) for c in data["classes"])
        return Split(data[f"{split}_images"], data[f"{split}_labels"].astype(np.int64), classes)


def require_data(source: str | Path) -> Path:
    """``source`` as a Path, or one line for the user if it is not there.

    Raises:
        UserError: ``source`` does not exist.
    """
    source = Path(source)
    if not source.exists():
        raise UserError(f"data not found: {source} (give --data a FER2013 folder, fer2013.csv or packed .npz)")
    return source


def load_split(source: str | Path, split: str) -> Split:
    """Load ``split`` from a folder tree, ``fer2013.csv``, or an archive made by :func:`pack`."""
    source = require_data(source)
    if source.suffix == ".csv":
        return load_csv_split(source, split)
    if source.suffix == ".npz":
        return load_packed_split(source, split)
    return load_folder_split(source, split)


def class_mapping(data_classes: Sequence[str], model_labels: Sequence[str]) -> np.ndarray:
    """Index in ``model_labels`` of each data set class, matched by (case-insensitive) name."""
    index = {name.strip().casefold(): i for i, name in enumerate(model_labels)}
    unknown = [name for name in data_classes if name.strip().casefold() not in index]
    if unknown:
        raise UserError(f"the model does not know the data set's class(es) {', '.join(unknown)}; "
                        f"its labels are {', '.join(model_labels)}")
    return np.asarray([index[name.strip().casefold()] for name in data_classes], dtype=np.int64)


def class_weights(labels: np.ndarray, num_classes: int, power: float = 0.5) -> dict[int, float]:
    """Inverse-frequency weights softened by ``power`` (0.5 = square root), mean 1.

    Full inverse frequency over-corrects for disgust (1.5% of train) and costs
    accuracy on the common classes; the square root is a middle ground.
    """
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    weights = (counts.max() / np.maximum(counts, 1)) ** power
    weights *= num_classes / weights.sum()
    return {i: float(w) for i, w in enumerate(weights)}


if __name__ == "__main__":  # python -m detector.training.data ROOT OUT.npz
    import sys

    pack(Path(sys.argv[1]), Path(sys.argv[2]))
