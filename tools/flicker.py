"""Face ids, label flicker and smoothing lag on real face videos: a benchmark that reports, not a test.

    nice -n 15 python tools/flicker.py --out docs/flicker.json

Writes the JSON, and the markdown tables beside it (``flicker.table.md``; docs/FLICKER.md
includes them through ``python tools/docs_numbers.py``).

**Identity**: videos of real FER2013 faces (several pairs) that cross (one walks in front
of the other), get covered for 10 frames, leave the frame and come back, and come closer
(2.3x their size), plus four faces drifting. Each video runs through the app's face finder
(the one owner of face ids), and the same boxes, ids dropped, through ByteTrack
(``trackers.ByteTrackTracker``, roboflow's maintained one) for comparison. Per person:
how many ids it got (1 is right), and ids given to two people (a swap).

**Flicker**: the app's pipeline (faces with ids -> classifier) once per video, then the
recorded raw probabilities replayed through ProbabilitySmoother for each ``--tau``: the
smoother only sees results, so this equals running it live. Label (argmax) changes per
second per id seen >= 1 s, on the sample clip (one person talking, tearful -> laughing)
and on the four drifting faces (the pictures never change: every change is flicker).

**Lag**: step clips at 8 and 30 fps that cut from one real face to another of another
class at the same place (the id stays, as for one person changing expression): when the
smoothed label first shows the new face's class, minus when the raw label does; and on
the sample clip, the same at each change between labels that raw holds >= 1 s.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from detector.bench import table_path  # noqa: E402
from detector.config import IdentityConfig, ModelConfig, PipelineConfig, SmoothingConfig  # noqa: E402
from detector.detection.boxes import iou_matrix  # noqa: E402
from detector.paths import DEFAULT_DATA_DIR  # noqa: E402
from detector.pipeline import Pipeline, create_pipeline, detection_pipeline  # noqa: E402
from detector.sources import open_source  # noqa: E402
from detector.tracking import ProbabilitySmoother  # noqa: E402
from tools.scenes import (SAMPLE_CLIP, covered_scene, crossing_scene, detectable_faces,  # noqa: E402
                          leaving_scene, scene_with, write_video, zoom_scene)

SAMPLE = "sample clip (24 fps)"
MOVING = "4 faces drifting (15 fps)"
STEP_PAIRS = [("sad", "happy"), ("neutral", "surprise"), ("angry", "happy"), ("happy", "neutral"), ("fear", "sad"), ("surprise", "angry")]
FACE_PAIRS = [("angry", "disgust"), ("fear", "happy"), ("sad", "neutral"), ("surprise", "angry")]
IDENTITY_SCENES = {"cross": crossing_scene, "cross at one height": lambda faces: crossing_scene(faces, offset=0),
                   "covered 10 frames": covered_scene, "leave and return": leaving_scene, "closer and back": zoom_scene}
IDENTITY_FPS = 15.0
OWNERS = ("finder", "bytetrack")


def raw_pipeline(model: str) -> Pipeline:
    """The app's pipeline (faces with ids, then the classifier) without its smoother: this tool
    replays smoothing itself for each tau."""
    return create_pipeline(PipelineConfig(model=ModelConfig(model), smoothing=SmoothingConfig(0)))


def record(pipeline: Pipeline, video: Path) -> list:
    """Raw results (images dropped) of the pipeline over a video, from a fresh start."""
    pipeline.reset()
    with open_source(str(video)) as source:
        return [replace(pipeline(frame), image=np.empty((0, 0, 3), np.uint8)) for frame in source]


def bytetrack_ids(results: list, fps: float) -> list[np.ndarray]:
    """Per frame, ByteTrack's id for each of the finder's boxes (-1: not yet confirmed), with
    its memory set to the finder's (``remember_s``) and a track confirmed on its first frame."""
    import supervision as sv
    from trackers import ByteTrackTracker

    tracker = ByteTrackTracker(lost_track_buffer=int(round(IdentityConfig().remember_s * 30)), frame_rate=fps,
                               minimum_consecutive_frames=1)
    out = []
    for result in results:
        boxes = result.faces.boxes.astype(np.float64)
        detections = sv.Detections(xyxy=np.c_[boxes[:, :2], boxes[:, :2] + boxes[:, 2:]].reshape(-1, 4),
                                   confidence=np.ones(len(boxes)), class_id=np.zeros(len(boxes), int))
        tracked = tracker.update(detections, timestamp=result.time)
        ids = np.full(len(boxes), -1, np.int64)
        for xyxy, track_id in zip(tracked.xyxy, tracked.tracker_id):
            ids[int(np.argmin(np.abs(detections.xyxy - xyxy).sum(axis=1)))] = int(track_id)
        out.append(ids)
    return out


