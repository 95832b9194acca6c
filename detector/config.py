"""The settings dataclasses: the CLIs fill them, the code only reads them.

:class:`PipelineConfig` is what turns a frame into results (model, face detector, identity,
smoothing, whole-image mode; ``detector.pipeline.create_pipeline`` builds from it) and
:class:`AppConfig` what a desktop run does with it (source, window, outputs). The server's
own settings are ``detector.serve.config.ServeConfig``, batch's engine flags are
``detector.batch.cli``'s, and each face detector's settings live in its module (Haar's:
``detector.detection.haar.HaarConfig``). :class:`TrainConfig` is a training run's.
Every dataclass checks itself in ``__post_init__``, raising :class:`~detector.errors.SettingsError`
(one line on the command line) with the flag's name where a flag fills the field. The flags
are declared once, in ``detector.flags`` (and ``detector.training.cli`` for ``TrainConfig``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from detector.errors import check_settings
from detector.paths import DEFAULT_DATA_DIR, DEFAULT_MODEL_DIR, resource

WHOLE_IMAGE_MODES = ("auto", "always", "never")  # detector.whole_image says what each does


@dataclass(frozen=True)
class ModelConfig:
    """Which model runs, and how (``detector.classifier``); the rest comes from the model folder."""

    path: str = field(default_factory=lambda: str(resource(DEFAULT_MODEL_DIR)))
    backend: str = "auto"  # auto, or a backend's name (detector.backends)
    labels: tuple[str, ...] | None = None  # used when the model has no labels.txt
    input_scale: float | None = None  # pixel value the model treats as white: 255 (raw) or 1.0
    threads: int = 0  # 0 = one per physical core
    int8: bool = True  # use the folder's model.int8.onnx when it has one (auto and onnx backends)

    def __post_init__(self) -> None:
        check_settings(f"--threads must be 0 or more, got {self.threads}" if self.threads < 0 else "",
                       f"--input-scale must be 1 or 255, got {self.input_scale}" if self.input_scale not in (None, 1.0, 255.0) else "")


@dataclass(frozen=True)
class DetectionConfig:
    """Which face detector runs (``--detector``, a name in ``detector.detection``'s registry)
    and its own settings object (its class's ``Config``; None: its defaults)."""

    name: str = "haar"
    settings: Any = None

    def __post_init__(self) -> None:
        from detector.detection import detector_class

        detector_class(self.name)  # SettingsError listing the valid names


@dataclass(frozen=True)
class IdentityConfig:
    """Which face is which (``detector.identity.FaceFinder``, its one owner): the full search's
    schedule, how long a lost face is looked for and remembered. docs/FLICKER.md measures them."""

    full_every: int = 6  # a full-frame search for new faces every N frames; known faces are re-found every frame
    full_lag: int = 2  # the full search runs on a worker thread; its faces join this many frames later (0 = inline)
    keep_missed: int = 3  # a known face not re-found is still looked for around its last box this many frames
    tilt_angles: tuple[float, ...] = (15.0, -15.0, 30.0, -30.0)  # a known face the upright search lost is looked for at these tilts, in order (() = off; docs/TILT.md)
    velocity_weight: float = 0.5  # weight of the newest box step in a face's velocity (an EMA, per frame)
    duplicate_iou: float = 0.5  # two known faces re-found on one face (they cross): the nearer keeps it, the other is missed
    remember_s: float = 2.0  # a face lost (covered, or gone from the frame) gets its id back if found again within this time...
    reid_distance: float = 1.5  # ...with its centre within this many face sides of where it was last seen...
    reid_scale: float = 1.6  # ...and its size within this factor of its last size; otherwise it is a new face, with a new id

    def __post_init__(self) -> None:
        check_settings(
            f"--full-every must be 1 or more, got {self.full_every}" if self.full_every < 1 else "",
            f"--full-lag must be 0 or more, got {self.full_lag}" if self.full_lag < 0 else "",
            f"keep_missed must be 0 or more, got {self.keep_missed}" if self.keep_missed < 0 else "",
            "velocity_weight and duplicate_iou must be in (0, 1]" if not 0 < self.velocity_weight <= 1 or not 0 < self.duplicate_iou <= 1 else "",
            "remember_s and reid_distance must be >= 0 and reid_scale >= 1"
            if min(self.remember_s, self.reid_distance) < 0 or self.reid_scale < 1 else "",
        )


@dataclass(frozen=True)
class SmoothingConfig:
    """Per-face probability smoothing (``detector.tracking.ProbabilitySmoother``). docs/FLICKER.md measures it."""

    seconds: float = 0.25  # time constant of each face's probability average (0 = off)
    forget_after_s: float = 2.0  # a face's average is dropped once the face is unseen this long

    def __post_init__(self) -> None:
        check_settings(f"--smoothing must be 0 or more seconds, got {self.seconds}" if self.seconds < 0 else "",
                       f"forget_after_s must be >= 0, got {self.forget_after_s}" if self.forget_after_s < 0 else "")


@dataclass(frozen=True)
class PipelineConfig:
    """What turns a frame into classified faces with ids: model, face detector, identity,
    smoothing, and when a picture is classified whole (``detector.whole_image``)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    detection: DetectionConfig = field(default_factory=DetectionConfig)
    identity: IdentityConfig = field(default_factory=IdentityConfig)
    smoothing: SmoothingConfig = field(default_factory=SmoothingConfig)
    whole_image: str = "auto"  # auto | always | never
    align: bool = True  # level each face crop by its eye line where the detector gives keypoints (--no-align)

    def __post_init__(self) -> None:
        check_settings(f"--whole-image must be one of {', '.join(WHOLE_IMAGE_MODES)}, got {self.whole_image!r}"
                       if self.whole_image not in WHOLE_IMAGE_MODES else "")


@dataclass(frozen=True)
class AppConfig:
    """A desktop run (``main.py``): the pipeline, and the source, window and outputs around it."""

    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    source: str | None = None  # None: camera 0, else the bundled sample clip
    display: bool | None = None  # None: show a window when a display is available
    log: str | None = None  # JSON lines, one per processed frame
    output: str | None = None  # annotated video
    snapshot_dir: str = "."  # where 's' saves PNG snapshots
    bars: bool = True  # class bars for the largest face
    realtime: bool | None = None  # pace video files at their fps; default: when showing a window
    max_frames: int = 0  # stop after this many frames (0 = all)
    report: str | None = None  # folder for frames.csv, summary.json, timeline.png, annotated.mp4
    report_video: bool = True  # the report folder gets annotated.mp4
    reconnect_seconds: float = 30.0  # a lost camera is retried this long before the run ends
    results_dir: str | None = None  # headless with no outputs named: results.jsonl + annotated.mp4 go here

    def __post_init__(self) -> None:
        check_settings(f"--reconnect-seconds must be 0 or more, got {self.reconnect_seconds}" if self.reconnect_seconds < 0 else "",
                       f"--max-frames must be 0 or more, got {self.max_frames}" if self.max_frames < 0 else "")


@dataclass
class TrainConfig:
    """One training run (``main.py train``: one flag per field, generated)."""

    arch: str = "fer_vgg"
    data: str = DEFAULT_DATA_DIR
    out: str = "runs/fer_vgg"
    epochs: int = 60
    batch_size: int = 128  # the recipe's; docs/MODELS.md measures images/s by batch size
    img_size: int | None = None  # square input side; default: the architecture's own
    channels: int | None = None  # default: the architecture's own
    learning_rate: float = 0.05  # peak of the warm-up + cosine schedule (SGD, Nesterov)
    warmup_epochs: int = 3
    weight_decay: float = 5e-4  # SGD weight decay as in the papers: through momentum (see training.train.sgd)
    label_smoothing: float = 0.1
    ema_momentum: float = 0.999  # per-step weight average, judged on val each epoch (0 = off)
    dropout_rate: float = 0.4
    augment: float = 1.0  # augmentation strength, 0 = off
    camera_augment: float = 0.0  # strength of blur, sensor noise, gamma and low light (real cameras' faces), 0 = off
    labels_from: str = "fer2013"  # fer2013: its one annotator; ferplus: ten FER+ votes per face; mix: both (training.ferplus)
    fer2013_weight: float = 0.3  # with --labels-from mix: targets = (1 - w) * FER+ votes + w * FER2013's label
    contempt: str = "drop"  # FER+'s contempt votes in the train targets: drop, or fold into disgust (training.ferplus)
    teacher: str | None = None  # soft targets from python -m detector.training.distill (.npz)
    distill_weight: float = 0.7  # targets = weight * teacher + (1 - weight) * one-hot, with --teacher
    class_weight_power: float = 0.5  # 0 = no re-weighting, 1 = full inverse frequency
    weights: str | None = None  # start from: local ImageNet weights (applications) or an earlier core's weights
    limit: int = 0  # use only this many train/val images (smoke runs)
    seed: int = 1337
    verbose: int = 1  # Keras: 1 progress bar, 2 one line per epoch
    precision: str = "auto"  # auto: mixed_float16 on a GPU, mixed_bfloat16 on a CPU with bf16 instructions, else float32
    export: bool = True
    extra: dict = field(default_factory=dict)
