"""Train one registered architecture on FER2013; resumable, logged, exportable.

The same code runs on TensorFlow (CPU here) and on the PyTorch backend on a GPU
machine (``KERAS_BACKEND=torch``): data are numpy arrays, augmentation is Keras
layers, and checkpoints are backend-neutral weight files, so a run can stop on one
machine and resume on another from ``OUT/backup``.
"""

from __future__ import annotations

import json
import logging
import math
import shlex
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from detector.config import TrainConfig
from detector.model_card import LABELS_FILE, write_labels

if TYPE_CHECKING:  # imported where it is used: the backend is chosen first (KERAS_BACKEND)
    import keras

RAW_WEIGHTS = "best.weights.h5"  # best raw weights on val (ModelCheckpoint)
EMA_WEIGHTS = "best_ema.weights.h5"  # best weight average on val (EmaValidation)
TRAIN_INFO_FILE = "train_info.json"  # the finished run's record; the export copies it into metrics.json

log = logging.getLogger(__name__)




def _accelerator() -> str | None:
    import keras

    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        return "cuda" if torch.cuda.is_available() else None
    if backend == "tensorflow":
        import tensorflow as tf

        return "gpu" if tf.config.list_physical_devices("GPU") else None
    return None


def _auto_precision(accelerator: str | None) -> str:
    """mixed_float16 on a GPU; mixed_bfloat16 on a CPU with bf16 instructions (AVX512-BF16 or
    AMX: faster than float32 for fer_vgg, docs/MODELS.md); float32 elsewhere."""
    if accelerator:
        return "mixed_float16"
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:  # not Linux: no cheap way to ask, and float32 is always right
        return "float32"
    return "mixed_bfloat16" if {"avx512_bf16", "amx_bf16"} & set(flags) else "float32"


def _to_input(images: np.ndarray) -> np.ndarray:
    return images[..., None] if images.ndim == 3 else images


def train(config: TrainConfig) -> Path:
    """Fit ``config.arch``; returns the output folder (with ``best.keras`` and, if
    ``config.export``, the exported ``saved_model/``)."""
    import keras

    from detector.training import data as fer
    from detector.training.models import architecture, create_model, training_model

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(config), indent=2))
    with (out / "commands.txt").open("a") as commands:  # every session of the run, resumes included
        commands.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')}  {shlex.join(sys.argv)}\n")
    resumed = (out / "backup").is_dir()  # BackupAndRestore's folder: an interrupted run of this config
    earlier = _history(out / "history.csv") if resumed else []
    keras.utils.set_random_seed(config.seed + len(earlier))  # a resumed epoch must not replay epoch 0's shuffle and augmentation
    accelerator = _accelerator()
    precision = config.precision if config.precision != "auto" else _auto_precision(accelerator)
    keras.mixed_precision.set_global_policy(precision)
    log.info("backend %s, accelerator %s, precision %s", keras.backend.backend(), accelerator or "none (CPU)", precision)

    train_split, val_split = _splits(config)
    classes = train_split.classes
    spec = architecture(config.arch)
    size = config.img_size or spec.input_shape[0]
    shape = (size, size, config.channels or spec.input_shape[2])

    core = create_model(config.arch, len(classes), shape, config.weights, config.dropout_rate)
    model = training_model(core, _to_input(train_split.images).shape[1:], config.augment, config.camera_augment)
    steps_per_epoch = math.ceil(len(train_split) / config.batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=config.learning_rate / 25,
        warmup_target=config.learning_rate,
        warmup_steps=config.warmup_epochs * steps_per_epoch,
        decay_steps=max(1, (config.epochs - config.warmup_epochs) * steps_per_epoch),
    )
    model.compile(
        optimizer=sgd(config, schedule),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=["accuracy"],
    )
    clock = _TrainClock(out / "train_time.json", resumed)
    one_hot = np.eye(len(classes), dtype="float32")
    val = (_to_input(val_split.images), one_hot[val_split.labels])
    callbacks = _callbacks(config, out, model, train_split, val, resumed, earlier, clock)
    weights = fer.class_weights(train_split.labels, len(classes), config.class_weight_power) if config.class_weight_power else None
    model.fit(
        _to_input(train_split.images),
        _targets(train_split, one_hot, config.distill_weight if config.teacher else 1.0),
        validation_data=val,
        epochs=config.epochs,
        batch_size=config.batch_size,
        class_weight=weights,
        callbacks=callbacks,
        verbose=config.verbose,
    )
    chosen = _choose_weights(out / "history.csv", bool(config.ema_momentum))
    model.load_weights(str(out / (EMA_WEIGHTS if chosen["weights"] == "ema" else RAW_WEIGHTS)))
    core.save(out / "best.keras")
    write_labels(out / LABELS_FILE, classes)
    data = {"path": str(Path(config.data).resolve()), "labels_from": config.labels_from, "contempt": config.contempt,
            "train_images": len(train_split), "val_images": len(val_split)}
    info = {"arch": config.arch, **chosen, "data": data, "train_minutes": round(clock.minutes, 1),
            "train_minutes_this_session": round(clock.minutes_this_session, 1), "hardware": _hardware(accelerator)}
    (out / TRAIN_INFO_FILE).write_text(json.dumps(info, indent=2))
    if config.export:
        from detector.training.export import export_model

        export_model(out / "best.keras", out / "saved_model", classes, data=config.data)
    return out