def identity_stats(boxes: list[np.ndarray], ids: list[np.ndarray], truth: list[dict]) -> dict:
    """Ids per person over a video with known face boxes. A box is a person's when it overlaps
    the person's true box by IoU >= 0.3; ``swaps``: ids given to more than one person;
    ``stray_ids``: ids never on any person (a box where no face is)."""
    persons = sorted(truth[0])
    got: dict[int, set] = {p: set() for p in persons}
    seen = shown = 0
    all_ids: set = set()
    for frame_boxes, frame_ids, frame_truth in zip(boxes, ids, truth):
        all_ids |= {int(i) for i in frame_ids if i >= 0}
        for person, box in frame_truth.items():
            if box is None:
                continue
            shown += 1
            overlap = iou_matrix(np.array(box), frame_boxes)[0] if len(frame_boxes) else np.zeros(0)
            if len(overlap) and overlap.max() >= 0.3:
                seen += 1
                if frame_ids[int(overlap.argmax())] >= 0:
                    got[person].add(int(frame_ids[int(overlap.argmax())]))
    owners = [i for p in persons for i in got[p]]
    return {"persons": len(persons), "ids_per_person": [len(got[p]) for p in persons],
            "swaps": len(owners) - len(set(owners)), "stray_ids": len(all_ids - set(owners)),
            "recall": round(seen / max(shown, 1), 4)}


def identity(faces: dict, folder: Path) -> list[dict]:
    """Each identity scene with each face pair, through the finder and through ByteTrack."""
    rows = []
    for name, build in IDENTITY_SCENES.items():
        for a, b in FACE_PAIRS:
            frames, truth = build([faces[a].image, faces[b].image])
            clip = write_video(folder / "identity.mp4", frames, IDENTITY_FPS)
            with detection_pipeline() as detect, open_source(str(clip)) as source:
                results = [detect(frame) for frame in source]
            boxes = [r.faces.boxes for r in results]
            owners = {"finder": [r.faces.ids for r in results], "bytetrack": bytetrack_ids(results, IDENTITY_FPS)}
            for owner, ids in owners.items():
                rows.append({"video": name, "faces": [a, b][: len(truth[0])], "owner": owner, **identity_stats(boxes, ids, truth)})
    return rows


def label_tracks(results: list, tau: float) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """id -> (times, label indices), after smoothing with ``tau`` (0 = raw)."""
    smoother, out = ProbabilitySmoother(SmoothingConfig(tau)), {}
    for result in results:
        faces = smoother(result).faces
        for i, track_id in enumerate(faces.ids.tolist()):
            out.setdefault(track_id, ([], []))
            out[track_id][0].append(result.time)
            out[track_id][1].append(int(np.argmax(faces.probs[i])))
    return {k: (np.array(t), np.array(labels)) for k, (t, labels) in out.items()}


def flicker(results: list, tau: float, fps: float) -> dict:
    """Label changes per second, per id seen >= 1 s: their mean, and each id's."""
    per_track = {}
    for track_id, (times, labels) in label_tracks(results, tau).items():
        if len(times) >= fps:  # ids seen < 1 s: too short to rate
            per_track[track_id] = float(np.count_nonzero(np.diff(labels)) / (times[-1] - times[0]))
    rates = list(per_track.values())
    return {"tracks": len(rates), "changes_per_s": float(np.mean(rates)) if rates else float("nan"),
            "per_track": {str(k): round(v, 3) for k, v in per_track.items()}}


