"""``main.py bench``: the pipeline against the naive loop, same clips, same process.

The naive loop is what most seed projects ship: full-frame Haar (1.1, 5) on every
frame and one model call per face. It runs the same model file on the same backend as
the pipeline (``resolve_model``: ``model.int8.onnx`` in ONNX Runtime for the shipped
model), so the speed-up measures the algorithm, not the backend. Clips are 640x480 and
made from the bundled sample clip (real faces): one face, and a 2x2 mosaic with four.
This is a script that reports, not a timed test: it writes the JSON and, beside it, the
markdown tables (``bench.table.md``) that docs/PERFORMANCE.md includes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import cv2
import numpy as np

from detector import flags
from detector.backends import resolve_model
from detector.classifier import EmotionClassifier
from detector.cli import DEFAULT_HEADLESS_DIR
from detector.config import DetectionConfig, ModelConfig, PipelineConfig
from detector.outputs import check_writable
from detector.overlay import Overlay
from detector.paths import DEFAULT_CASCADE, SAMPLE_CLIP, app_dir, resource as resource_path
from detector.sources import VideoSource, read_frames

log = logging.getLogger(__name__)
SIZE = (640, 480)


def letterbox(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    w, h = size
    scale = min(w / frame.shape[1], h / frame.shape[0])
    resized = cv2.resize(frame, (round(frame.shape[1] * scale), round(frame.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    top, left = (h - resized.shape[0]) // 2, (w - resized.shape[1]) // 2
    return cv2.copyMakeBorder(resized, top, h - resized.shape[0] - top, left, w - resized.shape[1] - left, cv2.BORDER_REPLICATE)


def mosaic(source: list[np.ndarray], i: int) -> np.ndarray:
    """Frame ``i`` of the 4-face clip: 2x2 tiles, each a different moment of ``source``."""
    n, tile = len(source), (SIZE[0] // 2, SIZE[1] // 2)
    tiles = [letterbox(source[(i + k * n // 4) % n], tile) for k in range(4)]
    return np.vstack([np.hstack(tiles[:2]), np.hstack(tiles[2:])])


def sample_frames() -> tuple[list[np.ndarray], float]:
    """Every frame of the bundled sample clip, and its fps."""
    frames, fps = read_frames(resource_path(SAMPLE_CLIP))
    return frames, fps or 24.0


def make_clips(folder: Path, frames: int) -> dict[str, Path]:
    """640x480 clips with 1 and 4 real faces, from the sample clip."""
    source, fps = sample_frames()
    clips = {"1 face": folder / "bench_1face.mp4", "4 faces": folder / "bench_4faces.mp4"}
    writers = {name: cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, SIZE) for name, path in clips.items()}
    n = len(source)
    for i in range(frames):
        writers["1 face"].write(letterbox(source[i % n], SIZE))
        writers["4 faces"].write(mosaic(source, i))
    for writer in writers.values():
        writer.release()
    return clips


def _stats(values: list[float]) -> dict:
    array = np.asarray(values, dtype=np.float64)
    return {"p50": round(float(np.median(array)), 2), "p95": round(float(np.percentile(array, 95)), 2)}


def run_pipeline(clip: Path, config: PipelineConfig, paced: bool = True) -> tuple[dict, list[np.ndarray], list[np.ndarray]]:
    """Per-stage milliseconds of the app's own path: read -> detect (with face ids) -> classify -> smooth -> overlay.

    ``paced``: frame i is not taken before ``i / fps`` seconds, as a camera delivers them,
    so work the app does beside the frame loop (the full-frame face search) gets the
    time between frames that it gets live. Unpaced, the loop runs flat out.
    """
    from detector.pipeline import create_pipeline

    overlay = Overlay()
    times: dict[str, list[float]] = {"read": [], "detect": [], "classify": [], "smooth": [], "overlay": [], "total": []}
    boxes, probs = [], []
    with create_pipeline(config) as pipeline, VideoSource(str(clip), clip.name) as source:  # the app's own stages
        period = 1.0 / source.fps if paced else 0.0
        started, cpu_started = time.perf_counter(), time.process_time()
        t_read = started
        for i, frame in enumerate(source):
            read_ms = (time.perf_counter() - t_read) * 1000
            if period:
                time.sleep(max(0.0, started + i * period - time.perf_counter()))
            result = pipeline(frame)
            t0 = time.perf_counter()
            overlay.draw(result, 0.0)
            overlay_ms = (time.perf_counter() - t0) * 1000
            for stage in ("detect", "classify"):
                times[stage].append(result.timings[stage])
            times["smooth"].append(result.timings.get("smooth", 0.0))
            times["read"].append(read_ms)
            times["overlay"].append(overlay_ms)
            times["total"].append(read_ms + result.timings["total"] + overlay_ms)
            boxes.append(result.faces.boxes)
            probs.append(result.faces.probs)
            t_read = time.perf_counter()
    times["cpu"] = [(time.process_time() - cpu_started) * 1000 / max(len(boxes), 1)]
    return times, boxes, probs


def run_naive(clip: Path, cascade: str, model: ModelConfig) -> tuple[dict, list[np.ndarray], list[np.ndarray]]:
    """The seed-project loop: full-frame Haar 1.1/5 every frame (the bundled cascade), one model call per face,
    with the pipeline's own model file and backend."""
    classifier = EmotionClassifier(model)
    haar = cv2.CascadeClassifier(cascade)
    overlay = Overlay()
    times: dict[str, list[float]] = {"read": [], "detect": [], "classify": [], "overlay": [], "total": []}
    boxes, probs = [], []
    capture = cv2.VideoCapture(str(clip))
    from detector.results import Faces, FrameResult

    cpu_started = time.process_time()
    while True:
        t0 = time.perf_counter()
        ok, frame = capture.read()
        if not ok:
            break
        t1 = time.perf_counter()
        found = haar.detectMultiScale(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), scaleFactor=1.1, minNeighbors=5)
        found = np.asarray(found, dtype=np.int32).reshape(-1, 4)
        t2 = time.perf_counter()
        face_probs = np.concatenate([classifier.classify(frame, box[None]) for box in found]) if len(found) else np.zeros((0, len(classifier.labels)))
        t3 = time.perf_counter()
        overlay.draw(FrameResult(0, 0.0, "", frame, Faces(found, face_probs), classifier.labels), 0.0)
        t4 = time.perf_counter()
        for key, value in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0)):
            times[key].append(value * 1000)
        boxes.append(found)
        probs.append(face_probs)
    capture.release()
    times["cpu"] = [(time.process_time() - cpu_started) * 1000 / max(len(boxes), 1)]
    return times, boxes, probs


