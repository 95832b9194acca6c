"""Telling a user who double-clicked the app what went wrong: a log file next to the
executable and a message box, since their console is hidden (``build.spec``)."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from detector.paths import app_dir

TITLE = "Emotion detector"
LOG_NAME = "main.log"


def double_clicked(argv: list[str]) -> bool:
    """The frozen app started with no arguments and no terminal of its own."""
    if not getattr(sys, "frozen", False) or argv:
        return False
    if sys.platform == "win32":
        import ctypes

        # Only our own process on the console: Explorer made it for us, nobody is reading it.
        return ctypes.windll.kernel32.GetConsoleProcessList((ctypes.c_uint * 4)(), 4) <= 1
    return not (sys.stderr is not None and sys.stderr.isatty())


def log_path() -> Path:
    """``main.log`` next to the executable, or in the temp folder where that is read-only."""
    path = app_dir() / LOG_NAME
    try:
        with path.open("a", encoding="utf-8"):
            return path
    except OSError:
        return Path(tempfile.gettempdir()) / "emotion_detector.log"


def attach_log_file() -> None:
    handler = logging.FileHandler(log_path(), encoding="utf-8")
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)


def report_to_user(message: str, details: str = "") -> None:
    """Append to the log file, then show ``message`` in a dialog the user cannot miss."""
    path = log_path()
    with path.open("a", encoding="utf-8") as log:
        log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n{details}\n" if details else
                  f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")
    _show_dialog(f"{message}\n\nDetails are in {path}")


def _show_dialog(text: str) -> None:
    if sys.platform == "win32":
        import ctypes

        ctypes.windll.user32.MessageBoxW(None, text, TITLE, 0x10 | 0x40000)  # error icon, topmost
        return
    if sys.platform == "darwin":
        quoted = text.replace("\\", "\\\\").replace('"', '\\"')
        subprocess.run(["osascript", "-e", f'display alert "{TITLE}" message "{quoted}" as critical'], check=False)
        return
    for tool, args in (("zenity", ["--error", "--title", TITLE, "--text", text]), ("kdialog", ["--title", TITLE, "--error", text])):
        if shutil.which(tool):
            subprocess.run([tool, *args], check=False)
            return
