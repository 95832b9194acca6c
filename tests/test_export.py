"""Export contract: SavedModel + labels.txt + model.json + ONNX that agrees on real faces."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import onnxruntime as ort
import pytest
import tensorflow as tf

from detector.backends import INT8_ONNX_FILE
from detector.labels import FER2013_LABELS
from detector.model_card import read_labels
from detector.training.data import load_split
from detector.training.export import (
    MAX_ABS_DIFF,
    OnnxMismatchError,
    _parser,
    _to_onnx,
    as_float32,
    check_agreement,
    export_model,
    main,
    model_inputs,
    verify_onnx,
)
from detector.training.models import create_model
from detector.training.quantize import MAX_ACCURACY_DROP


def _save_random_model(path: Path, name: str, classes: int, shape=None, seed: int = 0) -> Path:
    """Untrained weights, with a sharpened head so predictions are not near-uniform ties."""
    keras.utils.set_random_seed(seed)
    model = create_model(name, classes, shape)
    head = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)][-1]
    kernel, bias = head.get_weights()
    head.set_weights([kernel * 50, bias])
    model.save(path)
    return path


@pytest.fixture(scope="module")
def fer_vgg_keras(tmp_path_factory) -> Path:
    return _save_random_model(tmp_path_factory.mktemp("fer_vgg") / "best.keras", "fer_vgg", 7)


@pytest.fixture(scope="module")
def fer_vgg_export(fer_vgg_keras, fer2013_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "saved_model"
    return export_model(fer_vgg_keras, out, FER2013_LABELS, data=str(fer2013_dir))


@pytest.fixture(scope="module")
def faces(fer2013_dir) -> np.ndarray:
    return load_split(fer2013_dir, "val").subset(32, seed=1).images


@pytest.fixture(scope="module")
def val_sample(fer2013_dir, tmp_path_factory) -> Path:
    """400 real val faces as a packed archive: keeps the slower exports' accuracy pass short."""
    split = load_split(fer2013_dir, "val").subset(400, seed=2)
    path = tmp_path_factory.mktemp("data") / "val_sample.npz"
    np.savez(path, val_images=split.images, val_labels=split.labels, classes=np.asarray(split.classes))
    return path


def _onnx_probs(out: Path, images: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: images})[0]


def test_export_writes_the_contract_files(fer_vgg_export):
    assert (fer_vgg_export / "saved_model.pb").is_file()
    assert read_labels(fer_vgg_export / "labels.txt") == list(FER2013_LABELS)
    info = json.loads((fer_vgg_export / "model.json").read_text())
    assert info == {"input_scale": 255.0, "arch": "fer_vgg", "input_shape": [48, 48, 1], "tta": None, "outputs": "probabilities"}
    metrics = json.loads((fer_vgg_export / "metrics.json").read_text())
    assert 0 <= metrics["onnx_max_abs_diff"] < MAX_ABS_DIFF
    assert metrics["onnx_argmax_agreement"] >= 0.999
    assert metrics["onnx_check_source"] == "fer2013 val" and metrics["onnx_check_images"] == 256
    assert metrics["params"] > 0 and metrics["exported_at"] and metrics["tta"] is None
    assert 0 <= metrics["val_accuracy_no_tta"] <= 1 and metrics["val_images"] == 3589
    assert not fer_vgg_export.with_name("saved_model.partial").exists()


def _val_accuracy(model_file: Path, fer2013_dir: Path) -> float:
    """Accuracy on all of val, measured here: ONNX Runtime on the raw 0-255 pixels the exported
    model takes (model.json input_scale 255), labels.txt in FER2013's order (as written above)."""
    val = load_split(fer2013_dir, "val")
    session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    images = val.images.astype(np.float32)[..., None]
    predicted = np.concatenate([session.run(None, {name: images[i : i + 512]})[0].argmax(1) for i in range(0, len(images), 512)])
    truth = np.array([FER2013_LABELS.index(val.classes[label]) for label in val.labels])
    return float(np.mean(predicted == truth))


def test_int8_copy_is_kept_only_when_it_holds_val_accuracy(fer_vgg_export, fer2013_dir):
    """The float32 accuracy the export reports, and the int8 one when it keeps the file, are
    measured again here from the files; a kept int8 file must lose less than the bar."""
    metrics = json.loads((fer_vgg_export / "metrics.json").read_text())
    float32 = _val_accuracy(fer_vgg_export / "model.onnx", fer2013_dir)
    assert metrics["float32_val_accuracy"] == pytest.approx(float32, abs=1e-3)
    assert metrics["int8_kept"] == (fer_vgg_export / INT8_ONNX_FILE).is_file()
    if metrics["int8_kept"]:
        int8 = _val_accuracy(fer_vgg_export / INT8_ONNX_FILE, fer2013_dir)
        assert metrics["int8_val_accuracy"] == pytest.approx(int8, abs=1e-3)
        assert float32 - int8 < MAX_ACCURACY_DROP
    else:  # the file is gone, so only the reported drop can be read: it must be over the bar
        assert float32 - metrics["int8_val_accuracy"] >= MAX_ACCURACY_DROP - 1e-3
    assert metrics["int8_calibration_images"] == 1000


