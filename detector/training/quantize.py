"""Static int8 quantization of an exported model's ONNX file, calibrated on real faces.

ONNX Runtime's QDQ format, per-channel int8 weights and uint8 activations whose ranges
come from real val faces fed exactly as the app feeds them. The export keeps the int8
copy only when it loses less than half an accuracy point on val; the app then prefers
it (``--no-int8`` goes back to ``model.onnx``). Dynamic quantization is not offered: on
the 2-core CPU it was 4x *slower* than float32 (``docs/PERFORMANCE.md``).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from detector.backends import INT8_ONNX_FILE, ONNX_FILE
from detector.classifier import EmotionClassifier, ModelConfig

if TYPE_CHECKING:
    from detector.training.data import Split

log = logging.getLogger(__name__)

MAX_ACCURACY_DROP = 0.005  # int8 is kept only when it loses less than this on val
CALIBRATION_IMAGES = 1000


class _Calibration:
    """onnxruntime's CalibrationDataReader over real faces, preprocessed as the app does."""

    def __init__(self, classifier: EmotionClassifier, images: np.ndarray, input_name: str, batch: int = 64):
        self._batches = iter([classifier.preprocess(list(images[i : i + batch])) for i in range(0, len(images), batch)])
        self._name = input_name

    def get_next(self):
        batch = next(self._batches, None)
        return None if batch is None else {self._name: batch}


def softmax_and_after(model_path: Path) -> list[str]:
    """Names of the Softmax nodes and of every node fed by them (a TTA average, say).

    Left in float32: an int8 softmax output moves in steps of 1/255 and its rows sum to
    0.99 rather than 1, which reads as "not probabilities" and costs confidences their
    precision, for no measurable speed.
    """
    import onnx

    graph = onnx.load(str(model_path)).graph
    tainted = {out for node in graph.node if node.op_type == "Softmax" for out in node.output}
    names = [node.name for node in graph.node if node.op_type == "Softmax"]
    for node in graph.node:  # nodes are topologically sorted
        if node.op_type != "Softmax" and tainted.intersection(node.input):
            tainted.update(node.output)
            names.append(node.name)
    return names


def quantize_static_onnx(model_dir: Path, images: np.ndarray, out_path: Path) -> Path:
    """Write a static int8 (QDQ) copy of ``model_dir/model.onnx``, calibrated on ``images``;
    the output probabilities stay float32."""
    import onnxruntime as ort
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model_dir = Path(model_dir)
    classifier = EmotionClassifier(ModelConfig(str(model_dir), backend="onnx", int8=False))
    input_name = ort.InferenceSession(str(model_dir / ONNX_FILE), providers=["CPUExecutionProvider"]).get_inputs()[0].name
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(model_dir / ONNX_FILE), str(prepared))
        quantize_static(str(prepared), str(out_path), _Calibration(classifier, images, input_name),
                        quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        per_channel=True, nodes_to_exclude=softmax_and_after(prepared))
    return Path(out_path)


def _accuracy(classifier: EmotionClassifier, images: np.ndarray, truth: np.ndarray, batch: int = 256) -> float:
    predicted = [classifier.predict_crops(list(images[i : i + batch])).argmax(1) for i in range(0, len(images), batch)]
    return float(np.mean(np.concatenate(predicted) == truth))


def add_int8(model_dir: Path, val: Split) -> dict:
    """Quantize ``model_dir``'s ONNX model and keep ``model.int8.onnx`` only if it holds val accuracy.

    Calibration and the decision both use val (PrivateTest stays for the reported figure);
    both files are run through the app's own classifier.
    """
    from detector.training.data import class_mapping

    model_dir = Path(model_dir)
    calibration = val.subset(CALIBRATION_IMAGES, seed=0).images
    int8_path = quantize_static_onnx(model_dir, calibration, model_dir / INT8_ONNX_FILE)
    accuracy = {}
    for name, int8 in (("float32", False), ("int8", True)):
        classifier = EmotionClassifier(ModelConfig(str(model_dir), backend="onnx", int8=int8))
        accuracy[name] = _accuracy(classifier, val.images, class_mapping(val.classes, classifier.labels)[val.labels])
    drop = accuracy["float32"] - accuracy["int8"]
    kept = drop < MAX_ACCURACY_DROP
    if not kept:
        int8_path.unlink()
    log.info("int8: val accuracy %.4f vs %.4f float32 (%+.2f points): %s", accuracy["int8"], accuracy["float32"],
             -100 * drop, f"kept as {INT8_ONNX_FILE}" if kept else "not kept")
    return {"int8_kept": kept, "int8_val_accuracy": accuracy["int8"], "float32_val_accuracy": accuracy["float32"],
            "int8_calibration_images": len(calibration), "int8_max_accuracy_drop": MAX_ACCURACY_DROP}
