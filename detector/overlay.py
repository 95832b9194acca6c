"""Annotators that draw a :class:`FrameResult` onto a copy of its frame.

One class per visual, style fixed at construction (supervision's annotator idea).
Overlays only draw: they never run a model or change a result.
"""

from __future__ import annotations

import time
import zlib
from collections import deque
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


Rect = tuple[int, int, int, int]  # x, y, w, h


def _text_rect(text, origin, scale, thickness=1) -> Rect:
    """Where :func:`_text_box` draws ``text`` with its baseline-left corner at ``origin``."""
    (tw, th), base = cv2.getTextSize(text, FONT, scale, thickness)
    x, y = origin
    y = max(y, th + base + 2)
    return x, y - th - base - 2, tw + 4, th + base + 3


def _text_box(image, text, origin, color, scale, thickness=1, text_color=(0, 0, 0)) -> Rect:
    x, y, w, h = rect = _text_rect(text, origin, scale, thickness)
    base = cv2.getTextSize(text, FONT, scale, thickness)[1]
    cv2.rectangle(image, (x, y), (x + w, y + h), color, cv2.FILLED)
    cv2.putText(image, text, (x + 2, y + h - 1 - base), FONT, scale, text_color, thickness, cv2.LINE_AA)
    return rect


def _overlap(a: Rect, b) -> int:
    """Overlapping area of two ``x, y, w, h`` rectangles, in pixels."""
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(0, w) * max(0, h)


def free_spot(candidates: list[Rect], avoid) -> Rect:
    """The first candidate rectangle that covers none of ``avoid`` (faces, other panels), else
    the one that covers least of them: panels and banners never hide a face when they can help it."""
    covered = [sum(_overlap(c, a) for a in avoid) for c in candidates]
    return candidates[int(np.argmin(covered))]


@dataclass(frozen=True)
class BoxLabelAnnotator:
    """A box per face, with its label, confidence and track id."""

    thickness: int = 2

    def annotate(self, image: np.ndarray, result: FrameResult, avoid: tuple[Rect, ...] = ()) -> np.ndarray:
        """``avoid``: strips the label must not run under (the FPS strip); there the label
        goes below the box instead of above it."""
        scale = max(0.45, min(image.shape[:2]) / 900)
        for record in result.records:
            x, y, w, h = record["box"]
            label = record.get("label", "face")
            color = color_for(label)
            cv2.rectangle(image, (x, y), (x + w, y + h), color, self.thickness)
            text = label if "score" not in record else f"{label} {record['score']:.0%}"
            if "id" in record:
                text = f"#{record['id']} {text}"
            above = _text_rect(text, (x, y - 2), scale)
            below = (x, y + h + above[3] + 2)
            _text_box(image, text, below if any(_overlap(above, a) for a in avoid) else (x, y - 2), color, scale)
        return image


