"""Recover the member networks of an exported ensemble as ``.keras`` files.

The export averages trained cores in one SavedModel graph (``detector.training.export.averaged``)
and the run folders that held their ``best.keras`` are not kept in git. This rebuilds each core
of a registered architecture from the SavedModel's variables (the members' variables stand one
after another, in the order the export was given them), checks that the rebuilt cores, averaged
as the export averages them, give the SavedModel's own output, and saves them, so an ensemble can
be exported again with other options (without flip TTA, other members) without retraining.

    python tools/ensemble_members.py saved_model_trt runs/members --data ../shared/fer2013

Writes ``OUT/member_<i>/best.keras`` with ``labels.txt`` and, where the folder's ``metrics.json``
has it, the member's ``train_info.json`` (training minutes, epochs, data), laid out as a ``main.py
train`` run folder so ``python -m detector.training.export`` takes them as it takes runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from detector.errors import UserError, run_tool  # noqa: E402
from detector.model_card import LABELS_FILE, METRICS_FILE, read_card, write_labels  # noqa: E402
from detector.paths import DEFAULT_DATA_DIR  # noqa: E402

CHECK_IMAGES = 512  # val faces the rebuilt ensemble must reproduce (within the export's own ONNX tolerance)


def recover_members(saved_model: Path, out: Path, data: str) -> list[Path]:
    """``member_<i>/best.keras`` in ``out`` for each of ``saved_model``'s ``members`` cores.

    Raises:
        UserError: the folder's card names no architecture, it ends in class offsets
            (``--class-bias``: not a plain average of cores), its variables do not split into
            that many cores of it, or the rebuilt cores do not reproduce the SavedModel.
    """
    import numpy as np
    import tensorflow as tf

    from detector.training.data import load_split
    from detector.training.export import MAX_ABS_DIFF, averaged, model_inputs
    from detector.training.models import create_model
    from detector.training.train import TRAIN_INFO_FILE

    card = read_card(saved_model)
    if not card.arch or not card.labels:
        raise UserError(f"{saved_model}/model.json and labels.txt name no architecture or classes to rebuild")
    metrics = json.loads((saved_model / METRICS_FILE).read_text()) if (saved_model / METRICS_FILE).is_file() else {}
    if "class_bias" in metrics:
        raise UserError(f"{saved_model} ends in class offsets (--class-bias): only a plain average of cores can be taken apart")
    exported = tf.saved_model.load(str(saved_model))
    values = [v.numpy() for v in exported.variables if "seed_generator" not in v.name]  # dropout's RNG state: not weights
    cores = [create_model(card.arch, len(card.labels), tuple(card.input_shape)) for _ in range(card.members)]
    per_core = len(cores[0].weights)
    if len(values) != per_core * len(cores):
        raise UserError(f"{saved_model} holds {len(values)} weights, not {len(cores)} x {per_core} of {card.arch}")
    for index, core in enumerate(cores):
        try:
            core.set_weights(values[index * per_core : (index + 1) * per_core])
        except ValueError as error:  # as many weights, other shapes: another architecture or class count
            raise UserError(f"{saved_model}'s weights do not fit {card.arch} with {len(card.labels)} classes: {error}") from None
    images = model_inputs(load_split(data, "val").subset(CHECK_IMAGES, seed=0).images, card.input_shape)
    rebuilt = averaged(cores, tta=card.tta == "flip").predict(images, batch_size=256, verbose=0)
    reference = exported.serve(tf.constant(images)).numpy()
    difference = float(np.abs(rebuilt - reference).max())
    if difference > MAX_ABS_DIFF:
        raise UserError(f"the rebuilt cores differ from {saved_model} by {difference:.2g}: the variables are not {card.members} x {card.arch}")
    records = metrics.get("training", [])
    paths = []
    for index, core in enumerate(cores):
        run = out / f"member_{index + 1}"
        run.mkdir(parents=True, exist_ok=True)
        core.save(run / "best.keras")
        write_labels(run / LABELS_FILE, card.labels)
        if len(records) == len(cores):
            (run / TRAIN_INFO_FILE).write_text(json.dumps(records[index], indent=2) + "\n")
        paths.append(run / "best.keras")
    print(f"{len(paths)} member(s) of {card.arch} from {saved_model}: largest difference {difference:.2g} on {len(images)} val faces")
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("saved_model", type=Path, help="an exported model folder (model.json, SavedModel)")
    parser.add_argument("out", type=Path, help="folder for member_<i>/best.keras")
    parser.add_argument("--data", default=DEFAULT_DATA_DIR, help="FER2013 folder tree, for the check (default: %(default)s)")
    args = parser.parse_args(argv)
    return run_tool(lambda: recover_members(args.saved_model, args.out, args.data))


if __name__ == "__main__":
    sys.exit(main())
