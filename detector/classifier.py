"""The emotion classifier: a model that describes itself, fed batched face crops.

Input size and channels come from the model's own signature, class names from
``labels.txt`` beside it, and the pixel scale from ``model.json``; nothing about
the shipped model is hard-coded here, so a user's model folder just works.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np

from detector.calibration import apply_temperature, temperature_of
from detector.config import ModelConfig
from detector.backends import BACKENDS, Backend
from detector.errors import ModelError
from detector.labels import LABELS_FILE, read_labels

log = logging.getLogger(__name__)

# The files of a model folder, besides the SavedModel itself and labels.txt (detector.labels).
ONNX_FILE = "model.onnx"
INT8_ONNX_FILE = "model.int8.onnx"  # statically quantized copy, written by the export only when it keeps the accuracy
MODEL_INFO_FILE = "model.json"
METRICS_FILE = "metrics.json"
#: ``model.json``'s "outputs": what the model's output rows are. Declared by the export, so
#: the app never infers it from the numbers (a row of logits can sum to 1 by chance).
OUTPUT_KINDS = ("probabilities", "logits")




def resolve_model(path: Path, backend: str, int8: bool = True) -> tuple[str, Path]:
    """Which backend loads which file, for a folder, ``.onnx`` or ``.keras`` path (loads nothing)."""
    if not path.exists():
        raise ModelError(f"model not found: {path}")
    if path.is_file():
        if path.suffix == ".onnx":
            if backend == "tf":
                raise ModelError(f"{path} is an ONNX file; use --backend onnx or auto")
            return "onnx", path
        if path.suffix == ".keras":
            if backend == "onnx":
                raise ModelError(f"{path} is a Keras file; use --backend tf or auto")
            return "tf", path
        raise ModelError(f"unsupported model file {path}: give a SavedModel folder, a .keras or an .onnx file")
    has_onnx = (path / ONNX_FILE).is_file()
    has_saved_model = (path / "saved_model.pb").is_file()
    if backend in ("auto", "onnx") and int8 and (path / INT8_ONNX_FILE).is_file():
        return "onnx", path / INT8_ONNX_FILE
    if backend in ("auto", "onnx") and has_onnx:
        return "onnx", path / ONNX_FILE
    if backend == "onnx":
        raise ModelError(f"no {ONNX_FILE} in {path}; use --backend tf")
    if has_saved_model:
        return "tf", path
    raise ModelError(f"no saved_model.pb or {ONNX_FILE} in model folder {path}")


def _model_info(folder: Path) -> dict:
    info_path = folder / MODEL_INFO_FILE
    if not info_path.is_file():
        return {}
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelError(f"unreadable {info_path}: {error}") from None
    if not isinstance(info, dict):
        raise ModelError(f"{info_path} must hold a JSON object")
    return info


def _labels(folder: Path, given: tuple[str, ...] | None, num_outputs: int | None) -> tuple[str, ...]:
    labels_path = folder / LABELS_FILE
    if labels_path.is_file():
        labels, origin = tuple(read_labels(labels_path)), str(labels_path)
    elif given:
        labels, origin = tuple(given), "--labels"
    else:  # never guess: FER2013's order and a class-folder (alphabetical) order differ, silently
        raise ModelError(f"the model has {num_outputs or 'its'} outputs but no {LABELS_FILE} saying their class order: "
                         f"put the class names in {folder / LABELS_FILE}, one per line in output order, or give --labels a,b,c")
    if num_outputs is not None and len(labels) != num_outputs:
        raise ModelError(f"{origin} names {len(labels)} classes but the model outputs {num_outputs}")
    if len(set(labels)) != len(labels):
        raise ModelError(f"{origin} repeats a class name")
    return labels


def output_kind(info: dict, info_path: Path) -> str | None:
    """``model.json``'s declared output kind; None (with a warning) for a model that does not say."""
    kind = info.get("outputs")
    if kind is None:
        log.warning("%s does not say whether the model outputs probabilities or logits: telling them apart by row sums; "
                    'add "outputs": "probabilities" (or "logits") to it', info_path)
        return None
    if kind not in OUTPUT_KINDS:
        raise ModelError(f'{info_path}: "outputs" must be one of {", ".join(OUTPUT_KINDS)}, got {kind!r}')
    return kind


def to_probabilities(outputs: np.ndarray, kind: str | None = None) -> np.ndarray:
    """``(N, C)`` model outputs -> probabilities: rows declared ``"probabilities"`` are
    renormalised, ``"logits"`` get a softmax; undeclared (None) rows that are non-negative
    and sum to 1 count as probabilities, others as logits.

    Whatever the model returns, each row comes out finite, non-negative and summing to 1,
    so no NaN reaches the JSON lines: a NaN output counts as no evidence for its class,
    an infinite one as the largest (or smallest) float.
    """
    outputs = np.asarray(outputs, dtype=np.float32)
    outputs = outputs.reshape(len(outputs) if outputs.ndim else 1, int(np.prod(outputs.shape[1:], dtype=np.int64)))
    if not outputs.size:
        return outputs
    if kind != "logits" and np.isfinite(outputs).all() and outputs.min() >= 0:
        sums = outputs.sum(axis=1, keepdims=True)
        if (kind == "probabilities" and (sums > 0).all()) or np.allclose(sums, 1.0, atol=1e-3):
            return outputs / sums
    limit = float(np.finfo(np.float32).max)
    logits = np.nan_to_num(outputs.astype(np.float64), nan=-limit, posinf=limit, neginf=-limit)
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)


