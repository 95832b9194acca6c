"""``main.py batch`` on real videos: short cuts of the sample clip (a real face), a mosaic of
real FER2013 faces, and broken files among them. The local engine and a real local Ray."""

from __future__ import annotations

import collections
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

from conftest import REPO_ROOT, run_main
from detector.batch.inputs import collect_inputs, result_names
from detector.cli import main
from detector.errors import UserError
from tools.scenes import SAMPLE_CLIP, detectable_faces, scene_with, write_video

CUT_FRAMES = 60  # 2.5 s of the 24 fps sample clip per cut
CUTS = {"a/sample_face.mp4": 0, "b/sample_face.mp4": 200, "b/deeper/later.mp4": 380}  # file -> first frame
NOT_A_VIDEO = "notes.mp4"
TRUNCATED = "b/truncated.mp4"


def _cut(source: Path, first: int, count: int, path: Path) -> Path:
    capture = cv2.VideoCapture(str(source))
    capture.set(cv2.CAP_PROP_POS_FRAMES, first)
    frames = [capture.read()[1] for _ in range(count)]
    capture.release()
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_video(path, frames, fps=24.0)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A folder tree: three cuts of the sample clip (two share a file name), a file that is
    not a video, and a cut whose second half is missing (mp4v keeps its index at the end)."""
    root = tmp_path_factory.mktemp("corpus")
    for name, first in CUTS.items():
        _cut(SAMPLE_CLIP, first, CUT_FRAMES, root / name)
    (root / NOT_A_VIDEO).write_text("these are meeting notes, not a video\n")
    whole = (root / "a/sample_face.mp4").read_bytes()
    (root / TRUNCATED).write_bytes(whole[: len(whole) // 2])
    return root


def _batch(corpus: Path, out: Path, *flags: str) -> int:
    return main(["batch", str(corpus), "--out", str(out), "--workers", "2", *flags])


@pytest.fixture(scope="module")
def local_run(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "out"
    return _batch(corpus, out), out


def _csv(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def _video(corpus: Path, name: str) -> str:
    return str(corpus / name)


def test_each_video_gets_the_apps_report_and_json_lines(corpus, local_run):
    code, out = local_run
    assert code == 1  # two broken inputs
    names = result_names(collect_inputs([str(corpus)]))
    assert len({names[_video(corpus, n)] for n in CUTS}) == len(CUTS)  # sample_face.mp4 twice: two folders
    for name in CUTS:
        folder = out / names[_video(corpus, name)]
        lines = (folder / "results.jsonl").read_text().splitlines()
        assert len(lines) == CUT_FRAMES
        assert {p.name for p in folder.iterdir()} == {"results.jsonl", "frames.csv", "summary.json", "timeline.png", "complete.json"}
        assert (folder / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with_face = sum(bool(json.loads(line)["faces"]) for line in lines)
        assert with_face >= 0.8 * CUT_FRAMES, f"{name}: the real face was found in only {with_face} frames"


def test_results_match_the_app_run_on_the_same_file(corpus, local_run, tmp_path):
    """Per input, the batch writes what ``main.py --source X --no-display --report DIR`` writes."""
    _, out = local_run
    video = _video(corpus, "b/deeper/later.mp4")
    app = run_main("--source", video, "--no-display", "--report", str(tmp_path), "--log", str(tmp_path / "r.jsonl"))
    assert app.returncode == 0, app.stderr
    folder = out / result_names(collect_inputs([str(corpus)]))[video]
    assert (folder / "frames.csv").read_text() == (tmp_path / "frames.csv").read_text()
    assert (folder / "results.jsonl").read_text() == (tmp_path / "r.jsonl").read_text()


def test_summary_csv_has_a_row_per_face_counted_from_frames_csv(corpus, local_run):
    _, out = local_run
    rows = _csv(out / "summary.csv")
    names = result_names(collect_inputs([str(corpus)]))
    assert {row["video"] for row in rows} == {_video(corpus, n) for n in CUTS}
    for row in rows:
        frames = [r for r in _csv(out / names[row["video"]] / "frames.csv") if r["id"] == row["face_id"]]
        labels = collections.Counter(r["label"] for r in frames)
        assert int(row["frames"]) == len(frames)
        assert float(row["seconds"]) == pytest.approx(len(frames) / 24.0, abs=1e-3)
        assert labels[row["dominant"]] == max(labels.values())  # a tie may go either way
        assert float(row[f"share_{row['dominant']}"]) == pytest.approx(labels[row["dominant"]] / len(frames), abs=1e-4)
        assert sum(float(v) for k, v in row.items() if k.startswith("share_")) == pytest.approx(1.0, abs=1e-3)
        assert sum(float(v) for k, v in row.items() if k.startswith("mean_")) == pytest.approx(1.0, abs=2e-3)


def test_broken_inputs_are_listed_in_failures_and_leave_no_results(corpus, local_run):
    _, out = local_run
    failures = {row["input"]: row["error"] for row in _csv(out / "failures.csv")}
    assert set(failures) == {_video(corpus, NOT_A_VIDEO), _video(corpus, TRUNCATED)}
    assert all("not a video, or damaged or truncated" in error for error in failures.values())
    for name in (NOT_A_VIDEO, TRUNCATED):
        assert not (out / Path(name).stem / "complete.json").exists()
        assert not (out / Path(name).stem / "frames.csv").exists()


def test_a_rerun_skips_complete_inputs_and_redoes_a_deleted_one(corpus, local_run, capsys):
    _, out = local_run
    summary, failures = (out / "summary.csv").read_text(), (out / "failures.csv").read_text()
    names = result_names(collect_inputs([str(corpus)]))
    markers = {n: (out / names[_video(corpus, n)] / "complete.json").stat().st_mtime_ns for n in CUTS}
    capsys.readouterr()
    assert _batch(corpus, out) == 1
    assert "0 analysed now, 3 already complete, 2 failed" in capsys.readouterr().err
    assert {n: (out / names[_video(corpus, n)] / "complete.json").stat().st_mtime_ns for n in CUTS} == markers
    redone = out / names[_video(corpus, "b/sample_face.mp4")]
    (redone / "complete.json").unlink()
    assert _batch(corpus, out) == 1
    assert "1 analysed now, 2 already complete" in capsys.readouterr().err
    assert (redone / "complete.json").is_file()
    for name in ("a/sample_face.mp4", "b/deeper/later.mp4"):
        assert (out / names[_video(corpus, name)] / "complete.json").stat().st_mtime_ns == markers[name]
    assert (out / "summary.csv").read_text() == summary
    assert (out / "failures.csv").read_text() == failures


def test_all_good_inputs_exit_0_and_annotate_adds_the_video(corpus, tmp_path):
    out = tmp_path / "out"
    assert main(["batch", _video(corpus, "a/sample_face.mp4"), "--out", str(out), "--workers", "1", "--annotate"]) == 0
    assert _csv(out / "failures.csv") == []
    capture = cv2.VideoCapture(str(out / "sample_face" / "annotated.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == CUT_FRAMES
    capture.release()


def _start_and_stop_midway(corpus: Path, out: Path, signum: int) -> tuple[subprocess.Popen, str, str]:
    """Start the batch (one worker) and send ``signum`` to its whole process group while it
    writes the second input; returns the process and the first two inputs."""
    process = subprocess.Popen([sys.executable, str(REPO_ROOT / "main.py"), "batch", str(corpus), "--out", str(out),
                                "--workers", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    names = result_names(collect_inputs([str(corpus)]))
    first, second = collect_inputs([str(corpus)])[:2]
    done, staged = out / names[first] / "complete.json", out / ".staging" / names[second] / "frames.csv"
    deadline = time.monotonic() + 300
    while not (done.is_file() and staged.is_file() and staged.read_text().count("\n") > 10) and process.poll() is None:
        assert time.monotonic() < deadline, "the batch never reached its second input"
        time.sleep(0.02)
    os.killpg(process.pid, signum)
    process.wait(timeout=120)
    return process, names[first], names[second]


def test_a_kill_midway_leaves_nothing_that_looks_complete(corpus, local_run, tmp_path):
    """SIGKILL the whole batch (driver and workers) while it writes the second of five inputs."""
    out = tmp_path / "out"
    _, first, second = _start_and_stop_midway(corpus, out, signal.SIGKILL)
    assert (out / first / "complete.json").is_file()
    assert not (out / second).exists()  # half-done: only in .staging
    assert not (out / "summary.csv").exists()
    for folder in (p for p in out.iterdir() if p.is_dir() and p.name != ".staging"):
        marker = folder / "complete.json"
        assert marker.is_file() or (folder / "failed.json").is_file()
        if marker.is_file():
            assert json.loads((folder / "summary.json").read_text())["frames"] == len((folder / "results.jsonl").read_text().splitlines())
    assert run_main("batch", str(corpus), "--out", str(out), "--workers", "2").returncode == 1
    _, clean = local_run
    assert (out / "summary.csv").read_text() == (clean / "summary.csv").read_text()
    assert not (out / ".staging").exists()


def test_ctrl_c_midway_exits_130_with_combined_files_for_what_finished(corpus, tmp_path):
    out = tmp_path / "out"
    process, first, second = _start_and_stop_midway(corpus, out, signal.SIGINT)
    assert process.returncode == 130 and process.stderr.read().decode().strip().endswith("interrupted")
    assert not (out / second).exists()
    assert [row["video"] for row in _csv(out / "summary.csv")] == [collect_inputs([str(corpus)])[0]]
    assert json.loads((out / first / "complete.json").read_text())["ok"]


def test_two_real_faces_in_one_video_get_two_rows(fer2013_dir, tmp_path):
    faces = detectable_faces(fer2013_dir, "test", per_class=1, classes=("happy", "surprise"))
    frames = [scene_with([f.image for f in faces], [(60 + k, 120), (400 - k, 140)])[0] for k in range(30)]
    video = write_video(tmp_path / "two.mp4", frames, fps=15.0)
    assert main(["batch", str(video), "--out", str(tmp_path / "out"), "--workers", "1"]) == 0
    rows = _csv(tmp_path / "out" / "summary.csv")
    assert len(rows) == 2 and {r["face_id"] for r in rows} == {"1", "2"}
    assert all(int(r["frames"]) >= 25 for r in rows)


@pytest.mark.parametrize("args, message", [
    (["missing.mp4"], "input not found: missing.mp4"),
    (["nothing-*.mp4"], "no file matches nothing-*.mp4"),
    (["{corpus}", "--workers", "0"], "--workers must be 1 or more"),
    (["{corpus}", "--ray-address", "auto"], "--ray-address needs --engine ray"),
    (["{corpus}", "--engine", "ray", "--ray-address", "127.0.0.1:1"], "cannot connect to the Ray cluster at 127.0.0.1:1"),
    (["{corpus}", "--engine", "ray", "--ray-address", "nonsense"], "--ray-address must be auto or HOST:PORT"),
    (["{corpus}", "--model", "no-such-model"], "model not found"),
])
def test_user_errors_are_one_line_and_exit_2(corpus, tmp_path, args, message):
    result = run_main("batch", *(a.format(corpus=corpus) for a in args), "--out", str(tmp_path / "out"), cwd=tmp_path)
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 2
    assert last.startswith("error: ") and message in last
    assert "Traceback" not in result.stderr and not (tmp_path / "out" / "summary.csv").exists()


def test_missing_ray_is_one_line_and_exit_2(corpus, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where Ray is not installed
    assert main(["batch", str(corpus), "--out", str(tmp_path / "out"), "--engine", "ray"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: --engine ray needs Ray: pip install -r requirements-scale.txt")


def test_inputs_from_a_list_file_a_glob_and_a_folder(corpus, tmp_path):
    listing = tmp_path / "inputs.txt"
    listing.write_text(f"# my corpus\n{corpus / 'a/sample_face.mp4'}\n\n{os.path.relpath(corpus / NOT_A_VIDEO, tmp_path)}\n")
    assert collect_inputs([str(listing)]) == [str(corpus / "a/sample_face.mp4"), str(tmp_path / os.path.relpath(corpus / NOT_A_VIDEO, tmp_path))]
    assert collect_inputs([str(corpus / "b" / "*.mp4")]) == [str(corpus / "b/sample_face.mp4"), str(corpus / "b/truncated.mp4")]
    found = collect_inputs([str(corpus), str(corpus / "a/sample_face.mp4")])  # given twice: analysed once
    assert sorted(found) == sorted(_video(corpus, n) for n in [*CUTS, NOT_A_VIDEO, TRUNCATED])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no videos in folder"):
        collect_inputs([str(tmp_path / "empty")])


@pytest.fixture(scope="module")
def local_ray():
    """A real Ray on this machine, started once for the module by the engine's own code."""
    import ray

    from detector.batch.ray_engine import connect

    connect(None, 2)
    yield ray
    ray.shutdown()


