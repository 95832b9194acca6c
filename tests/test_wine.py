"""main.exe built and run under Wine (tools/wine_bundle.sh), and the Windows-only code paths Wine can show.

The cheap checks run always: the Windows lock file pins what requirements.txt pins, and the
comparison the script ends with tells a matching CRLF log from one that differs. The rest is
opt-in, ``pytest -m wine tests/test_wine.py``: it runs the whole script (both bundles; Debian,
root for apt-get, PyPI reachable on the first run; 20 to 40 min on a loaded 2-core machine, about
half that with the cache warm, see docs/BUNDLE.md) and then, on the lean main.exe it built:

- a double-clicked start (no arguments, no terminal of its own) that hits a user error writes
  ``main.log`` next to main.exe and shows the message box (titled "Emotion detector", found on a
  virtual X display with xdotool and closed with Enter), exit 2;
- main.exe carries the bootloader option that hides its console on a double-click.

Wine cannot show the console window being hidden, a real double-click in Explorer, or a camera.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT, run_main
from tools.scenes import SAMPLE_CLIP
from tools.wine_bundle import compare, largest, main as wine_bundle_main, read_lines, verdict

CACHE = Path(os.environ.get("WINE_BUNDLE_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "wine_bundle")
LEAN_EXE = CACHE / "work" / "lean" / "dist" / "main" / "main.exe"
REPORT = Path(os.environ.get("WINE_BUNDLE_JSON") or CACHE / "wine_bundle.test.json")  # docs/wine_bundle.json to refresh the docs


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        found = re.match(r"([A-Za-z0-9_.-]+)(?:\[[^]]*\])?==([^\s;\\]+)", line)
        if found:
            pins[re.sub(r"[-_.]+", "-", found[1]).lower()] = found[2]
    return pins


def test_windows_lock_file_pins_what_requirements_txt_pins():
    app, windows = _pins(REPO_ROOT / "requirements.txt"), _pins(REPO_ROOT / "tools" / "wine" / "requirements-win.txt")
    assert app, "no pins read from requirements.txt"
    assert {name: version for name, version in app.items() if windows.get(name) != version} == {}, \
        "tools/wine/requirements-win.txt is stale: regenerate it with the uv command at its top"
    assert all("--hash=sha256:" in block for block in (REPO_ROOT / "tools/wine/requirements-win.txt").read_text().split("==")[1:])


@pytest.fixture(scope="module")
def source_log(tmp_path_factory) -> Path:
    log = tmp_path_factory.mktemp("source") / "r.jsonl"
    done = run_main("--source", str(SAMPLE_CLIP), "--no-display", "--max-frames", "40", "--log", str(log))
    assert done.returncode == 0, done.stderr[-2000:]
    return log


@pytest.mark.parametrize("change,verdict_start,words", [
    (lambda lines: lines, "MATCH", "40 of 40 frames identical"),
    (lambda lines: [{**line, "faces": [{**face, "label": "happy" if face["label"] != "happy" else "sad"} for face in line["faces"]]}
                    if line["frame"] == 7 else line for line in lines], "DIFFERS", "frame 7: faces"),
    (lambda lines: lines[:-1], "DIFFERS", "39 frames from main.exe, 40 from the source"),
    (lambda lines: [{**line, "faces": [{**face, "probs": {k: v + 0.01 for k, v in face["probs"].items()}} for face in line["faces"]]}
                    if line["frame"] == 3 else line for line in lines], "DIFFERS", "frame 3: probs by 0.0100"),
], ids=["same log, CRLF", "a label changed", "a frame missing", "probabilities off by 0.01"])
def test_compare_reads_crlf_logs_and_names_what_differs(source_log, tmp_path, change, verdict_start, words):
    source = read_lines(source_log)
    assert sum(1 for line in source if line["faces"]) >= 30  # the clip's face is found: the comparison has faces to compare
    frozen = tmp_path / "frozen.jsonl"
    frozen.write_bytes("".join(json.dumps(line) + "\r\n" for line in change(source)).encode())  # as Windows writes it
    said = verdict(compare(source, read_lines(frozen)), "lean clip")
    assert said.startswith(verdict_start) and words in said, said


def test_record_keeps_the_sizes_built_from_the_build_spec_before(tmp_path):
    """A size cut is measured: a build from another build.spec keeps the previous sizes beside the new ones."""
    report = tmp_path / "wine_bundle.json"
    runs = [("aaa", 300_000_000), ("aaa", 290_000_000), ("bbb", 200_000_000)]  # a rebuild of the same spec, then a changed spec
    for spec, size in runs:
        assert wine_bundle_main(["record", str(report), "lean", f'build_spec="{spec}"', f"dist_bytes={size}",
                                 "zip_bytes=1", 'largest_in_internal={"cv2": 100}']) == 0
        if spec == "aaa":
            assert "before_spec_change" not in json.loads(report.read_text())["variants"]["lean"]
    row = json.loads(report.read_text())["variants"]["lean"]
    assert row["dist_bytes"] == 200_000_000
    assert row["before_spec_change"] == {"build_spec": "aaa", "dist_bytes": 290_000_000, "zip_bytes": 1}
    assert "(sha256 aaa): 290,000,000 bytes, -90.0 MB" in largest(json.loads(report.read_text()))


wine = pytest.mark.wine


@pytest.fixture(scope="module")
def wine_run(request) -> subprocess.CompletedProcess:
    """tools/wine_bundle.sh, both bundles, once per test run (opt-in: ``-m wine``)."""
    if "wine" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("opt-in: pytest -m wine (builds both main.exe under Wine, 20 to 40 min)")
    env = {"WINE_BUNDLE_JSON": str(REPORT), **os.environ, "PYTHON": sys.executable}
    return subprocess.run(["bash", str(REPO_ROOT / "tools" / "wine_bundle.sh")], capture_output=True, text=True,
                          env=env, timeout=4 * 3600)


@wine
def test_wine_bundle_script_ends_with_match_for_both_bundles(wine_run):
    last = wine_run.stdout.strip().splitlines()[-1] if wine_run.stdout.strip() else wine_run.stderr[-2000:]
    assert wine_run.returncode == 0 and last.startswith("MATCH"), last
    report = json.loads(REPORT.read_text(encoding="utf-8"))
    for variant in ("lean", "default"):
        row = report["variants"][variant]
        assert row["clip"]["match"] and row["still"]["match"] and row["missing_source_exit"] == 2, variant


@wine
def test_main_exe_hides_its_console_on_a_double_click(wine_run):
    """The bootloader option build.spec sets (hide_console="hide-early"): what Wine cannot show, the exe must carry."""
    from PyInstaller.archive.readers import CArchiveReader

    assert LEAN_EXE.is_file(), wine_run.stderr[-2000:]
    assert "pyi-hide-console hide-early" in CArchiveReader(str(LEAN_EXE)).options


@wine
def test_double_clicked_user_error_goes_to_main_log_and_a_message_box(wine_run, tmp_path):
    """No arguments and no terminal: a broken model next to main.exe is reported in main.log beside it and in a dialog."""
    from tools.xwindow import missing_tools, virtual_display, wait_for_window, xdotool

    if missing_tools():
        pytest.fail(f"needs {', '.join(missing_tools())} (Debian: apt-get install xvfb xdotool)")
    app = tmp_path / "main"
    shutil.copytree(LEAN_EXE.parent, app, copy_function=os.link)  # hard links: no second copy on disk
    (app / "saved_model_trt").mkdir()
    (app / "saved_model_trt" / "model.onnx").write_bytes(b"not an ONNX graph")
    with virtual_display() as display:
        env = {**os.environ, "DISPLAY": display, "WINEPREFIX": str(CACHE / "prefix"), "WINEDEBUG": "-all",
               "WINEDLLOVERRIDES": "mscoree,mshtml=;ucrtbase=n"}
        started = subprocess.Popen(["wine", str(app / "main.exe")], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, env=env, cwd=tmp_path)
        try:
            box = wait_for_window(display, "Emotion detector", timeout=300)
            xdotool(display, "key", "--window", box, "Return")
            _, stderr = started.communicate(timeout=120)
        finally:
            started.kill()
    assert started.returncode == 2, stderr[-2000:]
    logged = (app / "main.log").read_text(encoding="utf-8")
    assert "error:" in logged and "model" in logged, logged
