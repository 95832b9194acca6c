"""Never crash, never lose results: lost cameras, damaged videos, signals, odd images, odd
faces, and the pure helpers under them (property-based). Everything runs on real files the
tests make: real FER2013 faces, real videos, really corrupted bytes.

Runs that must end with one line and exit 2 (bad models, absent cameras, unusable output
paths) are rows of the table in ``test_errors.py``; the soak run is ``tools/soak.py``
(docs/RELIABILITY.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import detector.app as app
from conftest import REPO_ROOT, run_main
from detector.classifier import EmotionClassifier, fit_crop, to_probabilities
from detector.config import AppConfig, DetectionConfig, ModelConfig, PipelineConfig
from detector.errors import UserError
from detector.detection.boxes import clamp_boxes
from detector.detection.haar import HaarConfig
from detector.pipeline import create_pipeline
from detector.outputs import VIDEO_SIDE, VideoSink, video_size
from detector.overlay import Overlay
from detector.results import FrameResult
from detector.sources import VideoSource, open_source
from tools.scenes import SAMPLE_CLIP, background, detectable_faces, place, scene_with
from tools.xwindow import wait_for_window, xdotool

SETTINGS = settings(deadline=None, max_examples=150)  # the machine may be busy: no per-example deadline
MOVES_OPEN_FILES = pytest.mark.skipif(sys.platform == "win32", reason="renames and deletes a file that is open")


@pytest.fixture(scope="module")
def real_faces(fer2013_dir):
    return detectable_faces(fer2013_dir, "test", per_class=3)


@pytest.fixture(scope="module")
def pipeline(shipped_model):
    return create_pipeline(PipelineConfig(model=ModelConfig(str(shipped_model))))


@pytest.fixture(scope="module")
def classifier(shipped_model):
    return EmotionClassifier(ModelConfig(str(shipped_model)))


def _face_clip(path: Path, faces, frames: int = 30, fps: float = 15.0, size=(640, 480)) -> Path:
    """Two real faces drifting across the wall, ``frames`` long (a 30-frame cycle, repeated);
    MJPG for ``.avi``, mp4v otherwise."""
    cycle = []
    for step in range(min(frames, 30)):
        scene, _ = scene_with([faces[0].image, faces[1].image], [(40 + 4 * step, 60), (380, 220 - 2 * step)])
        cycle.append(scene if size == (640, 480) else cv2.resize(scene, size, interpolation=cv2.INTER_AREA))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*("MJPG" if path.suffix == ".avi" else "mp4v")), fps, size)
    for i in range(frames):
        writer.write(cycle[i % len(cycle)])
    writer.release()
    return path


def _lines(path: Path) -> list[dict]:
    text = path.read_text()
    assert not text or text.endswith("\n"), "the last JSON line was cut short"
    return [json.loads(line) for line in text.splitlines()]


def _video_frames(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), f"{path} does not open"
    frames = 0
    while capture.read()[0]:
        frames += 1
    capture.release()
    return frames


def _valid_boxes(boxes: np.ndarray, image: np.ndarray) -> bool:
    height, width = image.shape[:2]
    x, y, w, h = np.asarray(boxes).reshape(-1, 4).T
    return bool(np.all((x >= 0) & (y >= 0) & (w >= 2) & (h >= 2) & (x + w <= width) & (y + h <= height)))


def _valid_probs(probs: np.ndarray, classes: int) -> bool:
    return probs.shape[1] == classes and np.isfinite(probs).all() and np.allclose(probs.sum(axis=1), 1.0, atol=1e-3)


# --- cameras ---------------------------------------------------------------------------


def test_no_camera_falls_back_to_the_sample_clip(tmp_path):
    """A plain ``python main.py`` (no display here, so results go to emotion_output/)."""
    if Path("/dev/video0").exists():
        pytest.skip("this machine has a camera")
    done = run_main("--max-frames", "5", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "No camera found: playing the sample clip" in done.stderr
    (log,) = (tmp_path / "emotion_output").glob("*/results.jsonl")
    assert [line["source"] for line in _lines(log)] == [SAMPLE_CLIP.name] * 5
    assert _video_frames(log.with_name("annotated.mp4")) == 5


def _record_opens(monkeypatch) -> list[float]:
    """When each ``cv2.VideoCapture`` is created (the reader thread's reconnect attempts)."""
    opened, original = [], cv2.VideoCapture

    def capture(*args):
        opened.append(time.monotonic())
        return original(*args)

    monkeypatch.setattr(cv2, "VideoCapture", capture)
    return opened


def _next_frame(frames, timeout: float):
    """The next real frame from a live source's iterator, skipping its ``None`` heartbeats."""
    deadline = time.monotonic() + timeout
    for frame in frames:
        if frame is not None:
            return frame
        assert time.monotonic() < deadline, "no frame in time"
    return None


@MOVES_OPEN_FILES
def test_lost_camera_reconnects_with_backoff_and_resumes(tmp_path, real_faces, monkeypatch):
    """A video file stands in for the camera: at its end reads fail like an unplugged camera's."""
    clip = _face_clip(tmp_path / "camera.mp4", real_faces)
    away = tmp_path / "unplugged.mp4"
    opened = _record_opens(monkeypatch)
    with VideoSource(str(clip), "camera 0", live=True, reconnect_s=30) as camera:
        clip.rename(away)  # the open file still plays to its end; then every reopen fails
        frames = iter(camera)
        assert _next_frame(frames, 10) is not None
        deadline = time.monotonic() + 30
        while len(opened) < 5:  # the first open, then four failed attempts
            next(frames)
            assert time.monotonic() < deadline, "no reconnect attempts"
        assert "reconnecting" in camera.status
        away.rename(clip)  # plugged back in
        frame = _next_frame(frames, 15)
        assert frame is not None and frame.image.shape == (480, 640, 3)
        assert camera.status == ""
    gaps = np.diff(opened[1:5])
    assert np.all(gaps[1:] > 1.5 * gaps[:-1]), f"no backoff between attempts: {gaps}"


@MOVES_OPEN_FILES
def test_lost_camera_gives_up_after_reconnect_seconds(tmp_path, real_faces, caplog):
    clip = _face_clip(tmp_path / "camera.mp4", real_faces)
    with VideoSource(str(clip), "camera 0", live=True, reconnect_s=2.0) as camera:
        clip.unlink()
        frames = iter(camera)
        assert _next_frame(frames, 10) is not None
        lost = None
        for _ in frames:  # ends by itself: no frames for reconnect_s
            if lost is None and camera.status:
                lost = time.monotonic()
            assert lost is None or time.monotonic() - lost < 10, "never gave up"
        waited = time.monotonic() - lost
    assert 1.5 < waited < 6, waited
    assert "giving up" in caplog.text


@MOVES_OPEN_FILES
def test_window_says_reconnecting_while_the_camera_is_lost(tmp_path, real_faces, shipped_model, monkeypatch):
    """The real run loop with the window calls recorded: frames, then the status notice, then frames again."""
    clip = _face_clip(tmp_path / "camera.mp4", real_faces)
    away = tmp_path / "unplugged.mp4"
    camera = VideoSource(str(clip), "camera 0", live=True, reconnect_s=30)
    clip.rename(away)
    shown: list[tuple[np.ndarray, object, str]] = []

    def show(image, config, result, *rest):
        shown.append((image, result, camera.status))
        if result is None and "reconnecting" in camera.status and away.exists():
            away.rename(clip)
        return not (result is not None and any(r is None for _, r, _ in shown))  # quit once frames are back

    monkeypatch.setattr(app, "open_configured_source", lambda config, reconnect_s=30.0: (camera, ""))
    monkeypatch.setattr(app, "_show", show)
    monkeypatch.setattr(cv2, "namedWindow", lambda *args: None)
    monkeypatch.setattr(cv2, "destroyAllWindows", lambda: None)
    log = tmp_path / "r.jsonl"
    stats = app.run(AppConfig(PipelineConfig(model=ModelConfig(str(shipped_model))), display=True, log=str(log)))
    assert stats.stopped_by == "user"
    first_wait = next(i for i, (_, result, _) in enumerate(shown) if result is None)
    assert first_wait > 0 and "reconnecting" in shown[first_wait][2]
    before, waiting = shown[first_wait - 1][0], shown[first_wait][0]
    bottom = slice(before.shape[0] - 40, None)  # the notice line is drawn along the bottom edge
    assert (waiting[bottom] != before[bottom]).any(), "no notice on screen"
    assert shown[-1][1] is not None, "frames did not resume"
    assert len(_lines(log)) == stats.frames >= 2


# --- videos ----------------------------------------------------------------------------


def _cut(path: Path, fraction: float, folder: Path) -> Path:
    """The first ``fraction`` of the file's bytes, as a download or copy that stopped there."""
    cut = folder / f"cut_{path.name}"
    cut.write_bytes(path.read_bytes()[: int(path.stat().st_size * fraction)])
    return cut


def _corrupt(path: Path) -> Path:
    """Two stretches of random bytes written over the middle of the file."""
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(7)
    for start in (len(data) * 3 // 10, len(data) * 5 // 10):
        data[start : start + 4000] = rng.integers(0, 256, 4000, dtype=np.uint8).tobytes()
    damaged = path.with_name(f"damaged_{path.name}")
    damaged.write_bytes(bytes(data))
    return damaged


DAMAGED = [
    # (name, make the damaged file from tmp_path and real faces, the damage certainly loses frames)
    ("sample clip cut at 15%", lambda t, f: _cut(SAMPLE_CLIP, 0.15, t), True),  # its index comes first: still readable
    ("avi cut at 60%", lambda t, f: _cut(_face_clip(t / "clip.avi", f, 60), 0.6, t), True),
    ("mp4 with damaged stretches", lambda t, f: _corrupt(_face_clip(t / "clip.mp4", f, 60)), False),
    ("avi with damaged stretches", lambda t, f: _corrupt(_face_clip(t / "clip.avi", f, 60)), False),
]


@pytest.mark.parametrize("name,make,loses_frames", DAMAGED, ids=[case[0] for case in DAMAGED])
def test_damaged_video_keeps_what_is_readable_and_reports_the_rest(tmp_path, real_faces, shipped_model, name, make, loses_frames):
    clip = make(tmp_path, real_faces)
    capture = cv2.VideoCapture(str(clip))
    declared = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    capture.release()
    log, video = tmp_path / "r.jsonl", tmp_path / "a.mp4"
    done = run_main("--source", str(clip), "--no-display", "--log", str(log), "--output", str(video))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and " @ 0x" not in done.stderr, done.stderr  # no FFmpeg chatter either
    lines = _lines(log)
    summary = done.stderr.strip().splitlines()[-1]
    skipped = int(summary.split(", ")[2].split()[0]) if "unreadable" in summary else 0
    assert lines and len(lines) + skipped == declared, summary
    assert not loses_frames or skipped > 0
    frames = [line["frame"] for line in lines]
    assert frames == sorted(set(frames))
    assert len(lines) <= _video_frames(video) <= declared  # a damaged stretch holds the last good frame: timing kept


# --- stopping: signals and the window's close button -------------------------------------


def _popen_main(*args: str, env: dict | None = None) -> subprocess.Popen:
    full_env = {key: value for key, value in os.environ.items() if key not in ("DISPLAY", "WAYLAND_DISPLAY")}
    full_env.update({"TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})})
    return subprocess.Popen([sys.executable, str(REPO_ROOT / "main.py"), *args], env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_lines(log: Path, count: int, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not (log.exists() and log.read_text().count("\n") >= count):
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "the app wrote no results"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory, real_faces) -> Path:
    """100 s of real faces at 320x240, 15 fps: still running when the test stops it."""
    return _face_clip(tmp_path_factory.mktemp("long") / "long.mp4", real_faces, frames=1500, size=(320, 240))


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("signum,exit_code,says", [(signal.SIGTERM, 0, "frames"), (signal.SIGINT, 130, "interrupted")])
def test_signal_stops_with_every_result_kept(tmp_path, long_clip, shipped_model, signum, exit_code, says):
    log, video = tmp_path / "r.jsonl", tmp_path / "a.mp4"
    app_process = _popen_main("--source", str(long_clip), "--no-display", "--log", str(log), "--output", str(video))
    try:
        _wait_for_lines(log, 20, app_process)
        app_process.send_signal(signum)
        _, stderr = app_process.communicate(timeout=60)
    finally:
        if app_process.poll() is None:
            app_process.kill()
    assert app_process.returncode == exit_code, stderr
    assert says in stderr and "Traceback" not in stderr, stderr
    lines = _lines(log)
    assert 20 <= len(lines) < 1500
    assert _video_frames(video) == len(lines)  # finalised: it opens, and holds every frame logged


def close_window(display: str, window: str) -> None:
    """What a window manager's close button sends: a WM_DELETE_WINDOW client message."""
    x11 = ctypes.CDLL(ctypes.util.find_library("X11"))
    x11.XOpenDisplay.restype, x11.XOpenDisplay.argtypes = ctypes.c_void_p, [ctypes.c_char_p]
    x11.XInternAtom.restype, x11.XInternAtom.argtypes = ctypes.c_ulong, [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    x11.XSendEvent.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
    x11.XFlush.argtypes = x11.XCloseDisplay.argtypes = [ctypes.c_void_p]

    class ClientMessage(ctypes.Structure):
        _fields_ = [("type", ctypes.c_int), ("serial", ctypes.c_ulong), ("send_event", ctypes.c_int),
                    ("display", ctypes.c_void_p), ("window", ctypes.c_ulong), ("message_type", ctypes.c_ulong),
                    ("format", ctypes.c_int), ("data", ctypes.c_long * 5)]

    class Event(ctypes.Union):
        _fields_ = [("message", ClientMessage), ("pad", ctypes.c_long * 24)]

    connection = x11.XOpenDisplay(display.encode())
    event = Event()
    event.message.type, event.message.window, event.message.format = 33, int(window), 32  # 33: ClientMessage
    event.message.message_type = x11.XInternAtom(connection, b"WM_PROTOCOLS", False)
    event.message.data[0] = x11.XInternAtom(connection, b"WM_DELETE_WINDOW", False)
    x11.XSendEvent(connection, int(window), False, 0, ctypes.byref(event))
    x11.XFlush(connection)
    x11.XCloseDisplay(connection)


@pytest.mark.parametrize("paused", [False, True], ids=["playing", "paused"])
def test_closing_the_window_keeps_every_result(tmp_path, long_clip, xvfb_display, shipped_model, paused):
    log, video = tmp_path / "r.jsonl", tmp_path / "a.mp4"
    app_process = _popen_main("--source", str(long_clip), "--log", str(log), "--output", str(video),
                              env={"DISPLAY": xvfb_display})
    try:
        window = wait_for_window(xvfb_display, app.WINDOW)
        _wait_for_lines(log, 10, app_process)
        if paused:  # space pauses: closing must still end the run
            xdotool(xvfb_display, "windowactivate", "--sync", window)
            xdotool(xvfb_display, "key", "--window", window, "space")
            time.sleep(1.0)
            held = log.read_text().count("\n")
            time.sleep(1.0)
            assert log.read_text().count("\n") == held, "space did not pause"
        close_window(xvfb_display, window)
        _, stderr = app_process.communicate(timeout=60)
    finally:
        if app_process.poll() is None:
            app_process.kill()
    assert app_process.returncode == 0, stderr
    lines = _lines(log)
    assert 10 <= len(lines) < 1500
    assert _video_frames(video) == len(lines)


# --- images ----------------------------------------------------------------------------


def _scene(real_faces) -> np.ndarray:
    return scene_with([real_faces[0].image], [(245, 165)])[0]


def _png_gray_alpha(path: Path, scene: np.ndarray) -> None:
    from PIL import Image

    gray = cv2.cvtColor(scene, cv2.COLOR_BGR2GRAY)
    Image.fromarray(np.dstack([gray, np.full_like(gray, 200)]), "LA").save(path)


def _truncated_jpeg(path: Path, scene: np.ndarray) -> None:
    data = cv2.imencode(".jpg", scene)[1].tobytes()
    path.write_bytes(data[: len(data) // 2])


IMAGES = [
    # (file name, writer, faces expected: a count, or None for "skipped with a message")
    ("gray.png", lambda p, s: cv2.imwrite(str(p), cv2.cvtColor(s, cv2.COLOR_BGR2GRAY)), 1),
    ("bgra.png", lambda p, s: cv2.imwrite(str(p), cv2.cvtColor(s, cv2.COLOR_BGR2BGRA)), 1),
    ("gray_alpha.png", _png_gray_alpha, 1),
    ("deep.png", lambda p, s: cv2.imwrite(str(p), s.astype(np.uint16) * 257), 1),  # 16 bits per channel
    ("float.tiff", lambda p, s: cv2.imwrite(str(p), s.astype(np.float32) / 255), 1),
    ("one_pixel.png", lambda p, s: cv2.imwrite(str(p), s[240:241, 320:321]), 0),
    ("huge.jpg", lambda p, s: cv2.imwrite(str(p), cv2.resize(s, (8000, 6000), interpolation=cv2.INTER_CUBIC)), 1),
    ("truncated.jpg", _truncated_jpeg, None),
    ("not_an_image.jpg", lambda p, s: p.write_text("these are words, not pixels"), None),
    ("empty.png", lambda p, s: p.write_bytes(b""), None),
]


@pytest.mark.parametrize("name,write,faces", IMAGES, ids=[case[0] for case in IMAGES])
def test_unusual_image_is_processed_or_skipped(tmp_path, real_faces, pipeline, name, write, faces):
    folder = tmp_path / "images"
    folder.mkdir()
    write(folder / name, _scene(real_faces))
    source = open_source(str(folder))
    results = [pipeline(frame) for frame in source]
    if faces is None:
        assert results == [] and source.skipped == [name]
        return
    (result,) = results
    assert result.image.dtype == np.uint8 and result.image.ndim == 3 and result.image.shape[2] == 3
    assert len(result.faces) == faces and _valid_boxes(result.faces.boxes, result.image)
    assert _valid_probs(result.faces.probs, len(result.labels))
    assert Overlay().draw(result).shape == result.image.shape


def test_folder_of_unusual_images_runs_to_the_end(tmp_path, real_faces, shipped_model):
    """All of them in one folder, through the app, with every output: kept ones logged, the rest named."""
    folder = tmp_path / "images"
    folder.mkdir()
    for name, write, _ in IMAGES:
        write(folder / name, _scene(real_faces))
    log, video = tmp_path / "r.jsonl", tmp_path / "a.mp4"
    done = run_main("--source", str(folder), "--no-display", "--log", str(log), "--output", str(video))
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    kept = sorted(name for name, _, faces in IMAGES if faces is not None)
    assert [line["source"] for line in _lines(log)] == kept
    for name, _, faces in IMAGES:
        assert (faces is None) == (f"skipped {name}" in done.stderr), done.stderr
    assert f"{len(IMAGES) - len(kept)} unreadable" in done.stderr
    assert _video_frames(video) == len(kept)


@pytest.mark.parametrize("first", [(1, 1), (9000, 120), (8192, 600)], ids=["1x1", "9000 wide", "8192 wide"])
def test_annotated_video_takes_any_first_frame_size(tmp_path, first):
    """The video's size comes from the first frame; one a codec refuses is scaled, not fatal."""
    path = tmp_path / "a.mp4"
    with VideoSink(path, 15.0) as sink:
        for i, image in enumerate([np.full((first[1], first[0], 3), 90, np.uint8), background()]):
            sink.write(FrameResult(index=i, time=i / 15, source="images", image=image))
    assert _video_frames(path) == 2


# --- faces -----------------------------------------------------------------------------


def _check_frame(result: FrameResult, placed: list | None = None) -> None:
    """Boxes inside the frame, a probability row per face, and (given the placed boxes) no box off a face."""
    assert _valid_boxes(result.faces.boxes, result.image)
    assert len(result.faces.probs) == len(result.faces) and _valid_probs(result.faces.probs, len(result.labels))
    for x, y, w, h in result.faces.boxes.tolist() if placed is not None else ():
        cx, cy = x + w / 2, y + h / 2
        assert any(px <= cx <= px + pw and py <= cy <= py + ph for px, py, pw, ph in placed), f"{[x, y, w, h]} is on no face"


def test_frame_without_faces(pipeline):
    result = pipeline(FrameResult(index=0, time=0.0, source="wall", image=background()))
    assert len(result.faces) == 0
    json.dumps(result.to_json())


def test_twenty_faces_in_one_frame(real_faces, pipeline):
    scene = background((1280, 960))
    placed = [place(scene, face.image, 28 + 256 * (i % 5), 20 + 240 * (i // 5), side=200) for i, face in enumerate(real_faces[:20])]
    result = pipeline(FrameResult(index=0, time=0.0, source="crowd", image=scene))
    assert len(result.faces) >= 18, f"found {len(result.faces)} of 20"
    _check_frame(result, placed)
    assert len(result.to_json()["faces"]) == len(result.faces)


def test_faces_partly_outside_the_frame(real_faces, pipeline, classifier):
    """Faces sliding off the right and bottom edges: every box, detected or tracked, stays in the frame."""
    for step in range(20):
        scene = background()
        placed = [place(scene, real_faces[0].image, 400 + 12 * step, 40), place(scene, real_faces[1].image, 60, 240 + 9 * step)]
        _check_frame(pipeline(FrameResult(index=step, time=step / 15, source="edge", image=scene)), placed)
    true_boxes = np.array([[-50, 100, 150, 150], [560, 400, 150, 150], [700, 10, 50, 50]])  # last one wholly outside
    boxes = clamp_boxes(true_boxes, 640, 480)
    assert boxes.tolist() == [[0, 100, 100, 150], [560, 400, 80, 80]]
    probs = classifier.classify(scene, boxes)
    assert _valid_probs(probs, len(classifier.labels)) and len(probs) == 2


@pytest.mark.parametrize("config", [HaarConfig(), HaarConfig(min_face=0.0, detect_width=0)], ids=["default", "no minimum"])
def test_tiny_faces(real_faces, shipped_model, config):
    """22-pixel faces: below the default minimum nothing is found; with no minimum, whatever
    Haar finds (faces, or wood grain at that size) is cropped and classified without trouble."""
    pipeline = create_pipeline(PipelineConfig(model=ModelConfig(str(shipped_model)), detection=DetectionConfig("haar", config)))
    scene = background()
    placed = [place(scene, face.image, 20 + 50 * (i % 12), 40 + 120 * (i // 12), side=22) for i, face in enumerate(real_faces[:21])]
    result = pipeline(FrameResult(index=0, time=0.0, source="tiny", image=scene))
    _check_frame(result, placed if config.min_face else None)
    assert config.min_face == 0 or len(result.faces) == 0


# --- outputs are checked before the model loads -------------------------------------------


@pytest.mark.parametrize("field", ["log", "output", "snapshot_dir"])
def test_output_path_is_checked_before_the_model_loads(tmp_path, monkeypatch, field):
    def too_late(config, classifier=None):
        raise AssertionError("the model was loaded before the output path was checked")

    monkeypatch.setattr(app, "create_pipeline", too_late)
    missing = tmp_path / "missing"
    value = str(missing) if field == "snapshot_dir" else str(missing / ("a.mp4" if field == "output" else "r.jsonl"))
    with pytest.raises(UserError, match="output folder does not exist"):
        app.run(AppConfig(source=str(SAMPLE_CLIP), display=field == "snapshot_dir", **{field: value}))


# --- properties of the pure helpers --------------------------------------------------------

_boxes = hnp.arrays(np.int64, st.tuples(st.integers(0, 30), st.just(4)), elements=st.integers(-5000, 5000))


@SETTINGS
@given(_boxes, st.integers(1, 4000), st.integers(1, 4000), st.integers(1, 8))
def test_clamped_boxes_lie_inside_the_frame(boxes, width, height, min_side):
    clamped = clamp_boxes(boxes, width, height, min_side)
    assert clamped.dtype == np.int32 and clamped.shape[1] == 4 and len(clamped) <= len(boxes)
    x, y, w, h = clamped.T.astype(np.int64)
    assert np.all((x >= 0) & (y >= 0) & (x + w <= width) & (y + h <= height) & (w >= min_side) & (h >= min_side))
    np.testing.assert_array_equal(clamp_boxes(clamped, width, height, min_side), clamped)  # idempotent
    inside = (boxes[:, 0] >= 0) & (boxes[:, 1] >= 0) & (boxes[:, 0] + boxes[:, 2] <= width) & (boxes[:, 1] + boxes[:, 3] <= height)
    inside &= (boxes[:, 2] >= min_side) & (boxes[:, 3] >= min_side)
    kept = {tuple(b) for b in clamped.tolist()}
    assert all(tuple(b) in kept for b in boxes[inside].tolist())  # boxes already inside pass unchanged


_crops = st.tuples(st.integers(1, 120), st.integers(1, 120), st.sampled_from([None, 1, 3, 4])).flatmap(
    lambda shape: hnp.arrays(np.uint8, shape[:2] if shape[2] is None else shape, elements=st.integers(0, 255)))


@SETTINGS
@given(_crops, st.sampled_from([(48, 48), (96, 96), (64, 32), (1, 1)]), st.sampled_from([1, 3]))
def test_crop_fits_the_model_input_within_the_crop_range(crop, size, channels):
    fitted = fit_crop(crop, size, channels)
    assert fitted.shape == (size[1], size[0], channels) and fitted.dtype == np.uint8
    pixels = crop if crop.ndim == 2 else crop[:, :, :3]
    assert pixels.min() <= fitted.min() and fitted.max() <= pixels.max()
    if channels == 3 and (crop.ndim == 2 or crop.shape[2] == 1):
        assert (fitted == fitted[:, :, :1]).all()  # gray stays gray in RGB


@SETTINGS
@given(st.lists(_crops, min_size=0, max_size=5))
def test_batch_is_model_shaped_and_scaled(classifier, crops):
    batch = classifier.preprocess(crops)
    width, height = classifier.input_size
    assert batch.shape == (len(crops), height, width, classifier.channels) and batch.dtype == np.float32
    assert batch.size == 0 or (batch.min() >= 0 and batch.max() <= classifier.input_scale)


_scores = hnp.arrays(np.float32, st.tuples(st.integers(0, 8), st.integers(1, 10)),
                     elements=st.floats(width=32))  # any float32: huge, tiny, inf and NaN too


@SETTINGS
@given(_scores)
def test_any_model_output_becomes_probabilities(scores):
    probs = to_probabilities(scores)
    assert probs.shape == scores.shape and np.isfinite(probs).all() and (probs >= 0).all()
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    finite_rows = np.isfinite(scores).all(axis=1)
    for row, prob in zip(scores[finite_rows], probs[finite_rows]):
        assert prob[np.argmax(row)] == prob.max()  # the most likely class stays the most likely


@SETTINGS
@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 8), st.integers(1, 10)), elements=st.floats(0.0, 1.0)))
def test_probabilities_pass_through(values):
    rows = values + 1e-6
    rows /= rows.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(to_probabilities(rows), rows, rtol=1e-5, atol=1e-7)


@SETTINGS
@given(st.integers(1, 20000), st.integers(1, 20000))
def test_video_size_is_one_every_codec_takes(width, height):
    low, high = VIDEO_SIDE
    out_width, out_height = video_size(width, height)
    assert low <= out_width <= high and low <= out_height <= high
    if low <= min(width, height) and max(width, height) <= high:
        assert (out_width, out_height) == (width, height)
    elif max(width, height) > high and min(width, height) * high / max(width, height) >= low:
        assert abs(out_width / out_height - width / height) <= 0.02 * width / height + 1 / out_height  # same shape
