"""What a run saw, per face id: the numbers behind ``summary.json`` and the line a headless
run ends with. One owner for "which emotion did face #3 mostly show"."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from detector.results import FrameResult

UNTRACKED = -1  # faces without an id (a stage added one without asking the pipeline's counter) are grouped here


@dataclass
class IdTally:
    frames: int = 0
    source: str = ""  # where it was first seen (the image's file name, for folders)
    first_time: float = 0.0
    last_time: float = 0.0
    counts: np.ndarray = None  # type: ignore[assignment]  # frames per class where it was the top one
    probs_sum: np.ndarray = None  # type: ignore[assignment]


@dataclass
class RunTally:
    """Counts over a run's frames, fed one :class:`FrameResult` at a time (``add``)."""

    frames: int = 0
    faces: int = 0
    without_face: int = 0  # frames (or images) where no face was found or classified
    whole_image: int = 0  # frames classified whole (detector.whole_image)
    labels: tuple[str, ...] = ()
    ids: dict[int, IdTally] = field(default_factory=dict)

    def add(self, result: FrameResult) -> None:
        self.frames += 1
        self.faces += len(result.faces)
        self.without_face += not len(result.faces)
        self.whole_image += bool(result.whole_image)
        if not result.faces.classified:
            return
        self.labels = self.labels or tuple(result.labels)
        for i, probs in enumerate(result.faces.probs):
            track_id = int(result.faces.ids[i]) if result.faces.ids[i] >= 0 else UNTRACKED
            tally = self.ids.get(track_id)
            if tally is None:
                tally = self.ids[track_id] = IdTally(source=result.source, first_time=result.time, counts=np.zeros(len(probs), np.int64),
                                                     probs_sum=np.zeros(len(probs), np.float64))
            tally.frames += 1
            tally.last_time = result.time
            tally.counts[int(np.argmax(probs))] += 1
            tally.probs_sum += probs

    def per_id(self) -> dict[str, dict]:
        """Per id: frames seen, first and last time, dominant emotion, share of frames per
        emotion (as the top class), mean probabilities. Keys are ids as strings (JSON)."""
        faces = {}
        for track_id, tally in sorted(self.ids.items()):
            share = tally.counts / tally.counts.sum()
            faces[str(track_id)] = {
                "frames": tally.frames,
                "first_time": round(tally.first_time, 4),
                "last_time": round(tally.last_time, 4),
                "dominant": self.labels[int(np.argmax(tally.counts))],
                "share": {name: round(float(s), 4) for name, s in zip(self.labels, share)},
                "mean_probs": {name: round(float(p), 4) for name, p in zip(self.labels, tally.probs_sum / tally.frames)},
            }
        return faces

    def files(self) -> dict[str, str]:
        """Face id -> the source (file) it was first seen in."""
        return {str(track_id): tally.source for track_id, tally in sorted(self.ids.items())}

    def describe_faces(self, limit: int = 8, still: bool = False) -> list[str]:
        """One line per face id, most-seen first: ``#1: 412 frames, mostly sad (61%), then happy (30%)``;
        for still images, in file order: ``photo.jpg #3: happy 88%``."""
        lines = []
        if still:
            faces = self.per_id()
            for track_id, info in list(faces.items())[:limit]:
                top = info["dominant"]
                lines.append(f"{self.ids[int(track_id)].source} #{track_id}: {top} {info['mean_probs'][top]:.0%}")
            if len(faces) > limit:
                lines.append(f"... and {len(faces) - limit} more faces")
            return lines
        ranked = sorted(self.per_id().items(), key=lambda item: -item[1]["frames"])
        for track_id, info in ranked[:limit]:
            top = sorted(info["share"].items(), key=lambda kv: -kv[1])
            name = "untracked faces" if track_id == str(UNTRACKED) else f"#{track_id}"
            text = f"{name}: {info['frames']} frame{'s' if info['frames'] != 1 else ''}, mostly {top[0][0]} ({top[0][1]:.0%})"
            if len(top) > 1 and top[1][1] >= 0.1:
                text += f", then {top[1][0]} ({top[1][1]:.0%})"
            lines.append(text)
        if len(ranked) > limit:
            lines.append(f"... and {len(ranked) - limit} more face ids (seen less)")
        return lines
