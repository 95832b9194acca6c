"""Sinks for results: JSON lines and annotated video. Context managers, flushed as
they go, so whatever was written before a crash or Ctrl+C stays complete and readable."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import cv2
import numpy as np

from detector.errors import UserError
from detector.results import FrameResult

log = logging.getLogger(__name__)

FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


def check_writable(path: Path) -> None:
    """Fail before the run, not after an hour of processing."""
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise UserError(f"output folder does not exist: {folder}")
    if not os.access(folder, os.W_OK):
        raise UserError(f"output folder is not writable: {folder}")
    if path.is_dir():
        raise UserError(f"output path is a folder, expected a file: {path}")


class JsonlSink:
    """One JSON object per processed frame (the documented contract)."""

    def __init__(self, path: Path):
        check_writable(path)
        self.path = path
        self._file = path.open("w", encoding="utf-8", buffering=1)

    def write(self, result: FrameResult, annotated: np.ndarray | None = None) -> None:
        self._file.write(json.dumps(result.to_json(), separators=(",", ":")) + "\n")

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> "JsonlSink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class VideoSink:
    """The annotated frames as a video at the source's fps (one output frame per input frame)."""

    def __init__(self, path: Path, fps: float):
        check_writable(path)
        suffix = path.suffix.lower()
        if suffix not in FOURCC:
            raise UserError(f"unsupported video format {suffix or '(none)'}: use one of {', '.join(sorted(FOURCC))}")
        self.path, self.fps = path, fps
        self._fourcc = cv2.VideoWriter_fourcc(*FOURCC[suffix])
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        self.frames = 0

    def write(self, result: FrameResult, annotated: np.ndarray | None = None) -> None:
        image = result.image if annotated is None else annotated
        if self._writer is None:
            self._size = (image.shape[1], image.shape[0])
            self._writer = cv2.VideoWriter(str(self.path), self._fourcc, self.fps, self._size)
            if not self._writer.isOpened():
                raise UserError(f"cannot write video {self.path}")
        if (image.shape[1], image.shape[0]) != self._size:  # image folders: frames of many sizes
            image = cv2.resize(image, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(image)
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    def __enter__(self) -> "VideoSink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
