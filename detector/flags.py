"""The command-line flags every front end shares, each declared once.

The desktop app, ``evaluate``, ``bench``, ``serve`` and ``batch`` all run the same
model, detector and smoother; they add these groups to their own parsers and turn the
parsed values into settings with :func:`model_config` and :func:`pipeline_config`, so a
flag's name, default and help text have one home. Defaults come from the settings
dataclasses, never from here.
"""

from __future__ import annotations

import argparse

from detector.errors import UserError


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    """``--model --backend --no-int8 --labels --input-scale --threads``."""
    from detector.config import AppConfig, ModelConfig

    group = parser.add_argument_group("model")
    group.add_argument("--model", metavar="PATH", default=AppConfig().model.path,
                       help="SavedModel folder, .keras or .onnx file (default: saved_model_trt/ next to the app)")
    group.add_argument("--backend", choices=("auto", "onnx", "tf"), default=ModelConfig.backend,
                       help="auto: ONNX Runtime when the model has model.onnx, else TensorFlow")
    group.add_argument("--no-int8", dest="int8", action="store_false",
                       help="use model.onnx (float32) even where the folder has model.int8.onnx")
    group.add_argument("--labels", help="comma-separated class names, for a model folder without labels.txt")
    group.add_argument("--input-scale", type=float, choices=(1.0, 255.0),
                       help="pixel value the model treats as white: 255 (raw pixels) or 1 (0-1 input); default: model.json, else 255")
    group.add_argument("--threads", type=int, default=ModelConfig.threads, metavar="N", help="inference threads (default: one per core)")


def add_detection_flags(parser: argparse.ArgumentParser) -> None:
    """``--cascade --scale-factor --min-neighbors --min-face --detect-width --full-every --full-lag --whole-image``."""
    from detector.config import AppConfig, DetectorConfig
    from detector.whole_image import FACE_PICTURE_MAX_SIDE, WHOLE_IMAGE_MODES

    d = DetectorConfig()
    group = parser.add_argument_group("face detection")
    group.add_argument("--whole-image", choices=WHOLE_IMAGE_MODES, default=AppConfig.whole_image,
                       help="classify the whole picture as one face: auto = a face-sized picture (square-ish, at most "
                            f"{FACE_PICTURE_MAX_SIDE} px) where no face is found; always = skip detection; never")
    group.add_argument("--cascade", help="Haar cascade XML (default: haarcascade_frontalface_default.xml next to the app)")
    group.add_argument("--scale-factor", type=float, default=d.scale_factor, help=f"Haar scale step (default {d.scale_factor})")
    group.add_argument("--min-neighbors", type=int, default=d.min_neighbors, help=f"Haar min neighbours (default {d.min_neighbors})")
    group.add_argument("--min-face", type=float, default=d.min_face,
                       help=f"smallest face, as a fraction of the frame's shorter side (default {d.min_face})")
    group.add_argument("--detect-width", type=int, default=d.detect_width,
                       help=f"downscale wider video frames to this width for detection, 0 = never; still images are "
                            f"shrunk only as far as keeps a --min-face face findable (default {d.detect_width})")
    group.add_argument("--full-every", type=int, default=d.full_every,
                       help=f"search the whole frame for new faces every N frames; known faces are re-found every frame (default {d.full_every})")
    group.add_argument("--full-lag", type=int, default=d.full_lag,
                       help=f"the full search runs beside the frame loop; its faces join N frames later, 0 = inline (default {d.full_lag})")


def add_smoothing_flag(parser: argparse._ActionsContainer) -> None:
    """``--smoothing SECONDS``."""
    from detector.config import AppConfig

    parser.add_argument("--smoothing", type=float, default=AppConfig.smoothing, metavar="SECONDS",
                        help="average each face's class probabilities over about this many seconds "
                             f"(0 = off, default {AppConfig.smoothing}); logs keep raw_probs")


def model_config(args: argparse.Namespace):
    """:class:`~detector.config.ModelConfig` from :func:`add_model_flags`' values.

    Raises:
        UserError: ``--threads`` below 0.
    """
    from detector.config import ModelConfig

    if args.threads < 0:
        raise UserError(f"--threads must be 0 or more, got {args.threads}")
    labels = tuple(s.strip() for s in args.labels.split(",") if s.strip()) if args.labels else None
    return ModelConfig(args.model, args.backend, labels, args.input_scale, args.threads, args.int8)


def detector_config(args: argparse.Namespace):
    """:class:`~detector.config.DetectorConfig` from :func:`add_detection_flags`' values.

    Raises:
        UserError: a value the cascade cannot run with (it would fail on every frame).
    """
    from detector.config import DetectorConfig

    problems = [f"--scale-factor must be above 1, got {args.scale_factor}" if args.scale_factor <= 1 else "",
                f"--min-neighbors must be 0 or more, got {args.min_neighbors}" if args.min_neighbors < 0 else "",
                f"--min-face must be between 0 and 1, got {args.min_face}" if not 0 < args.min_face < 1 else "",
                f"--detect-width must be 0 or more, got {args.detect_width}" if args.detect_width < 0 else "",
                f"--full-every must be 1 or more, got {args.full_every}" if args.full_every < 1 else "",
                f"--full-lag must be 0 or more, got {args.full_lag}" if args.full_lag < 0 else ""]
    if any(problems):
        raise UserError("; ".join(problem for problem in problems if problem))
    return DetectorConfig(scale_factor=args.scale_factor, min_neighbors=args.min_neighbors, min_face=args.min_face,
                          detect_width=args.detect_width, full_every=args.full_every, full_lag=args.full_lag)


def pipeline_config(args: argparse.Namespace):
    """:class:`~detector.config.AppConfig` with the model, detector, cascade, whole-image mode
    and smoothing from the shared flags and every other field at its default (callers
    ``dataclasses.replace`` what their front end adds).

    Raises:
        UserError: a negative ``--smoothing`` or ``--threads``, or detection flags the cascade cannot run with.
    """
    from detector.config import AppConfig

    defaults = AppConfig()
    smoothing = getattr(args, "smoothing", defaults.smoothing)
    if smoothing < 0:
        raise UserError(f"--smoothing must be 0 or more seconds, got {smoothing}")
    return AppConfig(model=model_config(args), detector=detector_config(args), cascade=args.cascade or defaults.cascade,
                     smoothing=smoothing, whole_image=args.whole_image)
