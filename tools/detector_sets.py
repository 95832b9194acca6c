"""The inputs tools/detector_compare.py runs both face detectors on, built from real pictures.

Faces: sample-clip frames (one real face, moving from tearful to laughing) and ``../shared/wild-dev``
photos (real web photos, one labelled face each). Where the face is: the upright picture's Haar box,
else its BlazeFace box (a picture where neither finds it stays in the upright count only, as a miss),
carried through each change below by the same geometry, so a box "finds" the face when its centre
lies within half a face side of the true centre. Changes:

- rotated by ±20, ±30, ±45 degrees about the face centre (edges repeated);
- small: the clip frame shrunk so the face is 77 or 50 px, on a 640x360 picture of the clip's wall;
- dark: pixel values x0.22 and x0.08 (a dim room; a face of brightness ~11/255);
- backlit: the face region x0.25 and everything around it brightened toward white (a window behind).

Face-free pictures (no face in them, so any box is a false one), made from the clip: its wall (the
left 240 px of clip frames, at several crops, scales and flips), and whole clip frames with the face
cut out (the face box grown by half a side each way, filled with the wall): the hair, neck and
shoulders stay. The wild-dev photos are close-ups (the face fills most of the picture), so cutting
the face out of them leaves no scene; they are not used here. All are one room: this says a
detector draws no box on this kind of background, not how often it does on every scene.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
WILD_DEV = REPO.parent / "shared" / "wild-dev"
ANGLES = (-45, -30, -20, 20, 30, 45)
SMALL_SIDES = (77, 50)
DARK_GAINS = (0.22, 0.08)


@dataclass(frozen=True)
class Picture:
    image: np.ndarray  # BGR uint8
    face: np.ndarray | None  # (4,) float x, y, w, h of the one face; None: face-free
    source: str  # "clip" | "photo" | "wall"
    index: int  # which upright picture it was made from


def clip_frames(step: int) -> list[np.ndarray]:
    from detector.bench import sample_frames

    return sample_frames()[0][::step]


def photos(step: int) -> list[np.ndarray]:
    images = [cv2.imread(str(path)) for path in sorted(WILD_DEV.glob("*/*.jpg"))[::step]]
    return [image for image in images if image is not None]


def true_face(image: np.ndarray, haar, blazeface) -> np.ndarray | None:
    """The upright picture's face: Haar's largest box, else BlazeFace's best; None if neither finds one."""
    for detector in (haar, blazeface):
        found = detector.detect(image)
        if len(found):
            return found.boxes[0].astype(np.float64)
    return None


def rotated(picture: Picture, degrees: float) -> Picture:
    x, y, w, h = picture.face
    centre = (x + w / 2, y + h / 2)
    turn = cv2.getRotationMatrix2D(centre, degrees, 1.0)
    image = cv2.warpAffine(picture.image, turn, picture.image.shape[1::-1], borderMode=cv2.BORDER_REPLICATE)
    return Picture(image, picture.face, picture.source, picture.index)  # turned about its centre: the face stays put


def wall(size: tuple[int, int] = (640, 360)) -> np.ndarray:
    from tools.scenes import background

    return background(size)


def small(picture: Picture, side: int, canvas: np.ndarray, rng: np.random.Generator) -> Picture:
    scale = side / picture.face[2]
    image = cv2.resize(picture.image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    out = canvas.copy()
    height, width = image.shape[:2]
    height, width = min(height, out.shape[0]), min(width, out.shape[1])
    ox, oy = int(rng.integers(0, out.shape[1] - width + 1)), int(rng.integers(0, out.shape[0] - height + 1))
    out[oy:oy + height, ox:ox + width] = image[:height, :width]
    return Picture(out, picture.face * scale + [ox, oy, 0, 0], picture.source, picture.index)


def dark(picture: Picture, gain: float) -> Picture:
    return Picture(cv2.convertScaleAbs(picture.image, alpha=gain), picture.face, picture.source, picture.index)


def backlit(picture: Picture) -> Picture:
    """The face dimmed to a quarter, its surroundings pushed toward white, blended over a face side."""
    x, y, w, h = picture.face
    height, width = picture.image.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    distance = np.hypot((xs - x - w / 2) / w, (ys - y - h / 2) / h)
    light = np.clip((distance - 0.45) / 0.5, 0, 1)[:, :, None]  # 0 on the face, 1 a face side away
    image = picture.image.astype(np.float32)
    lit = image * (0.25 * (1 - light)) + (140 + image * 0.6) * light
    return Picture(np.clip(lit, 0, 255).astype(np.uint8), picture.face, picture.source, picture.index)


def face_free(frames: list[np.ndarray], clip_faces: list[Picture]) -> list[Picture]:
    """Clip-wall views and clip frames with the face cut out (see the module docstring)."""
    out = []
    for i, frame in enumerate(frames):
        left = frame[:, :240]
        views = (cv2.resize(left, (640, 360)), left, cv2.flip(cv2.resize(left[60:300], (480, 360)), 1))
        out += [Picture(view, None, "wall", i) for view in views]
    for picture in clip_faces:
        x, y, w, h = picture.face
        height, width = picture.image.shape[:2]
        x0, y0 = int(max(0, x - w / 2)), int(max(0, y - h / 2))
        x1, y1 = int(min(width, x + 1.5 * w)), int(min(height, y + 1.5 * h))
        image = picture.image.copy()
        image[y0:y1, x0:x1] = cv2.resize(picture.image[:, :240], (x1 - x0, y1 - y0))
        out.append(Picture(image, None, "clip, face cut out", picture.index))
    return out


def build(haar, blazeface, clip_step: int = 4, photo_step: int = 6, seed: int = 0) -> dict[str, list[Picture]]:
    """Every set by name: "upright", "rotated ±N°", "small N px", "dark xG", "backlit", "face-free"."""
    frames, images = clip_frames(clip_step), photos(photo_step)
    upright = [Picture(image, true_face(image, haar, blazeface), source, i)
               for source, group in (("clip", frames), ("photo", images)) for i, image in enumerate(group)]
    known = [picture for picture in upright if picture.face is not None]
    sets = {"upright": upright}
    for degrees in sorted({abs(a) for a in ANGLES}):
        sets[f"rotated ±{degrees}°"] = [rotated(p, sign * degrees) for p in known for sign in (-1, 1)]
    rng, canvas = np.random.default_rng(seed), wall()
    clip_known = [picture for picture in known if picture.source == "clip"]
    for side in SMALL_SIDES:
        sets[f"small {side} px"] = [small(p, side, canvas, rng) for p in clip_known]
    for gain in DARK_GAINS:
        sets[f"dark x{gain:g}"] = [dark(p, gain) for p in known]
    sets["backlit"] = [backlit(p) for p in known]
    sets["face-free"] = face_free(frames, clip_known)
    return sets


def found_face(boxes: np.ndarray, face: np.ndarray) -> int | None:
    """Index of the box on ``face`` (its centre within half a face side of the face's centre), or None."""
    if not len(boxes):
        return None
    centres = boxes[:, :2] + boxes[:, 2:] / 2
    distance = np.linalg.norm(centres - (face[:2] + face[2:] / 2), axis=1)
    best = int(np.argmin(distance))
    return best if distance[best] <= 0.5 * max(face[2], face[3]) else None
