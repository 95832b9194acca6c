"""Quantization study: is an int8 ONNX model worth shipping?

Quantizes the shipped model's ``model.onnx`` (dynamic, and static with val-split
calibration), then evaluates each variant on a FER2013 split exactly as the app runs
it, and prints accuracy against milliseconds per face. The export ships the static
variant (``model.int8.onnx``) only when it loses less than 0.5 points on val; this
script reports what that costs on the split you name.

    python tools/quantize.py --model saved_model_trt --data ../shared/fer2013 --json docs/quantization.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from detector.bench import table_path  # noqa: E402
from detector.backends import INT8_ONNX_FILE, ONNX_FILE  # noqa: E402
from detector.config import ModelConfig  # noqa: E402
from detector.training.data import load_split  # noqa: E402
from detector.training.evaluate import evaluate  # noqa: E402
from detector.training.quantize import CALIBRATION_IMAGES, MAX_ACCURACY_DROP, quantize_static_onnx  # noqa: E402


def _variant(folder: Path, model: Path, name: str) -> Path:
    """A copy of the model folder (labels, model.json) with only ``model.onnx`` replaced."""
    out = folder / name
    shutil.copytree(model, out, ignore=shutil.ignore_patterns("variables", "saved_model.pb", "assets", "fingerprint.pb", INT8_ONNX_FILE))
    return out


def quantize(model: Path, data: str, folder: Path, calibration_images: int) -> dict[str, Path]:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    variants = {"float32": _variant(folder, model, "float32")}
    prepared = folder / "prepared.onnx"
    quant_pre_process(str(model / ONNX_FILE), str(prepared))
    dynamic = _variant(folder, model, "int8_dynamic")
    quantize_dynamic(str(prepared), str(dynamic / ONNX_FILE), weight_type=QuantType.QInt8)
    variants["int8 dynamic"] = dynamic
    static = _variant(folder, model, "int8_static")
    images = load_split(data, "val").subset(calibration_images, seed=0).images
    quantize_static_onnx(variants["float32"], images, static / ONNX_FILE)  # the export's own recipe
    variants["int8 static"] = static
    return variants


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="saved_model_trt")
    parser.add_argument("--data", default="../shared/fer2013")
    parser.add_argument("--split", default="test")
    parser.add_argument("--calibration-images", type=int, default=CALIBRATION_IMAGES)
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
    command = " ".join(["python tools/quantize.py", *(sys.argv[1:] if argv is None else argv)])
    report = {"command": command, "model": args.model, "split": args.split, "variants": rows}
    table = markdown(report)
    Path(args.json).write_text(json.dumps(report, indent=2))
    table_path(Path(args.json)).write_text(table, encoding="utf-8")
    print(table)
    return 0


SHIPPED = "int8 static"  # the variant the export writes as model.int8.onnx


def signed_points(change: float) -> str:
    """An accuracy change in points with its sign, as the docs print it: +0.14, −0.22."""
    return f"{'+' if change >= 0 else '−'}{abs(change):.2f}"


def markdown(report: dict) -> str:
    """The variants table docs/PERFORMANCE.md shows, from the JSON alone."""
    command = report.get("command", "python tools/quantize.py --model saved_model_trt --data ../shared/fer2013 --json docs/quantization.json")
    lines = [f"Command: `{command}` (split: {report['split']}).", "",
             f"| variant | {report['split']} accuracy | macro-F1 | ms / face, batch 1 | ms / face, batched | size |",
             "|---|---|---|---|---|---|"]
    for row in report["variants"]:
        name = f"**{row['variant']} (`model.int8.onnx`, shipped)**" if row["variant"] == SHIPPED else row["variant"]
        drop = f" ({signed_points(-row['accuracy_drop_points'])})" if row["accuracy_drop_points"] else ""
        lines.append(f"| {name} | {100 * row['accuracy']:.2f}%{drop} | {row['macro_f1']:.3f} | {row['ms_per_face_batch1']:.1f} | "
                     f"{row['ms_per_face']:.1f} | {row['onnx_mb']:.1f} MB |")
    return "\n".join(lines) + "\n"

if __name__ == "__main__":
    sys.exit(main())
