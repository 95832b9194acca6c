"""Annotators that draw a :class:`FrameResult` onto a copy of its frame.

One class per visual, style fixed at construction (supervision's annotator idea).
Overlays only draw: they never run a model or change a result.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import cv2
import numpy as np

from detector.results import FrameResult

FONT = cv2.FONT_HERSHEY_SIMPLEX
#: BGR colours for FER2013's classes; other class names get a stable colour from their hash.
EMOTION_COLORS = {
    "angry": (40, 40, 230),
    "disgust": (60, 150, 40),
    "fear": (170, 60, 150),
    "happy": (40, 200, 250),
    "sad": (200, 120, 40),
    "surprise": (230, 160, 240),
    "neutral": (190, 190, 190),
    "contempt": (40, 120, 200),
}


def color_for(label: str) -> tuple[int, int, int]:
    if label in EMOTION_COLORS:
        return EMOTION_COLORS[label]
    h = zlib.crc32(label.encode())
    return (64 + h % 192, 64 + (h >> 8) % 192, 64 + (h >> 16) % 192)


def _text_box(image, text, origin, color, scale, thickness=1, text_color=(0, 0, 0)) -> None:
    (tw, th), base = cv2.getTextSize(text, FONT, scale, thickness)
    x, y = origin
    y = max(y, th + base + 2)
    cv2.rectangle(image, (x, y - th - base - 2), (x + tw + 4, y + 1), color, cv2.FILLED)
    cv2.putText(image, text, (x + 2, y - base), FONT, scale, text_color, thickness, cv2.LINE_AA)


@dataclass(frozen=True)
class BoxLabelAnnotator:
    """A box per face, with its label, confidence and track id."""

    thickness: int = 2

    def annotate(self, image: np.ndarray, result: FrameResult) -> np.ndarray:
        scale = max(0.45, min(image.shape[:2]) / 900)
        for record in result.records:
            x, y, w, h = record["box"]
            label = record.get("label", "face")
            color = color_for(label)
            cv2.rectangle(image, (x, y), (x + w, y + h), color, self.thickness)
            text = label if "score" not in record else f"{label} {record['score']:.0%}"
            if "id" in record:
                text = f"#{record['id']} {text}"
            _text_box(image, text, (x, y - 2), color, scale)
        return image


@dataclass(frozen=True)
class ClassBarsAnnotator:
    """One bar per class for the largest face, in a panel at the top-left corner."""

    bar_width: int = 120

    def annotate(self, image: np.ndarray, result: FrameResult) -> np.ndarray:
        largest = result.faces.largest()
        if largest is None or not result.faces.classified:
            return image
        probs = result.faces.probs[largest]
        row = max(14, min(image.shape[:2]) // 28)
        scale = row / 30
        label_width = int(cv2.getTextSize("surprise", FONT, scale, 1)[0][0]) + 8
        width, height = label_width + self.bar_width + 50, row * len(probs) + 8
        panel = image[4 : 4 + height, 4 : 4 + width]
        panel[:] = (panel * 0.35).astype(np.uint8)  # darken behind the bars so they read on any scene
        for i, (name, p) in enumerate(zip(result.labels, probs)):
            top = 8 + 4 + i * row
            cv2.putText(image, name, (10, top + row - 6), FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)
            x0 = 10 + label_width
            cv2.rectangle(image, (x0, top + 2), (x0 + int(self.bar_width * p), top + row - 4), color_for(name), cv2.FILLED)
            cv2.putText(image, f"{p:.0%}", (x0 + self.bar_width + 4, top + row - 6), FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)
        return image


@dataclass(frozen=True)
class HudAnnotator:
    """FPS and per-frame latency at the top-right, and a notice line at the bottom."""

    def annotate(self, image: np.ndarray, fps: float, latency_ms: float, faces: int, notice: str = "") -> np.ndarray:
        scale = max(0.45, min(image.shape[:2]) / 900)
        text = f"{fps:4.1f} FPS  {latency_ms:5.1f} ms  {faces} face{'s' if faces != 1 else ''}"
        (tw, _), _ = cv2.getTextSize(text, FONT, scale, 1)
        _text_box(image, text, (image.shape[1] - tw - 10, 4), (30, 30, 30), scale, text_color=(255, 255, 255))
        if notice:
            _text_box(image, notice, (6, image.shape[0] - 6), (0, 200, 255), scale)
        return image


class Overlay:
    """Everything the window and the annotated video show, drawn in one place."""

    def __init__(self, bars: bool = True):
        self.boxes = BoxLabelAnnotator()
        self.bars = ClassBarsAnnotator() if bars else None
        self.hud = HudAnnotator()

    def draw(self, result: FrameResult, fps: float = 0.0, notice: str = "") -> np.ndarray:
        image = result.image.copy()
        self.boxes.annotate(image, result)
        if self.bars:
            self.bars.annotate(image, result)
        latency = result.timings.get("total", 0.0)
        return self.hud.annotate(image, fps, latency, len(result.faces), notice)