def first_shown(times: np.ndarray, labels: np.ndarray, label: int, after: float) -> float | None:
    """Time of the first frame at or after ``after`` that shows ``label``."""
    hits = np.flatnonzero((labels == label) & (times >= after))
    return float(times[hits[0]]) if len(hits) else None


def transition_lags(results: list, tau: float, fps: float) -> list[float]:
    """Lag at each real expression change of the longest-seen id (for the sample clip).

    A real change: between two raw runs of different labels, each held >= 1 s
    (no ground truth here; the step clips have one). Lag: from raw's first frame
    showing the new label after the old run ended to the smoothed label's. A
    one-frame flicker of raw into the new label counts as raw showing it, so
    this overstates the lag where smoothing did its job and ignored the flicker.
    """
    raw = label_tracks(results, 0.0)
    person = max(raw, key=lambda k: len(raw[k][0]))
    times, labels = raw[person]
    s_times, s_labels = label_tracks(results, tau)[person]
    edges = np.flatnonzero(np.diff(labels)) + 1
    runs = [(a, b) for a, b in zip(np.r_[0, edges], np.r_[edges, len(labels)]) if b - a >= fps]  # [start, end) frames
    lags = []
    for (_, old_end), (new_start, _) in zip(runs, runs[1:]):
        new = labels[new_start]
        if labels[old_end - 1] == new:
            continue
        t_raw = first_shown(times, labels, new, after=times[old_end])
        t_smooth = first_shown(s_times, s_labels, new, after=times[old_end])
        if t_raw is not None and t_smooth is not None:
            lags.append(t_smooth - t_raw)
    return lags


def step_lags(step_results: list[tuple[list, float]], tau: float) -> list[float]:
    """Per step clip: when the smoothed label first shows the new face's expression, minus when raw does."""
    lags = []
    for results, cut in step_results:
        raw = label_tracks(results, 0)
        person = max(raw, key=lambda k: len(raw[k][0]))  # one id across the cut, as for one person
        times, labels = raw[person]
        if times[0] >= cut or times[-1] < cut:
            continue
        before, after = labels[times < cut], labels[times >= cut]
        new = int(np.bincount(after).argmax())
        if not len(before) or int(np.bincount(before).argmax()) == new:
            continue  # the model sees the same expression on both faces: no step to measure
        s_times, s_labels = label_tracks(results, tau)[person]
        t_raw = first_shown(times, labels, new, after=cut)
        t_smooth = first_shown(s_times, s_labels, new, after=cut)
        if t_raw is not None and t_smooth is not None:
            lags.append(t_smooth - t_raw)
    return lags


HOMES = [(40, 30), (330, 30), (60, 290), (350, 290)]


def _position(slot: int, t: float) -> tuple[int, int]:
    x, y = HOMES[slot]
    return int(x + 35 * np.sin(0.9 * t + slot)), int(y + 12 * np.sin(1.3 * t + 2 * slot))


def _side(t: float) -> int:
    return int(135 + 10 * np.sin(0.7 * t))


def moving_faces_video(faces, path: Path, seconds: float = 12.0, fps: float = 15.0) -> Path:
    """Real faces drifting on smooth paths (and growing/shrinking a little), none ever changing."""
    frames = []
    for k in range(int(seconds * fps)):
        positions = [_position(slot, k / fps) for slot in range(len(faces))]
        frames.append(scene_with([f.image for f in faces], positions, side=_side(k / fps))[0])
    return write_video(path, frames, fps)


