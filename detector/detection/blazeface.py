"""MediaPipe's BlazeFace face detector, run by ONNX Runtime: boxes, scores and six keypoints (``--detector blazeface``).

Where Haar's frontal cascade loses tilted, dark, backlit and small faces, BlazeFace (a small
SSD network trained on faces at every roll) finds them, and its keypoints give the eye line
the crop is levelled by (``detector.align``). The models are Google's (Apache-2.0), converted
to ONNX by ``tools/blazeface_convert.py`` and shipped in ``models/blazeface/``; the model card
(``https://mediapipe.page.link/blazeface-mc``) and MediaPipe's graph options give the input
sizes, anchors and thresholds in :data:`MODELS`; ``detector.detection.ssd`` decodes.

The frame is letterboxed (scaled to fit, padded, never stretched), so a box maps back to frame
pixels without distortion. A full search also looks at overlapping tiles (``BlazeFaceConfig.tile_px``,
400 px: a 50 px face is 24 px to the model, about the smallest it finds reliably); a video frame's
tiles are at least half its longer side, so a search costs at most about seven model runs, while a
still is tiled at 400 px whatever its size. Boxes from the frame and its tiles are merged by
weighted NMS, and a box whose centre lies in a better one is dropped (the whole frame's coarse box
around a face a tile saw sharply). In a still where all that finds nothing, ``detector.detection.stills``
looks again at turned and brightened copies. BlazeFace's boxes sit lower and tighter on the face
than the FER2013 crops the classifier was trained on; ``framing.json`` (measured by
``tools/face_framing.py``) maps them to that framing.

OpenCV is imported where it runs, not at the top: every front end imports this module to list
its flags, and ``serve`` must set OpenCV's decoder pixel limit before cv2 loads.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from detector.detection import BLAZEFACE_KEYPOINTS, FaceDetections, register_detector
from detector.detection import stills
from detector.detection.boxes import centres, clip_boxes, same_face
from detector.detection.ssd import Decoded, decode, ssd_anchors, weighted_nms
from detector.errors import ModelError, check_settings
from detector.paths import BLAZEFACE_DIR, resource

log = logging.getLogger(__name__)

MODEL_DIR = BLAZEFACE_DIR
FRAMING_FILE = "framing.json"
#: framing.json's table of box maps for each role a model plays: a full search of a frame, or
#: re-finding a known face in its region (where the face fills half the input and is framed differently).
FRAMING_ROLES = {"search": "mappings", "refind": "refind_mappings"}
#: The full-range model finds faces up to about half its input: a frame filled by one face (a
#: close webcam, a portrait photo) is also searched with this margin of black on each side.
ZOOM_OUT_MARGIN = 0.5
#: Keypoint order of BlazeFace's output (MediaPipe's ``FaceKeypoint``): the person's right
#: eye first, which sits on the image's left in an unmirrored upright picture.
KEYPOINTS = BLAZEFACE_KEYPOINTS


@dataclass(frozen=True)
class BlazeFaceModel:
    """One BlazeFace variant, as MediaPipe's ``face_detection_*_range`` graphs configure it."""

    file: str  # ONNX file in models/blazeface/
    tflite: str  # the file it was converted from
    input_size: int  # square input side, pixels
    strides: tuple[int, ...]  # SsdAnchorsCalculator strides, one per layer
    interpolated_scale_aspect_ratio: float  # 1.0: a second anchor per layer; 0.0: none
    num_anchors: int
    min_score: float = 0.5  # MediaPipe's min_detection_confidence default
    iou_threshold: float = 0.3  # NonMaxSuppressionCalculator min_suppression_threshold
    score_clip: float = 100.0  # TensorsToDetectionsCalculator score_clipping_thresh


MODELS = {
    "full": BlazeFaceModel("face_detection_full_range.onnx", "face_detection_full_range.tflite", 192, (4,), 0.0, 2304),
    "short": BlazeFaceModel("face_detection_short_range.onnx", "face_detection_short_range.tflite", 128,
                            (8, 16, 16, 16), 1.0, 896),
}


