"""Temperature scaling: the score shown for a label made to mean the share of people who would choose it.

A network trained on hard or noisy labels is over- or under-confident: its 0.9 is not right
nine times in ten. Temperature scaling (Guo et al., "On Calibration of Modern Neural Networks",
ICML 2017) divides the log-probabilities by one number ``T`` fitted on held-out data and
renormalises; the ranking of classes, and so every label, is unchanged. Here ``T`` is fitted
on FER2013 PublicTest against the ten FER+ votes per face (``detector.training.temperature``),
so a shown 0.7 means about seven people in ten would have chosen that label. The model folder
records it in its card (``detector.model_card.Calibration``: method, temperature, fitted_on);
the classifier applies it to every prediction.
"""

from __future__ import annotations

import numpy as np

METHOD = "temperature"


def apply_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """``(N, C)`` float32 probabilities -> ``softmax(log(p) / T)``, rows summing to 1."""
    if temperature == 1.0 or not probabilities.size:
        return probabilities
    logits = np.log(np.maximum(probabilities.astype(np.float64), 1e-12)) / temperature
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)
