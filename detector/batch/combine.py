"""``DIR/summary.csv`` and ``DIR/failures.csv``, rebuilt from the per-input results every time,
so they always agree with what is on disk, whichever run (or engine) made each part."""

from __future__ import annotations

import csv
import io
import json

from detector.batch.store import ResultStore
from detector.outputs import write_atomic
from detector.report import SUMMARY_FILE as REPORT_SUMMARY  # each input's summary.json

SUMMARY_FILE = "summary.csv"
FAILURES_FILE = "failures.csv"


def face_rows(item: str, summary: dict) -> list[list]:
    """One row per face id of one input (ids in numeric order); an input where no face was
    seen gets one row with an empty ``face_id``, so every analysed input is listed."""
    labels, fps = summary["labels"], summary["fps"]
    rows = []
    for face_id, face in sorted(summary["faces"].items(), key=lambda kv: int(kv[0])):
        rows.append([item, face_id, face["frames"], round(face["frames"] / fps, 3), face["dominant"],
                     *(face["share"][name] for name in labels), *(face["mean_probs"][name] for name in labels)])
    return rows or [[item, "", 0, 0.0, "", *([""] * 2 * len(labels))]]


def combine(store: ResultStore, names: dict[str, str]) -> tuple[int, int, int]:
    """Write summary.csv and failures.csv for ``names`` (input -> result folder name), in
    input order; returns (summary rows, inputs failed, inputs partly undecodable). Inputs
    not yet run have no row.

    Columns of summary.csv: ``video`` (the input as given), ``face_id``, ``frames`` seen,
    ``seconds`` seen (frames / fps), ``dominant`` emotion, ``share_<label>`` (fraction of the
    face's frames with that label on top), ``mean_<label>`` (mean probability).
    failures.csv: ``input``, ``error``; an input analysed with undecodable frames is listed
    there too (its rows cover the frames that could be read)."""
    labels: list[str] = []
    rows, failures, partial = [], [], 0
    for item, name in names.items():
        marker = store.marker(name)
        if marker is None or marker["input"] != item:
            continue
        if not marker["ok"]:
            failures.append([item, marker["error"]])
            continue
        summary = json.loads((store.final(name) / REPORT_SUMMARY).read_text(encoding="utf-8"))
        labels = labels or summary["labels"]
        rows.extend(face_rows(item, summary))
        if marker["unreadable"]:
            partial += 1
            failures.append([item, f"{marker['unreadable']} frames could not be decoded (damaged or truncated); "
                                   f"results cover the {marker['frames']} that could"])
    header = ["video", "face_id", "frames", "seconds", "dominant", *(f"share_{n}" for n in labels), *(f"mean_{n}" for n in labels)]
    write_atomic(store.out_dir / SUMMARY_FILE, _csv([header, *rows]))
    write_atomic(store.out_dir / FAILURES_FILE, _csv([["input", "error"], *failures]))
    return len(rows), len(failures) - partial, partial


def _csv(rows: list[list]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()

