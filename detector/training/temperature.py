"""Fit a model folder's temperature on val against the ten FER+ votes, and say what it did.

    python -m detector.training.temperature saved_model_trt --data ../shared/fer2013 --json docs/calibration.json

The model's raw probabilities on FER2013 PublicTest (``val``) are compared with each face's
ten FER+ votes; the temperature ``T`` that minimises the expected calibration error of the
shown score (the top probability) against the share of the ten people who chose that label
is written to the folder's model card (``detector.model_card``; applied by
``detector.calibration``). That ECE is the promise the score makes ("0.7: seven people in
ten would say so"), so it is what is fitted; the cross-entropy against the vote distribution
is reported beside it. Both are reported before and after, on val (where ``T`` was fitted)
and on PrivateTest (``test``, read only for the report). A temperature never changes a label.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np

from detector.calibration import METHOD, apply_temperature
from detector.errors import UserError, run_tool
from detector.outputs import write_atomic
from detector.model_card import MODEL_CARD_FILE, Calibration, write_card
from detector.paths import DEFAULT_DATA_DIR

log = logging.getLogger(__name__)

#: Temperatures tried: a grid fine enough that the cross-entropy is flat between points.
GRID = np.round(np.exp(np.linspace(np.log(0.4), np.log(4.0), 121)), 4)
BATCH = 256


def fit_temperature(probabilities: np.ndarray, shares: np.ndarray) -> float:
    """The ``T`` of :data:`GRID` minimising the ECE of the top score of ``softmax(log p / T)``
    (``probabilities`` ``(N, C)``) against ``shares`` ``(N, C)``: for each face and class, the
    share of people who chose it (:func:`detector.training.ferplus.vote_share`)."""
    from detector.training.ferplus import expected_calibration_error

    predicted = probabilities.argmax(axis=1)  # the same at every temperature
    truth = shares[np.arange(len(predicted)), predicted]
    errors = [expected_calibration_error(apply_temperature(probabilities, t).max(axis=1), truth) for t in GRID]
    return float(GRID[int(np.argmin(errors))])


def _raw_probabilities(classifier, split) -> np.ndarray:
    from detector.training.data import class_mapping

    class_mapping(split.classes, classifier.labels)  # fails in one line on a model without FER2013's classes
    return np.concatenate([classifier.predict_crops(list(split.images[i : i + BATCH]), calibrated=False)
                           for i in range(0, len(split), BATCH)])


def calibrate(model: str, data: str) -> dict:
    """Fit ``T`` for the model folder ``model`` on ``data``'s val split, record it in its
    model card (``detector.model_card``), and return the fit's report (``T``, ECE and cross-entropy before/after on
    val and test).

    Raises:
        UserError: ``model`` is not a folder, or ``data`` has no FER+ votes.
    """
    from detector.classifier import EmotionClassifier
    from detector.config import ModelConfig
    from detector.training import ferplus
    from detector.training.evaluate import load_eval_split

    folder = Path(model)
    if not folder.is_dir():
        raise UserError(f"the temperature is recorded in a model folder's {MODEL_CARD_FILE}: {model} is not a folder")
    if not ferplus.has_votes(data):
        raise UserError(f"no FER+ votes: {ferplus.votes_path(data)} not found")
    classifier = EmotionClassifier(ModelConfig(str(folder)))
    report: dict = {"model": str(folder), "model_file": classifier.model_file.name, "method": METHOD}
    fitted = None
    for split_name in ("val", "test"):
        split = load_eval_split(data, split_name)
        votes = ferplus.split_votes(data, split.paths)
        keep = ferplus.majority(votes, classifier.labels) >= 0
        raw, votes = _raw_probabilities(classifier, split)[keep], votes[keep]
        if fitted is None:
            fitted = fit_temperature(raw, ferplus.vote_share(votes, classifier.labels))
        before = ferplus.agreement(raw, votes, classifier.labels)
        after = ferplus.agreement(apply_temperature(raw, fitted), votes, classifier.labels)
        report[split_name] = {"faces": int(keep.sum()),
                              "ece": [before["ece"], after["ece"]],
                              "cross_entropy": [before["cross_entropy"], after["cross_entropy"]],
                              "mean_score": [before["mean_score"], after["mean_score"]],
                              "mean_vote_share": after["mean_vote_share"]}
    report["temperature"] = fitted
    calibration = Calibration(METHOD, float(fitted), "FER2013 PublicTest (val): ECE of the top score against the FER+ vote share")
    write_card(folder, replace(classifier.card, calibration=calibration))
    return report


def markdown(report: dict) -> str:
    """ECE and cross-entropy before and after, per split, as docs/MODELS.md shows them."""
    rows = [f"Temperature {report['temperature']:.3g}, fitted on val ({report['model']}, {report['model_file']}).", "",
            "| split | faces | ECE before | ECE after | cross-entropy before | after | mean score after | mean vote share |",
            "|---|---|---|---|---|---|---|---|"]
    for split in ("val", "test"):
        r = report[split]
        rows.append(f"| {'PublicTest (val)' if split == 'val' else 'PrivateTest (test)'} | {r['faces']} | {r['ece'][0]:.3f} | "
                    f"{r['ece'][1]:.3f} | {r['cross_entropy'][0]:.3f} | {r['cross_entropy'][1]:.3f} | "
                    f"{r['mean_score'][1]:.3f} | {r['mean_vote_share']:.3f} |")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m detector.training.temperature", description=__doc__.split("\n")[0])
    p.add_argument("model", help=f"model folder: its {MODEL_CARD_FILE} receives the temperature")
    p.add_argument("--data", default=DEFAULT_DATA_DIR, help="FER2013 folder tree with ferplus.csv (default: %(default)s)")
    p.add_argument("--json", type=Path, help="write the report here")
    args = p.parse_args(argv)

    def work() -> None:
        report = calibrate(args.model, args.data)
        print(markdown(report))
        if args.json:
            write_atomic(args.json, json.dumps(report, indent=2) + "\n")

    return run_tool(work)


if __name__ == "__main__":
    sys.exit(main())
