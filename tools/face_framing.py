"""Measure how each face detector's box sits on a face, against the framing the classifier was trained on.

    python tools/face_framing.py        # writes docs/framing.json and models/blazeface/framing.json

The classifier learnt from FER2013's 48x48 crops, each a face framed the same way. Two measurements:

1. FER2013 test crops (``--per-class`` of each class) pasted, upscaled to 150 px, on the sample
   clip's wall (``tools.scenes``): for the box a detector finds on the crop, the crop's square
   relative to that box. Haar's boxes match FER2013's framing (FER2013 was cut out by an automatic
   face registration); BlazeFace's are skewed here, since a pasted crop has no head around the face
   (no hair, ears or chin beyond its edges), so this is not used for BlazeFace.
2. Real faces (``../shared/wild-dev`` photos and sample-clip frames) where Haar and BlazeFace each
   find exactly one face, the same one: Haar's box relative to BlazeFace's.

3. The same real faces re-found as the face finder re-finds a known face: each model run on the
   full-range search's box grown by ``roi_margin`` on each side, where the face fills about half
   its input (the short-range model frames a face tighter there than in a whole frame).

Each relation is a centre offset ``dx, dy`` (in box sides) and a size ratio ``sx, sy``; medians.
BlazeFace's search mapping is (2) followed by Haar's (1), its re-find mapping (3) followed by the
full-range search mapping: fixed affine maps from BlazeFace's boxes to the FER2013 framing,
written to ``models/blazeface/framing.json`` and read by ``detector.detection.blazeface``. Haar's
own boxes are left as the app measured and shipped them.
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

from detector.detection.blazeface import FRAMING_FILE, FRAMING_ROLES, MODEL_DIR, MODELS, BlazeFaceConfig, BlazeFaceDetector, Framing  # noqa: E402
from detector.detection.haar import HaarFaceDetector  # noqa: E402
from detector.labels import FER2013_LABELS  # noqa: E402
from detector.paths import DEFAULT_DATA_DIR  # noqa: E402
from tools.scenes import background, place  # noqa: E402

WILD_DEV = REPO.parent / "shared" / "wild-dev"
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


def summary(found: list[dict], total: int) -> dict:
    values = {key: np.array([row[key] for row in found]) for key in KEYS}
    return {"images": total, "used": len(found),
            **{key: {"median": round(float(np.median(v)), 4), "p25": round(float(np.percentile(v, 25)), 4),
                     "p75": round(float(np.percentile(v, 75)), 4)} for key, v in values.items()}}


def on_crops(detectors: dict, faces: list[np.ndarray]) -> dict:
    """Measurement 1: the pasted FER2013 square relative to each detector's box on it."""
    base = background()
    rows: dict[str, list[dict]] = {name: [] for name in detectors}
    for face in faces:
        scene = base.copy()
        truth = place(scene, face, *AT, side=SIDE)
        for name, detect in detectors.items():
            box = on_face(np.asarray(detect(scene), np.float64).reshape(-1, 4), truth)
            if box is not None:
                rows[name].append(relation(box, truth))
    return {name: summary(found, len(faces)) for name, found in rows.items()}


def on_real_faces(haar, blazeface, images: list[np.ndarray]) -> dict:
    """Measurement 2: Haar's box relative to BlazeFace's, where each finds one face and it is the same one."""
    rows = []
    for image in images:
        haar_boxes, blaze_boxes = haar(image), blazeface(image)
        if len(haar_boxes) == 1 and len(blaze_boxes) == 1 and on_face(blaze_boxes, tuple(haar_boxes[0])) is not None:
            rows.append(relation(blaze_boxes[0], tuple(haar_boxes[0])))
    return summary(rows, len(images))


def on_refind_windows(search, refind, images: list[np.ndarray], margin: float) -> dict:
    """Measurement 3: the full-range search's box relative to a model's box when it re-finds that
    face in its region (the box grown by ``margin`` of its side on each side, as the face finder
    looks; ``BlazeFaceConfig.roi_margin``), where the face fills about half the model's input."""
    rows = []
    for image in images:
        found = search(image)
        if len(found) != 1:
            continue
        x, y, w, h = (float(v) for v in found[0])
        grow = margin * max(w, h)
        box = on_face(np.asarray(refind(image, (x - grow, y - grow, w + 2 * grow, h + 2 * grow)), np.float64).reshape(-1, 4),
                      tuple(found[0]))
        if box is not None:
            rows.append(relation(box, tuple(found[0])))
    return summary(rows, len(images))