MOMENTUM = 0.9


def sgd(config: TrainConfig, learning_rate) -> "keras.optimizers.SGD":
    """SGD with Nesterov momentum whose weight decay means what it means in the papers.

    The papers' (and PyTorch's) SGD weight decay adds ``wd * w`` to the gradient, so it
    goes through momentum and shrinks weights by ``lr * wd / (1 - momentum)`` a step once
    momentum has built up. Keras applies its ``weight_decay`` outside momentum (``w -= lr *
    wd * w``, as AdamW does), which at momentum 0.9 is ten times weaker for the same number.
    ``config.weight_decay`` is the papers' figure, handed to Keras as ``wd / (1 - momentum)``.
    """
    import keras

    return keras.optimizers.SGD(learning_rate, momentum=MOMENTUM, nesterov=True,
                                weight_decay=config.weight_decay / (1 - MOMENTUM),
                                use_ema=config.ema_momentum > 0, ema_momentum=config.ema_momentum or 0.99)


def _splits(config: TrainConfig):
    """Train and val splits, cut to ``config.limit`` for a smoke run. With ``--labels-from
    ferplus|mix`` both carry FER+ labels (majority as ``labels``, votes as soft targets); with
    ``--teacher`` the train split carries the teacher's probabilities (in place of the votes)."""
    from detector.training import data as fer

    from detector.training.ferplus import relabel

    train_split = relabel(fer.load_split(config.data, "train"), config.data, config.labels_from, config.fer2013_weight,
                          config.contempt)
    if config.teacher:
        from detector.training.distill import load_soft_targets

        train_split = replace(train_split, soft_targets=load_soft_targets(config.teacher, train_split))
    # checkpoints are chosen on what the run learns from: FER+ val majority when it learns from the votes
    # (contempt dropped, as the judge counts it, whatever the train targets did with it)
    val_split = relabel(fer.load_split(config.data, "val"), config.data, config.labels_from, config.fer2013_weight)
    if config.limit:
        train_split, val_split = train_split.subset(config.limit), val_split.subset(max(config.limit // 4, 64))
    return train_split, val_split


def _callbacks(config: TrainConfig, out: Path, model, train_split, val: tuple[np.ndarray, np.ndarray],
               resumed: bool, earlier: list[dict[str, str]], clock: "_TrainClock") -> list:
    """What runs after each epoch, in this order: the weight average judged (it adds a metric
    the later ones log), training minutes, the learning rate, the backup, the best raw
    weights, the history row. ``resumed``: an interrupted run goes on; ``earlier``: the rows of
    the epochs it did."""
    import keras

    from detector.training.ema import BN_BATCHES, EMA_METRIC, EmaValidation

    # the faces the average's batch-norm statistics are re-estimated on: a random draw, only as many as it uses
    draw = np.random.default_rng(config.seed).permutation(len(train_split))[: BN_BATCHES * config.batch_size]
    shuffled = _to_input(train_split.images[draw])
    ema = [EmaValidation(shuffled, *val, out / EMA_WEIGHTS, _best(earlier, EMA_METRIC), config.batch_size)] if config.ema_momentum else []
    return [
        *ema,
        keras.callbacks.LambdaCallback(on_epoch_end=clock.save),
        keras.callbacks.LambdaCallback(on_epoch_end=lambda _, logs: logs.update(learning_rate=float(model.optimizer.learning_rate))),
        keras.callbacks.BackupAndRestore(str(out / "backup")),
        keras.callbacks.ModelCheckpoint(str(out / RAW_WEIGHTS), monitor="val_accuracy", save_best_only=True, save_weights_only=True,
                                        initial_value_threshold=_best(earlier, "val_accuracy")),
        keras.callbacks.CSVLogger(str(out / "history.csv"), append=resumed),  # a fresh run starts a fresh log
    ]


class _TrainClock:
    """Training minutes of a run over all its sessions: a resumed run adds to what its
    earlier sessions recorded (an interrupted epoch's minutes are lost with the epoch)."""

    def __init__(self, path: Path, resumed: bool):
        self.path = path
        self.before = json.loads(path.read_text())["minutes"] if resumed and path.is_file() else 0.0
        self.started = time.perf_counter()

    @property
    def minutes_this_session(self) -> float:
        return (time.perf_counter() - self.started) / 60

    @property
    def minutes(self) -> float:
        return self.before + self.minutes_this_session

    def save(self, *_) -> None:
        self.path.write_text(json.dumps({"minutes": round(self.minutes, 2)}))


def _targets(split, one_hot: np.ndarray, distill_weight: float) -> np.ndarray:
    """One-hot labels, mixed with the soft targets (a teacher's or the FER+ votes) where the split has them."""
    hard = one_hot[split.labels]
    if split.soft_targets is None:
        return hard
    return (distill_weight * split.soft_targets + (1 - distill_weight) * hard).astype("float32")


def _best(history: list[dict[str, str]], metric: str) -> float | None:
    values = [float(row[metric]) for row in history if row.get(metric)]
    return max(values, default=None)


def _choose_weights(history_csv: Path, ema: bool) -> dict:
    """The raw or the averaged weights, whichever reached the higher val accuracy, and when."""
    from detector.training.ema import EMA_METRIC

    history = _history(history_csv)
    candidates = [("raw", "val_accuracy")] + ([("ema", EMA_METRIC)] if ema else [])
    scored = [(best, name, metric) for name, metric in candidates if (best := _best(history, metric)) is not None]
    accuracy, name, metric = max(scored)
    epoch = next(i + 1 for i, row in enumerate(history) if row.get(metric) and float(row[metric]) == accuracy)
    return {"weights": name, "val_accuracy": round(accuracy, 4), "best_epoch": epoch, "epochs_run": len(history)}


def _history(path: Path) -> list[dict[str, str]]:
    """The epochs an interrupted run has finished (CSVLogger rows, written after each backup)."""
    import csv

    if not path.is_file():
        return []
    with path.open() as handle:
        return [row for row in csv.DictReader(handle) if row.get("val_accuracy")]


def _hardware(accelerator: str | None) -> str:
    import os
    import platform

    if accelerator == "cuda":
        import torch

        return torch.cuda.get_device_name(0)
    if accelerator == "gpu":
        import tensorflow as tf

        details = tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0])
        return details.get("device_name", "GPU")
    return f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores"