def _tiles(boxes: np.ndarray, grid: int) -> dict[int, int]:
    """Tile of each face centre -> index of the face; each tile of a clip holds one real face."""
    cell_w, cell_h = SIZE[0] / grid, SIZE[1] / grid
    tiles: dict[int, int] = {}
    for i, (x, y, w, h) in enumerate(boxes):
        tile = int((y + h / 2) // cell_h) * grid + int((x + w / 2) // cell_w)
        tiles.setdefault(tile, i)
    return tiles


def recall(grid: int, boxes: list) -> float:
    """Share of face-frames found in a clip whose every tile holds one face in every frame."""
    return round(sum(len(_tiles(b, grid)) for b in boxes) / (len(boxes) * grid * grid), 4)


def quality(grid: int, boxes: list, probs: list, ref_boxes: list, ref_probs: list) -> dict:
    """Recall of both loops, and how often the label agrees with the reference loop's on
    faces both found."""
    agree = shared = 0
    for ob, op, rb, rp in zip(boxes, probs, ref_boxes, ref_probs):
        ours, ref = _tiles(ob, grid), _tiles(rb, grid)
        for tile in ours.keys() & ref.keys():
            shared += 1
            agree += int(np.argmax(op[ours[tile]]) == np.argmax(rp[ref[tile]]))
    return {"recall": recall(grid, boxes), "naive_recall": recall(grid, ref_boxes),
            "label_agreement": round(agree / max(shared, 1), 4)}


def _app_command() -> list[str]:
    """How to launch the app: the frozen executable itself, or ``python main.py``."""
    return [sys.executable] if getattr(sys, "frozen", False) else [sys.executable, str(app_dir() / "main.py")]


def _peak_rss_mb(command: list[str], env: dict) -> float | None:
    """Peak resident memory of a whole run, sampled from /proc (Linux; None elsewhere).

    ``getrusage(RUSAGE_CHILDREN)`` would count the benchmark's own memory (TensorFlow,
    for the naive loop) through the fork, so the child is watched directly.
    """
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    status, peak_kb = Path(f"/proc/{child.pid}/status"), 0
    while child.poll() is None:
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):  # the kernel's own high-water mark of this process
                    peak_kb = max(peak_kb, int(line.split()[1]))
        except (OSError, ValueError):
            break
        time.sleep(0.05)
    return round(peak_kb / 1024, 1) if peak_kb else None


