"""Every setting in one place: the CLIs fill these dataclasses, the code only reads them.

``AppConfig`` holds a run's settings and the :class:`ModelConfig`, :class:`DetectorConfig`
and :class:`TrackingConfig` it is made of; :class:`TrainConfig` is a training run's. The
flags that fill them are declared once, in ``detector.flags`` (and ``detector.training.cli``
for ``TrainConfig``), with these defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from detector.paths import DEFAULT_CASCADE, DEFAULT_DATA_DIR, DEFAULT_MODEL_DIR, resource


@dataclass(frozen=True)
class ModelConfig:
    """Which model runs, and how (``detector.classifier``); the rest comes from the model folder."""

    path: str
    backend: str = "auto"  # auto | onnx | tf
    labels: tuple[str, ...] | None = None  # used when the model has no labels.txt
    input_scale: float | None = None  # pixel value the model treats as white: 255 (raw) or 1.0
    threads: int = 0  # 0 = one per physical core
    int8: bool = True  # use the folder's model.int8.onnx when it has one (auto and onnx backends)


@dataclass(frozen=True)
class DetectorConfig:
    """Haar face finding (``detector.faces``): the cascade's settings, the full search's schedule,
    how known faces are re-found. docs/PERFORMANCE.md measured the defaults."""

    scale_factor: float = 1.1
    min_neighbors: int = 5
    min_face: float = 0.1  # smallest face side, as a fraction of the frame's shorter side
    detect_width: int = 320  # frames wider than this are downscaled for detection (0 = never)
    full_every: int = 6  # a full-frame search for new faces every N frames; known faces are re-found every frame
    full_lag: int = 2  # the full search runs on a worker thread; its faces join this many frames later (0 = inline)
    min_neighbors_near: int = 3  # votes to re-find a known face in its own region (fewer than to find a new one)
    keep_missed: int = 3  # a known face not re-found is still looked for around its last box this many frames
    roi_margin: float = 0.5  # search region around a known face, in face sides on each side
    roi_face_px: int = 48  # known faces are re-detected at about this size, which keeps it cheap
    roi_scale_factor: float = 1.15  # coarser steps around a known face: its size is about known
    tilt_angles: tuple[float, ...] = (15.0, -15.0, 30.0, -30.0)  # a known face the upright search lost is looked for at these tilts, in order (() = off; docs/TILT.md)


@dataclass(frozen=True)
class TrackingConfig:
    """Face identity (``detector.faces.FaceFinder``, its one owner) and per-face smoothing
    (``detector.tracking.ProbabilitySmoother``): every threshold named. docs/FLICKER.md measures them."""

    velocity_weight: float = 0.5  # weight of the newest box step in a face's velocity (an EMA, per frame)
    duplicate_iou: float = 0.5  # two known faces re-found on one face (they cross): the nearer keeps it, the other is missed
    remember_s: float = 2.0  # a face lost (covered, or gone from the frame) gets its id back if found again within this time...
    reid_distance: float = 1.5  # ...with its centre within this many face sides of where it was last seen...
    reid_scale: float = 1.6  # ...and its size within this factor of its last size; otherwise it is a new face, with a new id
    forget_after_s: float = 2.0  # the smoother drops a face's average once the face is unseen this long

    def __post_init__(self) -> None:
        if not 0 < self.velocity_weight <= 1 or not 0 < self.duplicate_iou <= 1:
            raise ValueError("TrackingConfig: velocity_weight and duplicate_iou must be in (0, 1]")
        if min(self.remember_s, self.reid_distance, self.forget_after_s) < 0 or self.reid_scale < 1:
            raise ValueError("TrackingConfig: remember_s, reid_distance, forget_after_s must be >= 0 and reid_scale >= 1")


@dataclass(frozen=True)
class AppConfig:
    """A run of the app (and of ``serve`` and ``batch``, which fill what applies to them):
    the model, face finding, identity and smoothing settings, the source and the outputs."""

    source: str | None = None  # None: camera 0, else the bundled sample clip
    model: ModelConfig = field(default_factory=lambda: ModelConfig(str(resource(DEFAULT_MODEL_DIR))))
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    whole_image: str = "auto"  # auto | always | never: when a picture is classified whole (detector.whole_image)
    cascade: str = field(default_factory=lambda: str(resource(DEFAULT_CASCADE)))
    display: bool | None = None  # None: show a window when a display is available
    log: str | None = None  # JSON lines, one per processed frame
    output: str | None = None  # annotated video
    snapshot_dir: str = "."  # where 's' saves PNG snapshots
    bars: bool = True  # class bars for the largest face
    realtime: bool | None = None  # pace video files at their fps; default: when showing a window
    max_frames: int = 0  # stop after this many frames (0 = all)
    smoothing: float = 0.25  # seconds: time constant of each face's probability average (0 = off; docs/FLICKER.md)
    report: str | None = None  # folder for frames.csv, summary.json, timeline.png, annotated.mp4
    report_video: bool = True  # the report folder gets annotated.mp4 (batch: only with --annotate)
    reconnect_seconds: float = 30.0  # a lost camera is retried this long before the run ends
    results_dir: str | None = None  # headless with no outputs named: results.jsonl + annotated.mp4 go here


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
