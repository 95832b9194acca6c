"""All run settings in one place; the CLI fills this, the app only reads it."""

from __future__ import annotations

from dataclasses import dataclass, field

from detector.classifier import ModelConfig
from detector.faces import DetectorConfig
from detector.paths import DEFAULT_CASCADE, DEFAULT_MODEL_DIR, resource


@dataclass(frozen=True)
class AppConfig:
    source: str | None = None  # None: camera 0, else the bundled sample clip
    model: ModelConfig = field(default_factory=lambda: ModelConfig(str(resource(DEFAULT_MODEL_DIR))))
    detector: DetectorConfig = field(default_factory=DetectorConfig)
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
