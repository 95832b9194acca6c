"""The run loop: source -> pipeline -> overlay -> window and sinks.

GUI calls (``imshow``, ``waitKey``) happen here on the main thread and nowhere else.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import cv2

from detector.classifier import EmotionClassifier
from detector.config import AppConfig
from detector.errors import SourceError
from detector.no_face import NoFaceReasons
from detector.outputs import JsonlSink, VideoSink, check_writable, make_folder
from detector.overlay import FrameRate, Overlay, ProbabilityHistory
from detector.paths import SAMPLE_CLIP, resource
from detector.pipeline import create_face_detector, create_pipeline
from detector.progress import progress
from detector.report import JSONL_FILE, VIDEO_FILE, ReportSink
from detector.sources import Source, open_source
from detector.summary import RunTally

log = logging.getLogger(__name__)

WINDOW = "Emotion detector"
KEY_QUIT = (ord("q"), 27)  # q, Esc
KEY_PAUSE = ord(" ")
KEY_SNAPSHOT = ord("s")
KEY_TIMELINE = ord("t")
KEY_DETECTOR = ord("d")  # the next face detector (--detector's choices, in turn)


@dataclass
class RunStats:
    frames: int = 0
    faces: int = 0
    unreadable: int = 0  # frames or images that could not be decoded, skipped
    stopped_by: str = "end"  # end | user | signal
    tally: RunTally = field(default_factory=RunTally)  # per face id, frames without a face
    written: list[str] = field(default_factory=list)  # the files and folders the run wrote
    still: bool = False  # the source was still images
    no_face: NoFaceReasons | None = None  # measured causes of frames without a face

    def describe(self) -> str:
        """What the run did, for its last lines: counts, what it wrote and where, and the
        emotions it saw per face id."""
        unit = "images" if self.still else "frames"
        lines = [f"wrote {path}" for path in self.written]
        lines += ["faces seen:"] + [f"  {line}" for line in self.tally.describe_faces(still=self.still)] if self.tally.ids else []
        if self.no_face is not None and self.no_face.describe(unit):  # before the counts: the run's last line
            lines.append(self.no_face.describe(unit))
        lines.append(f"{self.frames} {unit}, {self.faces} faces"
                     + (f", {self.unreadable} unreadable {unit} skipped" if self.unreadable else "")
                     + (f", {self.tally.without_face} {unit} without a face" if self.tally.without_face else "")
                     + (f" ({self.tally.whole_image} face-sized pictures classified whole)" if self.tally.whole_image else ""))
        return "\n".join(lines)


def display_available() -> bool:
    """A window can open: always on Windows/macOS, with X11 or Wayland on Linux."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def open_configured_source(config: AppConfig) -> tuple[Source, str]:
    """The chosen source; with none chosen, camera 0 or else the sample clip, with a notice.
    A lost camera or stream is reopened for up to ``config.reconnect_seconds`` before the run ends."""
    reconnect_s = config.reconnect_seconds
    if config.source is not None:
        return open_source(config.source, reconnect_s=reconnect_s), ""
    try:
        return open_source("0", reconnect_s=reconnect_s), ""
    except SourceError:
        sample = resource(SAMPLE_CLIP)
        notice = "No camera found: playing the sample clip"
        print(f"{notice} ({sample.name}).", file=sys.stderr)
        return open_source(str(sample)), notice


