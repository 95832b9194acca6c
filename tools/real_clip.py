"""How models read a real face outside FER2013: the sample clip, tearful to laughing.

    python tools/real_clip.py MODEL [MODEL ...] --json docs/real_clip.json

The clip (``samples/sample_face.mp4``, Pexels 3063838, one frontal person) moves from
tearful/sad to laughing (``../shared/samples/README.md``). It is the one real video with a
known course that this project may keep, so every candidate model is run on it through the
app's own pipeline (Haar boxes and crop framing, not FER2013's), without smoothing, and
scored on what the clip's description says: in its first quarter the face is sad (FER2013's
nearest classes: sad or fear), in its last quarter happy. Frame-level labels were never
annotated, so this is a check of direction and confidence, not an accuracy.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

OPENING = ("sad", "fear")  # the clip's first quarter: tearful
ENDING = ("happy",)  # its last quarter: laughing


def read_clip(model: str, clip: Path) -> dict:
    """Per-model scores on ``clip``: frames with a face, and for the first and last quarter
    of them the share of frames labelled as described and the mean probability of it."""
    from detector.config import ModelConfig, PipelineConfig, SmoothingConfig
    from detector.pipeline import create_pipeline
    from detector.sources import VideoSource

    rows = []
    with create_pipeline(PipelineConfig(model=ModelConfig(model), smoothing=SmoothingConfig(0.0))) as pipeline, \
            VideoSource(str(clip), clip.name) as source:
        for frame in source:
            result = pipeline(frame)
            if (largest := result.faces.largest()) is not None:
                rows.append(dict(zip(result.labels, result.faces.probs[largest].tolist())))
    quarter = len(rows) // 4

    def score(part: list[dict], classes: tuple[str, ...]) -> dict:
        labelled = [max(probs, key=probs.get) in classes for probs in part]
        return {"labelled": float(np.mean(labelled)), "probability": float(np.mean([sum(p[c] for c in classes) for p in part]))}

    return {"model": model, "frames_with_face": len(rows),
            "opening": score(rows[:quarter], OPENING), "ending": score(rows[-quarter:], ENDING)}


def markdown(report: dict) -> str:
    """One row per model, as docs/MODELS.md shows it."""
    lines = ["| model | frames with a face | first quarter: labelled sad/fear | P(sad)+P(fear) | last quarter: labelled happy | P(happy) |",
             "|---|---|---|---|---|---|"]
    for row in report["models"]:
        lines.append(f"| {row['name']} | {row['frames_with_face']} | {row['opening']['labelled']:.0%} | "
                     f"{row['opening']['probability']:.2f} | {row['ending']['labelled']:.0%} | {row['ending']['probability']:.2f} |")
    return "\n".join(lines) + f"\n\n`{report['command']}`"


def main(argv: list[str] | None = None) -> int:
    from detector.paths import SAMPLE_CLIP, resource

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("models", nargs="+", help="model folders or files, each as NAME=PATH or PATH")
    p.add_argument("--clip", type=Path, default=None, help="the video (default: the bundled sample clip)")
    p.add_argument("--json", type=Path, help="write the scores here")
    args = p.parse_args(argv)
    clip = args.clip or resource(SAMPLE_CLIP)
    rows = []
    for spec in args.models:
        name, _, path = spec.rpartition("=")
        rows.append({"name": name or path, **read_clip(path, clip)})
    command = "python tools/real_clip.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    report = {"clip": clip.name, "command": command, "models": rows}
    print(markdown(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
