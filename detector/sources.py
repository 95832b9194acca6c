"""Frame sources: camera, video file or stream, one image, or a folder of images.

Each source is an iterator of :class:`FrameResult` (no faces yet) and a context
manager that owns its device. Video files are decoded on a reader thread into a
bounded queue so decoding overlaps processing; live cameras keep only the newest
frame so no lag builds up (vidgear's ``CamGear`` pattern).
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from detector.errors import SourceError, quiet_native_stderr
from detector.results import FrameResult

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
_END = object()
MAX_FAILED_IN_A_ROW = 50  # undecodable frames in a row before the rest of a file counts as unreadable

# FFmpeg prints a line per damaged packet, which would bury the one-line summary: damaged
# frames are counted and reported instead. Set OPENCV_FFMPEG_LOGLEVEL yourself to see them.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")


@contextmanager
def quiet_opencv():
    """Silence OpenCV's own log (camera probing warnings) for a moment. Unlike
    :func:`quiet_native_stderr` it leaves file descriptor 2 alone, so it is safe on a thread."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


def to_bgr8(image: np.ndarray) -> np.ndarray:
    """Any image OpenCV can decode -> 3-channel uint8 BGR (gray, BGRA, 16-bit, float)."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = np.nan_to_num(image.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if image.ndim == 3 and image.shape[2] not in (1, 3, 4):  # e.g. gray + alpha in two planes
        image = np.ascontiguousarray(image[:, :, 0])
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


class Source:
    """Base: an iterator of frames that releases what it holds on ``close``."""

    name: str = ""
    fps: float = 0.0
    live: bool = False
    frame_count: int = 0  # 0 when unknown (cameras, streams)

    def __iter__(self) -> Iterator[FrameResult]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class VideoSource(Source):
    """A video file (or a live stream/camera when ``live``).

    A live source that stops delivering frames (camera unplugged) is reopened with
    backoff for up to ``reconnect_s`` seconds; meanwhile ``status`` says so and the
    iterator yields ``None`` every ``idle_s`` so a window can keep redrawing.
    """

    def __init__(self, capture_arg: int | str, name: str, live: bool = False, queue_size: int = 8,
                 reconnect_s: float = 30.0, idle_s: float = 0.1):
        self._capture_arg = capture_arg
        self._backend = cv2.CAP_DSHOW if live and isinstance(capture_arg, int) and sys.platform == "win32" else cv2.CAP_ANY
        self.reconnect_s, self.idle_s = reconnect_s, idle_s
        self.status = ""
        with quiet_native_stderr():  # OpenCV's backends print their own probing warnings
            self._capture = cv2.VideoCapture(capture_arg, self._backend)
        if not self._capture.isOpened():
            self._capture.release()
            if isinstance(capture_arg, int):
                raise SourceError(f"cannot open {name}: no such camera, or another app is using it")
            raise SourceError(f"cannot open {name}" if live else f"cannot open video {name}: not a video, or damaged or truncated")
        ok, first = self._capture.read()
        if not ok or first is None:
            self._capture.release()
            busy = " (is another app using it?)" if isinstance(capture_arg, int) else ""
            raise SourceError(f"{name}: no frames could be read{busy}")
        self.name, self.live = name, live
        fps = self._capture.get(cv2.CAP_PROP_FPS)
        self.fps = fps if 0 < fps < 1000 else 30.0
        self.frame_count = 0 if live else max(0, int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT)))
        self.failed_reads = 0  # frames of a file that could not be decoded, skipped
        self._failed_in_a_row = 0
        self._position = self._capture.get(cv2.CAP_PROP_POS_FRAMES)  # the decoder's count of frames read
        self._frames: queue.Queue = queue.Queue(maxsize=1 if live else queue_size)
        self._stop = threading.Event()
        self._started = time.perf_counter()
        self._frames.put((0, self._started, first))
        self._thread = threading.Thread(target=self._read, name=f"reader:{name}", daemon=True)
        self._thread.start()

    def _put(self, item) -> None:
        if self.live:  # keep only the newest frame
            try:
                self._frames.get_nowait()
            except queue.Empty:
                pass
            self._frames.put_nowait(item)
            return
        while not self._stop.is_set():
            try:
                self._frames.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _read(self) -> None:
        index = 1
        try:
            while not self._stop.is_set():
                ok, frame = self._capture.read()
                if not ok or frame is None:
                    if self.live and self._reconnect():
                        continue
                    if not self.live and self._skip_unreadable(index):
                        index += 1
                        continue
                    break
                if not self.live and self._went_back():
                    self.failed_reads += self.frame_count - index
                    log.warning("%s: frames from %d on cannot be reached: skipping the rest", self.name, index)
                    break
                self._failed_in_a_row = 0
                self._put((index, time.perf_counter(), frame))
                index += 1
        except Exception as error:  # a thread boundary: never leave the consumer waiting for frames
            log.error("%s: reading stopped: %s", self.name, error)
        finally:
            self._put(_END)

    def _skip_unreadable(self, index: int) -> bool:
        """A frame that fails to decode mid-file is skipped (and counted), not the end;
        after many in a row the rest of the file counts as unreadable."""
        if not self.frame_count or index >= self.frame_count:
            return False
        self.failed_reads += 1
        self._failed_in_a_row += 1
        if self._failed_in_a_row >= MAX_FAILED_IN_A_ROW:
            self.failed_reads += self.frame_count - index - 1
            log.warning("%s: %d frames in a row cannot be decoded: skipping the rest", self.name, MAX_FAILED_IN_A_ROW)
            return False
        position = self._capture.get(cv2.CAP_PROP_POS_FRAMES)
        if position <= index:  # the decoder did not move on: step over the broken frame
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, index + 1)
        return True

    def _went_back(self) -> bool:
        """True when the decoder handed out a frame it had already passed: stepping over
        damage in a file cut short can land back on its first keyframe, and the same few
        frames would come round again and again under new numbers."""
        position = self._capture.get(cv2.CAP_PROP_POS_FRAMES)
        went_back = 0 < position <= self._position
        self._position = max(position, self._position)
        return went_back

    def _reconnect(self) -> bool:
        """Reopen a lost camera with backoff; False once ``reconnect_s`` has passed."""
        deadline, delay = time.monotonic() + self.reconnect_s, 0.25
        log.warning("%s: no frames, reconnecting", self.name)
        while not self._stop.is_set() and time.monotonic() < deadline:
            self.status = f"Camera lost: reconnecting... (giving up in {deadline - time.monotonic():.0f} s)"
            self._capture.release()
            self._stop.wait(min(delay, max(0.0, deadline - time.monotonic())))
            with quiet_opencv():  # a probe per attempt would flood the console
                self._capture = cv2.VideoCapture(self._capture_arg, self._backend)
            if self._capture.isOpened() and self._capture.grab():
                self.status = ""
                log.warning("%s: reconnected", self.name)
                return True
            delay = min(delay * 2, 4.0)
        self.status = ""
        if not self._stop.is_set():
            log.warning("%s: no frames for %g s, giving up", self.name, self.reconnect_s)
        return False

    def __iter__(self) -> Iterator[FrameResult | None]:
        while True:
            try:
                item = self._frames.get(timeout=self.idle_s if self.live else None)
            except queue.Empty:
                yield None  # live source, nothing new yet: let the window redraw
                continue
            if item is _END:
                return
            index, stamp, image = item
            seconds = stamp - self._started if self.live else index / self.fps
            yield FrameResult(index=index, time=seconds, source=self.name, image=image)

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._frames.get_nowait()
            except queue.Empty:
                pass
            self._thread.join(timeout=0.05)
        self._capture.release()


class ImageSource(Source):
    """One image or a folder of images; unreadable files are skipped with a warning."""

    def __init__(self, paths: list[Path], name: str):
        if not paths:
            raise SourceError(f"no images found in {name}")
        self.paths, self.name = paths, name
        self.frame_count = len(paths)
        self.skipped: list[str] = []

    def __iter__(self) -> Iterator[FrameResult]:
        for index, path in enumerate(self.paths):
            image = read_image(path)
            if image is None:
                log.warning("skipped %s: not a readable image", path.name)
                self.skipped.append(path.name)
                continue
            yield FrameResult(index=index, time=0.0, source=path.name, image=image)


def read_image(path: Path) -> np.ndarray | None:
    """Decode from bytes so non-ASCII paths work on Windows; None when unreadable."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError:
        return None
    try:
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    except cv2.error:  # some decoders raise on damaged data instead of returning None
        return None
    return None if image is None or image.size == 0 else to_bgr8(image)


def open_source(spec: str, reconnect_s: float = 30.0) -> Source:
    """``spec`` is a camera index, a video file, an image, a folder of images, or a URL.

    A camera or stream that stops delivering frames is reopened for up to ``reconnect_s``."""
    if spec.isdigit():
        return VideoSource(int(spec), f"camera {spec}", live=True, reconnect_s=reconnect_s)
    if "://" in spec:
        return VideoSource(spec, spec, live=True, reconnect_s=reconnect_s)
    path = Path(spec)
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        return ImageSource(images, str(path))
    if not path.exists():
        raise SourceError(f"source not found: {spec}")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        if read_image(path) is None:
            raise SourceError(f"cannot read image: {spec}")
        return ImageSource([path], str(path))
    return VideoSource(str(path), path.name)
