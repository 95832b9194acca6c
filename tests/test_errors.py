"""User errors: one clear line on stderr, exit code 2, no traceback."""

from __future__ import annotations

import shutil

import pytest

from conftest import run_main
from scenes import SAMPLE_CLIP


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


def _corrupt_onnx(tmp_path, shipped_model):
    folder = tmp_path / "model"
    shutil.copytree(shipped_model, folder)
    (folder / "model.onnx").write_bytes(b"\x08\x07garbage" * 50)
    return str(folder)


CASES = [
    # (name, argv builder, expected words in the message)
    ("missing video", lambda t, m: ["--source", str(t / "nope.mp4")], "source not found"),
    ("absent camera", lambda t, m: ["--source", "7"], "camera"),
    ("unreadable image", lambda t, m: ["--source", _not_an_image(t)], "cannot read image"),
    ("empty image folder", lambda t, m: ["--source", _empty_dir(t)], "no images"),
    ("missing model", lambda t, m: ["--model", str(t / "no_model")], "model not found"),
    ("empty model folder", lambda t, m: ["--model", _empty_dir(t)], "no saved_model.pb"),
    ("labels do not match", lambda t, m: ["--model", _labels_mismatch(t, m)], "3 classes but the model outputs 7"),
    ("corrupt saved_model.pb", lambda t, m: ["--model", _corrupt_saved_model(t, m), "--backend", "tf"], "cannot load SavedModel"),
    ("corrupt model.onnx", lambda t, m: ["--model", _corrupt_onnx(t, m)], "cannot load ONNX model"),
    ("missing cascade", lambda t, m: ["--cascade", str(t / "none.xml")], "cascade not found"),
    ("log folder missing", lambda t, m: ["--log", str(t / "no" / "r.jsonl")], "output folder does not exist"),
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
