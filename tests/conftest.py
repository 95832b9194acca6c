"""Shared fixtures. FER2013 is read from outside the repository (it must not be
redistributed in it): ``$FER2013_DIR``, else ``../shared/fer2013`` beside the repo."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # tests import tools/ and detector/ from the checkout


def require_shared(path: Path, reason: str) -> Path:
    """``path`` when it exists; else the test skips with ``reason``, except on CI (``CI=true``) where it fails."""
    if path.exists():
        return path
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def fer2013_dir() -> Path:
    """The FER2013 data set; skipped when absent, except on CI (``CI=true``) where it must exist."""
    from detector.paths import DEFAULT_DATA_DIR  # $FER2013_DIR, else ../shared/fer2013 (from the repo root)

    path = Path(DEFAULT_DATA_DIR) if Path(DEFAULT_DATA_DIR).is_absolute() else REPO_ROOT / DEFAULT_DATA_DIR
    return require_shared(path, f"FER2013 not found at {path} (set FER2013_DIR to a folder tree, fer2013.csv or packed .npz)")


SHIPPED_MODEL = REPO_ROOT / "saved_model_trt"


def run_main(*args: str, timeout: float = 600, env: dict | None = None, **kwargs):
    """``python main.py ARGS`` as a user runs it; returns the CompletedProcess."""
    import subprocess
    import sys

    full_env = {key: value for key, value in os.environ.items() if key not in ("DISPLAY", "WAYLAND_DISPLAY")}
    full_env.update({"TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})})
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "main.py"), *args],
        capture_output=True, text=True, timeout=timeout, env=full_env, cwd=kwargs.get("cwd", REPO_ROOT),
    )


@pytest.fixture(scope="session")
def shipped_model() -> Path:
    if not (SHIPPED_MODEL / "saved_model.pb").is_file():
        pytest.fail(f"the shipped model is missing: {SHIPPED_MODEL}")
    return SHIPPED_MODEL


@pytest.fixture(scope="module")
def xvfb_display():
    """A virtual X display for the real window; skipped without Xvfb, except on CI."""
    import ctypes.util

    from tools.xwindow import missing_tools, virtual_display

    if missing_tools() or not ctypes.util.find_library("X11"):
        reason = f"needs {', '.join(missing_tools()) or 'libX11'} (Debian: apt-get install xvfb xdotool)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    with virtual_display() as display:
        yield display
