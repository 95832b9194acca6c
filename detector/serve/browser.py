"""A real browser on the webcam page, for its test and its benchmark: Debian's Chromium,
driven by Playwright, with a fake camera that plays frames of the sample clip.

Playwright's own browser downloads are not used: the system ``chromium`` (apt) runs.
Chromium loops a ``.y4m`` file as its fake camera (``--use-file-for-fake-video-capture``).
"""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np

from detector.paths import SAMPLE_CLIP, resource
from detector.sources import read_frames

CHROMIUM = "/usr/bin/chromium"
QUIET = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def clip_frames(start: int, count: int) -> list[np.ndarray]:
    """``count`` BGR frames (640x360) of the bundled sample clip from frame ``start``: real faces."""
    frames = read_frames(resource(SAMPLE_CLIP), start, count)[0]
    if len(frames) != count:
        raise ValueError(f"the sample clip has no frames {start}..{start + count - 1}")
    return frames


def write_y4m(path: Path, frames: Sequence[np.ndarray], fps: int = 24) -> Path:
    """BGR frames (all one even size) -> an uncompressed 4:2:0 YUV4MPEG2 file, Chromium's fake camera format."""
    height, width = frames[0].shape[:2]
    with open(path, "wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            out.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())
    return path


def chromium_args(camera: Path | None, allow_camera: bool = True) -> list[str]:
    """``camera``: a .y4m the fake camera plays; None: no camera device at all.
    ``allow_camera``: False leaves the permission prompt unanswered, so it is denied."""
    args = list(QUIET)
    if camera is not None:
        args += ["--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={camera}"]
    if allow_camera:
        args.append("--use-fake-ui-for-media-stream")
    return args


@contextmanager
def browser_page(url: str, camera: Path | None, allow_camera: bool = True, executable: str = CHROMIUM,
                 size: tuple[int, int] = (760, 560)) -> Iterator:
    """A Playwright ``Page`` at ``url`` in a headless Chromium with a fresh profile."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=executable, headless=True, args=chromium_args(camera, allow_camera),
            viewport={"width": size[0], "height": size[1]})
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.goto(url)
            yield page
        finally:
            context.close()
