"""The emotion classifier: a model that describes itself, fed batched face crops.

Input size and channels come from the model's own signature (else its card), class names,
pixel scale and output kind from its model card (``detector.model_card``); nothing about
the shipped model is hard-coded here, so a user's model folder just works.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from detector.calibration import apply_temperature
from detector.config import ModelConfig
from detector.backends import BACKENDS, Backend, resolve_model
from detector.errors import ModelError
from detector.model_card import MODEL_CARD_FILE, ModelCard, labels_origin, missing_labels_message, read_card

log = logging.getLogger(__name__)


def check_labels(card: ModelCard, folder: Path, num_outputs: int | None) -> tuple[str, ...]:
    """The card's class names, one per model output.

    Raises:
        ModelError: no names at all (the order is never guessed), or as many names as outputs they are not.
    """
    if card.labels is None:
        raise ModelError(missing_labels_message(folder, num_outputs))
    if num_outputs is not None and len(card.labels) != num_outputs:
        raise ModelError(f"{labels_origin(folder)} names {len(card.labels)} classes but the model outputs {num_outputs}")
    return card.labels


def input_shape(card: ModelCard, backend: Backend, path: Path) -> tuple[int, int, int]:
    """``(height, width, channels)``: the model's own where its signature fixes it, the card's
    where the signature leaves it open; the two must agree where both say.

    Raises:
        ModelError: neither says, channels other than 1 or 3, or the card contradicts the model.
    """
    own = backend.input_hwc
    if card.input_shape is not None and any(d is not None and d != c for d, c in zip(own, card.input_shape)):
        raise ModelError(f"{path}: {MODEL_CARD_FILE} says the input is {list(card.input_shape)} "
                         f"but the model takes {['?' if d is None else d for d in own]}")
    shape = tuple(c if d is None else d for d, c in zip(own, card.input_shape)) if card.input_shape else own
    if None in shape or shape[2] not in (1, 3):
        raise ModelError(f"{path}: cannot tell the input size from the model (got {own}); "
                         f"add \"input_shape\": [h, w, c] to {MODEL_CARD_FILE}")
    return tuple(int(d) for d in shape)  # type: ignore[return-value]


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
    """The model of ``config``, described by its folder's :class:`~detector.model_card.ModelCard`.

    Raises:
        ModelError: the model or its card is missing, unusable, or contradicts itself.
    """

    def __init__(self, config: ModelConfig):
        path = Path(config.path)
        backend_name, model_file = resolve_model(path, config.backend, config.int8)
        folder = path if path.is_dir() else path.parent
        self.card = read_card(folder, config.labels)
        self.backend: Backend = BACKENDS[backend_name].load(model_file, threads=config.threads)
        height, width, channels = input_shape(self.card, self.backend, path)
        self.input_size = (width, height)
        self.channels = channels
        self.labels = check_labels(self.card, folder, self.backend.num_outputs)
        self.input_scale = float(config.input_scale or self.card.input_scale)
        self.output_kind = self.card.outputs
        if self.output_kind is None:
            log.warning("%s does not say whether the model outputs probabilities or logits: telling them apart by row sums; "
                        'add "outputs": "probabilities" (or "logits") to it', folder / MODEL_CARD_FILE)
        self.temperature = self.card.calibration.temperature if self.card.calibration else 1.0
        self.path, self.model_file = path, model_file
        log.info("model %s: %s backend, input %dx%dx%d, classes %s; file %s; temperature %.3g",
                 path, self.backend.name, height, width, channels, ",".join(self.labels), model_file.name, self.temperature)

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
