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

CHECK_IMAGES = 512  # val faces the rebuilt ensemble must reproduce
TOLERANCE = 1e-4  # largest probability difference accepted (float32 reordering only)


def recover_members(saved_model: Path, out: Path, data: str) -> list[Path]:
    """``member_<i>/best.keras`` in ``out`` for each of ``saved_model``'s ``members`` cores.

    Raises:
        UserError: the folder's card names no architecture, its variables do not split into
            that many cores of it, or the rebuilt cores do not reproduce the SavedModel.
    """
    import numpy as np
    import tensorflow as tf

    from detector.training.data import load_split
    from detector.training.export import averaged, model_inputs
    from detector.training.models import create_model
    from detector.training.train import TRAIN_INFO_FILE

    card = read_card(saved_model)
    if not card.arch or not card.labels:
        raise UserError(f"{saved_model}/model.json and labels.txt name no architecture or classes to rebuild")
    exported = tf.saved_model.load(str(saved_model))
    values = [v.numpy() for v in exported.variables if "seed_generator" not in v.name]
    cores = [create_model(card.arch, len(card.labels), tuple(card.input_shape)) for _ in range(card.members)]
    per_core = len(cores[0].weights) - sum("seed_generator" in w.path for w in cores[0].weights)
    if len(values) != per_core * len(cores):
        raise UserError(f"{saved_model} holds {len(values)} weights, not {len(cores)} x {per_core} of {card.arch}")
    for index, core in enumerate(cores):
        own = iter(values[index * per_core : (index + 1) * per_core])
        core.set_weights([w.numpy() if "seed_generator" in w.path else next(own) for w in core.weights])
    images = model_inputs(load_split(data, "val").subset(CHECK_IMAGES, seed=0).images, card.input_shape)
    rebuilt = averaged(cores, tta=card.tta == "flip").predict(images, batch_size=256, verbose=0)
    reference = exported.serve(tf.constant(images)).numpy()
    difference = float(np.abs(rebuilt - reference).max())
    if difference > TOLERANCE:
        raise UserError(f"the rebuilt cores differ from {saved_model} by {difference:.2g}: the variables are not {card.members} x {card.arch}")
    metrics = saved_model / METRICS_FILE
    records = json.loads(metrics.read_text()).get("training", []) if metrics.is_file() else []
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
