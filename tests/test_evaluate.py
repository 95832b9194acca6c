"""Evaluation: metric arithmetic, by-name class mapping, files written, and the CLI contract.

The model is an untrained fer_vgg exported as the app loads it, with labels.txt in
an order unlike FER2013's: its accuracy is meaningless, but every number reported
must follow from its predictions, which the tests recompute independently.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

from detector.config import ModelConfig
from detector.errors import UserError
from detector.labels import FER2013_LABELS
from detector.model_card import read_labels, write_labels
from detector.training.evaluate import classification_metrics, evaluate, evaluate_main
from detector.training.models import create_model

REPO_ROOT = Path(__file__).resolve().parents[1]
MODEL_LABELS = ("neutral", "happy", "surprise", "sad", "angry", "fear", "disgust")  # not FER2013's order
IMAGES_PER_CLASS = 40
LIMIT = 300


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """Untrained fer_vgg SavedModel, head sharpened so predictions spread over several classes."""
    keras.utils.set_random_seed(0)
    model = create_model("fer_vgg", len(MODEL_LABELS))
    head = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)][-1]
    kernel, bias = head.get_weights()
    head.set_weights([kernel * 50, bias])
    out = tmp_path_factory.mktemp("model") / "saved_model"
    model.export(str(out), format="tf_saved_model", verbose=False)
    write_labels(out / "labels.txt", MODEL_LABELS)
    return out


@pytest.fixture(scope="module")
def small_data(fer2013_dir, tmp_path_factory) -> Path:
    """Real FER2013 test faces, the first IMAGES_PER_CLASS of each class, in the folder layout."""
    source = fer2013_dir / "test"
    if not source.is_dir():
        pytest.skip(f"{fer2013_dir} is not a folder tree with test/")
    root = tmp_path_factory.mktemp("fer_small")
    for name in FER2013_LABELS:
        (root / "test" / name).mkdir(parents=True)
        for image in sorted((source / name).iterdir())[:IMAGES_PER_CLASS]:
            shutil.copy(image, root / "test" / name / image.name)
    return root


def _independent_predictions(model_dir: Path, data: Path) -> tuple[list[str], list[str]]:
    """True and predicted class *names*, straight from the SavedModel and the folder names."""
    paths = sorted((data / "test").glob("*/*.jpg"))
    images = np.stack([cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in paths]).astype(np.float32)[..., None]
    loaded = tf.saved_model.load(str(model_dir))  # keep referenced, or TF frees its variables mid-call
    probabilities = loaded.serve(tf.constant(images)).numpy()
    labels = read_labels(model_dir / "labels.txt")
    return [p.parent.name for p in paths], [labels[i] for i in probabilities.argmax(axis=1)]


@pytest.mark.parametrize(
    "true, predicted, labels, expected",
    [
        ([0, 0, 1, 1], [0, 0, 1, 1], "ab", {"accuracy": 1.0, "macro_f1": 1.0, "precision": [1, 1], "recall": [1, 1]}),
        # a: P 2/3 R 1 F1 .8; b: P 1 R 1/2 F1 2/3
        ([0, 0, 1, 1], [0, 0, 0, 1], "ab", {"accuracy": 0.75, "macro_f1": (0.8 + 2 / 3) / 2, "precision": [2 / 3, 1], "recall": [1, 0.5]}),
        # c is never true: excluded from macro-F1, its precision 0 (one false positive)
        ([0, 1, 1], [0, 1, 2], "abc", {"accuracy": 2 / 3, "macro_f1": (1 + 2 / 3) / 2, "precision": [1, 1, 0], "recall": [1, 0.5, 0]}),
        # b is never predicted: precision 0 instead of a division by zero
        ([0, 1], [0, 0], "ab", {"accuracy": 0.5, "macro_f1": (2 / 3 + 0) / 2, "precision": [0.5, 0], "recall": [1, 0]}),
    ],
)
def test_metrics_by_hand(true, predicted, labels, expected):
    results = classification_metrics(np.array(true), np.array(predicted), list(labels))
    assert results["accuracy"] == pytest.approx(expected["accuracy"])
    assert results["macro_f1"] == pytest.approx(expected["macro_f1"])
    assert [results["per_class"][n]["precision"] for n in labels] == pytest.approx(expected["precision"])
    assert [results["per_class"][n]["recall"] for n in labels] == pytest.approx(expected["recall"])
    assert sum(row["support"] for row in results["per_class"].values()) == len(true)


def test_evaluate_matches_independent_computation(model_dir, small_data):
    results = evaluate(ModelConfig(str(model_dir)), str(small_data), "test", batch_size=64)
    true, predicted = _independent_predictions(model_dir, small_data)
    matrix = np.array(results["confusion_matrix"])

    assert results["labels"] == list(MODEL_LABELS)  # the model's order, not the data set's
    expected = np.zeros_like(matrix)
    for t, p in zip(true, predicted):
        expected[MODEL_LABELS.index(t), MODEL_LABELS.index(p)] += 1
    np.testing.assert_array_equal(matrix, expected)
    assert len(np.unique(predicted)) > 1, "degenerate model: the mapping check would be weak"

    assert results["images"] == matrix.sum() == len(FER2013_LABELS) * IMAGES_PER_CLASS
    assert results["accuracy"] == pytest.approx(np.trace(matrix) / matrix.sum())
    assert results["accuracy"] == pytest.approx(np.mean(np.array(true) == np.array(predicted)))
    for i, name in enumerate(MODEL_LABELS):
        row = results["per_class"][name]
        assert row["support"] == IMAGES_PER_CLASS == matrix[i].sum()
        assert row["recall"] == pytest.approx(matrix[i, i] / matrix[i].sum())
    assert (results["split"], results["backend"], results["model"]) == ("test", "tf", str(model_dir))
    assert results["ms_per_face"] > 0 and results["ms_per_face_batch1"] > 0
    assert results["timestamp"]


def test_limit_evaluates_a_random_sample_of_the_split(model_dir, fer2013_dir):
    """``limit`` draws LIMIT images at random from the whole split: each class's support is
    near its share of the split's files (counted here from the folders), within four
    standard deviations of a random draw, and the same on a second run."""
    if not (fer2013_dir / "test").is_dir():
        pytest.skip(f"{fer2013_dir} is not a folder tree with test/")
    files = {name: len(list((fer2013_dir / "test" / name).glob("*.jpg"))) for name in FER2013_LABELS}
    total = sum(files.values())
    results = evaluate(ModelConfig(str(model_dir)), str(fer2013_dir), "test", limit=LIMIT)
    support = {name: results["per_class"][name]["support"] for name in FER2013_LABELS}
    assert results["images"] == sum(support.values()) == LIMIT
    for name, count in files.items():
        share = count / total
        assert abs(support[name] - LIMIT * share) <= 4 * np.sqrt(LIMIT * share * (1 - share)) + 1, (name, support, files)
    again = evaluate(ModelConfig(str(model_dir)), str(fer2013_dir), "test", limit=LIMIT)
    assert {name: again["per_class"][name]["support"] for name in FER2013_LABELS} == support


def test_unknown_class_names_it(model_dir, small_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(small_data, data)
    shutil.copytree(data / "test" / "angry", data / "test" / "contempt")
    with pytest.raises(UserError, match="contempt"):
        evaluate(ModelConfig(str(model_dir)), str(data), "test")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--data", "{tmp}/absent"], "data not found"),
        (["--data", "{data}", "--split", "val"], "no 'val' folder"),
        (["--data", "{data}", "--model", "{tmp}/model.onnx", "--write-metrics"], "needs a model folder"),
    ],
)
def test_user_errors(argv, message, model_dir, small_data, tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"")
    argv = ["--model", str(model_dir)] + [a.format(tmp=tmp_path, data=small_data) for a in argv]
    with pytest.raises(UserError, match=message):
        evaluate_main(argv)


def _main(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "main.py", "evaluate", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=300)


def test_cli_writes_table_json_png_and_model_metrics(model_dir, small_data, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(model_dir, model)
    (model / "metrics.json").write_text(json.dumps({"params": 123}))
    json_path, png_path = tmp_path / "out" / "metrics.json", tmp_path / "out" / "confusion.png"

    done = _main("--model", str(model), "--data", str(small_data), "--split", "test", "--limit", "200",
                 "--json", str(json_path), "--confusion", str(png_path), "--write-metrics")

    assert done.returncode == 0, done.stderr[-2000:]
    assert "accuracy" in done.stdout and "macro-F1" in done.stdout
    written = json.loads(json_path.read_text())
    assert written["images"] == 200 and f"{written['accuracy']:.4f}" in done.stdout
    merged = json.loads((model / "metrics.json").read_text())
    assert merged["params"] == 123 and merged["evaluation_test"]["accuracy"] == written["accuracy"]
    image = cv2.imread(str(png_path))
    assert image is not None and min(image.shape[:2]) > 300 and image.std() > 10


def test_cli_missing_data_is_one_line(model_dir, tmp_path):
    done = _main("--model", str(model_dir), "--data", str(tmp_path / "absent"))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and "data not found" in done.stderr


def test_photo_confusion_counts_each_answer_and_renders_as_rows():
    """Five photos of two classes, answered by hand: right, wrong class, a model class the
    photos lack, no face."""
    from detector.training.photos import NO_FACE_CODE, OTHER_CODE, confusion_markdown, recall_metrics

    classes = ["happy", "sad"]
    true = np.array([0, 0, 0, 1, 1])
    predicted = np.array([0, 1, NO_FACE_CODE, 1, OTHER_CODE])
    row = recall_metrics(true, predicted, classes)
    assert row["confusion"] == {"happy": {"happy": 1, "sad": 1, "another class": 0, "no face": 1},
                                "sad": {"happy": 0, "sad": 1, "another class": 1, "no face": 0}}
    assert row["recall"] == {"happy": pytest.approx(1 / 3), "sad": 0.5} and row["no_face"] == pytest.approx(0.2)
    assert confusion_markdown(row).splitlines()[2:] == ["| happy (3) | **1** | 1 | 0 | 1 | 0.33 |",
                                                        "| sad (2) | 0 | **1** | 1 | 0 | 0.50 |"]
