"""A virtual X display for seeing the real window with no screen: Xvfb + xdotool + a grab."""

from __future__ import annotations

import os
import shutil
import subprocess
from contextlib import contextmanager
from typing import Iterator

import numpy as np

REQUIRED = ("Xvfb", "xdotool")


def missing_tools() -> list[str]:
    return [tool for tool in REQUIRED if not shutil.which(tool)]


@contextmanager
def virtual_display(size: str = "1024x768x24") -> Iterator[str]:
    """Start Xvfb on a free display number; yields e.g. ``":3"``."""
    read, write = os.pipe()
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", size, "-nolisten", "tcp"],
                              pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    with os.fdopen(read) as pipe:
        display = f":{pipe.readline().strip()}"
    try:
        yield display
    finally:
        server.terminate()
        server.wait(timeout=10)


def xdotool(display: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["xdotool", *args], env={**os.environ, "DISPLAY": display},
                          capture_output=True, text=True, timeout=timeout)


def wait_for_window(display: str, name: str, timeout: float = 90) -> str:
    """The id of the first visible window called ``name``."""
    found = xdotool(display, "search", "--sync", "--onlyvisible", "--name", name, timeout=timeout)
    if found.returncode != 0 or not found.stdout.split():
        raise RuntimeError(f"no window '{name}' on {display}: {found.stderr.strip()}")
    return found.stdout.split()[0]


def window_geometry(display: str, window: str) -> tuple[int, int, int, int]:
    """x, y, width, height of ``window`` on the screen."""
    out = xdotool(display, "getwindowgeometry", "--shell", window).stdout
    values = dict(line.split("=", 1) for line in out.split() if "=" in line)
    return int(values["X"]), int(values["Y"]), int(values["WIDTH"]), int(values["HEIGHT"])


def grab(display: str) -> np.ndarray:
    """The whole screen as a BGR array, as OpenCV would hold it."""
    from PIL import ImageGrab

    return np.asarray(ImageGrab.grab(xdisplay=display))[:, :, ::-1].copy()
