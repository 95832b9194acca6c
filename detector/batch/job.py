"""One input, analysed: the plain function every engine runs. It knows nothing of pools or
Ray; it writes what ``main.py --source X --no-display --report DIR`` writes, into a folder it
is given, and says how it went."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from detector.config import AppConfig
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
    identity: dict = field(default_factory=dict)  # input_identity() when the analysis started


def input_identity(item: str) -> dict:
    """Size and modification time: a file changed since its results were made is redone.
    ``{}`` for a file that cannot be looked at."""
    try:
        stat = Path(item).stat()
    except OSError:
        return {}
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


class _Ticks:
    """The ``bar`` the app's loop updates once per frame, passing frame counts on in batches."""

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


def input_config(config: AppConfig, item: str, work_dir: Path, annotate: bool) -> AppConfig:
    """The app's settings for one input: headless, as fast as it decodes, JSON lines and the
    report in ``work_dir`` (the annotated video only when ``annotate``)."""
    return replace(config, source=item, display=False, realtime=False, log=str(work_dir / JSONL_FILE),
                   output=None, report=str(work_dir), report_video=annotate, results_dir=None)


def analyse(item: str, work_dir: Path, config: AppConfig, classifier=None, annotate: bool = False,
            on_frames: Callable[[int], None] | None = None) -> Outcome:
    """Run the app's pipeline over ``item`` into the existing folder ``work_dir``.

    ``classifier``: a loaded :class:`~detector.classifier.EmotionClassifier`, reused across
    inputs (None loads ``config.model``). ``on_frames(n)`` is called as frames are processed.
    A bad input (not found, not a video, damaged, no frames) or any other error in it
    becomes ``Outcome(ok=False)``, so one file never stops a batch; Ctrl+C still ends it.
    A still image is refused too: the app would analyse it, but a batch's results are a
    video's (a duration, an fps, a timeline).
    """
    from detector.app import run  # the app's own loop: one copy of it
    from detector.sources import is_image_file

    started_wall, started_cpu = time.perf_counter(), time.process_time()
    identity = input_identity(item)
    if Path(item).is_file() and is_image_file(Path(item)):
        return _failed(item, f"not a video: {Path(item).name} is a still image (analyse it with main.py --source)",
                       started_wall, started_cpu)
    ticks = _Ticks(on_frames)
    try:
        stats = run(input_config(config, item, work_dir, annotate), classifier=classifier, bar=ticks)
    except UserError as error:
        return _failed(item, str(error), started_wall, started_cpu)
    except Exception as error:  # a decoder or codec bug on one file must not end the batch
        log.warning("%s: %s", item, error, exc_info=True)
        return _failed(item, f"{type(error).__name__}: {error}", started_wall, started_cpu)
    finally:
        ticks.flush()
    if stats.stopped_by != "end":  # SIGTERM: the results stop part-way, so they are not a result
        return _failed(item, "stopped by a signal before the end", started_wall, started_cpu)
    if input_identity(item) != identity:
        return _failed(item, "the file changed while it was analysed (replaced, or still being copied): "
                             "run the batch again once it is complete", started_wall, started_cpu)
    return Outcome(item, True, frames=stats.frames, faces=stats.faces, unreadable=stats.unreadable,
                   seconds=time.perf_counter() - started_wall, cpu_seconds=time.process_time() - started_cpu,
                   identity=identity)


def _failed(item: str, message: str, started_wall: float, started_cpu: float) -> Outcome:
    return Outcome(item, False, error=message, seconds=time.perf_counter() - started_wall,
                   cpu_seconds=time.process_time() - started_cpu)
