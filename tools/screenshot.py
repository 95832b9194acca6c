"""Screenshot of the real app window on the sample clip, under Xvfb: the README's picture.

    python tools/screenshot.py docs/screenshot.png
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tools.xwindow import grab, missing_tools, virtual_display, wait_for_window, window_geometry  # noqa: E402

WINDOW = "Emotion detector"


def main(out: Path, seconds: float = 14.0) -> None:
    if missing_tools():
        sys.exit(f"needs {', '.join(missing_tools())} (Debian: apt-get install xvfb xdotool)")
    with virtual_display() as display:
        app = subprocess.Popen([sys.executable, str(REPO / "main.py"), "--source", str(REPO / "samples" / "sample_face.mp4")],
                               env={**os.environ, "DISPLAY": display, "TF_CPP_MIN_LOG_LEVEL": "3"})
        try:
            window = wait_for_window(display, WINDOW)
            time.sleep(seconds)  # the clip turns from tears to laughter after about 12 s
            x, y, w, h = window_geometry(display, window)
            cv2.imwrite(str(out), grab(display)[y : y + h, x : x + w])
        finally:
            app.terminate()
            app.wait(timeout=30)
    print(f"written: {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshot.png"), float(sys.argv[2]) if len(sys.argv) > 2 else 14.0)
