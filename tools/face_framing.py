"""Measure how each face detector's box sits on a face, against the framing the classifier was trained on.

    python tools/face_framing.py        # writes docs/framing.json and models/blazeface/framing.json

The classifier learnt from FER2013's 48x48 crops, each a face framed the same way. Each FER2013
test crop (``--per-class`` of each class) is pasted, upscaled to 150 px, onto the sample clip's
wall (``tools.scenes``), and each detector is run on the scene. For the box found on the pasted
crop, the crop's square relative to that box is: centre offset ``dx, dy`` (box sides) and size
``sx, sy`` (crop side / box side). The medians are a fixed affine map from the detector's box to
the FER2013 framing; ``models/blazeface/framing.json`` holds BlazeFace's, read by
``detector.blazeface``. Haar's is measured the same way and reported beside it, not applied: the
app's default stays as it was measured and shipped.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from detector.blazeface import FRAMING_FILE, MODEL_DIR, MODELS, BlazeFace, BlazeFaceSettings, Framing  # noqa: E402
from detector.faces import HaarFaceDetector  # noqa: E402
from detector.labels import FER2013_LABELS  # noqa: E402
from detector.paths import DEFAULT_DATA_DIR  # noqa: E402
from tools.scenes import CASCADE, background, place  # noqa: E402

SIDE, AT = 150, (245, 165)  # pasted face side and top-left corner, scene pixels
KEYS = ("dx", "dy", "sx", "sy")


def relation(box: np.ndarray, truth: tuple[int, int, int, int]) -> dict[str, float]:
    """The true square relative to a detector's ``x, y, w, h`` box: centre offset in box sides, side ratio."""
    x, y, w, h = (float(v) for v in box)
    tx, ty, tw, th = truth
    return {"dx": (tx + tw / 2 - x - w / 2) / w, "dy": (ty + th / 2 - y - h / 2) / h, "sx": tw / w, "sy": th / h}


def on_face(boxes: np.ndarray, truth: tuple[int, int, int, int]) -> np.ndarray | None:
    """The box whose centre lies in the pasted square, nearest its centre; None if none."""
    tx, ty, tw, th = truth
    centres = boxes[:, :2] + boxes[:, 2:] / 2
    inside = (centres[:, 0] >= tx) & (centres[:, 0] <= tx + tw) & (centres[:, 1] >= ty) & (centres[:, 1] <= ty + th)
    if not inside.any():
        return None
    distance = np.linalg.norm(centres - [tx + tw / 2, ty + th / 2], axis=1)
    return boxes[np.argmin(np.where(inside, distance, np.inf))]


def measure(detectors: dict, faces: list[np.ndarray]) -> dict:
    base = background()
    rows: dict[str, list[dict]] = {name: [] for name in detectors}
    for face in faces:
        scene = base.copy()
        truth = place(scene, face, *AT, side=SIDE)
        for name, detect in detectors.items():
            box = on_face(np.asarray(detect(scene), np.float64).reshape(-1, 4), truth)
            if box is not None:
                rows[name].append(relation(box, truth))
    result = {}
    for name, found in rows.items():
        values = {key: np.array([row[key] for row in found]) for key in KEYS}
        result[name] = {"faces": len(faces), "found": len(found),
                        **{key: {"median": round(float(np.median(v)), 4), "p25": round(float(np.percentile(v, 25)), 4),
                                 "p75": round(float(np.percentile(v, 75)), 4)} for key, v in values.items()}}
    return result


def markdown(data: dict) -> str:
    """The measurement as a table (docs/DETECTORS.md includes it)."""
    lines = ["| detector | faces found | centre dx (box sides) | centre dy | width ratio sx | height ratio sy |",
             "|---|---|---|---|---|---|"]
    for name, row in data["detectors"].items():
        cells = [f"{row[k]['median']:+.3f} ({row[k]['p25']:+.3f} to {row[k]['p75']:+.3f})" if k[0] == "d"
                 else f"{row[k]['median']:.3f} ({row[k]['p25']:.3f} to {row[k]['p75']:.3f})" for k in KEYS]
        lines.append(f"| {name} | {row['found']}/{row['faces']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def fer_faces(data_dir: Path, per_class: int) -> list[np.ndarray]:
    faces = []
    for label in FER2013_LABELS:
        for path in sorted((data_dir / "test" / label).glob("*.jpg"))[:per_class]:
            faces.append(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE))
    return faces


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(DEFAULT_DATA_DIR))
    parser.add_argument("--per-class", type=int, default=40)
    args = parser.parse_args(argv)
    faces = fer_faces(args.data, args.per_class)
    haar = HaarFaceDetector(CASCADE)
    detectors = {"haar": haar.detect}
    for model in MODELS:  # identity framing: the raw boxes are what is measured
        blazeface = BlazeFace(BlazeFaceSettings(model=model), framing=Framing())
        detectors[f"blazeface-{model}"] = lambda scene, b=blazeface: b.find(scene).boxes
    data = {"method": f"FER2013 test crops ({args.per_class} per class) pasted at {SIDE} px on the sample clip's wall; "
                      "dx, dy: the crop's centre minus the box's, in box sides; sx, sy: crop side / box side",
            "detectors": measure(detectors, faces)}
    (REPO / "docs" / "framing.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    mappings = {model: {key: data["detectors"][f"blazeface-{model}"][key]["median"] for key in KEYS} for model in MODELS}
    card = {"source": "python tools/face_framing.py (docs/framing.json has the measurement)", "mappings": mappings}
    (REPO / MODEL_DIR / FRAMING_FILE).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    print(markdown(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
