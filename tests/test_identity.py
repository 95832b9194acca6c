"""Which face is which (``detector.identity``), on real faces: the full-frame search runs
beside the frame loop, known faces are re-found around where they were, a video gives the
same boxes on every run, and each person keeps one id through crossings, covers and exits.

Real faces only: the bundled sample clip, letterboxed into 640x480 scenes as the bench does,
and FER2013 faces composited into scenes (``tools.scenes``).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import pytest

from detector.bench import SIZE, letterbox, mosaic, recall, sample_frames
from detector.config import IdentityConfig
from detector.detection.haar import HaarConfig, HaarFaceDetector
from detector.errors import SettingsError
from detector.identity import FaceFinder
from detector.pipeline import detection_pipeline
from detector.results import FrameResult
from detector.sources import open_source
from tools.scenes import (CASCADE, background, covered_scene, crossing_scene, detectable_faces, iou, leaving_scene,
                          scene_with, write_video, zoom_scene)


@pytest.fixture(scope="module")
def clip_frames() -> list[np.ndarray]:
    return sample_frames()[0]


def four_faces(frames: list[np.ndarray], count: int) -> list[np.ndarray]:
    """The bench's 4-face clip: four real faces in every frame."""
    return [mosaic(frames, i) for i in range(count)]


def find_all(frames: list[np.ndarray], config: IdentityConfig = IdentityConfig(), searcher=None) -> list[np.ndarray]:
    detector = HaarFaceDetector(HaarConfig(cascade=str(CASCADE)))
    with ThreadPoolExecutor(max_workers=1) as executor:
        finder = FaceFinder(detector, searcher or detector.copy(), executor, config)
        return [finder(frame).boxes for frame in frames]


class SlowSearch(HaarFaceDetector):
    """The real detector on a machine where the full search takes 150 ms."""

    def detect(self, frame, region=None, *, strict=False):
        if region is None:
            time.sleep(0.15)
        return super().detect(frame, region, strict=strict)


def test_four_faces_are_kept_in_nearly_every_frame(clip_frames):
    frames = four_faces(clip_frames, 300)
    boxes = find_all(frames)
    found = recall(2, boxes)
    assert found >= 0.98, f"four-face recall {found:.3f}"
    assert max(len(b) for b in boxes) == 4, "a face was counted twice"


def test_boxes_do_not_depend_on_how_fast_the_search_is(clip_frames):
    frames = four_faces(clip_frames, 40)
    fast = find_all(frames)
    slow = find_all(frames, searcher=SlowSearch(HaarConfig(cascade=str(CASCADE))))
    assert all(np.array_equal(a, b) for a, b in zip(fast, slow))
    assert sum(len(b) for b in fast) >= 0.9 * 4 * len(frames)


