"""Command line: ``main.py [run options]``, ``main.py train|evaluate|bench ...``.

User errors end here: one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from detector.errors import EXIT_USER_ERROR, UserError

COMMANDS = ("train", "evaluate", "bench")
DEFAULT_HEADLESS_DIR = "emotion_output"

RUN_EPILOG = """\
commands:
  main.py train ...      train a model on FER2013       (main.py train --help)
  main.py evaluate ...   accuracy, F1, confusion matrix (main.py evaluate --help)
  main.py bench ...      speed against the naive loop   (main.py bench --help)

keys in the window: q/Esc quit, space pause, s save a snapshot PNG, t rolling timeline
exit codes: 0 done (also window closed or SIGTERM), 2 user error, 130 Ctrl+C
"""


def run_parser() -> argparse.ArgumentParser:
    from detector.config import AppConfig
    from detector.faces import DetectorConfig

    d = DetectorConfig()
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
    src.add_argument("--max-frames", type=int, default=0, help="stop after N frames (default: all)")
    mdl = p.add_argument_group("model")
    mdl.add_argument("--model", help="SavedModel folder, .keras or .onnx file (default: saved_model_trt/ next to the app)")
    mdl.add_argument("--backend", choices=("auto", "onnx", "tf"), default="auto",
                     help="auto: ONNX Runtime when the model has model.onnx, else TensorFlow")
    mdl.add_argument("--no-int8", dest="int8", action="store_false",
                     help="use model.onnx (float32) even where the folder has model.int8.onnx")
    mdl.add_argument("--labels", help="comma-separated class names, for a model folder without labels.txt")
    mdl.add_argument("--input-scale", type=float, choices=(1.0, 255.0),
                     help="pixel value the model treats as white: 255 (raw pixels) or 1 (0-1 input); default: model.json, else 255")
    mdl.add_argument("--threads", type=int, default=0, help="inference threads (default: one per core)")
    det = p.add_argument_group("face detection")
    det.add_argument("--cascade", help="Haar cascade XML (default: haarcascade_frontalface_default.xml next to the app)")
    det.add_argument("--scale-factor", type=float, default=d.scale_factor, help=f"Haar scale step (default {d.scale_factor})")
    det.add_argument("--min-neighbors", type=int, default=d.min_neighbors, help=f"Haar min neighbours (default {d.min_neighbors})")
    det.add_argument("--min-face", type=float, default=d.min_face,
                     help=f"smallest face, as a fraction of the frame's shorter side (default {d.min_face})")
    det.add_argument("--detect-width", type=int, default=d.detect_width,
                     help=f"downscale wider frames to this width for detection, 0 = never (default {d.detect_width})")
    det.add_argument("--full-every", type=int, default=d.full_every,
                     help=f"search the whole frame for new faces every N frames; known faces are re-found every frame (default {d.full_every})")
    det.add_argument("--full-lag", type=int, default=d.full_lag,
                     help=f"the full search runs beside the frame loop; its faces join N frames later, 0 = inline (default {d.full_lag})")
    out = p.add_argument_group("output")
    out.add_argument("--no-display", action="store_true", help="no window; write results instead")
    out.add_argument("--log", help="write one JSON line per processed frame to this file")
    out.add_argument("--output", help="write the annotated video to this file (.mp4 or .avi)")
    out.add_argument("--report", metavar="DIR", help="write DIR/frames.csv, summary.json, timeline.png and annotated.mp4")
    out.add_argument("--smoothing", type=float, default=AppConfig.smoothing, metavar="SECONDS",
                     help="average each face's class probabilities over about this many seconds "
                          f"(0 = off, default {AppConfig.smoothing}); the log keeps raw_probs")
    out.add_argument("--snapshot-dir", default=".", help="where the s key saves PNG snapshots (default: .)")
    out.add_argument("--no-bars", action="store_true", help="hide the per-class bars of the largest face")
    out.add_argument("--realtime", action=argparse.BooleanOptionalAction, default=None,
                     help="play video files at their own speed (default: only when a window is shown)")
    p.add_argument("-v", "--verbose", action="store_true", help="log model and backend details")
    return p


def config_from_args(args: argparse.Namespace):
    from detector.app import display_available
    from detector.classifier import ModelConfig
    from detector.config import AppConfig
    from detector.faces import DetectorConfig

    defaults = AppConfig()
    display = False if args.no_display else None
    log, output = args.log, args.output
    if not args.no_display and not display_available():
        display = False
    if args.reconnect_seconds < 0:
        raise UserError(f"--reconnect-seconds must be 0 or more, got {args.reconnect_seconds}")
    if args.smoothing < 0:
        raise UserError(f"--smoothing must be 0 or more seconds, got {args.smoothing}")
    results_dir = None
    if display is False and not (log or output or args.report):
        results_dir = str(Path(DEFAULT_HEADLESS_DIR) / time.strftime("%Y%m%d_%H%M%S"))
    labels = tuple(s.strip() for s in args.labels.split(",") if s.strip()) if args.labels else None
    return AppConfig(
        source=args.source,
        model=ModelConfig(args.model or defaults.model.path, args.backend, labels, args.input_scale, args.threads, args.int8),
        detector=DetectorConfig(scale_factor=args.scale_factor, min_neighbors=args.min_neighbors, min_face=args.min_face,
                                detect_width=args.detect_width, full_every=args.full_every, full_lag=args.full_lag),
        cascade=args.cascade or defaults.cascade,
        display=display,
        log=log,
        output=output,
        snapshot_dir=args.snapshot_dir,
        bars=not args.no_bars,
        realtime=args.realtime,
        max_frames=args.max_frames,
        smoothing=args.smoothing,
        report=args.report,
        results_dir=results_dir,
        reconnect_seconds=args.reconnect_seconds,
    )


def _run(argv: list[str]) -> int:
    args = run_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from detector.app import run

    stats = run(config_from_args(args))
    skipped = f", {stats.unreadable} unreadable frames skipped" if stats.unreadable else ""
    print(f"{stats.frames} frames, {stats.faces} faces{skipped}", file=sys.stderr)
    return 0


def _command(name: str, argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if name == "train":
        from detector.training.cli import train_main

        return train_main(argv)
    if name == "evaluate":
        from detector.training.evaluate import evaluate_main

        return evaluate_main(argv)
    from detector.bench import bench_main

    return bench_main(argv)


def main(argv: list[str] | None = None) -> int:
    from detector import notify

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