def cold_start(clip: Path, model: str, runs: int = 3) -> dict:
    """Seconds from launching the app to its first annotated frame written (median of
    ``runs``), and the peak RSS of a whole headless run of the clip."""
    seconds = []
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    with tempfile.TemporaryDirectory() as tmp:
        args = ["--source", str(clip), "--model", model, "--no-display", "--output", f"{tmp}/a.mp4", "--log", f"{tmp}/r.jsonl"]
        for _ in range(runs):
            start = time.perf_counter()
            done = subprocess.run([*_app_command(), *args, "--max-frames", "1"], capture_output=True, text=True, env=env)
            seconds.append(time.perf_counter() - start)
            if done.returncode != 0:
                raise RuntimeError(done.stderr.strip())
        peak_mb = _peak_rss_mb([*_app_command(), *args], env)
    return {"cold_start_s": round(float(np.median(seconds)), 3), "peak_rss_mb": peak_mb}


def targets(report: dict) -> list[dict]:
    """The performance issue's targets against this run: what is met, what is not, by how much."""
    clips, rows = report["clips"], []

    def row(name: str, value, limit, ok: bool) -> None:
        rows.append({"target": name, "measured": value, "limit": limit, "met": bool(ok)})

    one, four = clips.get("1 face", {}), clips.get("4 faces", {})
    if one:
        p95 = one["pipeline"]["ms"]["total"]["p95"]
        row("1 face: end-to-end p95 <= 15 ms", p95, 15, p95 <= 15)
        classify = one["pipeline"]["ms"]["classify"]["p50"]
        row("classifier <= 5 ms per face (1 face, p50)", classify, 5, classify <= 5)
        if "default_detector" in one:  # another --detector: its cost against the default's, measured in this run
            ratio = round(p95 / one["default_detector"]["ms"]["total"]["p95"], 2)
            row(f"1 face: end-to-end p95 <= 1.5x {one['default_detector']['name']}'s in this run", ratio, 1.5, ratio <= 1.5)
    if four:
        p95 = four["pipeline"]["ms"]["total"]["p95"]
        row("4 faces: end-to-end p95 <= 33 ms", p95, 33, p95 <= 33)
    for name, entry in clips.items():
        if "speedup_p50" in entry:
            row(f"{name}: >= 10x faster than the naive loop (p50)", entry["speedup_p50"], 10, entry["speedup_p50"] >= 10)
            q = entry["quality"]
            gap = round(100 * (q["naive_recall"] - q["recall"]), 2)
            row(f"{name}: recall within 2 points of the naive loop's (points below)", gap, 2, gap <= 2)
    if "startup" in report:
        start, rss = report["startup"]["cold_start_s"], report["startup"]["peak_rss_mb"]
        row("cold start to the first annotated frame <= 2 s", start, 2, start <= 2)
        if rss is not None:
            row("peak resident memory <= 400 MB", rss, 400, rss <= 400)
    return rows


def stage_table(report: dict) -> str:
    """Per-stage milliseconds of each loop on each clip, as markdown."""
    rows = ["| clip | loop | read | detect | classify | overlay | end-to-end p50 | end-to-end p95 | FPS (p50) | CPU ms / frame |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for clip, loops in report["clips"].items():
        for name in ("pipeline", "naive"):
            if name not in loops:
                continue
            t = loops[name]["ms"]
            cells = [f"{t[s]['p50']:.1f} / {t[s]['p95']:.1f}" for s in ("read", "detect", "classify", "overlay")]
            bold = "**" if name == "pipeline" else ""
            rows.append(f"| {clip} | {bold}{name}{bold} | " + " | ".join(cells) +
                        f" | {bold}{t['total']['p50']:.1f}{bold} | {bold}{t['total']['p95']:.1f}{bold} | "
                        f"{1000 / t['total']['p50']:.0f} | {t['cpu']['p50']:.1f} |")
    return "\n".join(rows)


def target_table(report: dict) -> str:
    """The performance targets against this run, as markdown."""
    rows = ["| target | measured | |", "|---|---|---|"]
    rows += [f"| {t['target']} | {t['measured']} | {'met' if t['met'] else '**not met**'} |" for t in report.get("targets", [])]
    return "\n".join(rows)


def markdown(report: dict) -> str:
    """Everything docs/PERFORMANCE.md shows of one run, from the JSON alone."""
    pacing = "paced at the clip's fps, as a camera delivers frames" if report["paced"] else "unpaced (flat out)"
    lines = [f"Command: `{report['command']}`; model file `{report['model_file']}` for both loops; "
             f"{report['frames']} frames per clip; pipeline {pacing}; {report['machine']['cpus']} CPUs, "
             f"{report['machine']['processor']}, Python {report['machine']['python']}, load average "
             f"{report['machine'].get('load_average_at_start', 'not recorded')} at the start.", "", stage_table(report), ""]
    for clip, loops in report["clips"].items():
        q, speedup = loops.get("quality", {}), loops.get("speedup_p50")
        if speedup:
            lines.append(f"- {clip}: **{speedup}x** faster than the naive loop (p50); detection recall {q['recall']} "
                         f"(naive {q['naive_recall']}); labels agree on {q['label_agreement']:.0%} of faces both found")
    if "startup" in report:
        start = report["startup"]
        lines.append(f"- cold start to the first annotated frame: {start['cold_start_s']} s; peak RSS of a whole run: "
                     f"{start['peak_rss_mb']} MB")
    if report.get("targets"):
        lines += ["", target_table(report)]
    return "\n".join(lines) + "\n"


def table_path(json_path: Path) -> Path:
    """Where a measuring command writes its markdown tables: beside its JSON, as
    ``NAME.table.md`` (never ``NAME.md``, which a case-insensitive disk would confuse with
    the docs' own ``NAME.md`` pages)."""
    return Path(json_path).with_suffix(".table.md")


def _load_average() -> float | None:
    """The 1-minute load average when the run starts (Unix): how busy the machine was."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _json_path(argument: str | None) -> Path:
    """Where the JSON goes: a named file's folder must exist (checked before the minutes of
    benchmarking, a one-line error if not); by default the app's gitignored results folder."""
    if argument is None:
        path = Path(DEFAULT_HEADLESS_DIR) / "bench.json"
        path.parent.mkdir(parents=True, exist_ok=True)
    else:
        path = Path(argument)
    check_writable(path)
    check_writable(table_path(path))
    return path