def test_saved_model_returns_probabilities_of_the_keras_model(fer_vgg_export, fer_vgg_keras, faces):
    loaded = tf.saved_model.load(str(fer_vgg_export))
    assert {"serve", "serving_default"} <= set(loaded.signatures)
    x = model_inputs(faces, (48, 48, 1))
    probs = loaded.serve(tf.constant(x)).numpy()
    assert probs.shape == (len(faces), 7)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    core = keras.models.load_model(fer_vgg_keras, compile=False, safe_mode=True)
    np.testing.assert_allclose(probs, core.predict(x, verbose=0), atol=1e-5)
    served = loaded.signatures["serving_default"](image=tf.constant(x))
    np.testing.assert_allclose(next(iter(served.values())).numpy(), probs, atol=1e-6)


def test_onnx_has_dynamic_batch_and_agrees(fer_vgg_export, faces):
    session = ort.InferenceSession(str(fer_vgg_export / "model.onnx"), providers=["CPUExecutionProvider"])
    (spec,) = session.get_inputs()
    assert spec.type == "tensor(float)" and spec.shape[1:] == [48, 48, 1] and not isinstance(spec.shape[0], int)
    loaded = tf.saved_model.load(str(fer_vgg_export))  # keep a reference: TF frees its variables otherwise
    reference = loaded.serve(tf.constant(model_inputs(faces, (48, 48, 1)))).numpy()
    for count in (1, 5, len(faces)):
        check_agreement(reference[:count], _onnx_probs(fer_vgg_export, model_inputs(faces[:count], (48, 48, 1))))


def test_flip_tta_through_cli_averages_both_views(fer_vgg_keras, val_sample, faces, tmp_path):
    (fer_vgg_keras.parent / "labels.txt").write_text("\n".join(FER2013_LABELS) + "\n")
    out = main([str(fer_vgg_keras), str(tmp_path / "tta"), "--data", str(val_sample), "--tta"])
    assert json.loads((out / "model.json").read_text())["tta"] == "flip"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["tta"] == "flip" and metrics["onnx_max_abs_diff"] < MAX_ABS_DIFF
    assert {"val_accuracy_no_tta", "val_accuracy_flip_tta"} <= set(metrics) and metrics["val_images"] == 400
    core = keras.models.load_model(fer_vgg_keras, compile=False, safe_mode=True)  # checkpoint unchanged
    x = model_inputs(faces, (48, 48, 1))
    plain, mirrored = core.predict(x, verbose=0), core.predict(x[:, :, ::-1], verbose=0)
    assert np.abs(plain - mirrored).max() > 1e-3  # otherwise the check below proves nothing
    loaded = tf.saved_model.load(str(out))
    probs = loaded.serve(tf.constant(x)).numpy()
    np.testing.assert_allclose(probs, (plain + mirrored) / 2, atol=1e-5)
    np.testing.assert_allclose(_onnx_probs(out, x), probs, atol=MAX_ABS_DIFF)


def test_class_bias_is_fitted_on_val_and_baked_into_the_graph(fer_vgg_keras, val_sample, faces, tmp_path):
    """--class-bias: per-class log-offsets that raise val macro-F1 within the accuracy bar, and
    the exported graph's probabilities are the TTA probabilities reweighted by exp(offset)."""
    (fer_vgg_keras.parent / "labels.txt").write_text("\n".join(FER2013_LABELS) + "\n")
    out = main([str(fer_vgg_keras), str(tmp_path / "bias"), "--data", str(val_sample), "--tta", "--class-bias", "--no-int8"])
    report = json.loads((out / "metrics.json").read_text())["class_bias"]
    offsets = np.array([report["log_offsets"][name] for name in FER2013_LABELS])
    assert np.abs(offsets).max() > 0, "an untrained model's skewed predictions leave room to move: else this proves nothing"
    (acc_before, acc_after), (f1_before, f1_after) = report["val_accuracy"], report["val_macro_f1"]
    assert f1_after > f1_before and acc_after >= acc_before - report["max_val_accuracy_drop"], report

    core = keras.models.load_model(fer_vgg_keras, compile=False, safe_mode=True)
    x = model_inputs(faces, (48, 48, 1))
    tta = (core.predict(x, verbose=0) + core.predict(x[:, :, ::-1], verbose=0)) / 2
    expected = tta * np.exp(offsets)
    np.testing.assert_allclose(_onnx_probs(out, x), expected / expected.sum(1, keepdims=True), atol=1e-5)

    with np.load(val_sample) as val:  # the reported val figures, measured again on the exported file
        predicted = _onnx_probs(out, model_inputs(val["val_images"], (48, 48, 1))).argmax(1)
        assert np.mean(predicted == val["val_labels"]) == pytest.approx(acc_after, abs=0.005)


