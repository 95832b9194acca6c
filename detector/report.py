"""A video report people can read: ``--report DIR`` writes frames.csv, summary.json,
timeline.png and annotated.mp4. Also the live window's rolling timeline, and the
progress bar for long headless runs.

The CSV is written and flushed row by row, so a crash or Ctrl+C keeps every
frame processed so far; the summary and the picture need the whole run and are
written at ``close()``.
"""

from __future__ import annotations

import csv
import json
import logging
import sys
from collections import deque
from pathlib import Path

import cv2
import numpy as np

from detector.errors import UserError
from detector.outputs import VideoSink, check_writable
from detector.overlay import FONT, color_for
from detector.results import FrameResult

log = logging.getLogger(__name__)

UNTRACKED = -1  # faces without a track id (no tracker in the pipeline) are grouped under this id


def progress(total: int, description: str = "frames"):
    """A tqdm bar on stderr; silent when stderr is not a terminal (logs, CI, pipes)."""
    from tqdm import tqdm

    return tqdm(total=total or None, desc=description, unit="frame", dynamic_ncols=True, disable=not sys.stderr.isatty())


def _rgb(label: str) -> tuple[float, float, float]:
    b, g, r = color_for(label)  # the overlay's BGR colours, so the picture matches the video
    return r / 255, g / 255, b / 255


