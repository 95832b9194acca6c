"""``main.py train``: one flag per :class:`TrainConfig` field, defaults from the dataclass.

Flags are generated from the dataclass fields, so a field added to ``TrainConfig``
is settable from the command line without touching this file (``HELP`` only adds
its explanation).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import logging
import typing
from pathlib import Path
from typing import Any, Callable, Sequence

from detector.errors import UserError
from detector.training.train import train
from detector.config import TrainConfig
from detector.training.ferplus import CONTEMPT_CHOICES, LABEL_SOURCES, has_votes, votes_path
from detector.training.data import require_data

log = logging.getLogger(__name__)

HELP = {
    "arch": "registered architecture (see --list)",
    "data": "FER2013 folder (train/ and val/ inside), fer2013.csv or packed .npz",
    "out": "run folder: checkpoints, history.csv, best.keras, saved_model/; an existing run resumes",
    "img_size": "square input side (default: the architecture's own)",
    "channels": "1 gray or 3 RGB (default: the architecture's own)",
    "learning_rate": "peak learning rate of the warm-up + cosine schedule (SGD, Nesterov)",
    "warmup_epochs": "epochs of linear learning-rate warm-up",
    "weight_decay": "SGD weight decay as in the papers and PyTorch (L2 through momentum), not Keras's decoupled one",
    "dropout_rate": "dropout before the classifier layers",
    "augment": "augmentation strength, 0 = off",
    "labels_from": "fer2013: FER2013's own label; ferplus: the ten FER+ votes (ferplus.csv beside the data), chosen on FER+ val majority; mix: both",
    "fer2013_weight": "with --labels-from mix: targets = (1 - W) * FER+ vote shares + W * FER2013's one-hot label",
    "contempt": "with --labels-from ferplus or mix: FER+'s contempt votes dropped, or counted as disgust (train targets only; val is judged with them dropped)",
    "camera_augment": "strength of camera-like augmentation (blur, noise, gamma, low light), 0 = off",
    "teacher": "soft targets (.npz) from python -m detector.training.distill: train a student on a teacher ensemble "
               "(with --labels-from ferplus: on the faces with a FER+ majority, checkpoints chosen on FER+ val majority)",
    "distill_weight": "with --teacher: targets = W * teacher + (1 - W) * one-hot label (FER2013's, or the FER+ majority)",
    "class_weight_power": "0 = no class re-weighting, 1 = full inverse frequency",
    "weights": "weights file to start from: ImageNet weights for the keras.applications backbones, or an earlier run's best.keras (fine-tuning, a new schedule)",
    "limit": "use only N train images (and N/4 val) for a smoke run; 0 = all",
    "verbose": "Keras progress: 1 bar, 2 one line per epoch",
    "export": "export saved_model/ (+ ONNX) after training; needs TensorFlow",
    "tta": "bake horizontal-flip test-time augmentation into the exported model",
    "extra": "JSON object of extra settings, recorded in config.json",
}
ALIASES = {"learning_rate": ["--lr"]}
CHOICES = {"channels": (1, 3), "verbose": (0, 1, 2), "labels_from": LABEL_SOURCES, "contempt": CONTEMPT_CHOICES}
POSITIVE = ("epochs", "batch_size", "learning_rate", "img_size")  # the rest may be 0, none negative


def _number(kind: type, minimum: float, strict: bool) -> Callable[[str], Any]:
    """argparse type that rejects values below ``minimum`` (or equal to it when ``strict``)."""
    def parse(text: str):
        value = kind(text)
        if value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(f"must be {'above' if strict else 'at least'} {minimum}, got {value}")
        return value

    return parse


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object, got {text!r}")
    return value


def _add_field(group: argparse._ArgumentGroup, field: dataclasses.Field, hint: Any, default: Any) -> None:
    flags = [f"--{field.name.replace('_', '-')}", *ALIASES.get(field.name, [])]
    base = next((arg for arg in typing.get_args(hint) if arg is not type(None)), hint)  # int | None -> int
    shown = "" if default is None or isinstance(default, dict) else f" (default: {default})"
    kwargs: dict[str, Any] = {"dest": field.name, "default": default, "help": HELP.get(field.name, field.name.replace("_", " ")) + shown}
    if base is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif base is dict:
        kwargs.update(type=_json_object, metavar="JSON")
    elif base in (int, float):
        kwargs.update(type=_number(base, 0, field.name in POSITIVE), metavar="N" if base is int else "X", choices=CHOICES.get(field.name))
    else:
        choices = CHOICES.get(field.name)
        kwargs.update(type=base, choices=choices, metavar=None if choices else field.name.split("_")[-1].upper())
    group.add_argument(*flags, **kwargs)


def train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="main.py train", description="Train a registered architecture on FER2013.")
    p.add_argument("--list", action="store_true", help="list the registered architectures and exit")
    group = p.add_argument_group("training (TrainConfig)")
    hints, defaults = typing.get_type_hints(TrainConfig), TrainConfig()
    for field in dataclasses.fields(TrainConfig):
        _add_field(group, field, hints[field.name], getattr(defaults, field.name))
    if not hasattr(defaults, "tta"):
        group.add_argument("--tta", action="store_true", help=HELP["tta"])
    return p


def architectures_text() -> str:
    from detector.training.models import architecture, list_architectures

    names = list_architectures()
    width = max(len(name) for name in names)
    return "\n".join(f"{name:<{width}}  {architecture(name).summary}" for name in names)


def _check(config: TrainConfig) -> None:
    """Fail at once, in one line, on what would otherwise fail after loading the data."""
    data = require_data(config.data)
    missing = [split for split in ("train", "val") if data.is_dir() and not (data / split).is_dir()]
    if missing:
        raise UserError(f"no {' or '.join(missing)} folder in {data}")
    if config.labels_from != "fer2013" and not has_votes(data):
        raise UserError(f"--labels-from {config.labels_from} needs the FER+ votes: {votes_path(data)} not found")
    if config.contempt != "drop" and config.labels_from == "fer2013":
        raise UserError(f"--contempt {config.contempt} handles FER+ votes: add --labels-from ferplus or mix")
    if config.contempt != "drop" and config.teacher:
        raise UserError(f"--teacher replaces the FER+ votes that --contempt {config.contempt} would change: choose one")
    if config.labels_from == "mix" and config.teacher:
        raise UserError("--teacher and --labels-from mix both set the soft targets: choose one")
    if not 0 <= config.fer2013_weight <= 1:
        raise UserError(f"--fer2013-weight must be between 0 and 1, got {config.fer2013_weight}")
    if config.teacher and not Path(config.teacher).is_file():
        raise UserError(f"soft targets not found: {config.teacher} (make them with python -m detector.training.distill)")
    if not 0 <= config.distill_weight <= 1:
        raise UserError(f"--distill-weight must be between 0 and 1, got {config.distill_weight}")
    if config.weights and not Path(config.weights).is_file():
        raise UserError(f"weights file not found: {config.weights}")
    if config.export:
        _check_export_dependencies()
    from detector.training.models import architecture  # imports TensorFlow: after the cheap checks

    try:
        architecture(config.arch)
    except ValueError as error:
        raise UserError(str(error)) from None


#: What the export after the last epoch imports (ONNX conversion, int8 quantization and its
#: shape inference): checked before the first epoch, never discovered after hours of training.
EXPORT_MODULES = ("tensorflow", "tf2onnx", "onnx", "onnxruntime.quantization", "onnxruntime.tools.symbolic_shape_infer")


def _check_export_dependencies() -> None:
    if importlib.util.find_spec("tensorflow") is None:  # a PyTorch-only GPU machine
        raise UserError("exporting needs TensorFlow, which is not installed here: train with --no-export, then run "
                        "python -m detector.training.export OUT/best.keras OUT/saved_model where it is")
    for module in EXPORT_MODULES:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise UserError(f"the export after training cannot import {module} ({error}): "
                            "python -m pip install -r requirements.txt, or train with --no-export") from None


def train_main(argv: Sequence[str]) -> int:
    """Parse, check, train; the run folder is printed so scripts can pick it up."""
    args = train_parser().parse_args(argv)
    if args.list:
        print(architectures_text())
        return 0
    config = TrainConfig(**{field.name: getattr(args, field.name) for field in dataclasses.fields(TrainConfig)})
    _check(config)
    log.info("training %s on %s into %s", config.arch, config.data, config.out)
    if getattr(args, "tta", False) and not hasattr(config, "tta"):
        print(_train_then_export_tta(config))
    else:
        print(train(config))
    return 0


def _train_then_export_tta(config: TrainConfig) -> Path:
    """``train`` exports without TTA (TrainConfig has no ``tta`` field), so export here instead."""
    from detector.model_card import LABELS_FILE, read_labels
    from detector.training.export import export_model

    out = train(dataclasses.replace(config, export=False, extra={**config.extra, "tta": "flip"}))
    if config.export:
        export_model(out / "best.keras", out / "saved_model", read_labels(out / LABELS_FILE), data=config.data, tta=True)
    return out
