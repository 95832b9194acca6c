"""User errors: one clear line on stderr, exit code 2, no traceback."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import run_main
from tools.scenes import SAMPLE_CLIP

CODE_RAN = "code_ran.txt"  # what the Lambda layer in _keras_with_code would create if it ever ran


def _empty_dir(tmp_path):
    (tmp_path / "empty").mkdir()
    return str(tmp_path / "empty")


def _not_an_image(tmp_path):
    (tmp_path / "photo.jpg").write_bytes(b"this is text, not a JPEG")
    return str(tmp_path / "photo.jpg")


def _labels_mismatch(tmp_path, shipped_model):
    folder = tmp_path / "model"
    shutil.copytree(shipped_model, folder)
    (folder / "labels.txt").write_text("angry\nhappy\nsad\n")
    return str(folder)


def _corrupt_saved_model(tmp_path, shipped_model):
    folder = tmp_path / "model"
    shutil.copytree(shipped_model, folder, ignore=shutil.ignore_patterns("model.onnx"))
    (folder / "saved_model.pb").write_bytes((folder / "saved_model.pb").read_bytes()[:200])
    return str(folder)


def _corrupt_onnx(tmp_path, shipped_model, name):
    folder = tmp_path / "model"
    shutil.copytree(shipped_model, folder)
    (folder / name).write_bytes(b"\x08\x07garbage" * 50)
    return str(folder)


def _truncated_mp4(tmp_path, shipped_model):
    """An mp4 written the usual way (index at the end), cut short: no frame can be found."""
    capture = cv2.VideoCapture(str(SAMPLE_CLIP))
    path = tmp_path / "cut.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 24, (640, 360))
    for _ in range(30):
        writer.write(capture.read()[1])
    writer.release()
    capture.release()
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return str(path)


def _not_a_video(tmp_path):
    (tmp_path / "clip.mp4").write_bytes(os.urandom(4096))
    return str(tmp_path / "clip.mp4")


def _small_keras(outputs_of):
    import keras
    from keras import layers

    inputs = keras.Input((48, 48, 1))
    return keras.Model(inputs, outputs_of(layers.GlobalAveragePooling2D()(inputs)))


def _output_7x2_saved_model(tmp_path, shipped_model):
    from keras import layers

    model = _small_keras(lambda x: layers.Reshape((7, 2))(layers.Dense(14)(x)))
    model.export(str(tmp_path / "m7x2"), format="tf_saved_model", verbose=False)
    return str(tmp_path / "m7x2")


def _scalar_output_saved_model(tmp_path, shipped_model):
    import tensorflow as tf

    class Scalar(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 48, 48, 1], tf.float32)])
        def serve(self, images):
            return tf.reduce_mean(images)

    module = Scalar()
    tf.saved_model.save(module, str(tmp_path / "scalar"), signatures=module.serve)
    return str(tmp_path / "scalar")


def _output_7x2_onnx(tmp_path, shipped_model):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.ones((48 * 48, 14), np.float32) / 2304, "w")
    shape = numpy_helper.from_array(np.array([-1, 7, 2], np.int64), "shape")
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["scores"]),
         helper.make_node("Reshape", ["scores", "shape"], ["y"])],
        "wrong_output", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 48, 48, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 7, 2])], [weights, shape])
    path = tmp_path / "m7x2.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return str(path)


def _keras_with_code(tmp_path, shipped_model):
    """A .keras file whose Lambda layer would create ``CODE_RAN`` if its code ever ran."""
    from keras import layers

    marker = str(tmp_path / CODE_RAN)
    touch = eval(f"lambda t: (open({marker!r}, 'w').close(), t)[1]")  # the path is a constant of the code
    model = _small_keras(lambda x: layers.Dense(7, activation="softmax")(layers.Lambda(touch, output_shape=(1,))(x)))
    model.save(tmp_path / "custom.keras")
    assert not Path(marker).exists()  # building and saving did not run it either
    return str(tmp_path / "custom.keras")


def _unwritable_folder(tmp_path):
    if os.name != "posix":
        pytest.skip("needs POSIX permissions")
    if os.geteuid() != 0:  # root writes anywhere: use a read-only file system instead
        folder = tmp_path / "locked"
        folder.mkdir(mode=0o500)
        return folder
    if not os.path.isdir("/proc/sys") or os.access("/proc/sys", os.W_OK):
        pytest.skip("running as root with no read-only folder to write to")
    return Path("/proc/sys")


def _full_disk(tmp_path):
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full (Linux)")
    return "/dev/full"


CASES = [
    # (name, argv builder, expected words in the message)
    ("missing video", lambda t, m: ["--source", str(t / "nope.mp4")], "source not found"),
    ("absent camera", lambda t, m: ["--source", "7"], "cannot open camera 7: no such camera, or another app is using it"),
    ("unreadable image", lambda t, m: ["--source", _not_an_image(t)], "cannot read image"),
    ("empty image folder", lambda t, m: ["--source", _empty_dir(t)], "no images"),
    ("missing model", lambda t, m: ["--model", str(t / "no_model")], "model not found"),
    ("empty model folder", lambda t, m: ["--model", _empty_dir(t)], "no saved_model.pb"),
    ("labels do not match", lambda t, m: ["--model", _labels_mismatch(t, m)], "3 classes but the model outputs 7"),
    ("corrupt saved_model.pb", lambda t, m: ["--model", _corrupt_saved_model(t, m), "--backend", "tf"], "cannot load SavedModel"),
    ("corrupt model.onnx", lambda t, m: ["--model", _corrupt_onnx(t, m, "model.onnx"), "--no-int8"], "cannot load ONNX model"),
    ("corrupt model.int8.onnx", lambda t, m: ["--model", _corrupt_onnx(t, m, "model.int8.onnx")], "cannot load ONNX model"),
    ("output (7, 2) per face, SavedModel", lambda t, m: ["--model", _output_7x2_saved_model(t, m)], "got (?, 7, 2)"),
    ("scalar output, SavedModel", lambda t, m: ["--model", _scalar_output_saved_model(t, m)], "one score per class"),
    ("output (7, 2) per face, ONNX", lambda t, m: ["--model", _output_7x2_onnx(t, m)], "got (?, 7, 2)"),
    (".keras with a Lambda layer", lambda t, m: ["--model", _keras_with_code(t, m)], "holds Python code"),
    ("missing cascade", lambda t, m: ["--cascade", str(t / "none.xml")], "cascade not found"),
    ("not a video", lambda t, m: ["--source", _not_a_video(t)], "cannot open video clip.mp4"),
    ("truncated mp4, index lost", lambda t, m: ["--source", _truncated_mp4(t, m)], "damaged or truncated"),
    ("log folder missing", lambda t, m: ["--log", str(t / "no" / "r.jsonl")], "output folder does not exist"),
    ("video folder missing", lambda t, m: ["--output", str(t / "no" / "a.mp4")], "output folder does not exist"),
    ("log folder not writable", lambda t, m: ["--log", str(_unwritable_folder(t) / "r.jsonl")], "not writable"),
    ("disk full", lambda t, m: ["--log", _full_disk(t)], "cannot write /dev/full: No space left on device"),
    ("bad video format", lambda t, m: ["--output", str(t / "a.gif")], "unsupported video format"),
]


@pytest.mark.parametrize("name,argv,message", CASES, ids=[case[0] for case in CASES])
def test_user_error_is_one_line_exit_2(tmp_path, shipped_model, name, argv, message):
    args = argv(tmp_path, shipped_model)
    if "--source" not in args:
        args += ["--source", str(SAMPLE_CLIP)]
    done = run_main(*args, "--no-display", "--log", str(tmp_path / "r.jsonl")) if "--log" not in args else run_main(*args, "--no-display")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert not (tmp_path / CODE_RAN).exists(), "code from a model file ran"


def test_the_lambda_in_the_keras_case_does_run_when_loaded_unsafely(tmp_path):
    """The bait works: were the app ever to load that file without safe_mode, the marker would appear."""
    import keras

    model = keras.models.load_model(_keras_with_code(tmp_path, None), safe_mode=False)
    model(np.zeros((1, 48, 48, 1), np.float32))
    assert (tmp_path / CODE_RAN).exists()


@pytest.mark.parametrize("tool", [["main.py", "train", "--out"], ["main.py", "evaluate", "--json"],
                                  ["-m", "detector.training.distill", "saved_model_trt", "--out"]])
def test_training_tools_say_missing_data_in_one_line(tmp_path, tool):
    """Every command that reads FER2013 says the same one line when ``--data`` is not there."""
    import subprocess
    import sys

    from conftest import REPO_ROOT

    done = subprocess.run([sys.executable, *tool, str(tmp_path / "out"), "--data", str(tmp_path / "no_fer2013")],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert lines[-1] == f"error: data not found: {tmp_path / 'no_fer2013'} (give --data a FER2013 folder, fer2013.csv or packed .npz)"