def followable_faces(candidates, folder: Path, seconds: float = 12.0, fps: float = 15.0) -> list:
    """Per slot, a face of a new class that Haar finds in >= 90% of the frames of that slot's path.

    Haar loses some FER2013 crops at some sizes and places; a face it keeps losing
    measures the detector, not label flicker, and splits into many short tracks.
    """
    chosen = []
    with detection_pipeline() as detect:
        for slot in range(len(HOMES)):
            for face in candidates:
                if face.label in {f.label for f in chosen}:
                    continue
                frames = [scene_with([face.image], [_position(slot, t)], side=_side(t))[0] for t in np.arange(0, seconds, 0.5)]
                clip = write_video(folder / f"slot{slot}.mp4", frames, fps)
                with open_source(str(clip)) as source:
                    if sum(len(detect(frame).faces) == 1 for frame in source) >= 0.9 * len(frames):
                        chosen.append(face)
                        break
    return chosen


def step_video(first, second, path: Path, fps: float, seconds: float = 2.0) -> tuple[Path, float]:
    """``seconds`` of one real face, then the other at the same place, with a small drift."""
    frames = []
    for k in range(int(2 * seconds * fps)):
        face = first if k < seconds * fps else second
        frames.append(scene_with([face.image], [(245 + int(4 * np.sin(2 * k / fps)), 165)])[0])
    return write_video(path, frames, fps), seconds  # frame k shows at k / fps; the cut is at ``seconds``


def measure(args: argparse.Namespace, folder: Path) -> dict:
    """Every measurement, as the JSON report (without the command and model)."""
    candidates = detectable_faces(Path(args.fer2013), "test", per_class=2)
    faces = {f.label: f for f in reversed(candidates)}  # the first detectable face of each class
    report: dict = {"identity": identity(faces, folder), "flicker": [], "lag": []}
    moving = followable_faces(candidates, folder)
    report["moving_faces"] = [f.path for f in moving]
    with raw_pipeline(args.model) as pipeline:
        videos = {SAMPLE: (record(pipeline, SAMPLE_CLIP), 23.976),
                  MOVING: (record(pipeline, moving_faces_video(moving, folder / "multi.mp4")), 15.0)}
        steps = {fps: [(record(pipeline, clip), cut) for clip, cut in
                       (step_video(faces[a], faces[b], folder / f"step_{a}_{b}_{fps:g}.mp4", fps) for a, b in STEP_PAIRS)]
                 for fps in (8.0, 30.0)}
    for name, (results, fps) in videos.items():
        raw_rate = flicker(results, 0.0, fps)["changes_per_s"]
        for tau in [0.0, *args.tau]:
            stats = flicker(results, tau, fps)
            fewer = raw_rate / stats["changes_per_s"] if stats["changes_per_s"] else None
            report["flicker"].append({"video": name, "tau": tau, **stats, "fewer_x": fewer})
    for tau in [0.0, *args.tau]:
        row = {"tau": tau, "sample_clip": _lag_stats(transition_lags(videos[SAMPLE][0], tau, videos[SAMPLE][1]), videos[SAMPLE][1])}
        for fps, clips in steps.items():
            row[f"steps_{fps:g}fps"] = _lag_stats(step_lags(clips, tau), fps)
        report["lag"].append(row)
    return report


def _lag_stats(lags: list[float], fps: float) -> dict:
    if not lags:
        return {"mean_s": None, "median_s": None, "max_s": None, "max_frames": None, "n": 0, "each_s": []}
    return {"mean_s": float(np.mean(lags)), "median_s": float(np.median(lags)), "max_s": float(max(lags)),
            "max_frames": round(max(lags) * fps, 2), "n": len(lags), "each_s": [round(x, 4) for x in lags]}


def _lag_cell(stats: dict) -> str:
    return "-" if stats["median_s"] is None else f"{stats['median_s']:.3f} / {stats['max_s']:.3f} (n={stats['n']})"


