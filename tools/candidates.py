"""Candidate models side by side on what users see: FER2013, the FER+ majority, labelled photos.

    python tools/candidates.py 'NAME=MODEL' ... --split val --photos ../shared/wild-dev --json docs/candidates_val.json

Each model runs through ``main.py evaluate``'s own :func:`evaluate` (the app's classifier,
calibrated as it shows scores; photos through the app's pipeline). Choose on ``val`` and the
development photos; run ``--split test`` only to report the choice.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _row(name: str, results: dict) -> str:
    crowd, photos = results.get("ferplus", {}), results.get("photos", {})
    cells = [name, f"{results['accuracy']:.1%}", f"{results['macro_f1']:.3f}"]
    cells += [f"{crowd['majority_accuracy']:.1%}", f"{crowd['cross_entropy']:.3f}", f"{crowd['ece']:.3f}"] if crowd else ["-"] * 3
    for mode in ("end_to_end", "whole_image"):
        row = photos.get(mode)
        cells += [f"{row['accuracy']:.1%} / {row['balanced_accuracy']:.1%}", f"{min(row['recall'].values()):.2f}"] if row else ["-"] * 2
    cells.append(f"{photos['end_to_end']['no_face']:.1%}" if photos else "-")
    return "| " + " | ".join(cells) + " |"


def markdown(report: dict) -> str:
    """One row per model, the command below the table."""
    split = {"val": "PublicTest (val)", "test": "PrivateTest (test)"}.get(report["split"], report["split"])
    lines = [f"| model | {split}: FER2013 accuracy | macro-F1 | FER+ majority accuracy | cross-entropy vs votes | ECE vs vote share "
             f"| photos end to end: accuracy / balanced | lowest class recall | photos whole: accuracy / balanced | lowest class recall "
             f"| photos with no face |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [_row(model["name"], model["results"]) for model in report["models"]]
    return "\n".join(lines) + f"\n\n`{report['command']}`"


def main(argv: list[str] | None = None) -> int:
    from detector.config import ModelConfig
    from detector.outputs import write_atomic
    from detector.paths import DEFAULT_DATA_DIR
    from detector.training.evaluate import evaluate

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("models", nargs="+", help="model folders or files, each as NAME=PATH or PATH")
    p.add_argument("--data", default=DEFAULT_DATA_DIR, help="FER2013 folder tree with ferplus.csv")
    p.add_argument("--split", choices=("val", "test"), default="val")
    p.add_argument("--photos", help="labelled photos, DIR/<class>/<file>")
    p.add_argument("--json", type=Path, help="write every model's results here")
    args = p.parse_args(argv)
    models = []
    for spec in args.models:
        name, _, path = spec.rpartition("=")
        results = evaluate(ModelConfig(path), args.data, args.split, photos=args.photos)
        results.pop("confusion_matrix", None)
        models.append({"name": name or path, "results": results})
    command = "python tools/candidates.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    report = {"split": args.split, "command": command, "models": models}
    print(markdown(report))
    if args.json:
        write_atomic(args.json, json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
