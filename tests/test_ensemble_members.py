"""tools/ensemble_members.py: the shipped ensemble's networks rebuilt as run folders that the export takes."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from detector.model_card import read_card


def test_rebuilt_members_average_to_the_shipped_onnx_model(shipped_model, fer2013_dir, tmp_path):
    """Judged by ONNX Runtime on the shipped model.onnx, not by the SavedModel the tool reads."""
    import keras
    import onnxruntime as ort

    from detector.training.data import load_split
    from tools.ensemble_members import recover_members

    card = read_card(shipped_model)
    paths = recover_members(shipped_model, tmp_path, str(fer2013_dir))
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == [f"member_{i + 1}/best.keras" for i in range(card.members)]
    trained = json.loads((shipped_model / "metrics.json").read_text())["training"]
    for index, path in enumerate(paths):
        assert (path.parent / "labels.txt").read_text(encoding="utf-8").split() == list(card.labels)
        assert json.loads((path.parent / "train_info.json").read_text()) == trained[index]

    faces = load_split(str(fer2013_dir), "test").subset(300, seed=1).images  # other faces than the tool's own val check
    inputs = faces[..., None].astype(np.float32)
    members = [keras.models.load_model(path, compile=False) for path in paths]
    views = [inputs, inputs[:, :, ::-1]] if card.tta == "flip" else [inputs]
    rebuilt = np.mean([m.predict(v, verbose=0) for m in members for v in views], axis=0)
    session = ort.InferenceSession(str(shipped_model / "model.onnx"), providers=["CPUExecutionProvider"])
    shipped = session.run(None, {session.get_inputs()[0].name: inputs})[0]
    np.testing.assert_allclose(rebuilt, shipped, atol=1e-4)
    assert (rebuilt.argmax(1) == shipped.argmax(1)).all()


def _add_fields(path, **fields) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **fields}))


def _add_class(path) -> None:
    path.write_text(path.read_text(encoding="utf-8") + "contempt\n", encoding="utf-8")


@pytest.mark.parametrize("change, message", [
    (lambda folder: _add_fields(folder / "model.json", members=3), "not 3 x"),  # the variables hold two
    (lambda folder: _add_class(folder / "labels.txt"), "do not fit fer_vgg with 8 classes"),  # as many weights, other shapes
    (lambda folder: _add_fields(folder / "metrics.json", class_bias={}), "class offsets"),  # not a plain average
], ids=["more members", "more classes", "class offsets"])
def test_a_folder_that_is_not_an_average_of_its_cards_cores_is_refused(shipped_model, tmp_path, change, message):
    from detector.errors import UserError
    from tools.ensemble_members import recover_members

    folder = tmp_path / "model"
    shutil.copytree(shipped_model, folder)
    change(folder)
    with pytest.raises(UserError, match=message):
        recover_members(folder, tmp_path / "out", str(tmp_path / "no-data-needed"))  # refused before the check reads faces
