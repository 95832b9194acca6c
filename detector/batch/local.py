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
from detector.config import PipelineConfig

POLL_S = 0.2  # how often the driver drains frame counts for the progress bar

_worker: dict = {}  # per worker process: config, classifier, annotate, frame-count queue


def single_threaded(config: PipelineConfig) -> PipelineConfig:
    """One inference thread per worker unless ``--threads`` says otherwise (the engines run one
    worker per core instead), and OpenCV on the calling thread."""
    import cv2

    cv2.setNumThreads(1)
    return replace(config, model=replace(config.model, threads=config.model.threads or 1))


def _start_worker(config: PipelineConfig, annotate: bool, frames: multiprocessing.Queue) -> None:
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
    frames = _worker["frames"]
    frames.put((item, 0))  # started: if this worker dies now, only this input is lost
    try:
        return analyse(item, Path(work_dir), _worker["config"], _worker["classifier"], _worker["annotate"],
                       lambda count: frames.put((item, count)), stopping=lambda: _worker.get("stopping", False))
    except KeyboardInterrupt:
        _worker["stopping"] = True
        raise


Job = tuple[str, Path]  # (input, staging folder)


class LocalEngine:
    name = "local"

    def __init__(self, config: PipelineConfig, annotate: bool, workers: int):
        self.config, self.annotate, self.workers = config, annotate, workers

    def run(self, jobs: list[Job], on_frames: Callable[[int], None]) -> Iterator[Outcome]:
        """Outcomes of ``(input, staging folder)`` jobs, in the order they finish. Spawned
        workers (not forked): the same on Linux, macOS and Windows, and no driver threads copied.

        A worker that dies (killed, out of memory, a crash in native code) breaks the pool:
        the inputs that had started then fail, the ones not yet started go to a new pool."""
        context = multiprocessing.get_context("spawn")
        frames = context.Queue()
        while jobs:
            jobs = yield from self._pool(jobs, frames, on_frames, context)

    def _pool(self, jobs: list[Job], frames, on_frames: Callable[[int], None], context) -> Iterator[Outcome]:
        """One pool over ``jobs``; yields their outcomes and returns the jobs that a broken
        pool left unstarted (empty when it did not break)."""
        started: set[str] = set()
        lost: list[Job] = []
        with ProcessPoolExecutor(min(self.workers, len(jobs)), mp_context=context, initializer=_start_worker,
                                 initargs=(self.config, self.annotate, frames)) as pool:
            pending: dict[Future, Job] = {pool.submit(_job, item, str(folder)): (item, folder) for item, folder in jobs}
            try:
                while pending:
                    done, _ = wait(pending, timeout=POLL_S, return_when=FIRST_COMPLETED)
                    _drain(frames, on_frames, started)
                    for future in done:
                        job = pending.pop(future)
                        try:
                            yield future.result()
                        except BrokenProcessPool:
                            lost.append(job)
            finally:
                for future in pending:
                    future.cancel()
        _drain(frames, on_frames, started)
        order = {job: index for index, job in enumerate(jobs)}
        lost.sort(key=order.__getitem__)  # submission order: the pool starts jobs in it
        died = [job for job in lost if job[0] in started] or lost[:1]  # the first lost one was surely running
        for item, _ in died:
            yield Outcome(item, False, error="the worker process analysing it died")
        return [job for job in lost if job not in died]


def _drain(frames: multiprocessing.Queue, on_frames: Callable[[int], None], started: set[str]) -> None:
    """Pass the workers' frame counts on; note which inputs have started."""
    while True:
        try:
            item, count = frames.get_nowait()
        except queue.Empty:
            return
        started.add(item)
        if count:
            on_frames(count)
