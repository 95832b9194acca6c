"""The model card (``detector.model_card``) and the backend table (``detector.backends``):
what a model folder says about itself, read, checked and written in one place."""

from __future__ import annotations

import json
import shutil

import pytest

from detector.backends import BACKENDS, INT8_ONNX_FILE, ONNX_FILE, resolve_model
from detector.classifier import EmotionClassifier
from detector.config import ModelConfig
from detector.errors import ModelError
from detector.labels import FER2013_LABELS
from detector.model_card import MODEL_CARD_FILE, Calibration, ModelCard, card_files, read_card, write_card

CALIBRATED = ModelCard(labels=FER2013_LABELS, input_shape=(48, 48, 1), outputs="probabilities", tta="flip", arch="fer_vgg",
                       members=2, calibration=Calibration("temperature", 1.37, "FER2013 val"))


def test_the_shipped_model_folder_reads_as_a_card(shipped_model):
    card = read_card(shipped_model)
    assert card.labels == FER2013_LABELS and card.input_shape == (48, 48, 1) and card.input_scale == 255.0
    assert card.outputs == "probabilities" and card.members >= 1
    assert card_files(shipped_model) == [MODEL_CARD_FILE, "labels.txt"]


@pytest.mark.parametrize("card", [ModelCard(labels=("a", "b")), CALIBRATED], ids=["bare", "calibrated ensemble"])
def test_a_card_written_reads_back_the_same(card, tmp_path):
    write_card(tmp_path, card)
    assert read_card(tmp_path) == card
    assert set(json.loads((tmp_path / MODEL_CARD_FILE).read_text())) <= {"input_shape", "input_scale", "outputs", "tta", "arch",
                                                                          "members", "calibration"}


@pytest.mark.parametrize("info, error", [
    ({"input_shape": [48, 48]}, "input_shape"),
    ({"input_shape": [48, 48, 2]}, "channels 1 or 3"),
    ({"input_shape": [48, -1, 1]}, "input_shape"),
    ({"input_scale": 128}, "input_scale"),
    ({"outputs": "scores"}, "outputs"),
    ({"tta": "rotate"}, "tta"),
    ({"members": 0}, "members"),
    ({"calibration": {"method": "temperature", "temperature": 0, "fitted_on": "val"}}, "temperature"),
    ({"calibration": {"method": "platt", "temperature": 1.0, "fitted_on": "val"}}, "calibration.method"),
    ({"calibration": {"method": "temperature", "temperature": 1.2}}, "fitted_on"),
    ({"input_sacle": 1.0}, "unknown key 'input_sacle'"),
])
def test_a_bad_model_json_is_one_model_error_naming_the_field(info, error, tmp_path):
    (tmp_path / "labels.txt").write_text("a\nb\n")
    (tmp_path / MODEL_CARD_FILE).write_text(json.dumps(info))
    with pytest.raises(ModelError, match=error):
        read_card(tmp_path)


@pytest.mark.parametrize("labels_txt, given, expected, error", [
    ("x\ny\n", None, ("x", "y"), None),
    (None, ("p", "q"), ("p", "q"), None),
    ("x\ny\n", ("p", "q"), ("x", "y"), None),  # the folder's own names win over --labels
    (None, None, None, None),
    ("x\nx\n", None, None, "distinct"),
])
def test_labels_come_from_labels_txt_else_the_flag_and_are_never_guessed(labels_txt, given, expected, error, tmp_path):
    if labels_txt is not None:
        (tmp_path / "labels.txt").write_text(labels_txt)
    if error:
        with pytest.raises(ModelError, match=error):
            read_card(tmp_path, given)
    else:
        assert read_card(tmp_path, given).labels == expected


def test_a_card_that_contradicts_the_models_input_is_refused(shipped_model, tmp_path):
    shutil.copy(shipped_model / ONNX_FILE, tmp_path / ONNX_FILE)
    shutil.copy(shipped_model / "labels.txt", tmp_path / "labels.txt")
    (tmp_path / MODEL_CARD_FILE).write_text(json.dumps({"input_shape": [64, 64, 1], "outputs": "probabilities"}))
    with pytest.raises(ModelError, match=r"says the input is \[64, 64, 1\] but the model takes \[48, 48, 1\]"):
        EmotionClassifier(ModelConfig(str(tmp_path)))
    (tmp_path / MODEL_CARD_FILE).write_text(json.dumps({"input_shape": [48, 48, 1], "outputs": "probabilities"}))
    assert EmotionClassifier(ModelConfig(str(tmp_path))).input_size == (48, 48)


@pytest.mark.parametrize("files, path, backend, int8, expected, error", [
    ((INT8_ONNX_FILE, ONNX_FILE, "saved_model.pb"), ".", "auto", True, ("onnx", INT8_ONNX_FILE), None),
    ((INT8_ONNX_FILE, ONNX_FILE, "saved_model.pb"), ".", "auto", False, ("onnx", ONNX_FILE), None),
    ((ONNX_FILE, "saved_model.pb"), ".", "tf", True, ("tf", "."), None),
    (("saved_model.pb",), ".", "auto", True, ("tf", "."), None),
    (("saved_model.pb",), ".", "onnx", True, None, "no model.onnx in .*; use --backend tf"),
    ((), ".", "auto", True, None, r"saved_model\.pb or model\.onnx in model folder"),  # every folder file of the table
    (("m.onnx",), "m.onnx", "auto", True, ("onnx", "m.onnx"), None),
    (("m.onnx",), "m.onnx", "tf", True, None, "is an ONNX file; use --backend onnx or auto"),
    (("m.keras",), "m.keras", "onnx", True, None, "is a Keras file; use --backend tf or auto"),
    (("m.pt",), "m.pt", "auto", True, None, "unsupported model file .*: give a model folder or a file ending in .onnx, .keras"),
    ((), ".", "torch", True, None, "unknown backend 'torch'; choose auto, onnx, tf"),
    ((), "missing", "auto", True, None, "model not found"),
])
def test_model_resolution_reads_the_backend_table(files, path, backend, int8, expected, error, tmp_path):
    for name in files:
        (tmp_path / name).write_bytes(b"")
    if error:
        with pytest.raises(ModelError, match=error):
            resolve_model(tmp_path / path, backend, int8)
    else:
        assert resolve_model(tmp_path / path, backend, int8) == (expected[0], tmp_path / expected[1])


def test_the_backend_flag_offers_the_table():
    import argparse

    from detector import flags

    parser = argparse.ArgumentParser()
    flags.add_model_flags(parser)
    action = next(a for a in parser._actions if "--backend" in a.option_strings)
    assert tuple(action.choices) == ("auto", *BACKENDS)