@dataclass(frozen=True)
class BlazeFaceConfig:
    """How BlazeFace runs: which model, its score threshold, tiling, threads; docs/DETECTORS.md measured the defaults.

    Raises:
        SettingsError: a value it cannot run with, named by its flag.
    """

    model: str = "full"  # a key of MODELS: full-range (faces up to ~5 m) or short-range (within ~2 m, faster)
    refind_model: str = "short"  # the model that re-finds a known face in its region, where the face fills about
    # half the window: the short-range model's case, at a third of the full-range model's cost (docs/DETECTORS.md)
    min_score: float | None = None  # None: the model's own (MediaPipe's 0.5)
    tile_px: int = 400  # frames with a longer side above this are also searched in tiles of this side (0 = never);
    # a video frame's tiles are at least half its longer side
    zoom_out: bool = True  # a full search that finds nothing also looks at the frame shrunk onto a canvas twice its size
    still: bool = False  # frames are still images (no real-time budget): 400 px tiles at any size, turned and brightened looks
    roi_margin: float = 0.5  # a known face is re-found in its box grown by this many sides on each side
    threads: int = 1  # ONNX Runtime intra-op threads: one, beside the classifier's

    def __post_init__(self) -> None:
        check_settings(
            f"--blazeface-model must be one of {', '.join(MODELS)}, got {self.model!r}" if self.model not in MODELS else "",
            f"--blazeface-refind must be one of {', '.join(MODELS)}, got {self.refind_model!r}"
            if self.refind_model not in MODELS else "",
            f"--blazeface-min-score must be between 0 and 1, got {self.min_score}"
            if self.min_score is not None and not 0 < self.min_score < 1 else "",
            f"--blazeface-tile must be 0 or 128 or more, got {self.tile_px}" if self.tile_px and self.tile_px < 128 else "",
            f"roi_margin must be 0 or more, got {self.roi_margin}" if self.roi_margin < 0 else "",
            f"threads must be 1 or more, got {self.threads}" if self.threads < 1 else "",
        )