@dataclass(frozen=True)
class ClassBarsAnnotator:
    """One bar per class for the largest face, in a panel at the top-left corner."""

    bar_width: int = 120

    def rect(self, image: np.ndarray, classes: int) -> Rect:
        """Where the panel goes for ``classes`` bars."""
        row = max(14, min(image.shape[:2]) // 28)
        label_width = int(cv2.getTextSize("surprise", FONT, row / 30, 1)[0][0]) + 8
        return 4, 4, label_width + self.bar_width + 50, row * classes + 8

    def annotate(self, image: np.ndarray, result: FrameResult) -> np.ndarray:
        largest = result.faces.largest()
        if largest is None or not result.faces.classified:
            return image
        probs = result.faces.probs[largest]
        row = max(14, min(image.shape[:2]) // 28)
        scale = row / 30
        _, _, width, height = self.rect(image, len(probs))
        label_width = width - self.bar_width - 50
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
    """FPS and per-frame latency at the top-right, and a notice line (bottom-left, or
    wherever it covers no face), and the PAUSED banner."""

    def _scale(self, image: np.ndarray) -> float:
        return max(0.45, min(image.shape[:2]) / 900)

    def _text(self, fps: float, latency_ms: float, faces: int) -> str:
        return f"{fps:4.1f} FPS  {latency_ms:5.1f} ms  {faces} face{'s' if faces != 1 else ''}"

    def rect(self, image: np.ndarray, fps: float = 0.0, latency_ms: float = 0.0, faces: int = 0) -> Rect:
        """Where the FPS strip goes, so labels can keep out from under it."""
        scale = self._scale(image)
        (tw, _), _ = cv2.getTextSize(self._text(fps, latency_ms, faces), FONT, scale, 1)
        return _text_rect(self._text(fps, latency_ms, faces), (image.shape[1] - tw - 10, 4), scale)

    def annotate(self, image: np.ndarray, fps: float, latency_ms: float, faces: int, notice: str = "",
                 avoid=()) -> np.ndarray:
        scale = self._scale(image)
        x, y = self.rect(image, fps, latency_ms, faces)[:2]
        _text_box(image, self._text(fps, latency_ms, faces), (x, 4), (30, 30, 30), scale, text_color=(255, 255, 255))
        if notice:
            sx, sy, _, h = self.notice_rect(image, notice, avoid)
            _text_box(image, notice, (sx, sy + h), (0, 200, 255), scale)
        return image

    def notice_rect(self, image: np.ndarray, notice: str, avoid=()) -> Rect:
        """Where the notice goes: bottom-left, else another bottom spot or the top middle, so it covers no face."""
        _, _, w, h = _text_rect(notice, (6, 0), self._scale(image))
        spots = [(6, image.shape[0] - 6 - h, w, h), (image.shape[1] - w - 6, image.shape[0] - 6 - h, w, h),
                 ((image.shape[1] - w) // 2, image.shape[0] - 6 - h, w, h), ((image.shape[1] - w) // 2, h + 12, w, h)]
        return free_spot(spots, list(avoid))

    def paused(self, image: np.ndarray) -> np.ndarray:
        """The frame dimmed, with PAUSED and the key that resumes, in the middle."""
        image = (image * 0.6).astype(np.uint8)
        scale = self._scale(image) * 1.6
        text = "PAUSED - space to resume"
        (tw, th), _ = cv2.getTextSize(text, FONT, scale, 2)
        _text_box(image, text, ((image.shape[1] - tw) // 2, (image.shape[0] + th) // 2), (255, 255, 255), scale, 2)
        return image


class Overlay:
    """Everything the window and the annotated video show, drawn in one place."""

    def __init__(self, bars: bool = True):
        self.boxes = BoxLabelAnnotator()
        self.bars = ClassBarsAnnotator() if bars else None
        self.hud = HudAnnotator()
        self.timeline_annotator = TimelineAnnotator()

    def draw(self, result: FrameResult, fps: float = 0.0, notice: str = "") -> np.ndarray:
        image = result.image.copy()
        latency = result.timings.get("total", 0.0)
        self.boxes.annotate(image, result, avoid=(self.hud.rect(image, fps, latency, len(result.faces)),))
        if self.bars:
            self.bars.annotate(image, result)
        return self.hud.annotate(image, fps, latency, len(result.faces), notice, avoid=result.faces.boxes.tolist())

    def timeline(self, image: np.ndarray, result: FrameResult, history: "ProbabilityHistory", notice: str = "") -> np.ndarray:
        """The live timeline on a drawn frame, keeping off the faces, the notice, the bars and the FPS strip."""
        faces = result.faces.boxes.tolist()
        avoid = faces + [self.hud.rect(image)]
        if notice:
            avoid.append(self.hud.notice_rect(image, notice, faces))
        if self.bars and len(result.faces):
            avoid.append(self.bars.rect(image, len(result.labels)))
        return self.timeline_annotator.annotate(image, history, avoid=avoid)


class FrameRate:
    """Frames per second shown in the HUD: an average of the last frames' rates (weight 0.1)."""

    def __init__(self) -> None:
        self.fps, self._last = 0.0, time.perf_counter()

    def tick(self) -> float:
        """The rate including a frame that ended now."""
        now = time.perf_counter()
        rate = 1.0 / max(now - self._last, 1e-6)
        self.fps = 0.9 * self.fps + 0.1 * rate if self.fps else rate
        self._last = now
        return self.fps


class ProbabilityHistory:
    """The largest face's probabilities over the last ``seconds``, for the live timeline.

    Updated every frame (cheap) so the timeline is full the moment it is toggled
    on. It follows one track: when the largest face becomes another id, the
    history restarts, so one line never mixes two people.
    """

    def __init__(self, seconds: float = 10.0):
        self.seconds = seconds
        self.labels: tuple[str, ...] = ()
        self.track_id = -1
        self.samples: deque[tuple[float, np.ndarray]] = deque()

    def update(self, result: FrameResult) -> None:
        largest = result.faces.largest()
        if largest is None or not result.faces.classified:
            if self.labels:
                self.samples.append((result.time, np.full(len(self.labels), np.nan, np.float32)))
        else:
            track_id = int(result.faces.ids[largest])
            if track_id != self.track_id or tuple(result.labels) != self.labels:
                self.samples.clear()
                self.track_id, self.labels = track_id, tuple(result.labels)
            self.samples.append((result.time, result.faces.probs[largest]))
        while self.samples and (result.time - self.samples[0][0] > self.seconds or self.samples[0][0] > result.time):
            self.samples.popleft()


class TimelineAnnotator:
    """The last seconds of the largest face's probabilities, one line per class, with a legend
    of class colours; in the bottom corner (or top) where it covers no face."""

    def __init__(self, width: int = 260, height: int = 98, legend_width: int = 70):
        self.width, self.height, self.legend_width = width, height, legend_width

    def _place(self, image: np.ndarray, avoid: list) -> Rect:
        """The panel's rectangle: a bottom corner, else higher up, else narrower (down to half
        width) where that frees it; failing all, the spot that covers least of ``avoid``."""
        height = min(self.height, image.shape[0] // 3)
        spots = []
        for share in (1.0, 0.8, 0.6, 0.5):
            full = int(min(self.width, image.shape[1] // 2) * share) + self.legend_width
            spots += [(x, y, full, height + 14) for y in range(image.shape[0] - height - 20, 0, -20)
                      for x in (image.shape[1] - full - 6, 6)]
        return free_spot(spots, avoid)

    def annotate(self, image: np.ndarray, history: ProbabilityHistory, avoid=()) -> np.ndarray:
        """``avoid``: ``x, y, w, h`` boxes (the faces) the panel must not cover where it can help it."""
        if not history.samples or not history.labels:
            return image
        sx, sy, full, height = self._place(image, list(avoid))
        width, height = full - self.legend_width, height - 14
        x0, y0 = sx + self.legend_width, sy + 14
        panel = image[sy : y0 + height, sx : x0 + width]
        panel[:] = (panel * 0.35).astype(np.uint8)  # darken behind the lines so they read on any scene
        now = history.samples[-1][0]
        times = np.array([t for t, _ in history.samples])
        probs = np.stack([p for _, p in history.samples])
        xs = (x0 + width - (now - times) / history.seconds * width).astype(np.int32)
        valid = ~np.isnan(probs[:, 0])  # rows of NaN: frames without a face, drawn as gaps
        runs = [run[valid[run]] for run in np.split(np.arange(len(xs)), np.flatnonzero(~valid))]
        for c, name in enumerate(history.labels):
            ys = (y0 + height - 1 - np.nan_to_num(probs[:, c]) * (height - 2)).astype(np.int32)
            for run in runs:
                if len(run) > 1:
                    cv2.polylines(image, [np.stack([xs[run], ys[run]], axis=1)], False, color_for(name), 2, cv2.LINE_AA)
        row = max(10, height // max(len(history.labels), 1))
        for c, name in enumerate(history.labels):  # the legend: each class name in its line's colour
            cv2.putText(image, name, (sx + 4, y0 + row * c + row - 2), FONT, min(0.4, row / 28), color_for(name), 1, cv2.LINE_AA)
        caption = f"#{history.track_id} last {history.seconds:g} s" if history.track_id >= 0 else f"last {history.seconds:g} s"
        cv2.putText(image, caption, (x0 + 4, y0 - 3), FONT, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        return image
