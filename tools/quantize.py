"""Quantization study: is an int8 ONNX model worth shipping?

Quantizes the shipped model's ``model.onnx`` (dynamic, and static with val-split
calibration), then evaluates each variant on a FER2013 split exactly as the app runs
it, and prints accuracy against milliseconds per face. An int8 model would be the
default only if it lost less than 0.5 accuracy points.

    python tools/quantize.py --model saved_model_trt --data ../shared/fer2013 --json docs/quantization.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from detector.classifier import EmotionClassifier, ModelConfig  # noqa: E402
from detector.training.data import load_split  # noqa: E402
from detector.training.evaluate import evaluate  # noqa: E402

MAX_ACCURACY_DROP = 0.005


class _Calibration:
    """onnxruntime's CalibrationDataReader over real val faces, preprocessed as the app does."""

    def __init__(self, classifier: EmotionClassifier, images: np.ndarray, input_name: str, batch: int = 64):
        self._batches = iter([classifier.preprocess(list(images[i : i + batch])) for i in range(0, len(images), batch)])
        self._name = input_name

    def get_next(self):
        batch = next(self._batches, None)
        return None if batch is None else {self._name: batch}


def _variant(folder: Path, model: Path, name: str) -> Path:
    """A copy of the model folder (labels, model.json) with only ``model.onnx`` replaced."""
    out = folder / name
    shutil.copytree(model, out, ignore=shutil.ignore_patterns("variables", "saved_model.pb", "assets", "fingerprint.pb"))
    return out


def quantize(model: Path, data: str, folder: Path, calibration_images: int) -> dict[str, Path]:
    import onnxruntime as ort
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    variants = {"float32": _variant(folder, model, "float32")}
    prepared = folder / "prepared.onnx"
    quant_pre_process(str(model / "model.onnx"), str(prepared))
    dynamic = _variant(folder, model, "int8_dynamic")
    quantize_dynamic(str(prepared), str(dynamic / "model.onnx"), weight_type=QuantType.QInt8)
    variants["int8 dynamic"] = dynamic
    classifier = EmotionClassifier(ModelConfig(str(model), backend="onnx"))
    input_name = ort.InferenceSession(str(model / "model.onnx"), providers=["CPUExecutionProvider"]).get_inputs()[0].name
    images = load_split(data, "val").subset(calibration_images, seed=0).images
    static = _variant(folder, model, "int8_static")
    quantize_static(str(prepared), str(static / "model.onnx"), _Calibration(classifier, images, input_name),
                    quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
    variants["int8 static"] = static
    return variants


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="saved_model_trt")
    parser.add_argument("--data", default="../shared/fer2013")
    parser.add_argument("--split", default="test")
    parser.add_argument("--calibration-images", type=int, default=1000)
    parser.add_argument("--json", default="quantization.json")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        variants = quantize(Path(args.model), args.data, Path(tmp), args.calibration_images)
        for name, folder in variants.items():
            result = evaluate(ModelConfig(str(folder), backend="onnx"), args.data, args.split)
            size_mb = (folder / "model.onnx").stat().st_size / 2**20
            rows.append({"variant": name, "accuracy": result["accuracy"], "macro_f1": result["macro_f1"],
                         "ms_per_face_batch1": result["ms_per_face_batch1"], "ms_per_face": result["ms_per_face"],
                         "onnx_mb": round(size_mb, 2)})
    base = rows[0]["accuracy"]
    for row in rows:
        row["accuracy_drop_points"] = round((base - row["accuracy"]) * 100, 2)
        row["acceptable"] = base - row["accuracy"] < MAX_ACCURACY_DROP
    print(f"| variant | {args.split} accuracy | macro-F1 | ms/face (batch 1) | ms/face (batched) | size MB | drop (points) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['accuracy']:.4f} | {r['macro_f1']:.4f} | {r['ms_per_face_batch1']:.3f} | "
              f"{r['ms_per_face']:.3f} | {r['onnx_mb']} | {r['accuracy_drop_points']} |")
    Path(args.json).write_text(json.dumps({"model": args.model, "split": args.split, "variants": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
