"""``python -m detector.batch.bench``: batch throughput here, and what it means for a corpus.

1. Throughput: ``main.py batch``'s own driver and local engine over copies of the sample
   clip, with 1 and 2 workers: frames/s, videos/hour, CPU per frame.
2. Where a frame's CPU goes, one thread: decoding, each stage of the app's pipeline
   (detection with face ids, the whole-image fallback, classification, smoothing), writing
   the results, and (``--annotate``) drawing and encoding; at the clip's
   size and at 1080p, since decoding grows with pixels while detection runs at
   ``--detect-width``.
3. On paper: N nodes over 10,000 hours of 30 fps video from those numbers.

Writes docs/scaling.json and the generated part of docs/SCALING.md (between its markers).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from detector.config import PipelineConfig

CORPUS_HOURS, CORPUS_FPS = 10_000, 30.0
NODE_CORES = 16  # the node the projection assumes: 16 cores, each as fast as one here
NODES = (1, 10, 50, 100)
DRIVER_DISK_MB_S = 500.0  # what the driver's disk is assumed to write (an ordinary SSD)
BEGIN, END = "<!-- scaling:begin (python -m detector.batch.bench) -->", "<!-- scaling:end -->"


def throughput(clip: Path, copies: int, workers: int, folder: Path) -> dict:
    """Run the batch (its own driver and local engine) over ``copies`` of ``clip``."""
    from detector.batch.cli import run_batch, settings
    from detector.batch.local import LocalEngine
    from detector.batch.store import ResultStore

    inputs = []
    for i in range(copies):
        inputs.append(str(folder / "corpus" / f"copy{i:02d}.mp4"))
        if not Path(inputs[-1]).exists():
            Path(inputs[-1]).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(clip, inputs[-1])
    out = folder / f"out{workers}"
    shutil.rmtree(out, ignore_errors=True)
    config = PipelineConfig()
    started_wall, started_cpu = time.perf_counter(), time.process_time()
    tally = run_batch(inputs, ResultStore(out, settings(config, False)), LocalEngine(config, False, workers))
    wall, driver_cpu = time.perf_counter() - started_wall, time.process_time() - started_cpu
    if tally.analysed != copies:
        raise RuntimeError(f"bench corpus: {copies - tally.analysed} of {copies} videos failed")
    frames = sum(o.frames for o in tally.outcomes)
    written = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {"workers": workers, "videos": copies, "frames": frames, "wall_s": round(wall, 2),
            "frames_per_s": round(frames / wall, 1), "videos_per_hour": round(copies / wall * 3600),
            "cpu_ms_per_frame": round(1000 * sum(o.cpu_seconds for o in tally.outcomes) / frames, 2),
            "driver_cpu_ms_per_video": round(1000 * driver_cpu / copies, 1), "bytes_per_frame": round(written / frames)}


def _decode(clip: Path, limit: int = 0) -> tuple[list[np.ndarray], float, float]:
    """Frames of ``clip`` read on this thread; returns them, CPU ms per frame, and fps."""
    from detector.sources import read_frames

    started = time.process_time()
    frames, fps = read_frames(clip, count=limit)
    return frames, 1000 * (time.process_time() - started) / len(frames), fps or 30.0


def stage_costs(clip: Path, limit: int = 0) -> dict:
    """CPU milliseconds per frame of each stage, single-threaded settings: process CPU time
    around decoding, each of the app's pipeline stages (by their names in ``create_pipeline``)
    and the batch's sinks; ``ms`` keeps that order. The full-frame
    face search runs on a side thread and counts towards whichever stage runs meanwhile
    (mostly detect); the sum is exact."""
    from detector.batch.local import single_threaded
    from detector.outputs import JsonlSink, VideoSink
    from detector.overlay import Overlay
    from detector.report import ReportSink
    from detector.results import FrameResult

    frames, decode_ms, fps = _decode(clip, limit)
    from detector.pipeline import create_pipeline

    with create_pipeline(single_threaded(PipelineConfig())) as pipeline:  # closing it stops the face search's thread
        cpu = {name: 0.0 for name, _ in pipeline.stages}  # every stage of the app's pipeline, called one by one
        results = []
        for index, image in enumerate(frames):
            result = FrameResult(index=index, time=index / fps, source=clip.name, image=image)
            for name, stage in pipeline.stages:
                started = time.process_time()
                result = stage(result)
                cpu[name] += time.process_time() - started
            results.append(result)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.process_time()
        with JsonlSink(Path(tmp) / "r.jsonl") as jsonl, ReportSink(Path(tmp) / "report", fps=fps, video=False) as report:
            for result in results:
                jsonl.write(result)
                report.write(result)
        write_ms = 1000 * (time.process_time() - started) / len(results)
        overlay, started = Overlay(), time.process_time()
        with VideoSink(Path(tmp) / "annotated.mp4", fps) as video:
            for result in results:
                video.write(result, overlay.draw(result, 0.0))
        annotate_ms = 1000 * (time.process_time() - started) / len(results)
        annotated_bytes = (Path(tmp) / "annotated.mp4").stat().st_size / len(results)
    height, width = frames[0].shape[:2]
    costs = {"decode": decode_ms, **{k: 1000 * v / len(results) for k, v in cpu.items()}, "write": write_ms}
    return {"size": f"{width}x{height}", "frames": len(frames), "ms": {k: round(v, 2) for k, v in costs.items()},
            "total_ms": round(sum(costs.values()), 2), "annotate_ms": round(annotate_ms, 2),
            "annotated_bytes_per_frame": round(annotated_bytes)}


def upscaled(clip: Path, path: Path, size: tuple[int, int] = (1920, 1080), frames: int = 120) -> Path:
    """The first ``frames`` of ``clip`` at 1080p (the face grows with it), for the decode cost at that size."""
    source, _, fps = _decode(clip, frames)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for frame in source:
        writer.write(cv2.resize(frame, size, interpolation=cv2.INTER_CUBIC))
    writer.release()
    return path


def projection(runs: list[dict], stages: list[dict]) -> dict:
    """10,000 hours at 30 fps on N nodes of NODE_CORES cores, from the CPU cost per frame
    (1000 / CPU ms per frame = frames/s of a core with nothing else to do): on a shared
    machine it is the number that does not depend on what else was running."""
    frames = CORPUS_HOURS * 3600 * CORPUS_FPS
    per_core = round(1000 / runs[0]["cpu_ms_per_frame"], 1)
    core_hours = frames / per_core / 3600
    rows = []
    for nodes in NODES:
        rate = per_core * nodes * NODE_CORES
        rows.append({"nodes": nodes, "cores": nodes * NODE_CORES, "hours": round(core_hours / (nodes * NODE_CORES), 1),
                     "driver_write_mb_s": round(rate * runs[0]["bytes_per_frame"] / 1e6, 1),
                     "annotated_mb_s": round(rate * (runs[0]["bytes_per_frame"] + stages[0]["annotated_bytes_per_frame"]) / 1e6)})
    return {"hours": CORPUS_HOURS, "fps": CORPUS_FPS, "frames": frames, "frames_per_s_per_core": per_core,
            "core_hours": round(core_hours), "node_cores": NODE_CORES, "driver_disk_mb_s": DRIVER_DISK_MB_S, "rows": rows}


def markdown(report: dict) -> str:
    """The generated part of docs/SCALING.md: every number here comes from ``report``."""
    m, p = report["machine"], report["projection"]
    lines = [f"Measured {report['date']} with `{report['command']}` on {m['cpus']} vCPUs ({m['processor']}); "
             f"load average {m['load_before']} before and {m['load_after']} after"
             + (" — the machine was shared with other work (training, other builds), so these are lower bounds."
                if max(m["load_before"], m["load_after"]) > 0.5 * m["cpus"] else "."), "",
             f"Corpus: {report['clip']['videos']} copies of the sample clip ({report['clip']['size']}, "
             f"{report['clip']['frames']} frames, {report['clip']['seconds']} s each).", "",
             "| workers | frames/s | videos/hour | hours of video per hour | CPU ms/frame | bytes written/frame |",
             "|---|---|---|---|---|---|"]
    for r in report["runs"]:
        lines.append(f"| {r['workers']} | {r['frames_per_s']} | {r['videos_per_hour']} | "
                     f"{r['frames_per_s'] / report['clip']['fps']:.1f} | {r['cpu_ms_per_frame']} | {r['bytes_per_frame']} |")
    if len(report["runs"]) > 1:
        first, last = report["runs"][0], report["runs"][-1]
        lines += ["", f"{last['workers']} workers ran at {last['frames_per_s'] / first['frames_per_s']:.2f}x the rate of "
                      f"{first['workers']}, with the load average above on {m['cpus']} vCPUs."]
    lines += ["", "CPU milliseconds per frame, one thread, by stage (`annotate`: drawing and encoding, only with `--annotate`):", ""]
    lines += _stage_table(report["stages"])
    lines += ["", f"{p['hours']:,} hours of {p['fps']:g} fps video = {p['frames']:,.0f} frames; at "
              f"{p['frames_per_s_per_core']} frames/s per core (1000 / the CPU ms per frame of the first row) that is {p['core_hours']:,} core-hours. "
              f"On nodes of {p['node_cores']} such cores:", "",
              "| nodes | cores | hours | the driver writes (MB/s) | with `--annotate` (MB/s) |", "|---|---|---|---|---|"]
    lines += [f"| {r['nodes']} | {r['cores']} | {r['hours']:,} | {r['driver_write_mb_s']} | {r['annotated_mb_s']:,} |" for r in p["rows"]]
    return "\n".join(lines)


OLD_STAGE_NAMES = {"track+smooth": "smooth"}  # runs before the face finder owned face ids: it measured only smoothing


def _stage_table(stages: list[dict]) -> list[str]:
    """The stage table of ``report["stages"]``: a column per key of ``ms`` in its order (the
    pipeline's stages between decode and write), so it follows the pipeline; old reports'
    names are shown by their current ones, and a pipeline stage they lack is noted."""
    names = [OLD_STAGE_NAMES.get(k, k) for k in stages[0]["ms"]]
    lines = ["| frame size | " + " | ".join(names) + " | total | annotate |", "|---" * (len(names) + 3) + "|"]
    lines += [f"| {s['size']} | " + " | ".join(str(v) for v in s["ms"].values()) + f" | {s['total_ms']} | {s['annotate_ms']} |"
              for s in stages]
    if "whole_image" not in names:
        lines += ["", "This run predates the `whole_image` stage's own column (its cost is in no column, nor in the "
                      "total); rerun the command above for it."]
    return lines


def write_docs(report: dict, json_path: Path, md_path: Path) -> None:
    json_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    text = md_path.read_text(encoding="utf-8") if md_path.exists() else f"# Scaling\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{md_path} has no {BEGIN} ... {END} markers")
    head, rest = text.split(BEGIN, 1)
    md_path.write_text(f"{head}{BEGIN}\n{markdown(report)}\n{END}{rest.split(END, 1)[1]}", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    from detector.bench import sample_frames
    from detector.paths import SAMPLE_CLIP, resource

    parser = argparse.ArgumentParser(prog="python -m detector.batch.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=6, help="copies of the sample clip per run (default 6)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to run (default 1 2)")
    parser.add_argument("--json", type=Path, default=Path("docs/scaling.json"))
    parser.add_argument("--markdown", type=Path, default=Path("docs/SCALING.md"))
    args = parser.parse_args(argv)
    clip = resource(SAMPLE_CLIP)
    frames, fps = sample_frames()
    report = {"command": "python -m detector.batch.bench " + " ".join(argv if argv is not None else sys.argv[1:]),
              "date": time.strftime("%Y-%m-%d"),
              "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                          "platform": platform.platform(), "load_before": round(os.getloadavg()[0], 1)},
              "clip": {"videos": args.copies, "frames": len(frames), "fps": round(fps, 3), "seconds": round(len(frames) / fps, 1),
                       "size": f"{frames[0].shape[1]}x{frames[0].shape[0]}"}}
    with tempfile.TemporaryDirectory() as tmp:
        report["runs"] = [throughput(clip, args.copies, workers, Path(tmp)) for workers in args.workers]
        report["stages"] = [stage_costs(clip), stage_costs(upscaled(clip, Path(tmp) / "1080p.mp4"))]
    report["machine"]["load_after"] = round(os.getloadavg()[0], 1)
    report["projection"] = projection(report["runs"], report["stages"])
    write_docs(report, args.json, args.markdown)
    print(markdown(report))
    print(f"\nwritten: {args.json}, {args.markdown}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