def fit_crop(crop: np.ndarray, size: tuple[int, int], channels: int) -> np.ndarray:
    """One BGR or gray crop as the model sees it: ``size`` (width, height), 1 (gray) or 3 (RGB)
    channels, uint8, shape ``(height, width, channels)``. Shrinks with area averaging, so no
    pixel is skipped, and enlarges bilinearly; either way values stay within the crop's range."""
    if crop.ndim == 3 and crop.shape[2] == 1:
        crop = crop[:, :, 0]
    if crop.ndim == 2:
        crop = crop if channels == 1 else cv2.cvtColor(crop, cv2.COLOR_GRAY2RGB)
    else:
        to_gray, to_rgb = (cv2.COLOR_BGRA2GRAY, cv2.COLOR_BGRA2RGB) if crop.shape[2] == 4 else (cv2.COLOR_BGR2GRAY, cv2.COLOR_BGR2RGB)
        crop = cv2.cvtColor(crop, to_gray if channels == 1 else to_rgb)
    shrinking = crop.shape[1] > size[0]
    resized = cv2.resize(crop, size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    return resized.reshape(size[1], size[0], channels)


class EmotionClassifier:
    def __init__(self, config: ModelConfig):
        if config.backend not in ("auto", *BACKENDS):
            raise ModelError(f"unknown backend '{config.backend}'; choose auto, {', '.join(BACKENDS)}")
        path = Path(config.path)
        backend_name, model_file = resolve_model(path, config.backend, config.int8)
        folder = path if path.is_dir() else path.parent
        info = _model_info(folder)
        self.backend: Backend = BACKENDS[backend_name](model_file, threads=config.threads)
        height, width, channels = self.backend.input_hwc
        if "input_shape" in info and None in (height, width, channels):
            height, width, channels = info["input_shape"]
        if None in (height, width, channels) or channels not in (1, 3):
            raise ModelError(f"{path}: cannot tell the input size from the model (got {self.backend.input_hwc}); "
                             f"add \"input_shape\": [h, w, c] to {MODEL_INFO_FILE}")
        self.input_size = (int(width), int(height))
        self.channels = int(channels)
        self.labels = _labels(folder, config.labels, self.backend.num_outputs)
        self.input_scale = float(config.input_scale or info.get("input_scale", 255.0))
        self.output_kind = output_kind(info, folder / MODEL_INFO_FILE)
        self.temperature = temperature_of(info.get("calibration"), str(folder / MODEL_INFO_FILE))
        self.path, self.model_file = path, model_file
        if getattr(self.backend, "input_dtype", None) == np.uint8 and self.input_scale != 255.0:
            raise ModelError(f"{path}: the model's input is uint8, which holds 0-255 pixels, but its input_scale is "
                             f"{self.input_scale:g}")
        self._try_once()
        log.info("model %s: %s backend, input %dx%dx%d, classes %s; file %s; temperature %.3g",
                 path, self.backend.name, height, width, channels, ",".join(self.labels), model_file.name, self.temperature)

    def _try_once(self) -> None:
        """Run the model on one blank face at load, so a model the app cannot feed (an input
        type or layout it misdescribes) is refused now with one line, not at the first face."""
        blank = np.zeros((self.input_size[1], self.input_size[0], 3), np.uint8)
        try:
            self.predict_crops([blank])
        except ModelError:
            raise
        except Exception as error:  # backends raise their own untyped errors (onnxruntime, TensorFlow)
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[-1]
            raise ModelError(f"{self.path}: the model fails on a {self.input_size[1]}x{self.input_size[0]}x{self.channels} "
                             f"image batch: {first_line[:200]}") from None

    def preprocess(self, crops: list[np.ndarray]) -> np.ndarray:
        """BGR (or gray) crops -> one float32 NHWC batch at the model's size, channels and scale."""
        batch = np.empty((len(crops), self.input_size[1], self.input_size[0], self.channels), np.float32)
        for i, crop in enumerate(crops):
            batch[i] = fit_crop(crop, self.input_size, self.channels)
        if self.input_scale != 255.0:
            batch *= self.input_scale / 255.0
        return batch

    def predict_crops(self, crops: list[np.ndarray], calibrated: bool = True) -> np.ndarray:
        """``(N, C)`` float32 class probabilities for face crops, in one batched call where the
        model allows; with the model's temperature applied (``detector.calibration``) unless
        ``calibrated`` is False (fitting the temperature needs the raw ones)."""
        if not crops:
            return np.zeros((0, len(self.labels)), np.float32)
        batch = self.preprocess(crops)
        if self.backend.max_batch in (None, len(batch)):
            probs = to_probabilities(self.backend.predict(batch), self.output_kind)
        else:
            probs = np.concatenate([to_probabilities(self.backend.predict(batch[i : i + 1]), self.output_kind)
                                    for i in range(len(batch))])
        if probs.shape != (len(crops), len(self.labels)):  # a model that left its output shape open
            raise ModelError(f"{self.path}: the model returned {probs.shape[1] if probs.ndim == 2 else '?'} values per face "
                             f"for {len(self.labels)} classes")
        return apply_temperature(probs, self.temperature) if calibrated else probs

    def classify(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Probabilities for each ``x, y, w, h`` box of ``image`` (boxes already clamped)."""
        crops = [image[y : y + h, x : x + w] for x, y, w, h in boxes]
        return self.predict_crops(crops)
