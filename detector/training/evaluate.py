"""Evaluate a model folder on a FER2013 split, exactly as the app loads and feeds it.

The data set's images are already face crops, so they go straight to
:meth:`EmotionClassifier.predict_crops` (no face detection): the accuracy reported
here is the accuracy the app gets from the same model, preprocessing and backend.
Class names are matched by name, since a model's ``labels.txt`` may be in any order.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np

from detector.classifier import EmotionClassifier
from detector.model_card import METRICS_FILE
from detector.outputs import write_atomic
from detector.config import ModelConfig
from detector.errors import UserError
from detector import flags
from detector.paths import DEFAULT_DATA_DIR
from detector.training.data import SPLITS, Split, class_mapping, load_split

log = logging.getLogger(__name__)

BATCH1_FACES = 64  # single-face calls timed for ms_per_face_batch1; the median settles well before this


def load_eval_split(data: str | Path, split: str, limit: int = 0) -> Split:
    """``split`` of ``data``, with the loader's errors turned into one-line user errors."""
    try:
        loaded = load_split(data, split)
    except (FileNotFoundError, ValueError) as error:
        raise UserError(str(error)) from None
    except KeyError:  # a packed .npz without this split
        raise UserError(f"no '{split}' split in {data}") from None
    return loaded.subset(limit) if limit else loaded


