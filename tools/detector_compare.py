"""Haar and BlazeFace side by side, in one run: faces found, false boxes, speed, labels under rotation.

    python tools/detector_compare.py       # writes docs/detectors.json; prints the table docs/DETECTORS.md includes

The inputs are real pictures changed in known ways (``tools/detector_sets.py`` says how and what
they are). For each set and detector: the share of faces found (a box on the face), boxes elsewhere,
and on face-free pictures the pictures with any box; per source (clip frames, photos, wall).
Each picture is searched as the app would search it: web photos as stills (``create_face_detector``
with ``still``: Haar at the size ``--min-face`` needs, BlazeFace with 400 px tiles and, where that
finds nothing, turned and brightened looks), clip frames as video frames; the face-free pictures
both ways ("face-free" and "face-free, as stills"), so the stills' extra looks are checked for boxes too.
Speed: full-frame ``detect`` on the clip's 640x360 frames, milliseconds p50/p95, both detectors
single-threaded (OpenCV and ONNX Runtime one thread each). Label agreement: on the rotated
pictures, the shipped classifier's label of each found face against its label on the upright
picture by the same detector and crop, for BlazeFace with and without the crop levelled by the
eye line (Haar has no keypoints). Followed: the sample clip's first five seconds as videos, upright,
turned, darkened and shrunk, through the app's face finder: the frames where it reports the face,
for Haar and for BlazeFace re-finding a known face with the full-range or the short-range model.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from detector.align import face_crops  # noqa: E402
from detector.config import DetectionConfig  # noqa: E402
from detector.detection import create_detector  # noqa: E402
from detector.pipeline import create_face_detector  # noqa: E402
from detector.detection.blazeface import BlazeFaceConfig, BlazeFaceDetector  # noqa: E402
from tools.detector_sets import build, found_face, wall  # noqa: E402

DETECTORS = ("haar", "blazeface")
FACE_FREE_STILLS = "face-free, as stills"  # the face-free pictures again, searched as stills


def as_still(set_name: str, picture) -> bool:
    """Whether the app would search ``picture`` as a still: a web photo, or the face-free set's copy for stills."""
    return picture.source == "photo" or set_name == FACE_FREE_STILLS


def detect_all(video, still, sets: dict) -> dict:
    """Each set's detections, picture by picture, by the ``video`` or the ``still`` detector as
    :func:`as_still` says (every measurement below reads these)."""
    return {name: [(still if as_still(name, picture) else video).detect(picture.image) for picture in pictures]
            for name, pictures in sets.items()}


def count(pictures, detections, face_free: bool) -> dict:
    """Per source: faces found and boxes off the face (face sets; an upright picture where neither
    detector found the face counts as missed by both), or pictures with a box (face-free)."""
    rows: dict[str, dict] = {}
    for picture, found in zip(pictures, detections):
        row = rows.setdefault(picture.source, {"pictures": 0, "with_a_box": 0, "boxes": 0} if face_free
                              else {"pictures": 0, "found": 0, "other_boxes": 0})
        row["pictures"] += 1
        if face_free:
            row["with_a_box"] += bool(len(found))
            row["boxes"] += len(found)
            continue
        hit = picture.face is not None and found_face(found.boxes.astype(np.float64), picture.face) is not None
        row["found"] += hit
        row["other_boxes"] += len(found) - hit
    for row in rows.values():
        if "found" in row:
            row["found_share"] = round(row["found"] / max(row["pictures"], 1), 4)
    return rows


def speed(detector, frames: list[np.ndarray], repeats: int = 2) -> dict:
    detector.detect(frames[0])  # warm-up
    times = []
    for _ in range(repeats):
        for frame in frames:
            start = time.perf_counter()
            detector.detect(frame)
            times.append((time.perf_counter() - start) * 1000)
    return {"frames": len(times), "p50": round(float(np.percentile(times, 50)), 2), "p95": round(float(np.percentile(times, 95)), 2)}


