"""A report people can read: ``--report DIR`` writes frames.csv, summary.json,
timeline.png and annotated.mp4, for a video or for a folder of still images.

The CSV is written and flushed row by row, so a crash or Ctrl+C keeps every
frame processed so far; the summary and the picture need the whole run and are
written at ``close()``.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np

from detector.outputs import VideoSink, check_writable, make_folder
from detector.overlay import color_for
from detector.results import FrameResult
from detector.summary import UNTRACKED, RunTally


#: What a report folder holds (``--report DIR``; batch reads them back by these names).
FRAMES_FILE = "frames.csv"
SUMMARY_FILE = "summary.json"
TIMELINE_FILE = "timeline.png"
VIDEO_FILE = "annotated.mp4"
JSONL_FILE = "results.jsonl"  # the JSON lines a headless run or a batch input writes beside them

log = logging.getLogger(__name__)



def _rgb(label: str) -> tuple[float, float, float]:
    b, g, r = color_for(label)  # the overlay's BGR colours, so the picture matches the video
    return r / 255, g / 255, b / 255


class ReportSink:
    """The sink behind ``--report DIR`` (``write(result, annotated)``, ``close()``).

    ``still`` (a folder of images): every CSV row names its file, the summary counts images
    rather than seconds, and timeline.png becomes one bar of probabilities per face per image.
    """

    def __init__(self, directory: Path, labels: tuple[str, ...] | None = None, fps: float = 30.0,
                 min_seconds: float = 1.0, max_panels: int = 8, video: bool = True, still: bool = False, name: str = ""):
        directory = Path(directory)
        make_folder(directory, "report folder")
        check_writable(directory / FRAMES_FILE)
        self.directory, self.labels = directory, tuple(labels) if labels else None
        self.fps = fps if fps > 0 else 30.0  # image folders have no fps; the video still needs one
        self.min_seconds, self.max_panels, self.still, self.name = min_seconds, max_panels, still, name
        self.video = VideoSink(directory / VIDEO_FILE, 1.0 if still else self.fps) if video else None
        self._file = (directory / FRAMES_FILE).open("w", encoding="utf-8", newline="", buffering=1)
        self._csv = csv.writer(self._file)
        self._header = False
        self.tally = RunTally()
        self.source, self.last_time = "", 0.0
        self.tracks: dict[int, tuple[list[float], list[np.ndarray]]] = {}  # id -> (times, probs)
        self._closed = False
        self.plotted: list[int] = []  # ids with a panel (or bar) in timeline.png, once closed

    @property
    def frames(self) -> int:
        return self.tally.frames

    def write(self, result: FrameResult, annotated: np.ndarray | None = None) -> None:
        if self.labels is None and result.labels:
            self.labels = tuple(result.labels)
        if not self._header:
            self._csv.writerow(["frame", "source", "time", "id", "x", "y", "w", "h", "label", "score", *(self.labels or ())])
            self._header = True
        self.tally.add(result)
        self.source, self.last_time = result.source, result.time
        faces = result.faces
        for i, box in enumerate(faces.boxes.tolist()):
            track_id = int(faces.ids[i]) if faces.ids[i] >= 0 else UNTRACKED
            row = [result.index, result.source, f"{result.time:.4f}", track_id, *box]
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
        """The run in numbers: per id (see :meth:`RunTally.per_id`), and how many frames (or
        images) had no face and how many were classified whole."""
        self.tally.labels = self.tally.labels or tuple(self.labels or ())
        common = {"labels": list(self.labels or ()), "faces": self.tally.per_id(),
                  "whole_image": self.tally.whole_image}
        if self.still:
            return {"source": self.name, "images": self.frames, "images_without_face": self.tally.without_face,
                    **common, "face_files": self.tally.files()}
        return {"source": self.name or self.source, "frames": self.frames, "frames_without_face": self.tally.without_face,
                "duration_s": round(self.last_time, 4), "fps": self.fps, **common}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._file.close()
        if self.video:
            self.video.close()
        summary = self.summary()
        (self.directory / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        path = self.directory / TIMELINE_FILE
        if self.still:
            self.plotted = plot_stills(path, self.tracks, {int(i): name for i, name in summary["face_files"].items()}, summary)
        else:
            self.plotted = plot_timeline(path, self.tracks, summary, self.fps, self.min_seconds, self.max_panels)

    def __enter__(self) -> "ReportSink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def plot_stills(path: Path, tracks: dict, files: dict, summary: dict, max_bars: int = 40) -> list[int]:
    """Still images: one horizontal bar per face, its class probabilities side by side, named
    by file and id, in file order; returns the ids shown."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    labels = summary["labels"]
    shown = sorted(tracks, key=lambda i: (files[i], i))[:max_bars]
    figure = Figure(figsize=(11, 1.6 + 0.35 * max(len(shown), 3)), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axis = figure.subplots()
    left = np.zeros(len(shown))
    for c, name in enumerate(labels):
        widths = np.array([tracks[i][1][-1][c] for i in shown], np.float64)
        axis.barh(range(len(shown)), widths, left=left, color=_rgb(name), label=name)
        left += widths
    axis.set_yticks(range(len(shown)), [f"{files[i]} #{i}" for i in shown], fontsize=8)
    axis.invert_yaxis()
    axis.set(xlim=(0, 1), xlabel="probability")
    title = (f"{summary['source']}: emotions per image ({summary['images']} images, "
             f"{summary['images_without_face']} without a face, {summary['whole_image']} classified whole)")
    if len(tracks) > len(shown):
        title += f"\n(first {len(shown)} of {len(tracks)} faces shown)"
    if not shown:
        axis.text(0.5, 0.5, "no face in any image", ha="center", va="center", fontsize=14, transform=axis.transAxes)
    figure.suptitle(title, fontsize=12)
    if shown:
        figure.legend(loc="outside right upper", frameon=False)
    figure.savefig(path)
    return shown


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
        axis.set_title(f"{name}: {info['last_time'] - info['first_time']:.1f} s seen, mostly {info['dominant']} "
                       f"({info['share'][info['dominant']]:.0%})", loc="left", fontsize=11)
        axis.set(ylim=(0, 1), xlim=(0, end), ylabel="probability")
        axis.grid(axis="x", alpha=0.3)
    if not shown:
        axes[0].text(0.5, 0.5, f"no face was seen for {min_seconds:g} s or more", ha="center", va="center",
                     fontsize=14, transform=axes[0].transAxes)
        axes[0].set(xlim=(0, end), yticks=[])
    axes[-1].set_xlabel("time (s)")
    title = f"{summary['source']}: emotion probabilities over time"
    if summary.get("frames_without_face"):
        title += f" ({summary['frames_without_face']} of {summary['frames']} frames without a face)"
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
