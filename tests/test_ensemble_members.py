"""tools/ensemble_members.py: the shipped ensemble's networks rebuilt as run folders that the export takes."""

from __future__ import annotations

import json

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


def test_a_folder_of_another_architecture_is_refused_in_one_line(shipped_model, fer2013_dir, tmp_path):
    from detector.errors import UserError
    from tools.ensemble_members import recover_members

    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("saved_model.pb", "labels.txt", "variables"):
        source = shipped_model / name
        target = folder / name
        if source.is_dir():
            target.mkdir()
            for part in source.iterdir():
                (target / part.name).write_bytes(part.read_bytes())
        else:
            target.write_bytes(source.read_bytes())
    card = json.loads((shipped_model / "model.json").read_text())
    (folder / "model.json").write_text(json.dumps({**card, "members": 3}))  # says three networks; the variables hold two
    with pytest.raises(UserError, match="not 3 x"):
        recover_members(folder, tmp_path / "out", str(fer2013_dir))
