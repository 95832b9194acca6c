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
