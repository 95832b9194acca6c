"""The batch's output folder: where each input's results are staged, how they become final,
and how a rerun knows which are complete.

Layout: ``DIR/<name>/`` holds one input's results and, written last, ``complete.json``
(or only ``failed.json``); ``DIR/.staging/<name>/`` is where a job writes while it runs.
A finished job's folder is renamed into place in one step, so ``DIR/<name>/`` is either
absent, the old result, or the new one — never half of one, whenever the batch is killed.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path

from detector.batch.inputs import hashed_name
from detector.batch.job import Outcome
from detector.errors import UserError
from detector.outputs import make_folder, write_atomic

COMPLETE_FILE = "complete.json"
FAILED_FILE = "failed.json"
STAGING_DIR = ".staging"


def input_identity(item: str) -> dict:
    """Size and modification time: a file changed since its results were made is redone."""
    try:
        stat = Path(item).stat()
    except OSError:
        return {}
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


class ResultStore:
    """``settings``: what the results depend on (``batch.cli.settings``: model and its file, detector,
    tracking, smoothing, annotate ...), JSON-able;
    results made with other settings are not complete for this run."""

    def __init__(self, out_dir: Path, settings: dict):
        self.out_dir = Path(out_dir)
        self.settings = json.loads(json.dumps(settings))  # as it reads back from a marker
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise UserError(f"--out is a file, expected a folder: {self.out_dir}")
        make_folder(self.out_dir / STAGING_DIR, "output folder")

    def final(self, name: str) -> Path:
        return self.out_dir / name

    def marker(self, name: str) -> dict | None:
        """The input's ``complete.json`` or ``failed.json`` with ``"ok"`` true or false; None if neither."""
        for file_name in (COMPLETE_FILE, FAILED_FILE):
            try:
                return json.loads((self.final(name) / file_name).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
        return None

    def owned_name(self, item: str, name: str) -> str:
        """``name``, unless ``DIR/<name>/`` holds another input's results (an earlier run's
        input with the same stem, or one that differs only in case on a case-insensitive
        disk): then :func:`~detector.batch.inputs.hashed_name`, so neither result replaces
        the other. Deterministic, so a rerun finds the same folder."""
        marker = self.marker(name)
        if marker is None or marker["input"] == item or Path(marker["input"]).resolve() == Path(item).resolve():
            return name
        return hashed_name(item)

    def is_complete(self, item: str, name: str) -> bool:
        """Finished before, from this same input file, with these same settings."""
        marker = self.marker(name)
        return bool(marker and marker["ok"] and marker["input"] == item and marker["settings"] == self.settings
                    and marker["identity"] == input_identity(item))

    def staging(self, name: str) -> Path:
        """An empty folder for the job to write into (what an interrupted run left there is removed)."""
        folder = self.out_dir / STAGING_DIR / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        return folder

    def finish(self, name: str, outcome: Outcome, engine: str) -> None:
        """Mark the staged folder complete (or failed: its partial files are dropped) and
        rename it into place, replacing an older result."""
        staged = self.out_dir / STAGING_DIR / name
        if not outcome.ok:
            shutil.rmtree(staged, ignore_errors=True)
            staged.mkdir(parents=True)
        marker = {**asdict(outcome), "name": name, "engine": engine, "settings": self.settings,
                  "identity": input_identity(outcome.input)}
        write_atomic(staged / (COMPLETE_FILE if outcome.ok else FAILED_FILE), json.dumps(marker, indent=2) + "\n")
        final, old = self.final(name), self.out_dir / STAGING_DIR / f".old-{name}"  # no name starts with "."
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            os.replace(final, old)  # one rename out of the way, so no half-deleted result is left in DIR
        os.replace(staged, final)
        shutil.rmtree(old, ignore_errors=True)

    def clean_staging(self) -> None:
        shutil.rmtree(self.out_dir / STAGING_DIR, ignore_errors=True)