def compose(first: dict, then: dict) -> dict:
    """The map ``first`` followed by ``then`` (each ``dx, dy, sx, sy`` medians): one affine map."""
    return {"dx": round(first["dx"] + then["dx"] * first["sx"], 4), "dy": round(first["dy"] + then["dy"] * first["sy"], 4),
            "sx": round(first["sx"] * then["sx"], 4), "sy": round(first["sy"] * then["sy"], 4)}


def markdown(data: dict) -> str:
    """The measurement as a table (docs/DETECTORS.md includes it)."""
    lines = ["| what is measured | images used | centre dx (box sides) | centre dy | width ratio sx | height ratio sy |",
             "|---|---|---|---|---|---|"]
    rows = [(f"FER2013 crop vs {name}'s box", row) for name, row in data["fer_crops"].items()]
    rows += [(f"Haar's box vs BlazeFace {model}'s, real faces", row) for model, row in data["real_faces"].items()]
    rows += [(f"BlazeFace full's search box vs {model}'s re-find box, real faces", row) for model, row in data["refind_windows"].items()]
    for title, row in rows:
        cells = [f"{row[k]['median']:+.3f} ({row[k]['p25']:+.3f} to {row[k]['p75']:+.3f})" if k[0] == "d"
                 else f"{row[k]['median']:.3f} ({row[k]['p25']:.3f} to {row[k]['p75']:.3f})" for k in KEYS]
        lines.append(f"| {title} | {row['used']}/{row['images']} | " + " | ".join(cells) + " |")
    def maps(table: dict) -> str:
        return "; ".join(f"{model}: " + ", ".join(f"{k} {v:+.3f}" if k[0] == "d" else f"{k} {v:.3f}" for k, v in m.items())
                         for model, m in table.items())

    return "\n".join(lines) + (f"\n\nApplied to BlazeFace's boxes (medians, interquartile range in brackets above): in a full "
                               f"search, {maps(data['mappings'])}; re-finding a known face, {maps(data['refind_mappings'])}.")


def real_images(every: int = 8) -> list[np.ndarray]:
    """wild-dev photos and every ``every``-th sample-clip frame: real faces, one per image mostly."""
    from detector.bench import sample_frames

    photos = [cv2.imread(str(path)) for path in sorted(WILD_DEV.glob("*/*.jpg"))]
    return [image for image in photos if image is not None] + sample_frames()[0][::every]


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
    haar = HaarFaceDetector()
    detectors = {"haar": lambda image: haar.detect(image).boxes}
    refinders = {}
    for model in MODELS:  # identity framing: the raw boxes are what is measured
        blazeface = BlazeFaceDetector(BlazeFaceConfig(model=model, refind_model=model), framing=Framing())
        detectors[f"blazeface-{model}"] = lambda image, b=blazeface: b.find(image).boxes
        refinders[model] = lambda image, region, b=blazeface: b.find(image, region, whole=False).boxes
    images = real_images()
    data = {"method": f"(1) FER2013 test crops, {args.per_class} per class, pasted at {SIDE} px on the sample clip's wall: "
                      "the crop's square vs the detector's box; (2) wild-dev photos and sample-clip frames where Haar and "
                      "BlazeFace each find one face, the same one: Haar's box vs BlazeFace's. dx, dy: centre offset in box "
                      "sides; sx, sy: side ratio. Mapping: (2) then Haar's (1).",
            "fer_crops": on_crops(detectors, fer_faces(args.data, args.per_class)),
            "real_faces": {model: on_real_faces(detectors["haar"], detectors[f"blazeface-{model}"], images) for model in MODELS},
            "refind_windows": {model: on_refind_windows(detectors["blazeface-full"], refinders[model], images, BlazeFaceConfig().roi_margin)
                               for model in MODELS}}
    medians = {name: {key: row[key]["median"] for key in KEYS} for name, row in
               [("haar", data["fer_crops"]["haar"]), *data["real_faces"].items()]}
    data["mappings"] = {model: compose(medians[model], medians["haar"]) for model in MODELS}
    refind = {model: {key: row[key]["median"] for key in KEYS} for model, row in data["refind_windows"].items()}
    data["refind_mappings"] = {model: compose(refind[model], data["mappings"]["full"]) for model in MODELS}
    (REPO / "docs" / "framing.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    card = {"source": "python tools/face_framing.py (docs/framing.json has the measurement)",
            **{key: data[key] for key in FRAMING_ROLES.values()}}
    (REPO / MODEL_DIR / FRAMING_FILE).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    print(markdown(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