def test_rgb_model_of_another_size_exports_and_agrees(val_sample, faces, tmp_path):
    classes = [f"class_{i}" for i in range(8)]
    path = _save_random_model(tmp_path / "rgb.keras", "mobilenetv2", 8, (96, 96, 3))
    out = export_model(path, tmp_path / "rgb", classes, data=str(val_sample))
    assert read_labels(out / "labels.txt") == classes
    info = json.loads((out / "model.json").read_text())
    assert info["input_shape"] == [96, 96, 3] and info["arch"] == "mobilenetv2"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["onnx_max_abs_diff"] < MAX_ABS_DIFF and "val_accuracy_no_tta" not in metrics  # classes differ
    x = model_inputs(faces, (96, 96, 3))
    assert x.shape == (len(faces), 96, 96, 3)
    loaded = tf.saved_model.load(str(out))
    probs = loaded.serve(tf.constant(x)).numpy()
    assert probs.shape == (len(faces), 8)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    check_agreement(probs, _onnx_probs(out, x))


@pytest.mark.parametrize(
    ("model", "classes", "occupied", "error", "match"),
    [
        ("best.keras", ["a", "b", "c"], False, ValueError, "7 outputs but 3"),
        ("best.keras", ["a"] * 7, False, ValueError, "distinct"),
        ("best.keras", ["a", "b", "c", "d", "e", "f", " "], False, ValueError, "non-empty"),
        ("best.keras", ["a", "b", "c", "d", "e", "f", "g\nh"], False, ValueError, "one-line"),
        ("missing.keras", FER2013_LABELS, False, FileNotFoundError, "no Keras model"),
        ("best.keras", FER2013_LABELS, True, FileExistsError, "not an exported model"),
    ],
)
def test_rejects_bad_input(fer_vgg_keras, tmp_path, model, classes, occupied, error, match):
    out = tmp_path / "out"
    if occupied:
        out.mkdir()
        (out / "notes.txt").write_text("keep me")
    with pytest.raises(error, match=match):
        export_model(fer_vgg_keras.parent / model, out, classes)
    assert not occupied or (out / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    ("offset", "near_tie_flips", "candidate_classes", "match"),
    [
        (1e-6, 0, 3, None),
        (0.0, 1, 3, None),  # 999/1000 argmax agree: exactly the tolerance
        (1e-3, 0, 3, "max abs diff"),
        (0.0, 2, 3, "argmax agreement 0.9980"),  # tiny differences, but argmax flips
        (0.0, 0, 2, "shapes"),
    ],
)
def test_check_agreement(offset, near_tie_flips, candidate_classes, match):
    reference = np.full((1000, 3), [0.2, 0.5, 0.3], dtype=np.float32)
    reference[:near_tie_flips] = [0.33334, 0.33333, 0.33333]
    candidate = reference + offset
    candidate[:near_tie_flips] = [0.33333, 0.33334, 0.33333]
    candidate = candidate[:, :candidate_classes]
    if match is None:
        assert check_agreement(reference, candidate)[0] < MAX_ABS_DIFF
    else:
        with pytest.raises(OnnxMismatchError, match=match):
            check_agreement(reference, candidate)


def test_mixed_precision_checkpoint_is_exported_in_float32():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        mixed = create_model("fer_vgg", 7)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    converted = as_float32(mixed)
    assert converted is not mixed
    assert {layer.dtype_policy.name for layer in converted._flatten_layers()} == {"float32"}
    x = np.random.default_rng(0).uniform(0, 255, (4, 48, 48, 1)).astype(np.float32)
    np.testing.assert_allclose(converted.predict(x, verbose=0), mixed.predict(x, verbose=0), atol=5e-3)
    assert as_float32(converted) is converted


def test_cli_arguments():
    args = _parser().parse_args(["m.keras", "out", "--data", "d", "--tta"])
    assert (args.keras_paths, args.out_dir, args.data, args.tta) == ([Path("m.keras")], Path("out"), "d", True)
    assert _parser().parse_args(["m.keras", "out"]).data is None
    assert _parser().parse_args(["a.keras", "b.keras", "out"]).keras_paths == [Path("a.keras"), Path("b.keras")]


