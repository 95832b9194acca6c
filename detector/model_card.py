"""The model card: one typed description of a model folder, read and written here only.

A model folder describes itself (timm's ``PretrainedCfg`` idea, travelling with the weights):
``model.json`` holds the input shape and pixel scale, what the outputs are, the test-time
augmentation and ensemble baked into the graph, and the calibration of its scores;
``labels.txt`` the class names in output order. The export writes a :class:`ModelCard`
with :func:`write_card`; the classifier, Ray, batch resume and the server's ``/model`` read
one with :func:`read_card`. Nothing else opens those two files. The model files themselves
(``model.onnx``...) are the backends' (``detector.backends.BACKENDS``).

An unknown key in ``model.json`` is an error, not ignored: a misspelt ``"input_sacle"``
would otherwise leave the model silently fed the wrong pixel scale.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from detector.calibration import METHOD
from detector.errors import ModelError

MODEL_CARD_FILE = "model.json"
LABELS_FILE = "labels.txt"
METRICS_FILE = "metrics.json"  # how the export measured the model (docs_numbers reads it); not part of the card
#: ``"outputs"``: what the model's output rows are. Declared by the export, so the app never
#: infers it from the numbers (a row of logits can sum to 1 by chance).
OUTPUT_KINDS = ("probabilities", "logits")
TTA_KINDS = ("flip",)  # test-time augmentation baked into the graph: "flip" = the mean over the face and its mirror
CALIBRATION_METHODS = (METHOD,)  # detector.calibration applies them


@dataclass(frozen=True)
class Calibration:
    """How the model's scores were calibrated: ``temperature`` divides the logits by
    ``temperature`` (Guo et al. 2017, "On Calibration of Modern Neural Networks"), fitted on
    ``fitted_on`` (e.g. ``"FER2013 val"``), so a score is the share of such faces people label so."""

    method: str
    temperature: float
    fitted_on: str

    def __post_init__(self) -> None:
        if self.method not in CALIBRATION_METHODS:
            raise ValueError(f'"calibration.method" must be one of {", ".join(CALIBRATION_METHODS)}, got {self.method!r}')
        if isinstance(self.temperature, bool) or not isinstance(self.temperature, (int, float)) \
                or not math.isfinite(self.temperature) or self.temperature <= 0:
            raise ValueError(f'"calibration.temperature" must be a finite number above 0, got {self.temperature!r}')
        if not isinstance(self.fitted_on, str) or not self.fitted_on.strip():
            raise ValueError('"calibration.fitted_on" must say what it was fitted on, e.g. "FER2013 val"')


@dataclass(frozen=True)
class ModelCard:
    """What a model folder says about itself.

    ``labels``: class names in output order (``labels.txt``; None: the folder has none).
    ``input_shape``: ``(height, width, channels)``, channels 1 (gray) or 3 (RGB); None where the
    model's own signature is to say. ``input_scale``: the pixel value the model treats as white
    (255 raw, or 1.0). ``outputs``: ``"probabilities"``, ``"logits"``, or None (undeclared:
    told apart by row sums, with a warning). ``tta``: ``"flip"`` or None. ``arch``: the
    architecture's registry name. ``members``: networks averaged in the graph (an ensemble).

    Raises:
        ValueError: a field of the wrong type or out of range (:func:`read_card` turns it into a ModelError).
    """

    labels: tuple[str, ...] | None = None
    input_shape: tuple[int, int, int] | None = None
    input_scale: float = 255.0
    outputs: str | None = None
    tta: str | None = None
    arch: str | None = None
    members: int = 1
    calibration: Calibration | None = None

    def __post_init__(self) -> None:
        if self.labels is not None:
            labels = tuple(self.labels)
            if not labels or len(set(labels)) != len(labels) or any(not isinstance(n, str) or not n.strip() or "\n" in n for n in labels):
                raise ValueError(f"class names must be distinct non-empty one-line names, got {list(labels)}")
            object.__setattr__(self, "labels", labels)
        if self.input_shape is not None:
            shape = tuple(self.input_shape)
            if len(shape) != 3 or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape) or shape[2] not in (1, 3):
                raise ValueError(f'"input_shape" must be [height, width, channels] with channels 1 or 3, got {list(shape)}')
            object.__setattr__(self, "input_shape", shape)
        if self.input_scale not in (1.0, 255.0) or isinstance(self.input_scale, bool):
            raise ValueError(f'"input_scale" must be 255 (raw pixels) or 1 (0-1 input), got {self.input_scale!r}')
        object.__setattr__(self, "input_scale", float(self.input_scale))
        if self.outputs not in (None, *OUTPUT_KINDS):
            raise ValueError(f'"outputs" must be one of {", ".join(OUTPUT_KINDS)}, got {self.outputs!r}')
        if self.tta not in (None, *TTA_KINDS):
            raise ValueError(f'"tta" must be one of {", ".join(TTA_KINDS)} or null, got {self.tta!r}')
        if self.arch is not None and not isinstance(self.arch, str):
            raise ValueError(f'"arch" must be a name, got {self.arch!r}')
        if isinstance(self.members, bool) or not isinstance(self.members, int) or self.members < 1:
            raise ValueError(f'"members" must be 1 or more, got {self.members!r}')
        if isinstance(self.calibration, dict):
            object.__setattr__(self, "calibration", Calibration(**self.calibration))

    def to_json(self) -> dict[str, Any]:
        """``model.json``'s object: every field but ``labels`` (those are ``labels.txt``);
        ``members`` only for an ensemble and ``calibration`` only when there is one, as the export wrote them."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "labels"}
        data["input_shape"] = list(self.input_shape) if self.input_shape is not None else None
        data["calibration"] = asdict(self.calibration) if self.calibration is not None else None
        return {key: value for key, value in data.items()
                if not (key == "members" and value == 1) and not (key in ("calibration", "input_shape") and value is None)}


    def describe(self) -> dict[str, Any]:
        """The whole card as one JSON-able object: ``labels`` and ``model.json``'s fields (``/model``, batch resume)."""
        return {"labels": list(self.labels) if self.labels is not None else None, **self.to_json()}


