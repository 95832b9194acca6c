"""The local engine: a process pool (concurrent.futures), one worker per core.

Each worker loads the model once (the pool's initializer) and runs ONNX Runtime and OpenCV
single-threaded: N processes of one thread each use N cores with no oversubscription and
no locks shared between videos. Workers write into ``DIR/.staging/<name>/`` on this disk;
the driver (this process) marks results complete and renames them into place.
"""

from __future__ import annotations

import multiprocessing
import queue
import signal
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator

from detector.batch.job import Outcome, analyse
from detector.config import AppConfig

POLL_S = 0.2  # how often the driver drains frame counts for the progress bar

_worker: dict = {}  # per worker process: config, classifier, annotate, frame-count queue


def single_threaded(config: AppConfig) -> AppConfig:
    """One inference thread per worker unless ``--threads`` says otherwise (the engines run one
    worker per core instead), and OpenCV on the calling thread."""
    import cv2

    cv2.setNumThreads(1)
    return replace(config, model=replace(config.model, threads=config.model.threads or 1))


def _start_worker(config: AppConfig, annotate: bool, frames: multiprocessing.Queue) -> None:
    """Load the model once. Ctrl+C reaches the whole process group: a worker mid-video stops
    at a frame boundary, as the app does; after it, a worker refuses the videos already
    queued to it, so the batch ends at once rather than after them."""
    from detector.classifier import EmotionClassifier

    signal.signal(signal.SIGINT, _stop)
    config = single_threaded(config)
    _worker.update(config=config, classifier=EmotionClassifier(config.model), annotate=annotate, frames=frames)


def _stop(signum, frame) -> None:
    _worker["stopping"] = True


def _job(item: str, work_dir: str) -> Outcome:
    if _worker.get("stopping"):
        raise KeyboardInterrupt
    try:
        return analyse(item, Path(work_dir), _worker["config"], _worker["classifier"], _worker["annotate"], _worker["frames"].put)
    except KeyboardInterrupt:
        _worker["stopping"] = True
        raise


class LocalEngine:
    name = "local"

    def __init__(self, config: AppConfig, annotate: bool, workers: int):
        self.config, self.annotate, self.workers = config, annotate, workers

    def run(self, jobs: list[tuple[str, Path]], on_frames: Callable[[int], None]) -> Iterator[Outcome]:
        """Outcomes of ``(input, staging folder)`` jobs, in the order they finish. Spawned
        workers (not forked): the same on Linux, macOS and Windows, and no driver threads copied."""
        context = multiprocessing.get_context("spawn")
        frames = context.Queue()
        with ProcessPoolExecutor(min(self.workers, len(jobs)) or 1, mp_context=context, initializer=_start_worker,
                                 initargs=(self.config, self.annotate, frames)) as pool:
            pending: dict[Future, str] = {pool.submit(_job, item, str(folder)): item for item, folder in jobs}
            try:
                while pending:
                    done, _ = wait(pending, timeout=POLL_S, return_when=FIRST_COMPLETED)
                    _drain(frames, on_frames)
                    for future in done:
                        yield _outcome(future, pending.pop(future))
            finally:
                for future in pending:
                    future.cancel()
        _drain(frames, on_frames)


def _outcome(future: Future, item: str) -> Outcome:
    try:
        return future.result()
    except BrokenProcessPool:  # a worker died (killed, out of memory, a crash in native code)
        return Outcome(item, False, error="the worker process analysing it died")


def _drain(frames: multiprocessing.Queue, on_frames: Callable[[int], None]) -> None:
    while True:
        try:
            on_frames(frames.get_nowait())
        except queue.Empty:
            return
