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
from detector.imageio import ImageDecodeError, decode_image_bytes, read_image_file
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


class Source:
    """Base: an iterator of frames that releases what it holds on ``close``, and what the run
    loop reads from it (the attributes below; no other duck typing)."""

    name: str = ""
    fps: float = 0.0
    live: bool = False  # a camera or live stream: newest frame only, reconnects, wall-clock times
    still: bool = False  # still images: every frame stands alone, times mean nothing
    frame_count: int = 0  # 0 when unknown (cameras, streams)
    status: str = ""  # what the window should say while the source waits (reconnecting)
    failed_reads: int = 0  # frames of a video that could not be decoded, skipped
    skipped: list[str]  # files of a folder that are not readable images, by name

    def __init__(self) -> None:
        self.skipped = []

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

    ``live=None`` decides by content (for URLs): a source whose decoder reports a frame count
    (a file served over HTTP, an image URL) is finite and plays once; one without (RTSP,
    MJPEG or HLS live streams) is live. Each frame's time is its own presentation timestamp
    (``CAP_PROP_POS_MSEC``), so variable-frame-rate files keep their timing; live sources use
    the wall clock since the first frame.

    A live source that stops delivering frames (camera unplugged) is reopened with
    backoff for up to ``reconnect_s`` seconds; meanwhile ``status`` says so and the
    iterator yields ``None`` every ``idle_s`` so a window can keep redrawing.
    """

    def __init__(self, capture_arg: int | str, name: str, live: bool | None = False, queue_size: int = 8,
                 reconnect_s: float = 30.0, idle_s: float = 0.1):
        super().__init__()
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
        reported_frames = max(0, int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT)))
        if live is None:
            live = reported_frames == 0
            log.info("%s: %s", name, "no frame count: a live stream" if live else f"{reported_frames} frames: a file, played once")
        self.name, self.live = name, live
        fps = self._capture.get(cv2.CAP_PROP_FPS)
        self.fps = fps if 0 < fps < 1000 else 30.0
        self.frame_count = 0 if live else reported_frames
        self.failed_reads = 0  # frames of a file that could not be decoded, skipped
        self._failed_in_a_row = 0
        self._position = self._capture.get(cv2.CAP_PROP_POS_FRAMES)  # the decoder's count of frames read
        self._frames: queue.Queue = queue.Queue(maxsize=1 if live else queue_size)
        self._stop = threading.Event()
        self._started = time.perf_counter()
        self._frames.put((0, self._started, self._timestamp(0), first))
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
                self._put((index, time.perf_counter(), self._timestamp(index), frame))
                index += 1
        except Exception as error:  # a thread boundary: never leave the consumer waiting for frames
            log.error("%s: reading stopped: %s", self.name, error)
        finally:
            self._put(_END)

    def _timestamp(self, index: int) -> float:
        """Seconds into a file of the frame just read: the decoder's presentation time, or
        ``index / fps`` where the container gives none (some AVI/MJPEG files)."""
        if self.live:
            return 0.0
        msec = self._capture.get(cv2.CAP_PROP_POS_MSEC)
        if np.isfinite(msec) and msec >= 0 and (msec > 0 or index == 0):
            return msec / 1000.0
        return index / self.fps

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
            index, stamp, position, image = item
            seconds = stamp - self._started if self.live else position
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
    """One image or the files of a folder, whatever their suffixes: each file the decoder
    reads is a frame (upright, see :mod:`detector.imageio`); the others are skipped, named
    with the reason, and counted in ``skipped``."""

    still = True

    def __init__(self, paths: list[Path], name: str):
        super().__init__()
        if not paths:
            raise SourceError(f"no images found in {name}: it has no files")
        self.paths, self.name = paths, name
        self.frame_count = len(paths)

    def __iter__(self) -> Iterator[FrameResult]:
        for index, path in enumerate(self.paths):
            try:
                image = read_image_file(path)
            except ImageDecodeError as error:
                log.warning("skipped %s: %s", path.name, str(error).removeprefix(f"{path.name}: "))
                self.skipped.append(path.name)
                continue
            yield FrameResult(index=index, time=0.0, source=path.name, image=image)


class DecodedImageSource(Source):
    """One image already decoded (an image URL, fetched and read with :mod:`detector.imageio`)."""

    still = True

    def __init__(self, image: np.ndarray, name: str):
        super().__init__()
        self.image, self.name, self.frame_count = image, name, 1

    def __iter__(self) -> Iterator[FrameResult]:
        yield FrameResult(index=0, time=0.0, source=self.name, image=self.image)


def open_url(url: str, reconnect_s: float = 30.0, timeout_s: float = 30.0) -> Source:
    """A URL by its content: probed with the video decoder; a one-frame HTTP(S) resource is a
    still image, fetched and decoded as one (EXIF orientation, bit depth); any other file
    plays once; a stream without a frame count is live."""
    source = VideoSource(url, url, live=None, reconnect_s=reconnect_s)
    if source.live or source.frame_count != 1 or not url.lower().startswith(("http://", "https://")):
        return source
    source.close()
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            data = response.read()
    except OSError as error:
        raise SourceError(f"cannot fetch {url}: {getattr(error, 'reason', error)}") from None
    try:
        return DecodedImageSource(decode_image_bytes(data), url.rsplit("/", 1)[-1].split("?")[0] or url)
    except ImageDecodeError as error:
        raise SourceError(f"cannot read image {url}: {error}") from None


def folder_files(folder: Path) -> list[Path]:
    """Every visible file of a folder, sorted by name: the decoder, not the suffix, decides."""
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def is_image_file(path: Path) -> bool:
    """An image by its suffix, or else by its first bytes (what OpenCV's decoders recognise)."""
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return True
    try:
        return cv2.haveImageReader(str(path))
    except cv2.error:
        return False


def open_source(spec: str, reconnect_s: float = 30.0) -> Source:
    """``spec`` is a camera index, a video file, an image, a folder of images, or a URL.

    A camera, or a URL that turns out to be a live stream, is reopened for up to
    ``reconnect_s`` when it stops delivering frames; a URL to a file plays once."""
    if spec.isdigit():
        return VideoSource(int(spec), f"camera {spec}", live=True, reconnect_s=reconnect_s)
    if "://" in spec:
        return open_url(spec, reconnect_s)
    path = Path(spec)
    if path.is_dir():
        return ImageSource(folder_files(path), str(path))
    if not path.exists():
        raise SourceError(f"source not found: {spec}")
    if is_image_file(path):
        try:
            read_image_file(path)
        except ImageDecodeError as error:
            raise SourceError(f"cannot read image {error}") from None
        return ImageSource([path], str(path))
    return VideoSource(str(path), path.name)


def read_frames(path: str | Path, start: int = 0, count: int = 0) -> tuple[list[np.ndarray], float]:
    """Frames ``start`` to ``start + count - 1`` of a video file (``count`` 0: to its end),
    decoded on this thread, and the fps its header declares (0.0 where it declares none).
    For measurements and test scenes that want every frame in memory; runs read a :class:`Source`."""
    capture = cv2.VideoCapture(str(path))
    try:
        if start:
            capture.set(cv2.CAP_PROP_POS_FRAMES, start)
        fps, frames = capture.get(cv2.CAP_PROP_FPS) or 0.0, []
        while not count or len(frames) < count:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        capture.release()
    return frames, fps
