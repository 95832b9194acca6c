"""Weight EMA (Polyak averaging) judged on val every epoch, beside the raw weights.

The optimizer keeps the average (``use_ema=True``), so it is saved and restored with
the optimizer's state by ``BackupAndRestore`` and a resumed run continues the same
average. Keras only copies the average into the model when ``fit`` ends; this callback
also swaps it in for a moment after each epoch, measures val accuracy with it
(``val_ema_accuracy`` in ``history.csv``) and keeps the best averaged weights, so the
run can ship whichever of the raw or the averaged weights did better on val.

Method: Polyak & Juditsky (1992); as used for image classifiers in timm's ``ModelEmaV2``.
The optimizer averages trainable weights only, and the raw model's batch-norm statistics
do not fit the averaged weights (with them, a run's average predicted one class for all
of val in its first epochs), so they are re-estimated for the average on train faces
before each measurement, as SWA does (Izmailov et al., 2018).
"""

from __future__ import annotations

import logging
from pathlib import Path

import keras
import numpy as np

log = logging.getLogger(__name__)

EMA_METRIC = "val_ema_accuracy"
BN_BATCHES = 40  # batches of train faces that re-estimate batch-norm statistics for the averaged weights


class EmaValidation(keras.callbacks.Callback):
    """After each epoch: val accuracy of the optimizer's weight average, and the best
    averaged weights in ``path`` (a ``.weights.h5`` of the training model).

    Args:
        bn_images: train faces as the training model takes them, ``(M, H, W, C)`` uint8, shuffled.
        images: val images as the training model takes them, ``(N, H, W, C)`` uint8.
        one_hot: val labels, ``(N, classes)`` float32.
        path: where the best averaged weights go.
        best: the best ``val_ema_accuracy`` of the epochs an interrupted run already did.
        batch_size: evaluation batch size.

    Must come before the callbacks that log or checkpoint, which read the metric it adds.
    """

    def __init__(self, bn_images: np.ndarray, images: np.ndarray, one_hot: np.ndarray, path: Path,
                 best: float | None, batch_size: int):
        super().__init__()
        self.bn_images = bn_images
        self.images, self.one_hot, self.path = images, one_hot, path
        self.best = best if best is not None else -1.0
        self.batch_size = batch_size

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        variables = self.model.trainable_variables + self.model.non_trainable_variables  # with the augmentation's RNG state
        raw = [variable.numpy() for variable in variables]
        self.model.optimizer.finalize_variable_values(self.model.trainable_variables)  # the average, into the model
        try:
            self._reestimate_batch_norm()
            _, accuracy = self.model.evaluate(self.images, self.one_hot, batch_size=self.batch_size, verbose=0)
            if accuracy > self.best:
                self.best = accuracy
                self.model.save_weights(str(self.path))
        finally:
            for variable, value in zip(variables, raw):
                variable.assign(value)
        if logs is not None:
            logs[EMA_METRIC] = accuracy  # CallbackList hands every callback the same dict
        log.info("epoch %d: val accuracy of the weight average %.4f (best %.4f)", epoch + 1, accuracy, self.best)

    def _reestimate_batch_norm(self, batches: int = BN_BATCHES, momentum: float = 0.9) -> None:
        """Moving mean/variance of the batch norms for the weights the model holds now.

        Forward passes of the training model in training mode (augmentation, resizing and all,
        as SWA's ``bn_update`` runs the train loader) over ``batches`` batches of train faces;
        at ``momentum`` 0.9 the raw statistics keep 0.9**40 = 1.5% weight. The caller restores
        every non-trainable variable afterwards, the augmentation's random state included.
        """
        norms = [layer for layer in _layers(self.model) if isinstance(layer, keras.layers.BatchNormalization)]
        saved = [layer.momentum for layer in norms]
        for layer in norms:
            layer.momentum = momentum
        try:
            for start in range(0, min(len(self.bn_images), batches * self.batch_size), self.batch_size):
                self.model(self.bn_images[start : start + self.batch_size], training=True)
        finally:
            for layer, value in zip(norms, saved):
                layer.momentum = value


def _layers(model: keras.Model):
    for layer in model.layers:
        yield from _layers(layer) if isinstance(layer, keras.Model) else (layer,)