class _Signals:
    """SIGTERM and Ctrl+C (SIGINT) end the loop between two frames, never in the middle of
    writing one, so the JSON lines and the video hold the same frames and the video is
    finalised. A second Ctrl+C interrupts at once."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict = {}

    def __enter__(self) -> "_Signals":
        if _main_thread():  # Python only lets the main thread set handlers
            self._previous = {number: signal.signal(number, self._handle) for number in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)

    def _handle(self, signum, frame) -> None:
        if signum == signal.SIGINT and self.received == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum


def run(config: AppConfig, classifier: EmotionClassifier | None = None, bar=None) -> RunStats:
    """Exit paths: the source ends, the user quits or closes the window, SIGTERM (all return),
    or Ctrl+C (``KeyboardInterrupt``, raised once every sink is closed). ``classifier``: see
    :func:`~detector.pipeline.create_pipeline`; ``bar``: anything with ``update(frames)``, instead of the own tqdm bar."""
    show = display_available() if config.display is None else config.display
    for path in (config.log, config.output):
        if path:
            check_writable(Path(path))
    if show:
        check_writable(Path(config.snapshot_dir) / "snapshot.png")
    classifier = classifier or EmotionClassifier(config.pipeline.model)  # a bad model is refused before a camera opens
    overlay = Overlay(bars=config.bars)
    stats = RunStats()
    with _Signals() as signals:
        with ExitStack() as stack:
            source, notice = open_configured_source(config)
            stack.enter_context(source)
            pipeline = stack.enter_context(create_pipeline(config.pipeline, classifier, source.still))  # closes its thread on every exit
            log, output = _results_paths(config) if config.results_dir else (config.log, config.output)
            sinks = []
            stats.still = source.still
            stats.no_face = NoFaceReasons(create_face_detector(config.pipeline.detection, source.still))
            if log:
                sinks.append(stack.enter_context(JsonlSink(Path(log))))
            if output:
                sinks.append(stack.enter_context(VideoSink(Path(output), 1.0 if source.still else source.fps)))
            if config.report:
                sinks.append(stack.enter_context(ReportSink(Path(config.report), fps=source.fps, video=config.report_video,
                                                            still=source.still, name=source.name)))
            stats.written = [str(path) for path in (log, output, config.report and f"{config.report}/") if path]
            if bar is None and not (show or source.live):
                bar = stack.enter_context(progress(source.frame_count))
            if show:
                # resizable, keeps the aspect ratio, and no Qt toolbar over the picture
                cv2.namedWindow(WINDOW, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO | cv2.WINDOW_GUI_NORMAL)
                stack.callback(cv2.destroyAllWindows)
            try:
                _loop(config, source, pipeline, overlay, sinks, show, notice, stats, bar, signals)
            finally:
                stats.unreadable = source.failed_reads + len(source.skipped)
    if signals.received == signal.SIGINT:
        raise KeyboardInterrupt  # the CLI says "interrupted" and exits 130
    return stats


def _results_paths(config: AppConfig) -> tuple[str, str]:
    """Headless with no output named: a results folder, made only once the source has opened."""
    folder = make_folder(Path(config.results_dir), "results folder")
    print(f"No display: writing results to {folder}/", file=sys.stderr)
    return str(folder / JSONL_FILE), str(folder / VIDEO_FILE)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _loop(config, source, pipeline, overlay, sinks, show, notice, stats, bar, signals) -> None:
    realtime = show if config.realtime is None else config.realtime
    frame_period = 1.0 / source.fps if realtime and not source.live else 0.0
    rate = FrameRate()
    draw = show or any(isinstance(s, VideoSink) or (isinstance(s, ReportSink) and s.video) for s in sinks)
    started = time.perf_counter()
    annotated = None
    history, view = ProbabilityHistory(seconds=10), {"timeline": False}
    for frame in source:
        if signals.received is not None:
            stats.stopped_by = "signal"
            return
        if frame is None:  # a live source is waiting for its device
            if show and annotated is not None:
                if not _show(overlay.hud.annotate(annotated.copy(), 0.0, 0.0, 0, source.status), config, None, 0.0, started,
                             view, signals, overlay):
                    stats.stopped_by = "user"
                    return
            continue
        result = pipeline(frame)
        fps = rate.tick()
        annotated = overlay.draw(result, fps, notice) if draw else None
        for sink in sinks:
            sink.write(result, annotated)
        stats.frames += 1
        stats.faces += len(result.faces)
        stats.tally.add(result)
        if not len(result.faces):
            stats.no_face.look(result.image)
        if bar is not None:
            bar.update(1)
        if show:
            history.update(result)  # every frame, so the timeline is full when it is toggled on
            if view["timeline"]:
                annotated = overlay.timeline(annotated.copy(), result, history, notice)
            if not _show(annotated, config, result, frame_period, started, view, signals, overlay):
                stats.stopped_by = "user"
                return
            if view.pop("switch_detector", False):
                view["detector"] = next_detector(pipeline, config, view.get("detector", config.pipeline.detection.name))
        if config.max_frames and stats.frames >= config.max_frames:
            return


def next_detector(pipeline, config: AppConfig, current: str) -> str:
    """Switch ``pipeline`` to the detector after ``current`` in the registry (the run's own settings
    for the one it was started with, defaults for the others); returns the one now running."""
    from detector.detection import detector_names

    names = detector_names()
    name = names[(names.index(current) + 1) % len(names)] if current in names else names[0]
    detection = config.pipeline.detection
    try:
        switched = pipeline.switch_detector(name, detection.settings if name == detection.name else None)
    except UserError as error:  # its model missing, say: the run goes on with the one it had
        print(f"cannot switch to face detector {name}: {error}", file=sys.stderr)
        return current
    if switched:
        print(f"face detector: {name}", file=sys.stderr)
        return name
    return current


def _show(image, config: AppConfig, result, frame_period: float, started: float, view: dict, signals: _Signals,
          overlay: Overlay) -> bool:
    """Show a frame and handle keys; False when the user quits or closes the window."""
    if not view.get("sized"):  # a resizable window opens small: start it at the frame's own size
        cv2.resizeWindow(WINDOW, image.shape[1], image.shape[0])
        view["sized"] = True
    cv2.imshow(WINDOW, image)
    wait_ms = 1
    if frame_period and result is not None:  # play files at their own speed
        wait_ms = max(1, int((started + result.time - time.perf_counter()) * 1000))
    key = cv2.waitKey(wait_ms) & 0xFF
    if key == KEY_PAUSE:
        cv2.imshow(WINDOW, overlay.hud.paused(image))
        key = _paused(signals)  # the next frame replaces the banner; re-showing now would reopen a closed window
    if key == KEY_SNAPSHOT:
        path = Path(config.snapshot_dir) / f"snapshot_{time.strftime('%Y%m%d_%H%M%S')}_{time.perf_counter_ns() % 10**6:06d}.png"
        saved = cv2.imwrite(str(path), image)
        print(f"snapshot saved: {path}" if saved else f"could not save snapshot {path}", file=sys.stderr)
    if key == KEY_TIMELINE:
        view["timeline"] = not view["timeline"]
    if key == KEY_DETECTOR:
        view["switch_detector"] = True  # the loop switches it: it owns the pipeline
    if key in KEY_QUIT:
        return False
    return _window_open()


def _paused(signals: _Signals) -> int:
    """Wait for the key that ends the pause, while still noticing a closed window or a signal."""
    while signals.received is None and _window_open():
        key = cv2.waitKey(100) & 0xFF
        if key != 0xFF:
            return key
    return 0xFF


def _window_open() -> bool:
    try:
        return cv2.getWindowProperty(WINDOW, cv2.WND_PROP_VISIBLE) >= 1
    except cv2.error:  # Qt tears its GUI down when the last window is closed with its close button
        return False