def label_of(classifier, picture, found, level: bool) -> str | None:
    """The classifier's label for the face on ``picture`` in ``found`` (None: not found)."""
    hit = found_face(found.boxes.astype(np.float64), picture.face)
    if hit is None:
        return None
    keypoints = None if found.keypoints is None else found.keypoints[hit:hit + 1]
    crop = face_crops(picture.image, found.boxes[hit:hit + 1], keypoints, level=level)
    return classifier.labels[int(np.argmax(classifier.predict_crops(crop)[0]))]


VARIANTS = {"haar": ("haar", False), "blazeface, not levelled": ("blazeface", False), "blazeface, levelled": ("blazeface", True)}


def agreement(classifier, sets: dict, detections: dict) -> dict:
    """Per rotated set and variant: faces found both upright and rotated, and how many keep their label."""
    reference = {name: {(p.source, p.index): label_of(classifier, p, found, level)
                        for p, found in zip(sets["upright"], detections[detector]["upright"]) if p.face is not None}
                 for name, (detector, level) in VARIANTS.items()}
    result = {}
    for set_name in (name for name in sets if name.startswith("rotated")):
        result[set_name] = {}
        for name, (detector, level) in VARIANTS.items():
            both = same = 0
            for picture, found in zip(sets[set_name], detections[detector][set_name]):
                before = reference[name][(picture.source, picture.index)]
                after = label_of(classifier, picture, found, level) if before else None
                if after is not None:
                    both += 1
                    same += after == before
            result[set_name][name] = {"faces": both, "same_label": same, "agreement": round(same / max(both, 1), 4)}
    return result


FOLLOWED_FRAMES = 150  # the sample clip's first five seconds, as a video


def video_sequences(wall_image: np.ndarray, face_side: float) -> dict[str, list[np.ndarray]]:
    """The clip's first frames as videos changed in known ways: upright, turned about the frame's
    centre, darkened, and shrunk onto the wall so the face is 50 px."""
    from detector.bench import sample_frames

    frames = sample_frames()[0][:FOLLOWED_FRAMES]
    height, width = frames[0].shape[:2]

    def turned(degrees: float) -> list[np.ndarray]:
        turn = cv2.getRotationMatrix2D((width / 2, height / 2), degrees, 1.0)
        return [cv2.warpAffine(f, turn, (width, height), borderMode=cv2.BORDER_REPLICATE) for f in frames]

    def shrunk(side: int) -> list[np.ndarray]:
        out = []
        for frame in frames:
            image, canvas = cv2.resize(frame, None, fx=side / face_side, fy=side / face_side, interpolation=cv2.INTER_AREA), wall_image.copy()
            canvas[40:40 + image.shape[0], 60:60 + image.shape[1]] = image
            out.append(canvas)
        return out

    return {"upright": frames, "rotated 30°": turned(30), "rotated -45°": turned(-45),
            "dark x0.08": [cv2.convertScaleAbs(f, alpha=0.08) for f in frames], "small 50 px": shrunk(50)}


def followed(detectors: dict, sequences: dict[str, list[np.ndarray]]) -> dict:
    """Per video and detector: frames where the face finder (``detector.identity.FaceFinder``, the
    app's tracking, every search in the frame's own time) reports the clip's one face, and its ms
    per frame. BlazeFace with each re-find model: the full search finds the face, the re-find
    model follows it from frame to frame."""
    from detector.identity import FaceFinder

    result = {}
    for name, frames in sequences.items():
        result[name] = {}
        for variant, detector in detectors.items():
            finder, one, times = FaceFinder(detector), 0, []
            for i, frame in enumerate(frames):
                start = time.perf_counter()
                faces = finder(frame, i / 30)
                times.append((time.perf_counter() - start) * 1000)
                one += len(faces.boxes) == 1
            result[name][variant] = {"frames": len(frames), "one_face": one, "share": round(one / len(frames), 4),
                                     "ms_p50": round(float(np.percentile(times, 50)), 2)}
    return result


