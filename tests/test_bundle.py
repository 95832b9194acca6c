"""The frozen app (``pyinstaller build.spec``) behaves exactly like the source.

Builds ``dist/main/`` into a temporary folder, runs the executable headless on the sample
clip (from another working directory) and compares its JSON lines and ``--report`` with
``python main.py``'s, frame for frame; checks the default model never loads TensorFlow;
then drops a user's own SavedModel (no ONNX graph, 64x64 gray input, 3 classes) next to
the executable in a copy of the folder and checks the bundle uses it, as it does with
``--model``; user errors stay one line and exit 2.

Slow (a full build, 3 to 5 min on a 2-core machine): marked ``bundle``, run by plain
``pytest`` (and so by .ci/run); alone: ``pytest -m bundle tests/test_bundle.py``.
``BUNDLE_SPEC_ARGS="--without-tensorflow"`` builds the lean variant instead (build under
30 s, whole file about 1 min): the user's model next to the executable then carries
model.onnx, and a model without one must fail with one clear line. .ci/run runs both
variants, as docs/BUNDLE.md offers both.

The bundle is built once per run; PyInstaller's work folder goes as soon as the build is
done, the user's copy of the app is hard links (no second 2 GB on disk), and both are
removed when this file's tests end: the test run leaves no gigabytes behind.

``BUNDLE_EXE=dist/main/main.exe`` tests that build instead of making one (the release workflow,
.github/workflows/release.yml, tests exactly the folder it uploads); ``BUNDLE_SPEC_ARGS`` must
then say how it was built.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO_ROOT, run_main
from tools.scenes import SAMPLE_CLIP

pytestmark = pytest.mark.bundle

FRAMES = 60
EXE_NAME = "main.exe" if sys.platform == "win32" else "main"
SPEC_ARGS = shlex.split(os.environ.get("BUNDLE_SPEC_ARGS", ""))
WITH_TENSORFLOW = "--without-tensorflow" not in SPEC_ARGS
CUSTOM_LABELS = ("calm", "tense", "joy")


def _env() -> dict:
    """As a user's double-click or terminal would have it: no display, no Python settings leaking in."""
    drop = ("DISPLAY", "WAYLAND_DISPLAY", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")
    env = {key: value for key, value in os.environ.items() if key not in drop}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return env


def run_frozen(exe: Path, *args: str, cwd: Path | None = None, env: dict | None = None,
               timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout,
                          env={**_env(), **(env or {})}, cwd=cwd or exe.parent)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, shipped_model) -> Path:
    """``pyinstaller build.spec`` into a temporary dist folder; yields the executable, then
    removes the whole build. With ``$BUNDLE_EXE``: that executable, built before and left alone."""
    if os.environ.get("BUNDLE_EXE"):
        exe = (REPO_ROOT / os.environ["BUNDLE_EXE"]).resolve()
        assert exe.is_file(), f"BUNDLE_EXE: no {exe}"
        yield exe
        return
    try:
        import PyInstaller  # noqa: F401
    except ImportError:
        reason = "PyInstaller is not installed (pip install -r requirements-dev.txt)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("bundle")
    started = time.perf_counter()
    built = subprocess.run(
        [sys.executable, "-m", "PyInstaller", "build.spec", "--noconfirm", "--log-level", "WARN",
         "--distpath", str(work / "dist"), "--workpath", str(work / "build"),
         *(["--", *SPEC_ARGS] if SPEC_ARGS else [])],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=3600,
    )
    shutil.rmtree(work / "build", ignore_errors=True)  # PyInstaller's intermediate files: not needed to run
    try:
        assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-5000:]
        print(f"\nbundle built in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        exe = work / "dist" / "main" / EXE_NAME
        assert exe.is_file(), f"no {exe}"
        yield exe
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_bundle_holds_the_resources(bundle):
    internal = bundle.parent / "_internal"
    for name in ("haarcascade_frontalface_default.xml", "saved_model_trt/model.onnx", "saved_model_trt/model.int8.onnx",
                 "saved_model_trt/labels.txt", "saved_model_trt/model.json", "samples/sample_face.mp4", "samples/README.md"):
        assert (internal / name).is_file(), f"{name} is not bundled"
    # the lean bundle has no TensorFlow to load the SavedModel with, so it leaves the SavedModel out (build.spec)
    assert (internal / "saved_model_trt" / "saved_model.pb").is_file() == WITH_TENSORFLOW
    assert (internal / "saved_model_trt" / "variables").is_dir() == WITH_TENSORFLOW
    for name in ("face_detection_full_range.onnx", "face_detection_short_range.onnx", "LICENSE", "framing.json"):
        assert (internal / "models" / "blazeface" / name).is_file(), f"models/blazeface/{name} is not bundled"
    assert not (bundle.parent / "saved_model_trt").exists()  # nothing next to the exe: the bundled copy is used


def test_bundle_leaves_out_what_the_app_never_loads(bundle):
    """build.spec's size cuts: Pillow's AVIF codec and FreeType binding, numpy's SIMD test module, matplotlib's
    PDF/PS and mathtext fonts (DejaVu Sans stays)."""
    internal = bundle.parent / "_internal"
    assert not list(internal.glob("PIL/_avif*")) and not list(internal.glob("PIL/_imagingft*"))
    assert list(internal.glob("numpy/_core/_multiarray_umath*")) and not list(internal.glob("numpy/_core/_simd*"))
    fonts = internal / "matplotlib" / "mpl-data" / "fonts"
    assert (fonts / "ttf" / "DejaVuSans.ttf").is_file()
    assert not (fonts / "afm").exists() and not (fonts / "pdfcorefonts").exists()
    assert not list(fonts.glob("ttf/STIX*")) and not list(fonts.glob("ttf/cm*"))


@pytest.fixture(scope="module")
def both_runs(bundle, tmp_path_factory) -> dict[str, Path]:
    """The sample clip through the frozen app and through ``python main.py``: JSON lines and a --report folder."""
    out = {}
    for kind in ("frozen", "source"):
        folder = tmp_path_factory.mktemp(kind)
        args = ("--source", str(SAMPLE_CLIP), "--no-display", "--max-frames", str(FRAMES),
                "--log", str(folder / "r.jsonl"), "--report", str(folder / "report"))
        # The frozen app runs from elsewhere: it must not lean on the working directory or the repo.
        done = run_frozen(bundle, *args, cwd=folder) if kind == "frozen" else run_main(*args)
        assert done.returncode == 0, f"{kind}: {done.stderr[-3000:]}"
        out[kind] = folder
    return out


def test_frozen_run_matches_the_source_run_frame_for_frame(both_runs):
    frozen_lines, source_lines = _lines(both_runs["frozen"] / "r.jsonl"), _lines(both_runs["source"] / "r.jsonl")
    assert len(frozen_lines) == len(source_lines) == FRAMES
    assert sum(1 for line in source_lines if line["faces"]) >= 0.9 * FRAMES  # a real face in the clip
    for got, want in zip(frozen_lines, source_lines):
        assert (got["frame"], got["time"], got["source"]) == (want["frame"], want["time"], want["source"])
        assert [face["box"] for face in got["faces"]] == [face["box"] for face in want["faces"]], got["frame"]
        assert [face["label"] for face in got["faces"]] == [face["label"] for face in want["faces"]], got["frame"]
        for got_face, want_face in zip(got["faces"], want["faces"]):
            assert list(got_face["probs"]) == list(want_face["probs"])
            assert got_face["probs"] == pytest.approx(want_face["probs"], abs=1e-3)


def test_frozen_report_matches_the_source_report(both_runs):
    """--report needs matplotlib (its Agg canvas) and tqdm inside the bundle."""
    import csv

    import cv2

    got_dir, want_dir = both_runs["frozen"] / "report", both_runs["source"] / "report"
    for name in ("frames.csv", "summary.json", "timeline.png", "annotated.mp4"):
        assert (got_dir / name).is_file(), f"the frozen app wrote no {name}"
    timeline = cv2.imread(str(got_dir / "timeline.png"))
    assert timeline is not None and timeline.shape[0] > 100 and timeline.shape[1] > 100
    got_rows = list(csv.DictReader((got_dir / "frames.csv").open()))
    want_rows = list(csv.DictReader((want_dir / "frames.csv").open()))
    assert len(got_rows) == len(want_rows) > 0
    exact = ("source", "frame", "time", "id", "x", "y", "w", "h", "label")
    for got, want in zip(got_rows, want_rows):
        assert list(got) == list(want)
        assert [got[key] for key in exact] == [want[key] for key in exact]
        numbers = [key for key in got if key not in exact]
        assert [float(got[key]) for key in numbers] == pytest.approx([float(want[key]) for key in numbers], abs=1e-3)
    got_summary = json.loads((got_dir / "summary.json").read_text())
    want_summary = json.loads((want_dir / "summary.json").read_text())
    assert got_summary["labels"] == want_summary["labels"] and got_summary["frames"] == want_summary["frames"] == FRAMES
    assert {k: v["dominant"] for k, v in got_summary["faces"].items()} == {k: v["dominant"] for k, v in want_summary["faces"].items()}


def test_frozen_blazeface_finds_what_the_source_run_finds(bundle, tmp_path):
    runs = {}
    for kind in ("frozen", "source"):
        log = tmp_path / f"{kind}.jsonl"
        args = ("--source", str(SAMPLE_CLIP), "--detector", "blazeface", "--no-display", "--max-frames", "20", "--log", str(log))
        done = run_frozen(bundle, *args, cwd=tmp_path) if kind == "frozen" else run_main(*args)
        assert done.returncode == 0, f"{kind}: {done.stderr[-3000:]}"
        runs[kind] = _lines(log)
    assert all(len(line["faces"]) == 1 for line in runs["frozen"])
    for got, want in zip(runs["frozen"], runs["source"], strict=True):
        assert [(f["box"], f["keypoints"], f["label"]) for f in got["faces"]] == [(f["box"], f["keypoints"], f["label"]) for f in want["faces"]]


def test_default_model_never_loads_tensorflow_in_the_bundle(bundle, tmp_path):
    """The shipped model runs on ONNX Runtime: TensorFlow, if bundled, costs disk space, not start time."""
    log, trace = tmp_path / "r.jsonl", tmp_path / "ld"
    linux = sys.platform.startswith("linux")
    env = {"LD_DEBUG": "libs", "LD_DEBUG_OUTPUT": str(trace)} if linux else {}  # the loader logs every library
    done = run_frozen(bundle, "--source", str(SAMPLE_CLIP), "--no-display", "--max-frames", "1", "--log", str(log), "-v",
                      env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "onnx backend" in done.stderr
    if linux:
        loaded = "".join(path.read_text(errors="replace") for path in tmp_path.glob("ld.*"))
        assert "onnxruntime_pybind11_state" in loaded  # the check sees the libraries at all
        assert "tensorflow" not in loaded


def _custom_model(folder: Path, onnx: bool) -> Path:
    """A user's own model: 64x64 gray in, 3 classes out, a SavedModel with labels.txt; model.onnx only if asked."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(7)
    inputs = keras.Input((64, 64, 1))
    x = layers.Rescaling(1 / 255.0)(inputs)
    x = layers.Conv2D(4, 3, strides=2, activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(len(CUSTOM_LABELS), activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.export(str(folder), format="tf_saved_model", verbose=False)
    if onnx:
        model.export(str(folder / "model.onnx"), format="onnx", verbose=False)
    (folder / "labels.txt").write_text("\n".join(CUSTOM_LABELS) + "\n", encoding="utf-8")
    assert (folder / "model.onnx").exists() == onnx
    return folder


@pytest.fixture(scope="module")
def user_app(bundle, tmp_path_factory) -> Path:
    """A copy of ``dist/main/`` with the user's model next to the executable as ``saved_model_trt/``:
    a bare SavedModel (no ONNX graph) where the bundle has TensorFlow, else one with model.onnx."""
    copy = tmp_path_factory.mktemp("user_app") / "main"
    shutil.copytree(bundle.parent, copy, symlinks=True, copy_function=os.link)  # hard links: no second copy on disk
    try:
        _custom_model(copy / "saved_model_trt", onnx=not WITH_TENSORFLOW)
        yield copy / EXE_NAME
    finally:
        shutil.rmtree(copy.parent, ignore_errors=True)


def _probs_keys(log: Path) -> list[list[str]]:
    return [list(face["probs"]) for line in _lines(log) for face in line["faces"]]


def test_custom_model_next_to_the_executable_replaces_the_bundled_one(user_app, tmp_path):
    log = tmp_path / "r.jsonl"
    done = run_frozen(user_app, "--source", str(SAMPLE_CLIP), "--no-display", "--max-frames", "10",
                      "--log", str(log), "-v", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    backend = "tf" if WITH_TENSORFLOW else "onnx"
    assert f"{backend} backend, input 64x64x1" in done.stderr, done.stderr[-3000:]
    keys = _probs_keys(log)
    assert len(keys) >= 9 and all(k == list(CUSTOM_LABELS) for k in keys)


def test_custom_model_given_with_model_flag(bundle, user_app, tmp_path):
    """The untouched bundle, pointed at the same user model with ``--model``."""
    log = tmp_path / "r.jsonl"
    done = run_frozen(bundle, "--source", str(SAMPLE_CLIP), "--no-display", "--max-frames", "5",
                      "--model", str(user_app.parent / "saved_model_trt"), "--log", str(log), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    keys = _probs_keys(log)
    assert len(keys) >= 4 and all(k == list(CUSTOM_LABELS) for k in keys)


def test_lean_bundle_says_a_model_without_onnx_needs_tensorflow(bundle, user_app, tmp_path):
    if WITH_TENSORFLOW:
        pytest.skip("this bundle has TensorFlow: see test_custom_model_next_to_the_executable_replaces_the_bundled_one")
    done = run_frozen(bundle, "--source", str(SAMPLE_CLIP), "--no-display", "--max-frames", "1", "--backend", "tf",
                      "--model", str(user_app.parent / "saved_model_trt"), "--log", str(tmp_path / "r.jsonl"))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs TensorFlow" in lines[0], done.stderr


@pytest.mark.parametrize("argv,words", [
    (["--source", "missing.mp4"], "source not found"),
    (["--model", "no_such_model"], "model not found"),
], ids=["missing video", "missing model"])
def test_user_error_is_one_line_exit_2(bundle, tmp_path, argv, words):
    done = run_frozen(bundle, *argv, "--no-display", "--log", str(tmp_path / "r.jsonl"), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], done.stderr
