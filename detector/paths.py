"""Where bundled resources live, from source and from a PyInstaller bundle alike."""

from __future__ import annotations

import os
import sys
from pathlib import Path

DEFAULT_MODEL_DIR = "saved_model_trt"
DEFAULT_CASCADE = "haarcascade_frontalface_default.xml"
#: MediaPipe's BlazeFace models as ONNX, with their licence and framing (tools/blazeface_convert.py, tools/face_framing.py).
BLAZEFACE_DIR = "models/blazeface"
SAMPLE_CLIP = "samples/sample_face.mp4"
#: Where ``train`` and ``evaluate`` read FER2013 unless told: ``$FER2013_DIR``, else this project's shared layout.
DEFAULT_DATA_DIR = os.environ.get("FER2013_DIR") or "../shared/fer2013"


def app_dir() -> Path:
    """The folder a user sees: next to ``main.exe`` when frozen, the repo root from source.

    A ``saved_model_trt/`` placed here replaces the bundled one.
    """
    if getattr(sys, "frozen", False):
        return Path(sys.executable).resolve().parent
    return Path(__file__).resolve().parent.parent


def bundle_dir() -> Path:
    """Where PyInstaller unpacked the bundled data (``sys._MEIPASS``); the repo root from source."""
    return Path(getattr(sys, "_MEIPASS", app_dir()))


def resource(name: str) -> Path:
    """``name`` next to the app if the user put one there, else the bundled copy."""
    local = app_dir() / name
    return local if local.exists() else bundle_dir() / name