def confusion_matrix(true: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts with rows = true class, columns = predicted class."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(true, np.int64), np.asarray(predicted, np.int64)), 1)
    return matrix


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Elementwise division that gives 0 where the denominator is 0 (sklearn's zero_division=0)."""
    out = np.zeros(numerator.shape, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def classification_metrics(true: np.ndarray, predicted: np.ndarray, labels: Sequence[str]) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix.

    Macro-F1 averages over the classes that occur in ``true``: a model label the data
    set lacks has no recall to speak of, and its false positives already cost the
    other classes' recall.
    """
    matrix = confusion_matrix(true, predicted, len(labels))
    hits = np.diag(matrix).astype(np.float64)
    support, predicted_count = matrix.sum(axis=1), matrix.sum(axis=0)
    precision, recall = _ratio(hits, predicted_count), _ratio(hits, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    present = support > 0
    per_class = {
        name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]), "support": int(support[i])}
        for i, name in enumerate(labels)
    }
    return {
        "accuracy": float(hits.sum() / max(matrix.sum(), 1)),
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_class": per_class,
        "labels": list(labels),
        "confusion_matrix": matrix.tolist(),
    }


def _timed_predict(classifier: EmotionClassifier, crops: list[np.ndarray]) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    probabilities = classifier.predict_crops(crops)
    return probabilities, time.perf_counter() - started


def predict_split(classifier: EmotionClassifier, images: np.ndarray, batch_size: int) -> tuple[np.ndarray, float, float]:
    """``(N, C)`` probabilities (model-label columns, calibrated as the app shows them), and
    median ms per face at ``batch_size`` and at batch 1.

    Times cover all of ``predict_crops`` (resize + inference), as the app pays it. One
    untimed warm-up call per batch shape first, so graph tracing and allocator growth
    do not count as inference time.
    """
    crops = list(images)  # 2-D gray arrays, as predict_crops accepts
    classifier.predict_crops(crops[:batch_size])
    predictions, per_face = [], []
    for start in range(0, len(crops), batch_size):
        probabilities, seconds = _timed_predict(classifier, crops[start : start + batch_size])
        predictions.append(probabilities)
        per_face.append(seconds / len(probabilities))
    classifier.predict_crops(crops[:1])
    single = [_timed_predict(classifier, [crop])[1] for crop in crops[:BATCH1_FACES]]
    return np.concatenate(predictions), 1000 * statistics.median(per_face), 1000 * statistics.median(single)


def evaluate(model_config: ModelConfig, data: str, split: str = "test", batch_size: int = 256, limit: int = 0,
             photos: str | None = None) -> dict:
    """Metrics of the model in ``model_config`` on ``split`` of ``data`` (all images, or ``limit``):
    FER2013's labels at the top level; ``ferplus`` (agreement with the ten FER+ votes, see
    :func:`detector.training.ferplus.agreement`) where ``data`` has ``ferplus.csv``; and, with
    ``photos`` (a ``<class>/<file>`` folder), ``photos.end_to_end`` and ``photos.whole_image``."""
    from detector.training import ferplus, photos as labelled_photos

    if batch_size < 1:
        raise UserError(f"batch size must be at least 1, got {batch_size}")
    dataset = load_eval_split(data, split, limit)
    classifier = EmotionClassifier(model_config)
    to_model = class_mapping(dataset.classes, classifier.labels)
    log.info("evaluating %s on %d %s images (%s backend)", classifier.path, len(dataset), split, classifier.backend.name)
    probabilities, ms_per_face, ms_batch1 = predict_split(classifier, dataset.images, batch_size)
    results = classification_metrics(to_model[dataset.labels], probabilities.argmax(axis=1), classifier.labels)
    if ferplus.has_votes(data) and dataset.paths:
        results["ferplus"] = ferplus.agreement(probabilities, ferplus.split_votes(data, dataset.paths), classifier.labels)
    if photos:
        results["photos"] = {mode: labelled_photos.evaluate_photos(classifier, photos, whole)
                             for mode, whole in (("end_to_end", "auto"), ("whole_image", "always"))}
    results.update(
        images=len(dataset),
        split=split,
        data=str(data),
        model=str(classifier.path),
        model_file=classifier.model_file.name,
        backend=classifier.backend.name,
        batch_size=batch_size,
        limit=limit,
        ms_per_face=round(ms_per_face, 4),
        ms_per_face_batch1=round(ms_batch1, 4),
        timestamp=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    return results


def format_table(results: dict) -> str:
    """Per-class rows, then accuracy and macro-F1: what a person reads in the terminal."""
    width = max(10, *(len(name) for name in results["labels"]))
    lines = [f"{results['model']} on {results['split']} ({results['images']} images, {results['backend']} backend, "
             f"{results['model_file']})",
             f"{'class':<{width}}  precision  recall     f1  support"]
    for name, row in results["per_class"].items():
        lines.append(f"{name:<{width}}  {row['precision']:9.3f}  {row['recall']:6.3f}  {row['f1']:5.3f}  {row['support']:7d}")
    lines += [f"{'accuracy':<{width}}  {results['accuracy']:.4f}  (FER2013 labels)",
              f"{'macro-F1':<{width}}  {results['macro_f1']:.4f}",
              f"{'ms/face':<{width}}  {results['ms_per_face']:.3f} at batch {results['batch_size']}, "
              f"{results['ms_per_face_batch1']:.3f} at batch 1"]
    if "ferplus" in results:
        crowd = results["ferplus"]
        lines += [f"FER+ majority ({crowd['faces']} faces): accuracy {crowd['majority_accuracy']:.4f}, "
                  f"macro-F1 {crowd['majority_macro_f1']:.4f}; cross-entropy vs votes {crowd['cross_entropy']:.4f}; "
                  f"ECE vs vote share {crowd['ece']:.4f}"]
    for mode, row in results.get("photos", {}).items():
        recalls = ", ".join(f"{name} {value:.2f}" for name, value in row["recall"].items())
        lines += [f"photos {mode.replace('_', ' ')} ({row['photos']}): accuracy {row['accuracy']:.4f}, balanced accuracy "
                  f"{row['balanced_accuracy']:.4f}, no face {row['no_face']:.1%}; recall {recalls}"]
    return "\n".join(lines)


def markdown(results: dict) -> str:
    """Per-class precision, recall, F1 and support as a markdown table (docs/MODELS.md)."""
    rows = ["| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    rows += [f"| {name} | {row['precision']:.3f} | {row['recall']:.3f} | {row['f1']:.3f} | {row['support']} |"
             for name, row in results["per_class"].items()]
    return "\n".join(rows)


def plot_confusion(results: dict, path: str | Path) -> None:
    """Row-normalised confusion matrix PNG: each cell shows its % of the true class and its count."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # no pyplot: no GUI backend, no global state
    from matplotlib.figure import Figure

    counts = np.asarray(results["confusion_matrix"], dtype=np.int64)
    labels = results["labels"]
    percent = 100 * counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = 1.1 + 0.9 * len(labels)
    figure = Figure(figsize=(size + 1.5, size + 0.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    image = axes.imshow(percent, cmap="Blues", vmin=0, vmax=100)
    figure.colorbar(image, ax=axes, label="% of true class", shrink=0.8)
    for (row, column), value in np.ndenumerate(percent):
        axes.text(column, row, f"{value:.0f}%\n{counts[row, column]}", ha="center", va="center", fontsize=8,
                  color="white" if value > 55 else "black")
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    model = "/".join(Path(results["model"]).parts[-2:])  # "run/saved_model" says more than "saved_model"
    axes.set_title(f"{model} on {results['split']}: accuracy {results['accuracy']:.1%}, "
                   f"macro-F1 {results['macro_f1']:.3f}\n({results['images']} images)", fontsize=10)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)


def _write_json(path: Path, payload: dict) -> None:
    """Write via a temporary file, so an interrupted run never leaves half a JSON file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(payload, indent=2) + "\n")


def merge_into_model_metrics(model_dir: Path, results: dict) -> Path:
    """Add ``results`` under ``evaluation_<split>`` in the model's metrics.json, keeping its other keys."""
    path = model_dir / METRICS_FILE
    try:
        metrics = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError) as error:
        raise UserError(f"cannot update {path}: {error}") from None
    if not isinstance(metrics, dict):
        raise UserError(f"cannot update {path}: it does not hold a JSON object")
    metrics[f"evaluation_{results['split']}"] = results
    _write_json(path, metrics)
    return path


def _int_at_least(minimum: int):
    """argparse type: an int no smaller than ``minimum``."""
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {minimum} or more, got {value}")
        return value

    return parse


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="main.py evaluate", description=__doc__.split("\n")[0])
    flags.add_model_flags(p)
    p.add_argument("--data", metavar="PATH", default=DEFAULT_DATA_DIR,
                   help=f"FER2013 folder, fer2013.csv or packed .npz (default: $FER2013_DIR, else {DEFAULT_DATA_DIR})")
    p.add_argument("--split", choices=SPLITS, default="test", help="default: test")
    p.add_argument("--limit", metavar="N", type=_int_at_least(0), default=0, help="evaluate a random N-image subset (default: all)")
    p.add_argument("--batch-size", metavar="N", type=_int_at_least(1), default=256, help="default: 256")
    p.add_argument("--photos", metavar="DIR", help="also judge a folder of labelled photos laid out DIR/<class>/<file> "
                   "(e.g. ../shared/wild-dev), end to end and whole-image (default: none)")
    p.add_argument("--json", metavar="PATH", help="write all metrics to this JSON file (default: none)")
    p.add_argument("--confusion", metavar="PNG", help="write the confusion matrix to this PNG file (default: none)")
    p.add_argument("--write-metrics", action="store_true", help="also merge the results into MODEL/metrics.json as evaluation_<split>")
    return p


def evaluate_main(argv: Sequence[str]) -> int:
    """``main.py evaluate``: table on stdout, optional JSON/PNG, optional merge into the model's metrics."""
    args = _parser().parse_args(argv)
    if args.write_metrics and not Path(args.model).is_dir():
        raise UserError(f"--write-metrics needs a model folder, got {args.model}")
    results = evaluate(flags.model_config(args), args.data, args.split, args.batch_size, args.limit, args.photos)
    print(format_table(results))
    try:
        _write_outputs(args, results)
    except OSError as error:
        raise UserError(f"cannot write {error.filename or 'output'}: {error.strerror or error}") from None
    return 0


def _write_outputs(args: argparse.Namespace, results: dict) -> None:
    if args.json:
        _write_json(Path(args.json), results)
        log.info("metrics written to %s", args.json)
    if args.confusion:
        plot_confusion(results, args.confusion)
        log.info("confusion matrix written to %s", args.confusion)
    if args.write_metrics:
        merged = merge_into_model_metrics(Path(args.model), results)
        log.info("results merged into %s", merged)
