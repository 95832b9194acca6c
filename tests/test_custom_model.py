"""A user's own model folder works through --model with no code change: any input
size and channels, any classes, on both backends, 0-1 input declared by the user."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from keras import layers

from conftest import run_main
from detector.classifier import EmotionClassifier
from detector.config import ModelConfig
from detector.errors import ModelError
from detector.training.export import export_model
from tools.scenes import SAMPLE_CLIP

CLASSES = ("angry", "contempt", "disgust", "fear", "happy", "neutral", "sad", "surprise")


def _user_model(shape, classes, rescale=1 / 255.0) -> keras.Model:
    """A small model of the kind a user trains themselves."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input(shape)
    x = layers.Rescaling(rescale)(inputs)
    x = layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(len(classes), activation="softmax")(x)
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="module")
def user_model_dir(tmp_path_factory, fer2013_dir):
    folder = tmp_path_factory.mktemp("user")
    keras_path = folder / "user.keras"
    _user_model((96, 96, 3), CLASSES).save(keras_path)
    return export_model(keras_path, folder / "my_model", CLASSES, data=str(fer2013_dir))


@pytest.mark.parametrize("backend", ["onnx", "tf"])
def test_custom_8_class_96x96_rgb_model_runs_on_the_sample_clip(tmp_path, user_model_dir, backend):
    log = tmp_path / "r.jsonl"
    done = run_main("--source", str(SAMPLE_CLIP), "--no-display", "--max-frames", "20",
                    "--model", str(user_model_dir), "--backend", backend, "--log", str(log))
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    faces = [face for line in lines for face in line["faces"]]
    assert len(lines) == 20 and len(faces) >= 18
    assert all(list(face["probs"]) == list(CLASSES) for face in faces)


def test_both_backends_agree_on_the_custom_model(user_model_dir):
    crops = [np.random.default_rng(i).integers(0, 255, (120 + i, 110, 3), dtype=np.uint8) for i in range(5)]
    onnx = EmotionClassifier(ModelConfig(str(user_model_dir), backend="onnx"))
    tf = EmotionClassifier(ModelConfig(str(user_model_dir), backend="tf"))
    assert onnx.input_size == tf.input_size == (96, 96) and onnx.channels == tf.channels == 3
    np.testing.assert_allclose(onnx.predict_crops(crops), tf.predict_crops(crops), atol=1e-4)


def test_savedmodel_without_labels_or_onnx_takes_labels_flag(tmp_path):
    folder = tmp_path / "bare"
    _user_model((64, 64, 1), ("a", "b", "c")).export(str(folder), format="tf_saved_model", verbose=False)
    with pytest.raises(ModelError, match="--labels"):
        EmotionClassifier(ModelConfig(str(folder)))
    classifier = EmotionClassifier(ModelConfig(str(folder), labels=("calm", "tense", "joy")))
    assert classifier.labels == ("calm", "tense", "joy") and classifier.input_size == (64, 64) and classifier.channels == 1


def test_model_expecting_0_to_1_input_is_fed_0_to_1(tmp_path):
    """A user's model with no Rescaling layer declares --input-scale 1 (or model.json)."""
    folder = tmp_path / "unit"
    inputs = keras.Input((48, 48, 1))
    outputs = layers.Dense(2, activation="softmax")(layers.GlobalAveragePooling2D()(inputs))
    model = keras.Model(inputs, outputs)
    model.layers[-1].set_weights([np.array([[10.0, -10.0]]), np.zeros(2)])  # p(first) rises with brightness
    model.export(str(folder), format="tf_saved_model", verbose=False)
    white = [np.full((48, 48), 255, np.uint8)]
    as_raw = EmotionClassifier(ModelConfig(str(folder), labels=("bright", "dark")))
    as_unit = EmotionClassifier(ModelConfig(str(folder), labels=("bright", "dark"), input_scale=1.0))
    assert as_raw.predict_crops(white)[0, 0] == pytest.approx(1.0)  # logit 2550 - saturated
    np.testing.assert_allclose(as_unit.predict_crops(white)[0], [1 / (1 + np.exp(-20)), 1 / (1 + np.exp(20))], rtol=1e-4)
    (folder / "model.json").write_text(json.dumps({"input_scale": 1.0}))
    from_file = EmotionClassifier(ModelConfig(str(folder), labels=("bright", "dark")))
    np.testing.assert_allclose(from_file.predict_crops(white), as_unit.predict_crops(white))


@pytest.mark.parametrize("declared,expected", [
    ("logits", np.exp([0.2, 0.3, 0.5]) / np.exp([0.2, 0.3, 0.5]).sum()),
    ("probabilities", [0.2, 0.3, 0.5]),
    (None, [0.2, 0.3, 0.5]),  # undeclared: told apart by row sums, with a warning asking for the field
])
def test_model_json_declares_probabilities_or_logits(tmp_path, declared, expected, caplog):
    """Logits that happen to be non-negative and sum to 1 are still logits when model.json says so."""
    folder = tmp_path / "declared"
    inputs = keras.Input((48, 48, 1))
    outputs = layers.Dense(3)(layers.GlobalAveragePooling2D()(inputs))  # no softmax: raw scores
    model = keras.Model(inputs, outputs)
    model.layers[-1].set_weights([np.zeros((1, 3)), np.array([0.2, 0.3, 0.5])])
    model.export(str(folder), format="tf_saved_model", verbose=False)
    if declared:
        (folder / "model.json").write_text(json.dumps({"outputs": declared}))
    classifier = EmotionClassifier(ModelConfig(str(folder), labels=("a", "b", "c")))
    np.testing.assert_allclose(classifier.predict_crops([np.full((48, 48), 90, np.uint8)])[0], expected, rtol=1e-5)
    assert ("probabilities or logits" in caplog.text) == (declared is None)


def test_export_declares_what_the_model_outputs(tmp_path, fer2013_dir):
    keras_path = tmp_path / "logits.keras"
    inputs = keras.Input((48, 48, 1))
    keras.Model(inputs, layers.Dense(7)(layers.GlobalAveragePooling2D()(layers.Rescaling(1 / 255)(inputs)))).save(keras_path)
    folder = export_model(keras_path, tmp_path / "out", ("a", "b", "c", "d", "e", "f", "g"), data=None, int8=False)
    assert json.loads((folder / "model.json").read_text())["outputs"] == "logits"
