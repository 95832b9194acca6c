"""Soak run: the app's headless work on the sample clip, looped for N minutes, sampling
resident memory (RSS) and open file handles as it goes. A benchmark that reports, not a test.

    nice -n 19 python tools/soak.py --minutes 20 --json soak.json

Each pass opens the clip afresh (a reader thread and a decoder per pass, as a camera that
reconnects would) and runs every frame through the app's pipeline (Haar faces with their
ids -> classifier -> smoother), the overlay, and the JSON-lines and annotated-video sinks, which stay
open for the whole run like a long headless job's. Frame numbers and times keep rising
across passes, so the face finder and smoother see one long video. The JSON records the
model file, the settings and how long the run really lasted; docs/RELIABILITY.md shows
its table through ``python tools/docs_numbers.py``.

Verdict, after the warm-up: RSS growth below 5% (last samples against the first after
warm-up) and no more open file handles or threads than at warm-up. Results go to
docs/RELIABILITY.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import threading
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from detector.bench import table_path  # noqa: E402
from detector.backends import resolve_model  # noqa: E402
from detector.config import ModelConfig, PipelineConfig  # noqa: E402
from detector.outputs import JsonlSink, VideoSink  # noqa: E402
from detector.overlay import Overlay  # noqa: E402
from detector.pipeline import create_pipeline  # noqa: E402
from detector.paths import DEFAULT_MODEL_DIR, SAMPLE_CLIP  # noqa: E402
from detector.sources import open_source  # noqa: E402

MAX_GROWTH_PERCENT = 5.0


def rss_mb() -> float:
    """Resident memory now (Linux: /proc), else the peak so far (other systems)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)


def open_handles() -> int | None:
    """Open file descriptors (Linux and macOS); None where the system does not list them."""
    for folder in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(folder)) - 1  # less the descriptor listdir itself holds
        except OSError:
            continue
    return None


def sample(started: float, frames: int, passes: int) -> dict:
    gc.collect()  # count what is still referenced, not what the collector has yet to free
    return {"seconds": round(time.monotonic() - started, 1), "frames": frames, "passes": passes,
            "rss_mb": round(rss_mb(), 1), "handles": open_handles(), "threads": threading.active_count()}


def soak(clip: Path, config: PipelineConfig, minutes: float, every: float, out_dir: Path) -> list[dict]:
    pipeline = create_pipeline(config)
    overlay = Overlay()
    started = time.monotonic()
    deadline = started + minutes * 60
    samples = [sample(started, 0, 0)]
    next_sample = started + every
    frames = passes = 0
    offset_index, offset_time = 0, 0.0
    with pipeline, JsonlSink(out_dir / "soak.jsonl") as log, VideoSink(out_dir / "soak.mp4", 24.0) as video:
        while time.monotonic() < deadline:
            with open_source(str(clip)) as source:
                last = None
                for frame in source:
                    frame = replace(frame, index=frame.index + offset_index, time=frame.time + offset_time)
                    result = pipeline(frame)
                    annotated = overlay.draw(result, 0.0)
                    log.write(result, annotated)
                    video.write(result, annotated)
                    frames, last = frames + 1, frame
                    if time.monotonic() >= next_sample:
                        samples.append(sample(started, frames, passes))
                        print(_row(samples[-1]), flush=True)
                        next_sample += every
                    if time.monotonic() >= deadline:
                        break
            passes += 1
            if last is not None:
                offset_index, offset_time = last.index + 1, last.time + 1.0 / source.fps
        samples.append(sample(started, frames, passes))  # the last one with the sinks still open
        print(_row(samples[-1]), flush=True)
    return samples


def verdict(samples: list[dict], warmup_minutes: float) -> dict:
    """Growth after warm-up: RSS of the last three samples against the first after warm-up;
    handles and threads at their highest after warm-up against their highest until then (a
    sample can fall between two passes, when the reader thread and its file are closed);
    and the RSS trend after warm-up as a straight line."""
    after = [s for s in samples if s["seconds"] >= warmup_minutes * 60]
    before = [s for s in samples if s["seconds"] < warmup_minutes * 60]
    if len(after) < 4:
        raise SystemExit(f"too few samples after a {warmup_minutes} min warm-up: run longer or sample more often")
    base = after[0]
    end_rss = float(np.median([s["rss_mb"] for s in after[-3:]]))
    minutes = np.array([s["seconds"] / 60 for s in after])
    slope = float(np.polyfit(minutes, [s["rss_mb"] for s in after], 1)[0])
    growth = 100 * (end_rss - base["rss_mb"]) / base["rss_mb"]
    handles = [s["handles"] for s in before + after[:1] if s["handles"] is not None]
    later = [s["handles"] for s in after if s["handles"] is not None]
    handle_growth = max(later) - max(handles) if handles and later else None
    thread_growth = max(s["threads"] for s in after) - max(s["threads"] for s in before + after[:1])
    seconds = samples[-1]["seconds"]
    return {
        "warmup_minutes": warmup_minutes,
        "rss_mb_at_warmup": base["rss_mb"], "rss_mb_at_end": round(end_rss, 1),
        "rss_mb_peak_after_warmup": max(s["rss_mb"] for s in after),
        "rss_growth_percent": round(growth, 2), "rss_trend_mb_per_minute": round(slope, 3),
        "handles_at_warmup": max(handles) if handles else None, "handle_growth": handle_growth,
        "thread_growth": thread_growth,
        "frames": samples[-1]["frames"], "passes": samples[-1]["passes"],
        "fps": round(samples[-1]["frames"] / max(seconds, 1e-9), 1), "minutes": round(seconds / 60, 2),
        "passed": growth < MAX_GROWTH_PERCENT and (handle_growth or 0) <= 0 and thread_growth <= 0,
    }


