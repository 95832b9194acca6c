"""The webcam page in a real browser: Debian's headless Chromium (driven by Playwright)
with a fake camera playing real faces from the sample clip, against a real
``main.py serve`` process. It reads the page's own state (``window.page``) and the
pixels of a screenshot; and it checks the messages for a denied camera, no camera, and
a server that goes away and comes back.

Needs ``/usr/bin/chromium`` (apt-get install chromium); skipped without it, except on CI.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from detector.serve.browser import CHROMIUM, browser_page, clip_frames, write_y4m
from detector.serve.bench import Server
from tests.test_serve import stop

CAMERA_FRAMES = range(150, 198)  # two seconds of the clip in which the woman faces the camera
BOX_RGB = (0x44, 0xCC, 0xFF)  # the page's colour for face id 1 (COLORS[1] in index.html)
STARTED = "window.page && !['starting', 'camera'].includes(window.page.status)"


@pytest.fixture(scope="module")
def chromium() -> str:
    if Path(CHROMIUM).is_file():
        return CHROMIUM
    reason = f"needs {CHROMIUM} (Debian: apt-get install chromium)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def camera(tmp_path_factory) -> Path:
    """The sample clip's frames as Chromium's fake camera (640x360, looped)."""
    frames = clip_frames(CAMERA_FRAMES.start, len(CAMERA_FRAMES))
    return write_y4m(tmp_path_factory.mktemp("camera") / "sample.y4m", frames)


@pytest.fixture(scope="module")
def server():
    running = Server()
    yield running.url
    stop(running)


def test_page_draws_faces_with_labels(chromium, camera, server, tmp_path):
    labels = set(__import__("httpx").get(server + "/model", timeout=10).json()["labels"])
    with browser_page(server + "/", camera, executable=chromium) as page:
        page.wait_for_function("window.page.frames >= 15 && window.page.faces.length > 0", timeout=60_000)
        state = page.evaluate("window.page")
        face = state["faces"][0]
        x, y, w, h = face["box"]
        border = page.evaluate(f"Array.from(document.getElementById('overlay').getContext('2d')"
                               f".getImageData({x}, {y + h // 2}, 3, 1).data)")
        stats = page.inner_text("#stats")
        shot = tmp_path / "page.png"
        page.screenshot(path=str(shot))
    assert state["status"] == "running" and state["connected"] and state["message"] == ""
    assert state["video"] == [640, 360]
    assert len(state["faces"]) == 1 and face["label"] in labels and face["label"] == max(face["probs"], key=face["probs"].get)
    assert 250 < x + w / 2 < 450 and 40 < y + h / 2 < 300, "the box is on the woman's face"
    assert state["maxInFlight"] == 1, "one frame in flight at a time"
    assert state["fps"] > 0 and 0 < state["latencyMs"] < 5000 and "fps" in stats and "ms round trip" in stats
    assert border[3] == 255 and tuple(border[:3]) == BOX_RGB, "the box is drawn on the overlay canvas"
    screen = cv2.cvtColor(cv2.imread(str(shot)), cv2.COLOR_BGR2RGB)
    box_pixels = np.all(np.abs(screen.astype(int) - BOX_RGB) <= 8, axis=2).sum()
    assert box_pixels > 2 * (w + h), "the screenshot shows the box and the label behind it"
    if os.environ.get("PAGE_SCREENSHOT"):  # keep it to look at
        shutil.copy(shot, os.environ["PAGE_SCREENSHOT"])


@pytest.mark.parametrize("camera_given,allowed,status,words", [
    (True, False, "denied", "Camera permission was denied"),
    (False, True, "no-camera", "No camera found"),
], ids=["permission denied", "no camera"])
def test_page_explains_a_missing_camera(chromium, camera, server, camera_given, allowed, status, words):
    with browser_page(server + "/", camera if camera_given else None, allow_camera=allowed, executable=chromium) as page:
        page.wait_for_function(STARTED, timeout=30_000)
        state = page.evaluate("window.page")
        shown = page.inner_text("#message")
    assert state["status"] == status and words in shown and state["frames"] == 0


def test_page_reconnects_when_the_server_comes_back(chromium, camera):
    running = Server()
    with browser_page(running.url + "/", camera, executable=chromium) as page:
        page.wait_for_function("window.page.frames >= 3", timeout=60_000)
        stop(running)
        page.wait_for_function("window.page.status === 'reconnecting'", timeout=30_000)
        assert "server went away" in page.inner_text("#message")
        frames = page.evaluate("window.page.frames")
        running = Server(port=running.port)
        try:
            page.wait_for_function(f"window.page.connected && window.page.frames >= {frames + 3}", timeout=60_000)
            assert page.evaluate("window.page.status") == "running" and page.inner_text("#message") == ""
        finally:
            stop(running)


def test_api_docs_render_offline(chromium, server):
    """/docs is Swagger UI with its scripts served by the server itself: no CDN, so it works offline."""
    requested = []
    with browser_page("about:blank", None, executable=chromium) as page:
        page.on("request", lambda request: requested.append(request.url))
        page.goto(server + "/docs")
        page.wait_for_selector(".swagger-ui .info .title", timeout=60_000)
        title = page.inner_text(".swagger-ui .info .title")
        operations = page.locator(".opblock-summary-path").all_inner_texts()
    assert title.startswith("Emotion detector")
    assert {"/predict", "/face", "/healthz", "/model"} <= {path.strip() for path in operations}
    assert requested and all(url.startswith(server) for url in requested), [u for u in requested if not u.startswith(server)]
