"""One input, analysed: the plain function every engine runs. It knows nothing of pools or
Ray (nor of the desktop loop: no window, no signal handlers); it writes what
``main.py --source X --no-display --log DIR/results.jsonl --report DIR`` writes, into a folder
it is given, and says how it went."""

from __future__ import annotations

import logging
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from detector.config import PipelineConfig
from detector.errors import UserError
from detector.report import JSONL_FILE

log = logging.getLogger(__name__)

TICK_FRAMES = 25  # frames per progress message: often enough for a smooth bar, rare enough to cost nothing


@dataclass(frozen=True)
class Outcome:
    """How one input went. ``ok`` False: nothing usable was written and ``error`` says why.
    ``unreadable``: frames (of an input otherwise analysed) that could not be decoded.
    ``seconds`` is wall time, ``cpu_seconds`` the worker process's CPU time (all its threads)."""

    input: str
    ok: bool
    error: str = ""
    frames: int = 0
    faces: int = 0
    unreadable: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0


class _Ticks:
    """Frame counts, passed on in batches."""

    def __init__(self, on_frames: Callable[[int], None] | None):
        self.on_frames, self.pending = on_frames, 0

    def update(self, frames: int = 1) -> None:
        self.pending += frames
        if self.pending >= TICK_FRAMES:
            self.flush()

    def flush(self) -> None:
        if self.on_frames and self.pending:
            self.on_frames(self.pending)
        self.pending = 0


def analyse(item: str, work_dir: Path, config: PipelineConfig, classifier=None, annotate: bool = False,
            on_frames: Callable[[int], None] | None = None, stopping: Callable[[], bool] | None = None) -> Outcome:
    """Run the pipeline over ``item`` into the existing folder ``work_dir``: the JSON lines and
    the report (the annotated video only when ``annotate``), as fast as it decodes.

    ``classifier``: a loaded :class:`~detector.classifier.EmotionClassifier`, reused across
    inputs (None loads ``config.model``). ``on_frames(n)`` is called as frames are processed.
    ``stopping()``, asked between frames: True ends the input part-way with ``KeyboardInterrupt``
    (the worker's Ctrl+C). A bad input (not found, not a video, damaged, no frames) or any
    other error in it becomes ``Outcome(ok=False)``, so one file never stops a batch. A still
    image is refused too: a batch's results are a video's (a duration, an fps, a timeline).
    """
    from detector.sources import is_image_file

    started_wall, started_cpu = time.perf_counter(), time.process_time()
    if Path(item).is_file() and is_image_file(Path(item)):
        return _failed(item, f"not a video: {Path(item).name} is a still image (analyse it with main.py --source)",
                       started_wall, started_cpu)
    ticks = _Ticks(on_frames)
    try:
        frames, faces, unreadable = _run(item, work_dir, config, classifier, annotate, ticks, stopping or (lambda: False))
    except UserError as error:
        return _failed(item, str(error), started_wall, started_cpu)
    except Exception as error:  # a decoder or codec bug on one file must not end the batch
        log.warning("%s: %s", item, error, exc_info=True)
        return _failed(item, f"{type(error).__name__}: {error}", started_wall, started_cpu)
    finally:
        ticks.flush()
    return Outcome(item, True, frames=frames, faces=faces, unreadable=unreadable,
                   seconds=time.perf_counter() - started_wall, cpu_seconds=time.process_time() - started_cpu)


def _run(item: str, work_dir: Path, config: PipelineConfig, classifier, annotate: bool, ticks: _Ticks,
         stopping: Callable[[], bool]) -> tuple[int, int, int]:
    """(frames, faces, unreadable frames): source -> pipeline -> JSON lines and report."""
    from detector.outputs import JsonlSink
    from detector.overlay import FrameRate, Overlay
    from detector.pipeline import create_pipeline
    from detector.report import ReportSink
    from detector.sources import open_source

    frames = faces = 0
    with ExitStack() as stack:
        pipeline = stack.enter_context(create_pipeline(config, classifier))  # closes the face-search thread
        source = stack.enter_context(open_source(item))
        sinks = [stack.enter_context(JsonlSink(work_dir / JSONL_FILE)),
                 stack.enter_context(ReportSink(work_dir, fps=source.fps, video=annotate, still=source.still, name=source.name))]
        overlay, rate = Overlay(), FrameRate()
        try:
            for frame in source:
                if stopping():
                    raise KeyboardInterrupt
                if frame is None:  # a live source waiting for its device
                    continue
                result = pipeline(frame)
                annotated = overlay.draw(result, rate.tick()) if annotate else None
                for sink in sinks:
                    sink.write(result, annotated)
                frames, faces = frames + 1, faces + len(result.faces)
                ticks.update(1)
        finally:
            unreadable = source.failed_reads + len(source.skipped)
    return frames, faces, unreadable


def _failed(item: str, message: str, started_wall: float, started_cpu: float) -> Outcome:
    return Outcome(item, False, error=message, seconds=time.perf_counter() - started_wall,
                   cpu_seconds=time.process_time() - started_cpu)
