"""Sinks for results: JSON lines and annotated video. Context managers, flushed as
they go, so whatever was written before a crash or Ctrl+C stays complete and readable."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import cv2
import numpy as np

from detector.errors import UserError, quiet_native_stderr
from detector.results import FrameResult

log = logging.getLogger(__name__)

FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}
VIDEO_SIDE = (16, 8000)  # mp4v refuses 1x1 frames and sides over 8191 px: the video is scaled into this range


def video_size(width: int, height: int) -> tuple[int, int]:
    """The annotated video's frame size for a first frame of ``width x height``: the same,
    unless a codec would refuse it (a 1x1 image, a 9000 px panorama)."""
    low, high = VIDEO_SIDE
    scale = min(1.0, high / max(width, height))
    return min(high, max(low, round(width * scale))), min(high, max(low, round(height * scale)))


def make_folder(folder: Path, what: str) -> Path:
    """``folder`` made with its parents (an existing one is fine); ``what`` names it in the one
    line a failure gives (``"report folder"``).

    Raises:
        UserError: it is a file, or it cannot be made (no permission, a full or read-only disk).
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{what} is a file, expected a folder: {folder}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create {what} {folder}: {error.strerror or error}") from None
    return folder


def write_atomic(path: Path, text: str) -> None:
    """Write to ``path.tmp``, flush to disk, then rename: readers see the old file or the
    whole new one, never a half-written one (an interrupted run, a crash)."""
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w", encoding="utf-8", newline="") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)


def check_writable(path: Path) -> None:
    """Fail before the run, not after an hour of processing."""
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise UserError(f"output folder does not exist: {folder}")
    if path.is_dir():
        raise UserError(f"output path is a folder, expected a file: {path}")
    if path.exists() and not os.access(path, os.W_OK):
        raise UserError(f"output file is not writable: {path}")
    if not path.exists() and not os.access(folder, os.W_OK):
        raise UserError(f"output folder is not writable: {folder}")


class JsonlSink:
    """One JSON object per processed frame (the documented contract)."""

    def __init__(self, path: Path):
        check_writable(path)
        self.path = path
        try:
            self._file = path.open("w", encoding="utf-8", buffering=1)
        except OSError as error:
            raise UserError(f"cannot write {path}: {error.strerror or error}") from None
        self._failed = False

    def write(self, result: FrameResult, annotated: np.ndarray | None = None) -> None:
        try:
            self._file.write(json.dumps(result.to_json(), separators=(",", ":")) + "\n")
        except OSError as error:  # disk full, drive unplugged: every line before this one is kept
            self._failed = True
            raise UserError(f"cannot write {self.path}: {error.strerror or error}") from None

    def close(self) -> None:
        if self._file.closed:
            return
        try:
            self._file.close()
        except OSError as error:
            if not self._failed:  # else the failed write has already said why
                raise UserError(f"cannot write {self.path}: {error.strerror or error}") from None

    def __enter__(self) -> "JsonlSink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class VideoSink:
    """The annotated frames as a video that keeps each frame's own time.

    Frames are placed by their timestamps (``result.time``): where a variable-frame-rate
    source leaves a longer gap, the frame is repeated, so the video plays in step with the
    source; no frame is ever dropped. The output rate is the source's ``fps``, or the rate of
    its first two frames where that is faster (a VFR file's average understates its dense
    parts; at most twice the average). Still images (all at time 0) get one frame each.
    """

    def __init__(self, path: Path, fps: float):
        check_writable(path)
        suffix = path.suffix.lower()
        if suffix not in FOURCC:
            raise UserError(f"unsupported video format {suffix or '(none)'}: use one of {', '.join(sorted(FOURCC))}")
        self.path, self.fps = path, fps if fps > 0 else 1.0  # image folders have no fps: one image a second
        self._fourcc = cv2.VideoWriter_fourcc(*FOURCC[suffix])
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        self._pending: tuple[float, np.ndarray] | None = None  # the first frame, until the second gives the rate
        self._start = 0.0
        self.frames = 0  # output frames written, repeats included

    def write(self, result: FrameResult, annotated: np.ndarray | None = None) -> None:
        image = result.image if annotated is None else annotated
        if self._writer is None and self._pending is None:
            self._pending = (result.time, image)
            return
        if self._writer is None:
            self._open(result.time)
        self._place(result.time, image)

    def _open(self, second_time: float | None) -> None:
        first_time, first = self._pending
        gap = None if second_time is None else second_time - first_time
        if gap and gap > 0 and 1.0 / gap > 1.05 * self.fps:
            self.fps = min(1.0 / gap, 2 * self.fps)
        self._size = video_size(first.shape[1], first.shape[0])
        with quiet_native_stderr():  # OpenCV prints its own failure, then we say it in one line
            self._writer = cv2.VideoWriter(str(self.path), self._fourcc, self.fps, self._size)
        if not self._writer.isOpened():
            raise UserError(f"cannot write video {self.path} ({self._size[0]}x{self._size[1]})")
        self._pending, self._start = None, first_time
        self._place(first_time, first)

    def _place(self, seconds: float, image: np.ndarray) -> None:
        """Write ``image`` once, plus repeats up to its slot at ``seconds`` (never fewer than once)."""
        if (image.shape[1], image.shape[0]) != self._size:  # image folders: frames of many sizes
            image = cv2.resize(image, self._size, interpolation=cv2.INTER_AREA)
        slots = round((seconds - self._start) * self.fps) + 1 - self.frames
        for _ in range(max(1, slots)):
            self._writer.write(image)
            self.frames += 1

    def close(self) -> None:
        if self._writer is None and self._pending is not None:
            self._open(None)
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    def __enter__(self) -> "VideoSink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