def identity_table(report: dict) -> str:
    """Ids per person, per video and owner, summed over the face pairs."""
    lines = ["| video | ids from | people | people with exactly 1 id | most ids for one person | swaps | stray ids | recall |",
             "|---|---|---|---|---|---|---|---|"]
    for video in IDENTITY_SCENES:
        for owner in OWNERS:
            rows = [r for r in report["identity"] if r["video"] == video and r["owner"] == owner]
            counts = [n for r in rows for n in r["ids_per_person"]]
            name = "the face finder (app)" if owner == "finder" else "ByteTrack (roboflow trackers, as pinned in requirements-dev.txt)"
            lines.append(f"| {video} | {name} | {len(counts)} | {sum(n == 1 for n in counts)} | {max(counts)} | "
                         f"{sum(r['swaps'] for r in rows)} | {sum(r['stray_ids'] for r in rows)} | "
                         f"{np.mean([r['recall'] for r in rows]):.3f} |")
    return "\n".join(lines)


def flicker_table(report: dict, default_tau: float) -> str:
    lines = ["| video | tau (s) | ids rated | changes /s, mean | worst id /s | fewer than raw |", "|---|---|---|---|---|---|"]
    for row in report["flicker"]:
        bold = "**" if row["tau"] == default_tau else ""
        tau = "0 (raw)" if row["tau"] == 0 else f"{bold}{row['tau']:.2f}{bold}"
        worst = max(row["per_track"].values(), default=float("nan"))
        fewer = "-" if row["fewer_x"] is None else f"{row['fewer_x']:.1f}x"
        lines.append(f"| {row['video']} | {tau} | {row['tracks']} | {bold}{row['changes_per_s']:.3f}{bold} | {worst:.3f} | {bold}{fewer}{bold} |")
    return "\n".join(lines)


def lag_table(report: dict, default_tau: float) -> str:
    lines = ["| tau (s) | sample clip, 24 fps | steps, 8 fps | steps, 30 fps |", "|---|---|---|---|"]
    for row in report["lag"]:
        bold = "**" if row["tau"] == default_tau else ""
        tau = "0 (raw)" if row["tau"] == 0 else f"{row['tau']:.2f}"
        cells = [_lag_cell(row[k]) for k in ("sample_clip", "steps_8fps", "steps_30fps")]
        lines.append(f"| {bold}{tau}{bold} | " + " | ".join(f"{bold}{c}{bold}" for c in cells) + " |")
    return "\n".join(lines)


def markdown(report: dict) -> str:
    """The tables docs/FLICKER.md shows, from the JSON alone."""
    tau = report["default_tau"]
    return "\n".join([f"Command: `{report['command']}`; model: `{report['model']}` (`{report['model_file']}`).", "",
                      "Face ids (per person, summed over the face pairs):", "", identity_table(report), "",
                      f"Label changes per second per id (bold: the app's default, tau = {tau} s):", "",
                      flicker_table(report, tau), "",
                      "Lag added by smoothing, seconds, median / worst (n = changes measured):", "", lag_table(report, tau), ""])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(REPO / "saved_model_trt"), help="model folder/file (default: the shipped model)")
    p.add_argument("--fer2013", default=DEFAULT_DATA_DIR, help="FER2013 folder (default: $FER2013_DIR, else %(default)s)")
    p.add_argument("--tau", type=float, nargs="+", default=[0.1, 0.15, 0.2, 0.25, 0.4, 0.5], help="smoothing time constants (s)")
    p.add_argument("--out", default="flicker.json", help="where to write the numbers as JSON (the tables go beside it, .table.md)")
    args = p.parse_args(argv)
    from detector.backends import resolve_model

    model = Path(args.model).resolve()
    config = PipelineConfig(model=ModelConfig(args.model))
    with tempfile.TemporaryDirectory() as tmp:
        report = measure(args, Path(tmp))
    report.update({"command": " ".join(["python", "tools/flicker.py", *(sys.argv[1:] if argv is None else argv)]),
                   "model": str(model.relative_to(REPO)) if model.is_relative_to(REPO) else str(model),
                   "model_file": resolve_model(model, config.model.backend, config.model.int8)[1].name,
                   "default_tau": config.smoothing.seconds, "identity_settings": asdict(config.identity)})
    out = Path(args.out)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    table = markdown(report)
    table_path(out).write_text(table, encoding="utf-8")
    print(table)
    print(f"wrote {out} and {table_path(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