def test_ensemble_averages_every_member_on_both_views(fer_vgg_keras, val_sample, faces, tmp_path):
    other = _save_random_model(tmp_path / "best.keras", "fer_vgg", 7, seed=1)
    out = main([str(fer_vgg_keras), str(other), str(tmp_path / "ensemble"), "--data", str(val_sample), "--tta", "--no-int8"])
    x = model_inputs(faces, (48, 48, 1))
    views = [keras.models.load_model(path, compile=False, safe_mode=True).predict(view, verbose=0)
             for path in (fer_vgg_keras, other) for view in (x, x[:, :, ::-1])]
    assert np.abs(views[0] - views[2]).max() > 1e-3  # two different members, or this proves nothing
    np.testing.assert_allclose(_onnx_probs(out, x), np.mean(views, axis=0), atol=1e-5)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["ensemble"]["members"] == [str(fer_vgg_keras), str(other)] and metrics["params"] == 2 * 1767207
    assert json.loads((out / "model.json").read_text())["members"] == 2
    with np.load(val_sample) as val:
        predicted = _onnx_probs(out, model_inputs(val["val_images"], (48, 48, 1))).argmax(1)
        assert np.mean(predicted == val["val_labels"]) == pytest.approx(metrics["ensemble"]["val_accuracy_flip_tta"], abs=0.005)


def test_tf2onnx_fallback_on_the_saved_model(fer_vgg_export, fer_vgg_keras, faces, tmp_path, monkeypatch):
    core = keras.models.load_model(fer_vgg_keras, compile=False, safe_mode=True)
    real_export = core.export

    def keras_onnx_broken(path, format="tf_saved_model", **kwargs):
        if format == "onnx":
            raise RuntimeError("simulated Keras ONNX export failure")
        return real_export(path, format=format, **kwargs)

    monkeypatch.setattr(core, "export", keras_onnx_broken)
    assert _to_onnx(core, fer_vgg_export, tmp_path / "model.onnx") == "tf2onnx"
    metrics = verify_onnx(fer_vgg_export, tmp_path / "model.onnx", model_inputs(faces, (48, 48, 1)))
    assert metrics["onnx_max_abs_diff"] < MAX_ABS_DIFF


@pytest.mark.parametrize("arch", ["vgg19", "resnet50"])
def test_imagenet_weights_get_the_preprocessing_they_were_trained_with(arch, faces, tmp_path):
    """Keras' VGG19/ResNet50 ImageNet weights expect BGR minus the ImageNet mean ("caffe"), not [-1, 1]."""
    shape = (32, 32, 3)
    app = {"vgg19": keras.applications.VGG19, "resnet50": keras.applications.ResNet50}[arch]
    weights = tmp_path / f"{arch}_notop.weights.h5"  # stands in for a real ImageNet file (nothing downloads)
    backbone = app(include_top=False, weights=None, input_shape=shape, pooling="avg")
    backbone.save_weights(weights)
    model = create_model(arch, 7, shape, weights=weights)
    for loaded, saved in zip(model.get_layer(arch).get_weights(), backbone.get_weights()):
        np.testing.assert_array_equal(loaded, saved)
    scratch = create_model(arch, 7, shape)
    assert "rgb_to_bgr_minus_imagenet_mean" not in [layer.name for layer in scratch.layers]

    tinted = model_inputs(faces[:8], shape) * np.float32([1.0, 0.8, 0.6])  # real faces, channels made to differ
    normalised = keras.Model(model.input, model.get_layer("rgb_to_bgr_minus_imagenet_mean").output)(tinted)
    expected = getattr(keras.applications, arch).preprocess_input(tinted.copy())
    np.testing.assert_allclose(np.asarray(normalised), expected, atol=1e-3)

    model.save(tmp_path / "model.keras")  # plain layers: loads in safe mode, no custom objects
    loaded = keras.models.load_model(tmp_path / "model.keras", compile=False, safe_mode=True)
    np.testing.assert_allclose(loaded.predict(tinted, verbose=0), model.predict(tinted, verbose=0), atol=1e-5)


@pytest.mark.parametrize("arch", ["mobilenetv2", "resnet50"])
def test_application_batchnorm_statistics_keep_up_with_fer2013_sized_epochs(arch):
    """At Keras' MobileNetV2 momentum (0.999) the moving statistics still carry a third of their
    initial values after 5 FER2013 epochs, and a 5-epoch run predicted one class on all of val."""
    model = create_model(arch, 7, (32, 32, 3))
    backbone = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    momenta = {layer.momentum for layer in backbone.layers if isinstance(layer, keras.layers.BatchNormalization)}
    assert momenta and max(momenta) <= 0.99