def bench_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="main.py bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", help=f"write the results here, and the markdown tables beside it (.md); "
                                       f"default: {DEFAULT_HEADLESS_DIR}/bench.json")
    parser.add_argument("--frames", type=int, default=300, help="frames per clip (default 300)")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive loop")
    parser.add_argument("--no-startup", action="store_true", help="skip the cold-start and memory runs")
    parser.add_argument("--unpaced", action="store_true", help="feed the pipeline frames flat out instead of at the clip's fps")
    flags.add_model_flags(parser)  # the model and the detector exactly as the app takes them
    flags.add_detection_flags(parser)
    args = parser.parse_args(argv)
    json_path = _json_path(args.json)
    config = flags.pipeline_config(args)  # smoothing at the app's default, as the app runs
    report = _measure(args, config)
    report["command"] = " ".join(["python main.py bench", *argv])
    report["targets"] = targets(report)
    table = markdown(report)
    json_path.write_text(json.dumps(report, indent=2))
    table_path(json_path).write_text(table, encoding="utf-8")
    print(table)
    print(f"written: {json_path} and {table_path(json_path)}")
    return 0


def _measure(args: argparse.Namespace, config: PipelineConfig) -> dict:
    """Both loops on both clips, and the start-up run: the report without its targets."""
    model_file = resolve_model(Path(args.model), config.model.backend, config.model.int8)[1].name
    report: dict = {"machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                                "cpus": os.cpu_count(), "python": platform.python_version(),
                                "load_average_at_start": _load_average()},
                    "model": args.model, "model_file": model_file, "naive_model_file": None if args.no_naive else model_file,
                    "frames": args.frames, "paced": not args.unpaced, "detection": asdict(config.detection), "identity": asdict(config.identity), "clips": {}}
    with tempfile.TemporaryDirectory() as tmp:
        clips = make_clips(Path(tmp), args.frames)
        for (name, clip), grid in zip(clips.items(), (1, 2)):
            times, boxes, probs = run_pipeline(clip, config, paced=not args.unpaced)
            entry = {"pipeline": {"ms": {k: _stats(v) for k, v in times.items()}}}
            if not args.no_naive:
                n_times, n_boxes, n_probs = run_naive(clip, str(resource_path(DEFAULT_CASCADE)), config.model)
                entry["naive"] = {"ms": {k: _stats(v) for k, v in n_times.items()}}
                entry["speedup_p50"] = round(entry["naive"]["ms"]["total"]["p50"] / entry["pipeline"]["ms"]["total"]["p50"], 1)
                entry["quality"] = quality(grid, boxes, probs, n_boxes, n_probs)
            if grid == 1 and config.detection.name != DetectionConfig.name:  # the default detector beside it, same clip
                haar_times = run_pipeline(clip, replace(config, detection=DetectionConfig()), paced=not args.unpaced)[0]
                entry["default_detector"] = {"name": DetectionConfig.name, "ms": {k: _stats(v) for k, v in haar_times.items()}}
            report["clips"][name] = entry
            log.info("%s: done", name)
        if not args.no_startup:
            report["startup"] = cold_start(clips["1 face"], args.model)
    return report