def test_ray_engine_gives_the_local_engines_results_row_for_row(corpus, local_run, local_ray, tmp_path):
    _, local = local_run
    out = tmp_path / "ray"
    assert _batch(corpus, out, "--engine", "ray") == 1
    assert _csv(out / "summary.csv") == _csv(local / "summary.csv")
    assert _csv(out / "failures.csv") == _csv(local / "failures.csv")
    for folder in (p for p in local.iterdir() if (p / "complete.json").is_file()):
        for name in ("frames.csv", "results.jsonl", "summary.json"):
            assert (out / folder.name / name).read_bytes() == (folder / name).read_bytes()
        assert json.loads((out / folder.name / "complete.json").read_text())["engine"] == "ray"


def test_the_desktop_app_imports_neither_ray_nor_the_batch(tmp_path):
    code = ("import sys; from detector.cli import main; "
            f"code = main(['--source', {str(SAMPLE_CLIP)!r}, '--no-display', '--max-frames', '3', '--log', {str(tmp_path / 'r.jsonl')!r}]); "
            "print(code, sorted(m for m in sys.modules if m == 'ray' or m.startswith(('ray.', 'detector.batch'))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert result.stdout.split() == ["0", "[]"], result.stderr


SHORT_FRAMES = 12  # a short real clip: enough for a face and a summary, quick to analyse


def _short(path: Path, first: int = 0, frames: int = SHORT_FRAMES) -> Path:
    return _cut(SAMPLE_CLIP, first, frames, path)


def test_dot_names_never_reach_outside_their_own_result_folder(tmp_path):
    """``..mp4``'s stem is ``.``, ``...mp4``'s is ``..``: as folder names they would be --out
    itself or its parent, and the store's staging clean-up would delete them."""
    videos = tmp_path / "videos"
    for name in ("..mp4", "...mp4", ".staging.mp4", "input.mp4"):
        _short(videos / name)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("the user's own file\n")
    (tmp_path / "beside.txt").write_text("next to --out\n")
    assert main(["batch", str(videos), "--out", str(out), "--workers", "1"]) == 0
    assert (out / "keep.txt").is_file() and (tmp_path / "beside.txt").is_file()
    rows = _csv(out / "summary.csv")
    assert sorted({row["video"] for row in rows}) == sorted(str(videos / n) for n in ("..mp4", "...mp4", ".staging.mp4", "input.mp4"))
    folders = [p for p in out.iterdir() if p.is_dir()]
    assert len(folders) == 4 and not any(p.name.startswith(".") for p in folders)
    assert {json.loads((p / "complete.json").read_text())["input"] for p in folders} == {row["video"] for row in rows}


def test_a_second_batch_with_the_same_file_name_keeps_both_results(tmp_path, capsys):
    day1, day2, out = _short(tmp_path / "day1/GOPR0001.mp4", 0), _short(tmp_path / "day2/GOPR0001.mp4", 200), tmp_path / "res"
    assert main(["batch", str(tmp_path / "day1"), "--out", str(out), "--workers", "1"]) == 0
    first = (out / "GOPR0001" / "frames.csv").read_text()
    assert main(["batch", str(tmp_path / "day2"), "--out", str(out), "--workers", "1"]) == 0
    markers = {json.loads(p.read_text())["input"]: p.parent for p in out.glob("*/complete.json")}
    assert set(markers) == {str(day1), str(day2)}
    assert (markers[str(day1)] / "frames.csv").read_text() == first
    assert (markers[str(day2)] / "frames.csv").read_text() != first  # another part of the clip
    capsys.readouterr()
    for day in ("day1", "day2"):  # each rerun finds its own folder again
        assert main(["batch", str(tmp_path / day), "--out", str(out), "--workers", "1"]) == 0
        assert "0 analysed now, 1 already complete" in capsys.readouterr().err
    assert [row["video"] for row in _csv(out / "summary.csv")] == [str(day2)]


def test_names_that_differ_only_in_case_get_two_folders(tmp_path):
    """One folder on Windows and macOS, whose disks ignore case."""
    names = result_names([str(tmp_path / "Clip.mp4"), str(tmp_path / "sub/clip.mp4")])
    assert len({name.casefold() for name in names.values()}) == 2


def test_a_still_image_is_a_failure_and_the_batch_goes_on(tmp_path):
    video = _short(tmp_path / "in/clip.mp4")
    capture = cv2.VideoCapture(str(SAMPLE_CLIP))
    image = tmp_path / "in/still.jpg"
    assert cv2.imwrite(str(image), capture.read()[1])  # a real frame with a real face
    capture.release()
    out = tmp_path / "out"
    for _ in range(2):  # and a rerun too
        assert main(["batch", str(video), str(image), "--out", str(out), "--workers", "1"]) == 1
        assert [row["video"] for row in _csv(out / "summary.csv")] == [str(video)]
        failures = _csv(out / "failures.csv")
        assert [row["input"] for row in failures] == [str(image)]
        assert failures[0]["error"].startswith("not a video: still.jpg") and "\n" not in failures[0]["error"]


def test_a_changed_model_file_redoes_the_inputs(tmp_path, capsys):
    """The model path stays the same; the file that runs in it is replaced (retrained, re-exported)."""
    import shutil

    from detector.backends import resolve_model
    from detector.paths import DEFAULT_MODEL_DIR, resource

    model = shutil.copytree(resource(DEFAULT_MODEL_DIR), tmp_path / "model")
    video, out = _short(tmp_path / "in/clip.mp4"), tmp_path / "out"
    run = ["batch", str(video), "--out", str(out), "--workers", "1", "--model", str(model)]
    assert main(run) == 0
    capsys.readouterr()
    assert main(run) == 0
    assert "0 analysed now, 1 already complete" in capsys.readouterr().err
    _, model_file = resolve_model(model, "auto")
    stat = model_file.stat()
    os.utime(model_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert main(run) == 0
    assert "1 analysed now, 0 already complete" in capsys.readouterr().err
    assert main(run) == 0
    assert "0 analysed now, 1 already complete" in capsys.readouterr().err


def _workers(driver: int) -> list[int]:
    """The pool's worker processes: children of ``driver`` started by multiprocessing's spawn
    (not its resource tracker), from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            command = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if parent == driver and b"spawn_main" in command:
            found.append(int(stat.parent.name))
    return found


def _kill_a_worker_midway(inputs: Path, out: Path, workers: int) -> None:
    """``batch INPUTS --workers N``; once each worker is part-way through a video (clip0,
    clip1, ...), SIGKILL the first worker; the batch must then exit 1."""
    process = subprocess.Popen([sys.executable, str(REPO_ROOT / "main.py"), "batch", str(inputs), "--out", str(out),
                                "--workers", str(workers)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    staged, deadline = [out / ".staging" / f"clip{k}" / "frames.csv" for k in range(workers)], time.monotonic() + 300
    while not all(path.is_file() and path.read_text().count("\n") > 5 for path in staged):
        assert process.poll() is None and time.monotonic() < deadline, "the batch never had each worker on a video"
        time.sleep(0.02)
    found = _workers(process.pid)
    assert len(found) == workers
    os.kill(found[0], signal.SIGKILL)
    assert process.wait(timeout=300) == 1, process.stderr.read().decode()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the worker in /proc")
def test_a_killed_worker_fails_only_its_own_video(tmp_path):
    """SIGKILL the worker while it analyses the first of three videos: that one fails, the
    two not yet started are analysed by a new pool."""
    videos = [_short(tmp_path / f"in/clip{k}.mp4", 100 * k, 120) for k in range(3)]
    out = tmp_path / "out"
    _kill_a_worker_midway(tmp_path / "in", out, workers=1)
    assert _csv(out / "failures.csv") == [{"input": str(videos[0]), "error": "the worker process analysing it died"}]
    assert [row["video"] for row in _csv(out / "summary.csv")] == [str(v) for v in videos[1:]]
    for video in videos[1:]:
        assert len((out / video.stem / "results.jsonl").read_text().splitlines()) == 120


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the workers in /proc")
def test_a_killed_worker_does_not_fail_the_video_of_a_healthy_one(tmp_path):
    """Two workers, each part-way through its own video: SIGKILL one. Its video fails; the
    other worker's video (cut short when the broken pool stopped it) and the one not yet
    started are analysed in full by a new pool."""
    videos = [_short(tmp_path / f"in/clip{k}.mp4", 100 * k, 240) for k in range(3)]
    out = tmp_path / "out"
    _kill_a_worker_midway(tmp_path / "in", out, workers=2)
    (failure,) = _csv(out / "failures.csv")
    assert failure["error"] == "the worker process analysing it died" and failure["input"] in map(str, videos[:2])
    healthy = [v for v in videos if str(v) != failure["input"]]
    assert sorted(row["video"] for row in _csv(out / "summary.csv")) == sorted(map(str, healthy))
    for video in healthy:
        assert len((out / video.stem / "results.jsonl").read_text().splitlines()) == 240


def test_the_stage_costs_cover_every_stage_of_the_apps_pipeline_and_close_it():
    """On the real sample clip: a column per stage that ``create_pipeline`` makes, in its order,
    adding up to the total; and no face-search thread left running afterwards."""
    import threading

    from detector.batch.bench import markdown, stage_costs
    from detector.config import PipelineConfig
    from detector.pipeline import create_pipeline

    with create_pipeline(PipelineConfig()) as pipeline:
        names = [name for name, _ in pipeline.stages]
    before = {t for t in threading.enumerate() if t.name.startswith("face-search")}
    costs = stage_costs(SAMPLE_CLIP, limit=40)
    assert not {t for t in threading.enumerate() if t.name.startswith("face-search") and t.is_alive()} - before
    assert list(costs["ms"]) == ["decode", *names, "write"]
    assert "whole_image" in names and all(v >= 0 for v in costs["ms"].values()) and costs["ms"]["detect"] > 0
    assert costs["total_ms"] == pytest.approx(sum(costs["ms"].values()), abs=0.05)
    report = json.loads((REPO_ROOT / "docs" / "scaling.json").read_text(encoding="utf-8"))
    table = markdown({**report, "stages": [costs]})
    assert "| frame size | decode | " + " | ".join(names) + " | write | total | annotate |" in table


def test_the_videos_bar_counts_videos(tmp_path):
    """The bars as a terminal shows them (stderr a real pseudo-terminal)."""
    import fcntl
    import pty
    import struct
    import termios

    video = _short(tmp_path / "in/clip.mp4")
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 160, 0, 0))  # 160 columns: room for the bars
    process = subprocess.Popen([sys.executable, str(REPO_ROOT / "main.py"), "batch", str(video), "--out", str(tmp_path / "out"),
                                "--workers", "1"], stdout=subprocess.DEVNULL, stderr=follower)
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the batch closed the terminal's other end
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    assert process.wait(timeout=300) == 0
    bars = shown.decode(errors="replace").replace("\r", "\n").splitlines()
    videos = [line for line in bars if line.startswith("videos:") and "1/1" in line]
    assert videos and all("video/s" in line or "s/video" in line for line in videos), bars
    assert any(line.startswith("frames:") and "frame" in line.split("]")[-2] for line in bars if "]" in line), bars
