"""The command-line flags every front end shares, each declared once.

The desktop app, ``evaluate``, ``bench``, ``serve`` and ``batch`` all run the same
model, detector and smoother; they add these groups to their own parsers and turn the
parsed values into settings with :func:`model_config` and :func:`pipeline_config`, whose
dataclasses validate them, so a
flag's name, default and help text have one home. Defaults come from the settings
dataclasses, never from here.
"""

from __future__ import annotations

import argparse



def add_model_flags(parser: argparse.ArgumentParser) -> None:
    """``--model --backend --no-int8 --labels --input-scale --threads``."""
    from detector.backends import BACKENDS
    from detector.config import ModelConfig
    from detector.model_card import LABELS_FILE, MODEL_CARD_FILE

    group = parser.add_argument_group("model")
    group.add_argument("--model", metavar="PATH", default=ModelConfig().path,
                       help="SavedModel folder, .keras or .onnx file (default: saved_model_trt/ next to the app)")
    group.add_argument("--backend", choices=("auto", *BACKENDS), default=ModelConfig.backend,
                       help=f"auto: the first of {', '.join(BACKENDS)} that finds its file in the model folder")
    group.add_argument("--no-int8", dest="int8", action="store_false",
                       help="use model.onnx (float32) even where the folder has model.int8.onnx")
    group.add_argument("--labels", help=f"comma-separated class names, for a model folder without {LABELS_FILE}")
    group.add_argument("--input-scale", type=float, choices=(1.0, 255.0),
                       help=f"pixel value the model treats as white: 255 (raw pixels) or 1 (0-1 input); default: {MODEL_CARD_FILE}, else 255")
    group.add_argument("--threads", type=int, default=ModelConfig.threads, metavar="N", help="inference threads (default: one per core)")


def add_detection_flags(parser: argparse.ArgumentParser) -> None:
    """``--detector --whole-image --full-every --full-lag``, then each registered detector's own
    flags (Haar's ``--cascade --scale-factor --min-neighbors --min-face --detect-width``)."""
    from detector.config import WHOLE_IMAGE_MODES, DetectionConfig, IdentityConfig, PipelineConfig
    from detector.detection import detector_class, detector_names
    from detector.whole_image import FACE_PICTURE_MAX_SIDE

    identity = IdentityConfig()
    group = parser.add_argument_group("face detection")
    group.add_argument("--detector", choices=detector_names(), default=DetectionConfig.name,
                       help=f"face detector (default {DetectionConfig.name})")
    group.add_argument("--whole-image", choices=WHOLE_IMAGE_MODES, default=PipelineConfig.whole_image,
                       help="classify the whole picture as one face: auto = a face-sized picture (square or portrait, at most "
                            f"{FACE_PICTURE_MAX_SIDE} px) where no face is found; always = skip detection; never")
    group.add_argument("--full-every", type=int, default=identity.full_every,
                       help=f"search the whole frame for new faces every N frames; known faces are re-found every frame (default {identity.full_every})")
    group.add_argument("--full-lag", type=int, default=identity.full_lag,
                       help=f"the full search runs beside the frame loop; its faces join N frames later, 0 = inline (default {identity.full_lag})")
    group.add_argument("--no-align", dest="align", action="store_false",
                       help="classify each face crop as the frame shows it, not levelled by its eye line "
                            "(levelling needs a detector with keypoints: blazeface)")
    for name in detector_names():
        add_flags = getattr(detector_class(name), "add_flags", None)
        if add_flags is not None:
            add_flags(parser)


def add_smoothing_flag(parser: argparse._ActionsContainer) -> None:
    """``--smoothing SECONDS``."""
    from detector.config import SmoothingConfig

    default = SmoothingConfig.seconds
    parser.add_argument("--smoothing", type=float, default=default, metavar="SECONDS",
                        help="average each face's class probabilities over about this many seconds "
                             f"(0 = off, default {default}); logs keep raw_probs")


def model_config(args: argparse.Namespace):
    """:class:`~detector.config.ModelConfig` from :func:`add_model_flags`' values.

    Raises:
        SettingsError: ``--threads`` below 0.
    """
    from detector.config import ModelConfig

    labels = tuple(s.strip() for s in args.labels.split(",") if s.strip()) if args.labels else None
    return ModelConfig(args.model, args.backend, labels, args.input_scale, args.threads, args.int8)


def detection_config(args: argparse.Namespace):
    """:class:`~detector.config.DetectionConfig`: ``--detector`` and that detector's own flags.

    Raises:
        SettingsError: a value the detector cannot run with (it would fail on every frame).
    """
    from detector.config import DetectionConfig
    from detector.detection import detector_class

    from_flags = getattr(detector_class(args.detector), "config_from_flags", None)
    return DetectionConfig(args.detector, from_flags(args) if from_flags is not None else None)


def pipeline_config(args: argparse.Namespace):
    """:class:`~detector.config.PipelineConfig` from the shared flags (``--smoothing`` at its
    default where a front end does not offer it).

    Raises:
        SettingsError: any flag out of range (all of them named, in one line).
    """
    from detector.config import IdentityConfig, PipelineConfig, SmoothingConfig

    smoothing = SmoothingConfig(getattr(args, "smoothing", SmoothingConfig.seconds))
    identity = IdentityConfig(full_every=args.full_every, full_lag=args.full_lag)
    return PipelineConfig(model=model_config(args), detection=detection_config(args), identity=identity,
                          smoothing=smoothing, whole_image=args.whole_image, align=getattr(args, "align", True))