class ReportSink:
    """The sink behind ``--report DIR`` (``write(result, annotated)``, ``close()``)."""

    def __init__(self, directory: Path, labels: tuple[str, ...] | None = None, fps: float = 30.0,
                 min_seconds: float = 1.0, max_panels: int = 8, video: bool = True):
        directory = Path(directory)
        if directory.exists() and not directory.is_dir():
            raise UserError(f"report path is a file, expected a folder: {directory}")
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UserError(f"cannot create report folder {directory}: {error.strerror}") from None
        check_writable(directory / "frames.csv")
        self.directory, self.labels = directory, tuple(labels) if labels else None
        self.fps = fps if fps > 0 else 30.0  # image folders have no fps; the video still needs one
        self.min_seconds, self.max_panels = min_seconds, max_panels
        self.video = VideoSink(directory / "annotated.mp4", self.fps) if video else None
        self._file = (directory / "frames.csv").open("w", encoding="utf-8", newline="", buffering=1)
        self._csv = csv.writer(self._file)
        self._header = False
        self.frames, self.source, self.last_time = 0, "", 0.0
        self.tracks: dict[int, tuple[list[float], list[np.ndarray]]] = {}  # id -> (times, probs)
        self._closed = False
        self.plotted: list[int] = []  # ids with a panel in timeline.png, once closed

    def write(self, result: FrameResult, annotated: np.ndarray | None = None) -> None:
        if self.labels is None and result.labels:
            self.labels = tuple(result.labels)
        if not self._header:
            self._csv.writerow(["frame", "time", "id", "x", "y", "w", "h", "label", "score", *(self.labels or ())])
            self._header = True
        self.frames, self.source, self.last_time = self.frames + 1, result.source, result.time
        faces = result.faces
        for i, box in enumerate(faces.boxes.tolist()):
            track_id = int(faces.ids[i]) if faces.ids[i] >= 0 else UNTRACKED
            row = [result.index, f"{result.time:.4f}", track_id, *box]
            if faces.classified:
                probs = faces.probs[i]
                best = int(np.argmax(probs))
                row += [result.labels[best], f"{probs[best]:.4f}", *(f"{p:.4f}" for p in probs)]
                times, rows = self.tracks.setdefault(track_id, ([], []))
                times.append(result.time)
                rows.append(probs.astype(np.float32))
            self._csv.writerow(row)
        if self.video:
            self.video.write(result, annotated)

    def summary(self) -> dict:
        """Per id: frames seen, seconds, dominant emotion, share of frames per emotion, mean probabilities."""
        labels = list(self.labels or ())
        faces = {}
        for track_id, (times, rows) in sorted(self.tracks.items()):
            probs = np.stack(rows)
            counts = np.bincount(probs.argmax(axis=1), minlength=len(labels))
            share = counts / counts.sum()
            faces[str(track_id)] = {
                "frames": len(rows),
                "first_time": round(times[0], 4),
                "last_time": round(times[-1], 4),
                "dominant": labels[int(np.argmax(counts))],
                "share": {name: round(float(s), 4) for name, s in zip(labels, share)},
                "mean_probs": {name: round(float(p), 4) for name, p in zip(labels, probs.mean(axis=0))},
            }
        return {"source": self.source, "frames": self.frames, "duration_s": round(self.last_time, 4),
                "fps": self.fps, "labels": labels, "faces": faces}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._file.close()
        if self.video:
            self.video.close()
        summary = self.summary()
        (self.directory / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        self.plotted = plot_timeline(self.directory / "timeline.png", self.tracks, summary, self.fps, self.min_seconds, self.max_panels)

    def __enter__(self) -> "ReportSink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def plot_timeline(path: Path, tracks: dict, summary: dict, fps: float, min_seconds: float = 1.0, max_panels: int = 8) -> list[int]:
    """One panel per face id, probabilities stacked over time, most-seen faces first; returns the ids shown.

    Ids seen for less than ``min_seconds`` (Haar false positives, faces passing
    through) would add unreadable slivers: they are counted in the title instead.
    Gaps where a face was not detected stay empty rather than being interpolated.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    labels = summary["labels"]
    shown = sorted((i for i in tracks if len(tracks[i][0]) >= min_seconds * fps), key=lambda i: -len(tracks[i][0]))
    hidden = len(tracks) - len(shown[:max_panels])
    shown = shown[:max_panels]
    end = max(summary["duration_s"], 1e-3)
    figure = Figure(figsize=(11, 1.4 + 2.0 * max(len(shown), 1)), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(max(len(shown), 1), 1, sharex=True, squeeze=False)[:, 0]
    for axis, track_id in zip(axes, shown):
        times, probs = _with_gaps(np.asarray(tracks[track_id][0]), np.stack(tracks[track_id][1]), fps)
        axis.stackplot(times, probs.T, colors=[_rgb(n) for n in labels], labels=labels, linewidth=0)
        info = summary["faces"][str(track_id)]
        name = "untracked faces" if track_id == UNTRACKED else f"face #{track_id}"
        axis.set_title(f"{name}: {info['frames'] / fps:.1f} s seen, mostly {info['dominant']} "
                       f"({info['share'][info['dominant']]:.0%})", loc="left", fontsize=11)
        axis.set(ylim=(0, 1), xlim=(0, end), ylabel="probability")
        axis.grid(axis="x", alpha=0.3)
    if not shown:
        axes[0].text(0.5, 0.5, f"no face was seen for {min_seconds:g} s or more", ha="center", va="center",
                     fontsize=14, transform=axes[0].transAxes)
        axes[0].set(xlim=(0, end), yticks=[])
    axes[-1].set_xlabel("time (s)")
    title = f"{summary['source']}: emotion probabilities over time"
    if hidden:
        title += f"\n({hidden} more face id{'s' if hidden > 1 else ''} not shown: seen < {min_seconds:g} s, or beyond the {max_panels} most seen)"
    figure.suptitle(title, fontsize=12)
    if shown:
        handles = [axes[0].collections[i] for i in range(len(labels))][::-1]  # top of the stack first
        figure.legend(handles, labels[::-1], loc="outside right upper", frameon=False)
    figure.savefig(path)
    return shown


def _with_gaps(times: np.ndarray, probs: np.ndarray, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """A NaN row wherever a face went unseen for more than 3 frames, so the plot shows a gap."""
    breaks = np.flatnonzero(np.diff(times) > 3.0 / fps) + 1
    gap = np.full((1, probs.shape[1]), np.nan)
    times = np.insert(times.astype(np.float64), breaks, times[breaks - 1] + 1.0 / fps)
    probs = np.insert(probs.astype(np.float64), breaks, gap, axis=0)
    return times, probs


class ProbabilityHistory:
    """The largest face's probabilities over the last ``seconds``, for the live timeline.

    Updated every frame (cheap) so the timeline is full the moment it is toggled
    on. It follows one track: when the largest face becomes another id, the
    history restarts, so one line never mixes two people.
    """

    def __init__(self, seconds: float = 10.0):
        self.seconds = seconds
        self.labels: tuple[str, ...] = ()
        self.track_id = UNTRACKED
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
    """The last seconds of the largest face's probabilities, one line per class, bottom-right."""

    def __init__(self, width: int = 260, height: int = 90):
        self.width, self.height = width, height

    def annotate(self, image: np.ndarray, history: ProbabilityHistory) -> np.ndarray:
        if not history.samples or not history.labels:
            return image
        width, height = min(self.width, image.shape[1] // 2), min(self.height, image.shape[0] // 3)
        x0, y0 = image.shape[1] - width - 6, image.shape[0] - height - 6
        panel = image[max(y0 - 14, 0) : y0 + height, x0 : x0 + width]
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
        caption = f"#{history.track_id} last {history.seconds:g} s" if history.track_id >= 0 else f"last {history.seconds:g} s"
        cv2.putText(image, caption, (x0 + 4, y0 - 3), FONT, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        return image
