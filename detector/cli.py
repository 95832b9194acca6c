"""Command line: ``main.py [run options]``, or ``main.py COMMAND ...`` for each of :data:`COMMANDS`.

User errors end here: one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from detector.errors import EXIT_USER_ERROR, UserError
from detector.flags import add_detection_flags, add_model_flags, add_smoothing_flag, pipeline_config

#: ``main.py NAME ...`` -> the module and function that run it, imported only when asked for
#: (the desktop app never loads training, FastAPI or Ray).
COMMANDS = {
    "train": ("detector.training.cli", "train_main"),
    "evaluate": ("detector.training.evaluate", "evaluate_main"),
    "bench": ("detector.bench", "bench_main"),
    "batch": ("detector.batch.cli", "batch_main"),
    "serve": ("detector.serve.cli", "serve_main"),
    "bench-serve": ("detector.serve.bench", "bench_serve_main"),
}
DEFAULT_HEADLESS_DIR = "emotion_output"

RUN_EPILOG = """\
commands:
  main.py train ...      train a model on FER2013       (main.py train --help)
  main.py evaluate ...   accuracy, F1, confusion matrix (main.py evaluate --help)
  main.py bench ...      speed against the naive loop   (main.py bench --help)
  main.py batch ...      many videos, locally or on Ray (main.py batch --help)
  main.py serve ...      REST API and webcam page       (main.py serve --help)
  main.py bench-serve    the server's speed             (docs/SERVING.md)

keys in the window: q/Esc quit, space pause, s save a snapshot PNG, t rolling timeline
exit codes: 0 done (also window closed or SIGTERM), 2 user error, 130 Ctrl+C
"""


def run_parser() -> argparse.ArgumentParser:
    from detector.config import AppConfig

    p = argparse.ArgumentParser(
        prog="main.py",
        description="Real-time facial emotion recognition: webcam, video, images -> boxes, emotions, confidences.",
        epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_argument_group("input")
    src.add_argument("--source", help="camera index (0), video file, image, folder of images, or stream URL "
                     "(default: camera 0, else the bundled sample clip)")
    src.add_argument("--reconnect-seconds", type=float, default=AppConfig.reconnect_seconds, metavar="SECONDS",
                     help="keep retrying a camera or stream that stops delivering frames this long (default 30)")
    src.add_argument("--max-frames", type=int, default=AppConfig.max_frames, help="stop after N frames (default: all)")
    add_model_flags(p)
    add_detection_flags(p)
    out = p.add_argument_group("output")
    out.add_argument("--no-display", action="store_true", help="no window; write results instead")
    out.add_argument("--log", help="write one JSON line per processed frame to this file")
    out.add_argument("--output", help="write the annotated video to this file (.mp4 or .avi)")
    out.add_argument("--report", metavar="DIR", help="write DIR/frames.csv, summary.json, timeline.png and annotated.mp4")
    out.add_argument("--snapshot-dir", default=AppConfig.snapshot_dir, help="where the s key saves PNG snapshots (default: .)")
    add_smoothing_flag(out)
    out.add_argument("--no-bars", action="store_true", help="hide the per-class bars of the largest face")
    out.add_argument("--realtime", action=argparse.BooleanOptionalAction, default=None,
                     help="play video files at their own speed (default: only when a window is shown)")
    p.add_argument("-v", "--verbose", action="store_true", help="log model and backend details")
    return p


def config_from_args(args: argparse.Namespace):
    """:class:`~detector.config.AppConfig` from the parsed flags.

    Raises:
        SettingsError: a flag out of range (every one named, in one line).
    """
    from detector.app import display_available
    from detector.config import AppConfig

    display = False if args.no_display or not display_available() else None
    results_dir = None
    if display is False and not (args.log or args.output or args.report):
        results_dir = str(Path(DEFAULT_HEADLESS_DIR) / time.strftime("%Y%m%d_%H%M%S"))
    return AppConfig(
        pipeline=pipeline_config(args),
        source=args.source,
        display=display,
        log=args.log,
        output=args.output,
        snapshot_dir=args.snapshot_dir,
        bars=not args.no_bars,
        realtime=args.realtime,
        max_frames=args.max_frames,
        report=args.report,
        results_dir=results_dir,
        reconnect_seconds=args.reconnect_seconds,
    )


def _run(argv: list[str]) -> int:
    args = run_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from detector.app import run

    stats = run(config_from_args(args))
    print(stats.describe(), file=sys.stderr)
    return 0


def _command(name: str, argv: list[str]) -> int:
    import importlib

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    module, function = COMMANDS[name]
    try:
        command = getattr(importlib.import_module(module), function)
    except ModuleNotFoundError as error:  # a lean build, or an optional requirements file not installed
        raise UserError(f"main.py {name} needs {error.name}, which this installation does not have "
                        "(from source: python -m pip install -r requirements.txt; the lean bundle has no training)") from None
    return command(argv)


def main(argv: list[str] | None = None) -> int:
    from detector import notify

    import multiprocessing

    multiprocessing.freeze_support()  # the bundled app's batch workers (spawned) start here and go no further
    argv = sys.argv[1:] if argv is None else argv
    gui = notify.double_clicked(argv)
    if gui:
        notify.attach_log_file()
    try:
        if argv and argv[0] in COMMANDS:
            return _command(argv[0], argv[1:])
        return _run(argv)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        if gui:
            notify.report_to_user(f"error: {error}")
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception:  # only a double-clicked app turns a bug into a dialog; elsewhere the traceback is the report
        if not gui:
            raise
        import traceback

        notify.report_to_user("unexpected error", traceback.format_exc())
        return 1