CARD_KEYS = tuple(f.name for f in fields(ModelCard) if f.name != "labels")


def read_labels(path: Path) -> list[str]:
    """One class name per line of a ``labels.txt``; blank lines are ignored."""
    return [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def write_labels(path: Path, labels: list[str] | tuple[str, ...]) -> None:
    """``labels.txt``: one class name per line, in output order (``train`` writes one beside ``best.keras``)."""
    Path(path).write_text("\n".join(labels) + "\n", encoding="utf-8")


def card_files(folder: Path) -> list[str]:
    """The card's files that ``folder`` has, by name (what a copy of the model must carry)."""
    return [name for name in (MODEL_CARD_FILE, LABELS_FILE) if (Path(folder) / name).is_file()]


def read_card(folder: Path, labels: tuple[str, ...] | None = None) -> ModelCard:
    """The card of the model folder ``folder``; a folder without ``model.json`` gets the
    defaults (a user's own model: its signature says the rest). ``labels``: the class names
    to use where the folder has no ``labels.txt`` (``--labels``); never guessed otherwise.

    Raises:
        ModelError: an unreadable or invalid ``model.json`` or ``labels.txt``, or an unknown key in it.
    """
    folder = Path(folder)
    info_path, labels_path = folder / MODEL_CARD_FILE, folder / LABELS_FILE
    info: dict = {}
    if info_path.is_file():
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ModelError(f"unreadable {info_path}: {error}") from None
        if not isinstance(info, dict):
            raise ModelError(f"{info_path} must hold a JSON object")
        unknown = sorted(set(info) - set(CARD_KEYS))
        if unknown:
            raise ModelError(f"{info_path}: unknown key {', '.join(map(repr, unknown))}; a model card has {', '.join(CARD_KEYS)}")
    if labels_path.is_file():
        try:
            labels = tuple(read_labels(labels_path))
        except (OSError, UnicodeDecodeError) as error:
            raise ModelError(f"unreadable {labels_path}: {error}") from None
        origin = str(labels_path)
    else:
        origin = "--labels"
    try:
        card_labels = ModelCard(labels=labels).labels if labels is not None else None
    except ValueError as error:
        raise ModelError(f"{origin}: {error}") from None
    try:
        return ModelCard(labels=card_labels, **info)
    except (TypeError, ValueError) as error:
        raise ModelError(f"{info_path}: {error}") from None


def write_card(folder: Path, card: ModelCard) -> None:
    """Write ``card`` as ``folder/model.json`` and ``folder/labels.txt`` (which it must have).

    Raises:
        ValueError: a card without labels (the app could not name its outputs).
    """
    if not card.labels:
        raise ValueError("a model card needs its class names (labels) to be written")
    folder = Path(folder)
    write_labels(folder / LABELS_FILE, card.labels)
    (folder / MODEL_CARD_FILE).write_text(json.dumps(card.to_json(), indent=2) + "\n", encoding="utf-8")


def labels_origin(folder: Path) -> str:
    """Where a folder's class names come from, for messages: its ``labels.txt``, else ``--labels``."""
    path = Path(folder) / LABELS_FILE
    return str(path) if path.is_file() else "--labels"


def missing_labels_message(folder: Path, num_outputs: int | None) -> str:
    """The one line for a model whose class order nobody gave (it is never guessed: FER2013's
    order and a class-folder (alphabetical) order differ, silently)."""
    return (f"the model has {num_outputs or 'its'} outputs but no {LABELS_FILE} saying their class order: "
            f"put the class names in {Path(folder) / LABELS_FILE}, one per line in output order, or give --labels a,b,c")