@dataclass(frozen=True)
class Framing:
    """A fixed affine map from a detector's box to the FER2013 framing: centre moved by
    ``dx, dy`` box sides, sides scaled by ``sx, sy``."""

    dx: float = 0.0
    dy: float = 0.0
    sx: float = 1.0
    sy: float = 1.0

    def apply(self, boxes: np.ndarray) -> np.ndarray:
        """``(N, 4)`` float ``x, y, w, h`` -> the same boxes reframed (float)."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        w, h = boxes[:, 2] * self.sx, boxes[:, 3] * self.sy
        cx = boxes[:, 0] + boxes[:, 2] * (0.5 + self.dx)
        cy = boxes[:, 1] + boxes[:, 3] * (0.5 + self.dy)
        return np.stack([cx - w / 2, cy - h / 2, w, h], axis=1)


def read_framing(folder: Path, model: str, role: str = "search") -> Framing:
    """``framing.json``'s mapping for ``model`` in ``role`` (a key of :data:`FRAMING_ROLES`).
    Raises ModelError when the file or entry is missing."""
    path = folder / FRAMING_FILE
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))[FRAMING_ROLES[role]][model]
        return Framing(*(float(entry[key]) for key in ("dx", "dy", "sx", "sy")))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ModelError(f"{path}: no usable {role} box mapping for BlazeFace '{model}' ({error}); "
                         f"rebuild it with python tools/face_framing.py") from None


def letterbox(image: np.ndarray, side: int, margin: float = 0.0) -> tuple[np.ndarray, float, tuple[float, float]]:
    """A BGR (or gray) image as the model's input: scaled to fit ``side`` x ``side`` keeping its
    aspect ratio (with ``margin`` of its longer side of black on each side), centred on black,
    RGB float32 in [-1, 1] (MediaPipe's ImageToTensor range).
    Returns ``(tensor (side, side, 3), scale, (pad_x, pad_y))``: frame = (input - pad) / scale."""
    import cv2  # here, not at the top: serve sets OpenCV's pixel limit before cv2 loads

    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    height, width = image.shape[:2]
    scale = side / (max(height, width) * (1 + 2 * margin))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    canvas = np.zeros((side, side, 3), np.uint8)
    pad_x, pad_y = (side - size[0]) // 2, (side - size[1]) // 2
    canvas[pad_y:pad_y + size[1], pad_x:pad_x + size[0]] = resized[:, :, 2::-1]
    return canvas.astype(np.float32) * (2.0 / 255.0) - 1.0, scale, (float(pad_x), float(pad_y))


def tile_side(width: int, height: int, tile_px: int, still: bool) -> int:
    """The tile side a full search of a ``width`` x ``height`` frame uses: ``tile_px``, and for a
    video frame at least half its longer side (0: no tiles)."""
    return tile_px if still or not tile_px else max(tile_px, -(-max(width, height) // 2))


def one_per_face(boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Indices of the boxes to keep, best score first: a box whose centre lies in a better kept
    box, or that holds a better kept box's centre, is the same face seen coarser
    (``detector.detection.boxes.same_face``). ``boxes``: ``(N, 4)`` ``x, y, w, h``."""
    same = same_face(boxes, boxes)
    kept: list[int] = []
    for i in np.argsort(-np.asarray(scores), kind="stable"):
        if not any(same[i, j] for j in kept):
            kept.append(int(i))
    return np.asarray(kept, np.int64)


def uncut(found: Decoded, tile: tuple[int, int, int, int], width: int, height: int) -> Decoded:
    """``found`` in a tile (``x0, y0, x1, y1`` tile pixels), less the faces a tile edge inside the
    frame cuts: such a face lies whole in a neighbouring tile or, larger than the overlap, in the
    whole frame, and half a face gives a box and keypoints off the face."""
    x, y, w, h = tile
    margin = 0.01 * max(w, h)
    low = np.array([0 if x == 0 else margin, 0 if y == 0 else margin], np.float32)
    high = np.array([w if x + w >= width else w - margin, h if y + h >= height else h - margin], np.float32)
    inside = (found.boxes[:, :2] >= low).all(axis=1) & (found.boxes[:, 2:] <= high).all(axis=1)
    return found.take(inside)


def tiles(width: int, height: int, tile_px: int, overlap: float = 0.25) -> list[tuple[int, int, int, int]]:
    """Square ``x, y, w, h`` windows covering a frame: the whole frame, and where its longer
    side exceeds ``tile_px``, tiles of that side overlapping by ``overlap`` of a side (a face up
    to that size lies whole in at least one)."""
    windows = [(0, 0, width, height)]
    if not tile_px or max(width, height) <= tile_px:
        return windows
    side = min(tile_px, width, height) if min(width, height) >= tile_px // 2 else tile_px
    step = max(1, int(side * (1 - overlap)))

    def starts(length: int) -> list[int]:
        if length <= side:
            return [0]
        count = int(np.ceil((length - side) / step)) + 1
        return [round(i * (length - side) / (count - 1)) for i in range(count)]

    windows += [(x, y, min(side, width), min(side, height)) for y in starts(height) for x in starts(width)]
    return windows


class _Network:
    """One BlazeFace model in one role (``"search"`` or ``"refind"``), loaded: its ONNX Runtime
    session, anchors, the role's box framing and the score threshold.

    Raises:
        ModelError: the model file or its framing.json entry is missing or unreadable.
    """

    def __init__(self, name: str, role: str, folder: Path, config: BlazeFaceConfig, framing: Framing | None):
        import onnxruntime as ort

        from detector.backends import onnx_session_options

        self.spec = MODELS[name]
        path = folder / self.spec.file
        if not path.is_file():
            raise ModelError(f"BlazeFace model not found: {path}")
        try:
            self._session = ort.InferenceSession(str(path), onnx_session_options(config.threads), providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime's own untyped errors for a corrupt file
            raise ModelError(f"cannot load BlazeFace model {path}: {str(error).splitlines()[0][:200]}") from None
        self._input = self._session.get_inputs()[0].name
        self._outputs = [output.name for output in self._session.get_outputs()]  # regressors, then classifiers
        self._anchors = ssd_anchors(self.spec.input_size, self.spec.strides, self.spec.interpolated_scale_aspect_ratio)
        if len(self._anchors) != self.spec.num_anchors:
            raise ModelError(f"{path}: {len(self._anchors)} anchors from its options, the model has {self.spec.num_anchors}")
        self.framing = framing or read_framing(folder, name, role)
        self.min_score = self.spec.min_score if config.min_score is None else config.min_score

    def run(self, window: np.ndarray, margin: float = 0.0) -> Decoded:
        """Candidates in one window, ``x0, y0, x1, y1`` in the window's own pixels (letterbox undone)."""
        side = self.spec.input_size
        tensor, scale, (pad_x, pad_y) = letterbox(window, side, margin)
        raw_boxes, raw_scores = self._session.run(self._outputs, {self._input: tensor[None]})
        found = decode(raw_boxes[0], raw_scores[0], self._anchors, side, self.min_score, self.spec.score_clip)
        offset = np.array([pad_x, pad_y], np.float32)
        boxes = ((found.boxes.reshape(-1, 2, 2) * side - offset) / scale).reshape(-1, 4)
        return Decoded(boxes, (found.keypoints * side - offset) / scale, found.scores)


@register_detector("blazeface")
class BlazeFaceDetector:
    """BlazeFace: faces at any roll (``rotation_tolerant``), scored, with six keypoints. Full
    searches run ``config.model``; a known face is re-found in its region by ``config.refind_model``.
    Not thread-safe: ``copy()`` gives another with its own sessions.

    ``framing``: a box map in place of framing.json's, for every model (identity: the raw boxes).

    Raises:
        ModelError: a model or its framing.json entry is missing or unreadable.
    """

    Config = BlazeFaceConfig
    name = "blazeface"
    rotation_tolerant = True

    def __init__(self, config: BlazeFaceConfig | None = None, folder: Path | None = None, framing: Framing | None = None):
        self.config = config or BlazeFaceConfig()
        self.folder = Path(folder) if folder is not None else resource(MODEL_DIR)
        self._framing = framing
        self._search = _Network(self.config.model, "search", self.folder, self.config, framing)
        self._refind = _Network(self.config.refind_model, "refind", self.folder, self.config, framing)
        self.spec, self.framing = self._search.spec, self._search.framing  # what a full search uses

    def copy(self) -> "BlazeFaceDetector":
        return BlazeFaceDetector(self.config, self.folder, self._framing)

    def close(self) -> None:
        """Nothing to release early: the session is freed with the object."""

    def detect(self, frame: np.ndarray, region: np.ndarray | None = None, *, strict: bool = False) -> FaceDetections:
        """See :meth:`detector.detection.FaceDetector.detect`. Boxes are in the classifier's
        (FER2013) framing; keypoints as the model put them. BlazeFace has one score threshold, so
        ``strict`` changes nothing. With a region: faces whose side is within a factor of 2 of it."""
        height, width = frame.shape[:2]
        if region is None:
            boxes, found = self._search_all(frame)
        else:
            x, y, w, h = (float(v) for v in region)
            margin = self.config.roi_margin * max(w, h)
            found = self.find(frame, (x - margin, y - margin, w + 2 * margin, h + 2 * margin), whole=False)
            boxes = self._refind.framing.apply(found.boxes)
        if region is not None:  # the known face, not a neighbour a quarter or four times its size
            ratio = np.sqrt(boxes[:, 2] * boxes[:, 3] / max(float(region[2]) * float(region[3]), 1.0))
            keep = (ratio >= 0.5) & (ratio <= 2.0)
            boxes, found = boxes[keep], found.take(keep)
        boxes = clip_boxes(np.round(boxes), width, height)
        keep = (boxes[:, 2] >= 2) & (boxes[:, 3] >= 2)
        boxes, found = boxes[keep], found.take(keep)
        if region is None:
            order = np.argsort(-(boxes[:, 2].astype(np.int64) * boxes[:, 3]), kind="stable")
        else:
            order = np.argsort(np.linalg.norm(centres(boxes) - centres(np.asarray(region))[0], axis=1), kind="stable")
        return FaceDetections(boxes[order], found.scores[order], found.keypoints[order])

    def _search_all(self, frame: np.ndarray) -> tuple[np.ndarray, Decoded]:
        """A full search: framed ``(N, 4)`` float boxes and the ``Decoded`` they came from (its
        keypoints and scores; keypoints in ``frame``'s pixels). A still where it finds nothing is
        searched again turned and, if dark, brightened (``detector.detection.stills``)."""
        found = self.find(frame)
        if len(found.scores) or not self.config.still:
            return self.framing.apply(found.boxes), found
        parts = []
        for degrees in stills.TURNS:
            turned, back = stills.turn(frame, degrees)
            seen = self.find(turned)
            boxes, keypoints = stills.map_back(self.framing.apply(seen.boxes), seen.keypoints, back)
            parts.append((boxes, Decoded(seen.boxes, keypoints, seen.scores)))
        brighter = stills.lift(frame)
        if brighter is not None:
            seen = self.find(brighter)
            parts.append((self.framing.apply(seen.boxes), seen))
        boxes = np.concatenate([p[0] for p in parts])
        found = Decoded.concat([p[1] for p in parts])
        large = np.flatnonzero(boxes[:, 2:].min(axis=1) >= stills.MIN_FACE * min(frame.shape[:2]))
        keep = large[one_per_face(boxes[large], found.scores[large])]  # a face both a turned and the brightened copy show
        return boxes[keep], found.take(keep)

    def find(self, image: np.ndarray, region: tuple[float, float, float, float] | None = None, whole: bool = True) -> Decoded:
        """Faces in ``image`` (BGR or gray, uint8), or only in ``region`` (``x, y, w, h``, frame
        pixels, cut to the frame), as the model drew them: ``Decoded`` boxes as ``x, y, w, h`` in
        frame pixels, best score first. ``whole``: a full search (the search model, tiles and the
        zoomed-out view); else one look by the re-find model."""
        x0, y0 = 0, 0
        if region is not None:
            x0, y0 = max(0, int(region[0])), max(0, int(region[1]))
            image = image[y0:max(y0, int(region[1] + region[3])), x0:max(x0, int(region[0] + region[2]))]
        height, width = image.shape[:2]
        if min(height, width) < 2:
            return Decoded(np.zeros((0, 4), np.float32), np.zeros((0, len(KEYPOINTS), 2), np.float32), np.zeros(0, np.float32))
        net = self._search if whole else self._refind
        parts = [net.run(image)]
        if whole:
            if self.config.zoom_out and not len(parts[0].scores):  # a face filling the frame: too big for the model
                parts.append(net.run(image, ZOOM_OUT_MARGIN))
            side = tile_side(width, height, self.config.tile_px, self.config.still)
            for x, y, w, h in tiles(width, height, side)[1:]:  # [0] is the whole frame, searched above
                found = uncut(net.run(image[y:y + h, x:x + w]), (x, y, w, h), width, height)
                shift = np.array([x, y], np.float32)
                parts.append(Decoded((found.boxes.reshape(-1, 2, 2) + shift).reshape(-1, 4), found.keypoints + shift, found.scores))
        merged = Decoded.concat(parts)
        merged = weighted_nms(merged, net.spec.iou_threshold)  # also one face seen by the frame and by tiles
        boxes = np.concatenate([merged.boxes[:, :2] + (x0, y0), merged.boxes[:, 2:] - merged.boxes[:, :2]], axis=1)
        keep = one_per_face(boxes, merged.scores)
        return Decoded(boxes[keep].astype(np.float32), merged.keypoints[keep] + np.array([x0, y0], np.float32), merged.scores[keep])

    @staticmethod
    def add_flags(parser: argparse.ArgumentParser) -> None:
        """``--blazeface-model --blazeface-refind --blazeface-min-score --blazeface-tile``, defaults from :class:`BlazeFaceConfig`."""
        d = BlazeFaceConfig()
        group = parser.add_argument_group("blazeface detector (--detector blazeface)")
        group.add_argument("--blazeface-model", choices=tuple(MODELS), default=d.model,
                           help="full: faces near and far (default); short: faster, misses faces under ~80 px")
        group.add_argument("--blazeface-refind", choices=tuple(MODELS), default=d.refind_model,
                           help=f"the model that re-finds a known face in its region every frame (default {d.refind_model}: "
                                f"the face fills half the window, the short-range model's case, at a third of the cost)")
        group.add_argument("--blazeface-min-score", type=float, default=d.min_score, metavar="SCORE",
                           help="smallest face score kept, 0-1 (default: the model's own, 0.5)")
        group.add_argument("--blazeface-tile", type=int, default=d.tile_px, metavar="PX",
                           help=f"frames larger than this are also searched in tiles of this side (a video frame's at least half "
                                f"its longer side), 0 = never (default {d.tile_px})")

    @staticmethod
    def config_from_flags(args: argparse.Namespace) -> BlazeFaceConfig:
        """:class:`BlazeFaceConfig` from :meth:`add_flags`' values (``SettingsError`` as the dataclass raises it)."""
        return BlazeFaceConfig(model=args.blazeface_model, refind_model=args.blazeface_refind,
                               min_score=args.blazeface_min_score, tile_px=args.blazeface_tile)
