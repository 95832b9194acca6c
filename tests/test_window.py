"""The real window, under Xvfb: it opens, shows the overlay, and obeys its keys."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np

from conftest import REPO_ROOT
from detector.overlay import EMOTION_COLORS
from tools.scenes import SAMPLE_CLIP
from tools.xwindow import grab, wait_for_window, window_geometry, xdotool

WINDOW = "Emotion detector"


def test_window_shows_overlay_and_obeys_keys(tmp_path, xvfb_display, shipped_model):
    env = {**os.environ, "DISPLAY": xvfb_display, "TF_CPP_MIN_LOG_LEVEL": "3"}
    log = tmp_path / "r.jsonl"
    app = subprocess.Popen([sys.executable, str(REPO_ROOT / "main.py"), "--source", str(SAMPLE_CLIP),
                            "--log", str(log), "--snapshot-dir", str(tmp_path)],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        window = wait_for_window(xvfb_display, WINDOW)
        time.sleep(3)  # let a few frames play
        screen = grab(xvfb_display)
        colors = np.array(list(EMOTION_COLORS.values()), np.uint8)
        overlay_pixels = (screen[:, :, None, :] == colors[None, None]).all(-1).any(-1).sum()
        assert overlay_pixels > 500, "no box or class bars on screen"
        assert screen.std() > 20, "the window shows a blank image"

        xdotool(xvfb_display, "windowactivate", "--sync", window)
        xdotool(xvfb_display, "key", "--window", window, "s")
        deadline = time.time() + 20
        while not list(tmp_path.glob("snapshot_*.png")) and time.time() < deadline:
            time.sleep(0.2)
        assert list(tmp_path.glob("snapshot_*.png")), "s did not save a snapshot"

        xdotool(xvfb_display, "key", "--window", window, "d")  # the next detector: BlazeFace, with keypoints
        deadline = time.time() + 20
        while '"keypoints"' not in log.read_text() and time.time() < deadline:
            time.sleep(0.2)
        assert '"keypoints"' in log.read_text(), "d did not switch to BlazeFace"

        xdotool(xvfb_display, "key", "--window", window, "space")  # pause: the window says so
        time.sleep(1.5)
        x, y, w, h = window_geometry(xvfb_display, window)
        paused = grab(xvfb_display)[y : y + h, x : x + w]
        banner = np.all(paused[h // 2 - 25 : h // 2 + 25] == 255, axis=2).sum()
        assert banner > 2000, "no PAUSED banner while paused"
        held = log.read_text().count("\n")
        time.sleep(1.0)
        assert log.read_text().count("\n") == held, "space did not pause"
        xdotool(xvfb_display, "key", "--window", window, "space")  # resume
        xdotool(xvfb_display, "key", "--window", window, "q")
        assert app.wait(timeout=30) == 0
        assert "face detector: blazeface" in app.stderr.read()
    finally:
        if app.poll() is None:
            app.kill()
    lines = log.read_text().splitlines()
    assert 0 < len(lines) < 472  # quit before the 19.7 s clip ended, and what was seen is kept
    ids = {face["id"] for line in lines for face in json.loads(line)["faces"]}
    assert len(ids) <= 2  # the one face kept its id across the switch (at most one new id, if it slipped)
