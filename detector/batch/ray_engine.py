"""The Ray engine: the same per-input job as a Ray task, for corpora one machine cannot finish.

- The model's files go to the object store once (``ray.put``); each worker process writes
  them to a temporary folder of its own and loads the model once, so nodes need no shared
  file system for the model.
- Inputs are read by the workers, so they must be at the same path on every node (the
  shared or network storage a corpus usually lives on); a node that cannot see one records
  it as failed, saying so.
- Results are written by the driver: a task analyses into a worker-local temporary folder
  and returns the files' bytes; the driver writes them under ``--out`` and marks them
  complete, exactly as the local engine does. ``--out`` therefore only has to exist on the
  driver's machine (annotated videos, with ``--annotate``, travel through the object store).
- The driver collects results with ``ray.wait`` as they finish; frame counts for the
  progress bar come through a ``ray.util.queue.Queue``.
"""

from __future__ import annotations

import logging
import socket
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator

from detector.batch.job import Outcome, analyse
from detector.batch.local import single_threaded
from detector.config import PipelineConfig
from detector.errors import UserError

log = logging.getLogger(__name__)

POLL_S = 0.2
CONNECT_TIMEOUT_S = 5.0
_worker: dict = {}  # per Ray worker process: digest -> (config, classifier, temporary model folder)


def import_ray():
    try:
        import ray
    except ImportError:
        raise UserError("--engine ray needs Ray: pip install -r requirements-scale.txt") from None
    return ray


def connect(address: str | None, workers: int) -> bool:
    """Join the cluster at ``address`` (``auto`` or ``HOST:PORT``), or start Ray on this machine
    with ``workers`` CPUs; True when this call started or joined Ray (and should shut it down).
    A Ray already initialised in this process (tests, notebooks) is used as it is."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    if address and address != "auto":
        _check_reachable(address)
    # the package travels with the job, so workers on any node need only its dependencies
    options = {"logging_level": logging.WARNING, "log_to_driver": False,
               "runtime_env": {"py_modules": [str(Path(__file__).resolve().parent.parent)]}}
    try:
        if address:
            ray.init(address=address, **options)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, **options)
    except (ConnectionError, TimeoutError, ValueError, RuntimeError) as error:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise UserError(f"cannot connect to {where}: {str(error).splitlines()[0] if str(error) else type(error).__name__}") from None
    return True


def _check_reachable(address: str) -> None:
    """Fail in seconds where nothing listens at HOST:PORT (Ray itself retries for minutes)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--ray-address must be auto or HOST:PORT, got {address}")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
        raise UserError(f"cannot connect to the Ray cluster at {address}: {error.strerror or error}") from None


def model_files(config: PipelineConfig) -> tuple[dict[str, bytes], str]:
    """The files the model needs, by name, and the path (relative to a folder holding them)
    to load it from: for a backend that loads one file (ONNX) that file plus the model card's,
    for one that loads the folder (a SavedModel) the whole folder."""
    from detector.backends import BACKENDS, resolve_model
    from detector.model_card import card_files

    path = Path(config.model.path)
    backend, model_file = resolve_model(path, config.model.backend, config.model.int8)
    folder = path if path.is_dir() else path.parent
    if not BACKENDS[backend].loads_folder:
        names = [model_file.name] + card_files(folder)
        return {n: (folder / n).read_bytes() for n in names}, "." if path.is_dir() else path.name
    if path.is_file():
        return {path.name: path.read_bytes()}, path.name
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}, "."


def _worker_model(config: PipelineConfig, model_box: list, relative: str):
    """This worker's (config, classifier), loading the model from the object store the first time."""
    import ray

    from detector.classifier import EmotionClassifier

    key = model_box[0].hex()
    if key not in _worker:
        folder = Path(tempfile.mkdtemp(prefix="emotion-model-"))
        for name, data in ray.get(model_box[0]).items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)
        local = single_threaded(replace(config, model=replace(config.model, path=str(folder / relative))))
        _worker[key] = (local, EmotionClassifier(local.model))
    return _worker[key]


def _task(item: str, config: PipelineConfig, annotate: bool, model_box: list, relative: str, frames) -> tuple[Outcome, dict[str, bytes]]:
    """The Ray task: analyse ``item`` into a temporary folder and hand back the files.
    ``frames``: a ``ray.util.queue.Queue`` the frame counts go to, for the driver's progress bar."""
    if not Path(item).exists():
        return Outcome(item, False, error=f"not found on node {socket.gethostname()}: inputs must be at the same path "
                                          "on every node (shared storage)"), {}
    local, classifier = _worker_model(config, model_box, relative)
    with tempfile.TemporaryDirectory(prefix="emotion-batch-") as folder:
        outcome = analyse(item, Path(folder), local, classifier, annotate, frames.put_nowait)
        files = {p.name: p.read_bytes() for p in Path(folder).iterdir() if p.is_file()}
    return outcome, files


class RayEngine:
    name = "ray"

    def __init__(self, config: PipelineConfig, annotate: bool, address: str | None, workers: int):
        self.config, self.annotate = config, annotate
        self.started = connect(address, workers)

    def run(self, jobs: list[tuple[str, Path]], on_frames: Callable[[int], None]) -> Iterator[Outcome]:
        """Outcomes in the order tasks finish; each task's files are written into its staging folder."""
        import ray
        from ray.util.queue import Queue

        files, relative = model_files(self.config)
        frames = Queue()
        model_box = [ray.put(files)]  # in a list, so tasks get the reference and fetch it only once per worker
        remote = ray.remote(num_cpus=1)(_task)
        pending = {remote.remote(item, self.config, self.annotate, model_box, relative, frames): (item, folder)
                   for item, folder in jobs}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
                for count in frames.get_nowait_batch(frames.qsize()):
                    on_frames(count)
                for ref in done:
                    item, folder = pending.pop(ref)
                    try:
                        outcome, results = ray.get(ref)
                    except ray.exceptions.RayError as error:  # the worker or its node died
                        outcome, results = Outcome(item, False, error=f"Ray task failed: {str(error).splitlines()[0]}"), {}
                    for name, data in results.items():
                        (folder / name).write_bytes(data)
                    yield outcome
        finally:
            for ref in pending:
                ray.cancel(ref)
            frames.shutdown()
            if self.started:
                ray.shutdown()