def test_a_new_face_joins_at_the_next_search(clip_frames):
    """Left half: a face from the start. Right half: the wall, then a face from frame 8 on."""
    half = (SIZE[0] // 2, SIZE[1])
    wall = letterbox(background(), half)
    frames = [np.hstack([letterbox(clip_frames[i], half), wall if i < 8 else letterbox(clip_frames[-1 - i], half)])
              for i in range(40)]
    config = replace(IdentityConfig(), full_every=12, full_lag=4)
    boxes = find_all(frames, config)

    def right(b):
        return int(np.sum(b[:, 0] + b[:, 2] / 2 > half[0]))

    assert len(boxes[0]) == 1 and right(boxes[0]) == 0, "the first frame is searched at once"
    joined = next(i for i, b in enumerate(boxes) if right(b))
    assert 8 < joined <= 8 + config.full_every + config.full_lag
    assert all(right(b) == 1 for b in boxes[joined:])


@pytest.fixture(scope="module")
def real_faces(fer2013_dir):
    return detectable_faces(fer2013_dir, "test", per_class=1)


def _detect_video(frames, tmp_path, fps=15.0):
    """The app's face stage over a real video file (written, then read back as the app reads it)."""
    clip = write_video(tmp_path / "clip.mp4", frames, fps)
    with detection_pipeline() as pipeline, open_source(str(clip)) as source:
        return [pipeline(f) for f in source]


def _ids_of_each_person(results, truth):
    """Person -> every id given to a box lying on that person's true box (IoU > 0.5)."""
    ids = {person: set() for person in truth[0]}
    for result, boxes in zip(results, truth):
        for person, box in boxes.items():
            overlaps = [iou(b, box) for b in result.faces.boxes] if box is not None else []
            if overlaps and max(overlaps) > 0.5:
                ids[person].add(int(result.faces.ids[int(np.argmax(overlaps))]))
    return ids


def test_ids_stay_with_real_faces_moving_across_a_video(real_faces, tmp_path):
    faces = [f.image for f in real_faces[:3]]
    frames, truth = [], []
    for k in range(40):  # three faces drifting in different directions for 40 frames
        positions = [(20 + 3 * k, 40), (470 - 3 * k, 60), (200 + k, 300 - 2 * k)]
        scene, boxes = scene_with(faces, positions, side=140)
        frames.append(scene)
        truth.append(dict(enumerate(boxes)))
    ids_of = _ids_of_each_person(_detect_video(frames, tmp_path), truth)
    assert all(len(ids) == 1 for ids in ids_of.values()), ids_of  # one id per face for the whole video
    assert set.union(*ids_of.values()) == {1, 2, 3}


def test_a_real_face_missing_for_two_frames_keeps_its_id(real_faces, tmp_path):
    frames = []
    for k in range(12):
        if k in (5, 6):
            frames.append(background())  # the face is gone: Haar finds nothing
        else:
            frames.append(scene_with([real_faces[3].image], [(200 + 4 * k, 150)])[0])
    results = _detect_video(frames, tmp_path)
    assert [len(r.faces) for r in results] == [1] * 5 + [0, 0] + [1] * 5
    assert {int(r.faces.ids[0]) for r in results if len(r.faces)} == {1}


SCENES = {
    "cross": crossing_scene,
    "cross-at-one-height": lambda faces: crossing_scene(faces, offset=0),
    "covered-for-10-frames": covered_scene,
    "leave-and-come-back": leaving_scene,
    "closer-and-back": zoom_scene,
}


@pytest.mark.parametrize("pair", [(0, 1), (4, 6)], ids=["angry+disgust", "sad+neutral"])
@pytest.mark.parametrize("scene", SCENES, ids=list(SCENES))
def test_each_real_face_keeps_one_id_of_its_own(scene, pair, real_faces, tmp_path):
    """Faces that pass in front of each other, are covered, leave and return, or double in size:
    each person gets exactly one id for the whole video, and no two people share one."""
    frames, truth = SCENES[scene]([real_faces[i].image for i in pair])
    results = _detect_video(frames, tmp_path)
    ids_of = _ids_of_each_person(results, truth)
    assert all(len(ids) == 1 for ids in ids_of.values()), ids_of
    assert len(set.union(*ids_of.values())) == len(ids_of), ids_of
    hidden = [k for k, boxes in enumerate(truth) if any(b is None for b in boxes.values())]
    if scene != "closer-and-back":  # the scene really hides a face for a while
        assert len(hidden) >= 7


def test_a_new_face_gets_a_new_id(real_faces, tmp_path):
    """One face leaves on the right; later another face appears far from it, on the left."""
    frames = [scene_with([real_faces[0].image], [(420, 160)])[0] for _ in range(10)]
    frames += [background() for _ in range(5)]
    frames += [scene_with([real_faces[5].image], [(30, 170)])[0] for _ in range(10)]
    results = _detect_video(frames, tmp_path)
    assert {int(i) for r in results[:10] for i in r.faces.ids} == {1}
    assert {int(i) for r in results[-5:] for i in r.faces.ids} == {2}


def test_ids_are_never_reused_across_sources(real_faces):
    """Each file of an image folder is a scene of its own, but ids count on through the run."""
    image = scene_with([real_faces[2].image], [(240, 160)])[0]
    with detection_pipeline() as pipeline:
        ids = [pipeline(FrameResult(0, 0.0, name, image)).faces.ids.tolist() for name in ("a.png", "b.png", "a.png")]
    assert ids == [[1], [2], [3]]


def test_closing_the_pipeline_stops_the_face_search_thread(real_faces):
    image = scene_with([real_faces[2].image], [(240, 160)])[0]
    pipeline = detection_pipeline()
    for k in range(8):  # past the first full search on the worker thread
        pipeline(FrameResult(k, k / 15, "clip", image))
    assert any(t.name.startswith("face-search") for t in threading.enumerate())
    pipeline.close()
    assert not any(t.name.startswith("face-search") for t in threading.enumerate())


@pytest.mark.parametrize("kwargs, error", [
    ({"duplicate_iou": 1.5}, "duplicate_iou"),
    ({"velocity_weight": 0}, "velocity_weight"),
    ({"remember_s": -1}, "remember_s"),
    ({"reid_scale": 0.5}, "reid_scale"),
    ({"full_every": 0}, "--full-every must be 1 or more"),
    ({"full_lag": -1}, "--full-lag must be 0 or more"),
])
def test_identity_config_rejects_bad_settings(kwargs, error):
    with pytest.raises(SettingsError, match=error):
        IdentityConfig(**kwargs)