def _signed(value: int | None) -> str:
    return "-" if value is None else f"{value:+d}"


def _row(s: dict) -> str:
    return f"{s['seconds'] / 60:7.2f} {s['frames']:8d} {s['passes']:6d} {s['rss_mb']:9.1f} {s['handles'] or '-':>8} {s['threads']:8d}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=20.0, help="how long to run (default 20)")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between samples (default 10)")
    parser.add_argument("--warmup", type=float, help="minutes not judged while caches and pools fill (default: a tenth of the run, at least 0.5)")
    parser.add_argument("--source", default=str(REPO / SAMPLE_CLIP), help="video to loop (default: the sample clip)")
    parser.add_argument("--model", default=str(REPO / DEFAULT_MODEL_DIR), help="model folder (default: the shipped one)")
    parser.add_argument("--json", help="write the samples and the verdict to this file")
    parser.add_argument("--keep", help="keep the JSON lines and annotated video in this folder (default: a temporary one)")
    args = parser.parse_args(argv)
    warmup = args.warmup if args.warmup is not None else max(0.5, args.minutes / 10)
    print(f"soak: {args.minutes:g} min on {Path(args.source).name}, a sample every {args.every:g} s, warm-up {warmup:g} min")
    print(f"{'minutes':>7} {'frames':>8} {'passes':>6} {'RSS MB':>9} {'handles':>8} {'threads':>8}")
    with tempfile.TemporaryDirectory(prefix="soak_") as temporary:
        out_dir = Path(args.keep) if args.keep else Path(temporary)
        out_dir.mkdir(parents=True, exist_ok=True)
        config = PipelineConfig(model=ModelConfig(args.model))
        samples = soak(Path(args.source), config, args.minutes, args.every, out_dir)
    result = verdict(samples, warmup)
    print(f"after warm-up: RSS {result['rss_mb_at_warmup']} -> {result['rss_mb_at_end']} MB "
          f"({result['rss_growth_percent']:+.2f}%, trend {result['rss_trend_mb_per_minute']:+.3f} MB/min), "
          f"handles {_signed(result['handle_growth'])}, threads {_signed(result['thread_growth'])}; "
          f"{result['frames']} frames in {result['passes']} passes at {result['fps']} fps: "
          f"{'PASS' if result['passed'] else 'FAIL'} (target: < {MAX_GROWTH_PERCENT:g}% RSS, no handle growth)")
    if args.json:
        report = {
            "command": "python tools/soak.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "when": time.strftime("%Y-%m-%d %H:%M:%S"),
            "machine": {"python": platform.python_version(), "system": platform.platform(), "cpus": os.cpu_count()},
            "model": _shown(Path(args.model)), "model_file": resolve_model(Path(args.model), config.model.backend, config.model.int8)[1].name,
            "settings": {"smoothing_s": config.smoothing.seconds, "detection": asdict(config.detection), "identity": asdict(config.identity)},
            "verdict": result, "samples": samples,
        }
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        table_path(Path(args.json)).write_text(markdown(report), encoding="utf-8")
    return 0 if result["passed"] else 1


def _shown(path: Path) -> str:
    """A path as the JSON records it: relative to the repository when inside it."""
    path = path.resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def minutes(report: dict) -> float:
    """How long the run really lasted (older JSON files have only the samples' seconds)."""
    return report["verdict"].get("minutes", round(report["samples"][-1]["seconds"] / 60, 2))


def markdown(report: dict) -> str:
    """The table and verdict docs/RELIABILITY.md shows, from the JSON alone: about eight
    samples spread over the run, the last one included."""
    v, samples = report["verdict"], report["samples"]
    picked = [samples[i] for i in sorted({*np.linspace(1, len(samples) - 1, 8).astype(int)})]
    settings = report.get("settings")
    lines = [f"Command: `{report['command']}`, {report['when']}, {minutes(report):g} minutes, "
             f"{report['machine']['cpus']} CPUs; model `{Path(report.get('model', '?')).name}` (`{report.get('model_file', 'not recorded')}`)"
             + (f", smoothing {settings['smoothing_s']} s, face search every {settings['detector']['full_every']} frames." if settings else "."),
             "", "| minutes | frames | passes | RSS MB | handles | threads |", "|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {s['seconds'] / 60:.2f} | {s['frames']} | {s['passes']} | {s['rss_mb']} | {s['handles']} | {s['threads']} |" for s in picked]
    lines += ["", f"After a {v['warmup_minutes']:g}-minute warm-up: RSS {v['rss_mb_at_warmup']} -> {v['rss_mb_at_end']} MB "
              f"({v['rss_growth_percent']:+.2f}%, trend {v['rss_trend_mb_per_minute']:+.3f} MB/min), handles "
              f"{_signed(v['handle_growth'])}, threads {_signed(v['thread_growth'])}; {v['frames']} frames in {v['passes']} passes "
              f"at {v['fps']} fps: **{'PASS' if v['passed'] else 'FAIL'}** (target: < {MAX_GROWTH_PERCENT:g}% RSS, no handle or thread growth)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
