"""The real window, under Xvfb: it opens, shows the overlay, and obeys its keys."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO_ROOT
from detector.overlay import EMOTION_COLORS
from scenes import SAMPLE_CLIP

WINDOW = "Emotion detector"


@pytest.fixture(scope="module")
def xvfb_display():
    if not (shutil.which("Xvfb") and shutil.which("xdotool")):
        reason = "needs Xvfb and xdotool (Debian: apt-get install xvfb xdotool)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    read, write = os.pipe()
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
                              pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    with os.fdopen(read) as pipe:
        display = f":{pipe.readline().strip()}"
    yield display
    server.terminate()
    server.wait(timeout=10)


def _xdotool(display, *args, timeout=60):
    return subprocess.run(["xdotool", *args], env={**os.environ, "DISPLAY": display},
                          capture_output=True, text=True, timeout=timeout)


def _grab(display) -> np.ndarray:
    from PIL import ImageGrab

    return np.asarray(ImageGrab.grab(xdisplay=display))[:, :, ::-1]  # BGR, like OpenCV


def test_window_shows_overlay_and_obeys_keys(tmp_path, xvfb_display, shipped_model):
    env = {**os.environ, "DISPLAY": xvfb_display, "TF_CPP_MIN_LOG_LEVEL": "3"}
    log = tmp_path / "r.jsonl"
    app = subprocess.Popen([sys.executable, str(REPO_ROOT / "main.py"), "--source", str(SAMPLE_CLIP),
                            "--log", str(log), "--snapshot-dir", str(tmp_path)],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        found = _xdotool(xvfb_display, "search", "--sync", "--onlyvisible", "--name", WINDOW, timeout=90)
        assert found.returncode == 0, found.stderr
        window = found.stdout.split()[0]
        time.sleep(3)  # let a few frames play
        screen = _grab(xvfb_display)
        colors = np.array(list(EMOTION_COLORS.values()), np.uint8)
        overlay_pixels = (screen[:, :, None, :] == colors[None, None]).all(-1).any(-1).sum()
        assert overlay_pixels > 500, "no box or class bars on screen"
        assert screen.std() > 20, "the window shows a blank image"

        _xdotool(xvfb_display, "windowactivate", "--sync", window)
        _xdotool(xvfb_display, "key", "--window", window, "s")
        deadline = time.time() + 20
        while not list(tmp_path.glob("snapshot_*.png")) and time.time() < deadline:
            time.sleep(0.2)
        assert list(tmp_path.glob("snapshot_*.png")), "s did not save a snapshot"
        _xdotool(xvfb_display, "key", "--window", window, "q")
        assert app.wait(timeout=30) == 0
    finally:
        if app.poll() is None:
            app.kill()
    lines = log.read_text().splitlines()
    assert 0 < len(lines) < 472  # quit before the 19.7 s clip ended, and what was seen is kept
