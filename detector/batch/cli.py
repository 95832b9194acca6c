"""``main.py batch INPUTS... --out DIR``: the driver. It finds the inputs, skips those already
complete, hands the rest to an engine, writes every result under ``--out`` itself (whichever
engine ran it), rebuilds summary.csv and failures.csv, and prints one line.

Exit codes: 0 every input analysed, 1 some failed (listed in failures.csv), 2 a user error
(bad flag, no inputs, unusable model, Ray missing or unreachable), 130 Ctrl+C.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from detector.batch.combine import FAILURES_FILE, SUMMARY_FILE, combine
from detector.batch.inputs import collect_inputs, result_names
from detector.batch.store import ResultStore, input_identity
from detector.config import PipelineConfig
from detector.errors import UserError
from detector.flags import add_detection_flags, add_model_flags, add_smoothing_flag, pipeline_config

log = logging.getLogger(__name__)

EXIT_FAILURES = 1


def batch_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="main.py batch",
        description="Analyse many videos: per input DIR/<name>/ gets the JSON lines, frames.csv, summary.json and "
                    "timeline.png of --report; DIR/summary.csv has a row per input per face, DIR/failures.csv the "
                    "inputs that failed. Rerunning the same command skips inputs already complete.",
        epilog="exit codes: 0 all analysed, 1 some failed (see failures.csv), 2 user error, 130 Ctrl+C")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="video file, folder (searched recursively for videos), glob, or .txt file listing paths")
    p.add_argument("--out", required=True, metavar="DIR", help="results folder (made if absent)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, metavar="N",
                   help="videos analysed at once, one core each (default: one per core here; "
                        "with --ray-address: the cluster's CPUs decide)")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: a process pool on this machine (default); ray: Ray tasks (pip install -r requirements-scale.txt)")
    p.add_argument("--ray-address", metavar="ADDR",
                   help="join a running Ray cluster: auto or HOST:PORT (default: start Ray on this machine)")
    p.add_argument("--annotate", action="store_true", help="also write DIR/<name>/annotated.mp4")
    add_model_flags(p)
    add_detection_flags(p)
    add_smoothing_flag(p)
    return p


@dataclass
class Tally:
    inputs: int = 0
    skipped: int = 0  # complete from an earlier run
    analysed: int = 0
    failed_now: int = 0  # inputs that failed in this run
    frames: int = 0
    rows: int = 0  # in summary.csv
    failures: int = 0  # inputs in failures.csv that have no results
    partial: int = 0  # inputs in failures.csv analysed except for frames that could not be decoded
    outcomes: list = field(default_factory=list)  # this run's Outcomes, in the order they finished


def settings(config: PipelineConfig, annotate: bool) -> dict:
    """What the results depend on: a rerun with other settings, or with another model file or
    card where the model path was (a retrained or re-exported model), redoes the inputs."""
    pipeline = asdict(config)
    del pipeline["model"]["threads"]  # threads change speed, not results
    return {"pipeline": pipeline, "model_file": model_file_identity(config), "model_card": model_card(config).describe(),
            "annotate": annotate}


def model_card(config: PipelineConfig):
    """The card of the model that runs (its labels and what it says of itself): a changed card changes the results."""
    from detector.model_card import read_card

    path = Path(config.model.path)
    return read_card(path if path.is_dir() else path.parent, config.model.labels)


def model_file_identity(config: PipelineConfig) -> dict:
    """The file that runs (``resolve_model``'s choice: the int8 copy, the ONNX file, a
    SavedModel's ``saved_model.pb``) with its size and modification time, as inputs are
    identified. Raises ModelError (a UserError) where there is no model."""
    from detector.backends import resolve_model

    backend, path = resolve_model(Path(config.model.path), config.model.backend, config.model.int8)
    path = path / "saved_model.pb" if path.is_dir() else path
    return {"backend": backend, "file": str(path.resolve()), **input_identity(str(path))}


def check_pipeline(config: PipelineConfig) -> None:
    """Build the pipeline once here (detector and model), so a bad one is one error before any work."""
    from detector.pipeline import create_pipeline

    create_pipeline(config).close()


def make_engine(args: argparse.Namespace, config: PipelineConfig):
    if args.workers < 1:
        raise UserError(f"--workers must be 1 or more, got {args.workers}")
    if args.engine == "ray":
        from detector.batch.ray_engine import RayEngine

        return RayEngine(config, args.annotate, args.ray_address, args.workers)
    if args.ray_address:
        raise UserError("--ray-address needs --engine ray")
    from detector.batch.local import LocalEngine

    return LocalEngine(config, args.annotate, args.workers)


def run_batch(inputs: list[str], store: ResultStore, engine) -> Tally:
    """Analyse the inputs not yet complete; combined files are rebuilt at the end, also when
    interrupted, so they always match the per-input results."""
    from detector.progress import progress

    names = {item: store.owned_name(item, name) for item, name in result_names(inputs).items()}
    todo = [item for item in inputs if not store.is_complete(item, names[item])]
    tally = Tally(inputs=len(inputs), skipped=len(inputs) - len(todo))
    jobs = [(item, store.staging(names[item])) for item in todo]
    try:
        with progress(len(inputs), "videos") as videos, progress(0, "frames") as frames:
            videos.update(tally.skipped)
            for outcome in engine.run(jobs, frames.update) if jobs else ():
                store.finish(names[outcome.input], outcome, engine.name)
                tally.outcomes.append(outcome)
                tally.analysed += outcome.ok
                tally.failed_now += not outcome.ok
                tally.frames += outcome.frames
                videos.update(1)
                if not outcome.ok:
                    log.warning("%s: %s", outcome.input, outcome.error)
    finally:
        tally.rows, tally.failures, tally.partial = combine(store, names)
    if not todo or tally.analysed + tally.failed_now == len(todo):
        store.clean_staging()
    return tally


def batch_main(argv: list[str]) -> int:
    args = batch_parser().parse_args(argv)
    config = pipeline_config(args)
    inputs = collect_inputs(args.inputs)
    check_pipeline(config)
    store = ResultStore(Path(args.out), settings(config, args.annotate))
    started = time.perf_counter()
    engine = make_engine(args, config)
    tally = run_batch(inputs, store, engine)
    seconds = time.perf_counter() - started
    out = Path(args.out)
    problems = tally.failures + tally.partial
    print(f"batch: {tally.inputs} inputs: {tally.analysed} analysed now, {tally.skipped} already complete, "
          f"{tally.failures} failed, {tally.partial} partly undecodable; {tally.frames} frames in {seconds:.1f} s "
          f"({engine.name}) -> {out / SUMMARY_FILE}" + (f", problems in {out / FAILURES_FILE}" if problems else ""),
          file=sys.stderr)
    return EXIT_FAILURES if problems else 0