def _cell(row: dict) -> str:
    if "found" in row:
        return f"{100 * row['found_share']:.1f}% ({row['found']}/{row['pictures']}), {row['other_boxes']} other"
    return f"{row['with_a_box']} of {row['pictures']} ({row['boxes']} boxes)"


def markdown(data: dict) -> str:
    """Three tables: faces found (and boxes elsewhere) per set and source, speed, label agreement."""
    names = data["detectors"]
    lines = ["| set | source | " + " | ".join(f"{n}: faces found, other boxes" for n in names) + " |",
             "|---|---|" + "---|" * len(names)]
    for set_name, rows in data["sets"].items():
        for source in rows[names[0]]:
            lines.append(f"| {set_name} | {source} | " + " | ".join(_cell(rows[n][source]) for n in names) + " |")
    lines += ["", "| detector | ms per 640x360 frame, p50 | p95 |", "|---|---|---|"]
    lines += [f"| {n} | {data['speed'][n]['p50']:.1f} | {data['speed'][n]['p95']:.1f} |" for n in names]
    variants = list(next(iter(data["agreement"].values())))
    lines += ["", "| label kept under rotation | " + " | ".join(variants) + " |", "|---|" + "---|" * len(variants)]
    for set_name, rows in data["agreement"].items():
        lines.append(f"| {set_name} | " + " | ".join(f"{100 * rows[v]['agreement']:.1f}% of {rows[v]['faces']}" for v in variants) + " |")
    variants = list(next(iter(data["followed"].values())))
    lines += ["", "| clip as video: frames with its face, ms per frame p50 | " + " | ".join(variants) + " |",
              "|---|" + "---|" * len(variants)]
    for name, rows in data["followed"].items():
        lines.append(f"| {name} | " + " | ".join(f"{100 * rows[v]['share']:.1f}% ({rows[v]['one_face']}/{rows[v]['frames']}), "
                                                f"{rows[v]['ms_p50']:.1f} ms" for v in variants) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "detectors.json")
    parser.add_argument("--clip-step", type=int, default=4, help="every Nth sample-clip frame (default 4: 118 frames)")
    parser.add_argument("--photo-step", type=int, default=6, help="every Nth wild-dev photo (default 6: 102 photos)")
    args = parser.parse_args(argv)
    from detector.classifier import EmotionClassifier
    from detector.config import PipelineConfig

    cv2.setNumThreads(1)  # Haar single-threaded, as BlazeFace's session is
    detectors = {name: create_detector(name) for name in DETECTORS}
    stills = {name: create_face_detector(DetectionConfig(name), still=True) for name in DETECTORS}
    sets = build(detectors["haar"], detectors["blazeface"], args.clip_step, args.photo_step)
    sets[FACE_FREE_STILLS] = sets["face-free"]
    clip = [p.image for p in sets["upright"] if p.source == "clip"]
    classifier = EmotionClassifier(PipelineConfig().model)
    load = round(os.getloadavg()[0], 2)
    speeds = {d: speed(detectors[d], clip) for d in DETECTORS}
    detections = {d: detect_all(detectors[d], stills[d], sets) for d in DETECTORS}
    trackers = {"haar": detectors["haar"], "blazeface, re-find full": BlazeFaceDetector(BlazeFaceConfig(refind_model="full")),
                "blazeface, re-find short (default)": detectors["blazeface"]}
    face_side = float(np.median([p.face[2] for p in sets["upright"] if p.source == "clip" and p.face is not None]))
    data = {"detectors": list(DETECTORS), "machine": {"cpus": os.cpu_count(), "load_average_at_start": load},
            "sets": {name: {d: count(pictures, detections[d][name], name.startswith("face-free")) for d in DETECTORS}
                     for name, pictures in sets.items()},
            "speed": speeds, "agreement": agreement(classifier, sets, detections),
            "followed": followed(trackers, video_sequences(wall(), face_side))}
    args.out.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    print(markdown(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
