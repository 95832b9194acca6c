"""Test scenes made of real faces: FER2013 crops composited into 640x480 frames over a
real background (the sample clip's wooden wall), and videos written from them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from detector.detection.haar import HaarConfig, HaarFaceDetector
from detector.labels import FER2013_LABELS
from detector.sources import read_frames

REPO = Path(__file__).resolve().parents[1]
SAMPLE_CLIP = REPO / "samples" / "sample_face.mp4"
CASCADE = REPO / "haarcascade_frontalface_default.xml"
FRAME_SIZE = (640, 480)
FACE_SIDE = 150


@dataclass(frozen=True)
class RealFace:
    image: np.ndarray  # 48x48 gray, as in FER2013
    label: str
    path: str


def background(size: tuple[int, int] = FRAME_SIZE) -> np.ndarray:
    """The face-free left part of the sample clip's first frame, stretched to ``size``."""
    frames = read_frames(SAMPLE_CLIP, count=1)[0]
    if not frames:
        raise RuntimeError(f"cannot read {SAMPLE_CLIP}")
    return cv2.resize(frames[0][:, :240], size, interpolation=cv2.INTER_CUBIC)


def place(scene: np.ndarray, face: np.ndarray, x: int, y: int, side: int = FACE_SIDE) -> tuple[int, int, int, int]:
    """Paste a gray face (upscaled to ``side``) at ``x, y``; returns its box, clipped to the scene."""
    big = cv2.cvtColor(cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC), cv2.COLOR_GRAY2BGR)
    h, w = scene.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + side, w), min(y + side, h)
    scene[y0:y1, x0:x1] = big[y0 - y : y1 - y, x0 - x : x1 - x]
    return x0, y0, x1 - x0, y1 - y0


def detectable_faces(fer_dir: Path, split: str, per_class: int, classes=FER2013_LABELS) -> list[RealFace]:
    """The first ``per_class`` faces of each class that Haar finds when placed alone in a scene.

    FER2013 crops are tight, so Haar misses about a third of them; the pipeline
    can only classify what it detects, and these tests are about what comes after.
    """
    detector = HaarFaceDetector(HaarConfig(cascade=str(CASCADE)))
    base = background()
    chosen: list[RealFace] = []
    for label in classes:
        found = 0
        for path in sorted((fer_dir / split / label).glob("*.jpg")):
            face = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            scene = base.copy()
            place(scene, face, 245, 165)
            if len(detector.detect(scene)) == 1:
                chosen.append(RealFace(face, label, str(path)))
                found += 1
                if found == per_class:
                    break
    return chosen


def scene_with(faces: list[np.ndarray], positions: list[tuple[int, int]], side: int = FACE_SIDE) -> tuple[np.ndarray, list]:
    scene = background()
    boxes = [place(scene, face, x, y, side) for face, (x, y) in zip(faces, positions)]
    return scene, boxes


def write_video(path: Path, frames: list[np.ndarray], fps: float = 15.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (frames[0].shape[1], frames[0].shape[0]))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def iou(a, b) -> float:
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0, min(ax1, bx1) - max(a[0], b[0]))
    ih = max(0, min(ay1, by1) - max(a[1], b[1]))
    inter = iw * ih
    return inter / float(a[2] * a[3] + b[2] * b[3] - inter) if inter else 0.0


# Harder identity scenes: real faces that cross, get covered, leave and come back, change
# size. Each builder returns (frames, truth): truth[k] maps each person (0, 1, ...) to the
# box where a person would see that face in frame k, or None while it is hidden or gone.

Scene = tuple[list[np.ndarray], list[dict[int, tuple[int, int, int, int] | None]]]


def _compose(faces: list[np.ndarray], placements: list[list[tuple[int, int, int] | None]]) -> Scene:
    """``placements[k][i]``: face ``i``'s ``(x, y, side)`` in frame ``k`` (later faces drawn on
    top), or None when it is out of the picture. A face is None in the truth while less than
    60% of it shows (covered by a later face, or past the frame's edge)."""
    base, frames, truth = background(), [], []
    for spots in placements:
        scene, boxes = base.copy(), {}
        for i, spot in enumerate(spots):
            if spot is not None:
                boxes[i] = place(scene, faces[i], *spot)
        shown = {}
        for i, box in boxes.items():
            side = placements[len(frames)][i][2]
            covered = [boxes[j] for j in boxes if j > i]
            shown[i] = box if _visible(box, covered) >= 0.6 * side * side else None
        frames.append(scene)
        truth.append({i: shown.get(i) for i in range(len(faces))})
    return frames, truth


def _visible(box, covers) -> int:
    mask = np.ones((box[3], box[2]), bool)
    for x, y, w, h in covers:
        x0, y0 = max(x - box[0], 0), max(y - box[1], 0)
        mask[y0 : max(y + h - box[1], 0), x0 : max(x + w - box[0], 0)] = False
    return int(mask.sum())


def crossing_scene(faces: list[np.ndarray], frames: int = 45, side: int = 130, offset: int = 25) -> Scene:
    """Two faces walk past each other, ``offset`` px apart in height: the second passes in
    front of the first, hiding it."""
    steps = np.linspace(0, 1, frames)
    return _compose(faces[:2], [[(int(30 + 450 * s), 150, side), (int(480 - 450 * s), 150 + offset, side)] for s in steps])


def covered_scene(faces: list[np.ndarray], frames: int = 45, hidden: range = range(15, 25), side: int = 140) -> Scene:
    """Two faces side by side, drifting; the first is covered (the wall pasted over it) for ``hidden`` frames."""
    placements = []
    for k in range(frames):
        first = None if k in hidden else (60 + 2 * k, 150, side)
        placements.append([first, (400 - k, 170, side)])
    return _compose(faces[:2], placements)


def leaving_scene(faces: list[np.ndarray], frames: int = 50, away: int = 0, side: int = 140) -> Scene:
    """The first face walks out of the right edge and straight back in where it left (plus
    ``away`` frames out): no whole face on the right for about 20 frames, 1.3 s at 15 fps.
    The second stays on the left throughout."""
    placements = []
    for k in range(frames):
        x = 380 + 16 * k if k < 20 else 380 + 16 * (40 + away - k) if k >= 20 + away else None
        first = (x, 160, side) if x is not None and x < 640 else None
        placements.append([first, (40, 170, side)])
    return _compose(faces[:2], placements)


def zoom_scene(faces: list[np.ndarray], frames: int = 60) -> Scene:
    """One face that comes closer and goes back: its side 100 -> 230 -> 100 px, centre fixed."""
    placements = []
    for k in range(frames):
        side = int(100 + 130 * np.sin(np.pi * k / (frames - 1)))
        placements.append([(320 - side // 2, 240 - side // 2, side)])
    return _compose(faces[:1], placements)
