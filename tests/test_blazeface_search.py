"""BlazeFace's full search (detector/detection/blazeface.py, stills.py): tiles at the scale small faces
need, one box per face where the frame and a tile both see it, and a still's turned and brightened
looks, on real pictures (the sample clip, ../shared/wild-dev photos) changed as tools/detector_sets.py
changes them for docs/DETECTORS.md."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import REPO_ROOT, require_shared
from detector.config import DetectionConfig
from detector.detection import create_detector
from detector.detection.blazeface import one_per_face, tile_side, tiles
from detector.detection.boxes import iou_matrix
from detector.detection.stills import LIFT_TO, MAX_GAIN, lift, map_back, turn
from detector.pipeline import create_face_detector
from tools import detector_sets
from tools.detector_sets import Picture, found_face

CASES = REPO_ROOT.parent / "shared" / "cases"


@pytest.fixture(scope="module")
def video():
    return create_detector("blazeface")


@pytest.fixture(scope="module")
def still():
    return create_face_detector(DetectionConfig("blazeface"), still=True)


@pytest.fixture(scope="module")
def clip_faces(video) -> list[Picture]:
    """Eight clip frames with their face (Haar's box, as tools/detector_sets.py takes it)."""
    haar = create_detector("haar")
    frames = detector_sets.clip_frames(59)
    return [Picture(frame, detector_sets.true_face(frame, haar, video), "clip", i) for i, frame in enumerate(frames)]


@pytest.mark.parametrize("width, height, still, side", [
    (640, 360, False, 400),  # tiled at 400 px: a 50 px face is 24 px to the model
    (1920, 1080, False, 960),  # video: tiles of half the longer side at least (a search of ~7 runs)
    (1920, 1080, True, 400),  # a still: 400 px tiles at any size
])
def test_tile_side_for_video_and_stills(width, height, still, side):
    assert tile_side(width, height, 400, still) == side
    assert tile_side(width, height, 0, still) == 0
    assert len(tiles(width, height, side)) > 1


def test_a_coarse_box_around_a_sharp_one_is_the_same_face_and_neighbours_are_not():
    # a 50 px face: the whole frame's coarse box (score 0.54) around a tile's sharp one (0.83), as measured
    boxes = np.array([[343, 232, 61, 61], [367, 259, 44, 44], [440, 250, 50, 50]], np.float64)
    assert one_per_face(boxes, np.array([0.54, 0.83, 0.7])).tolist() == [1, 2]


def test_faces_of_50_px_in_a_640_px_frame_each_get_one_box(video, clip_faces):
    rng, canvas = np.random.default_rng(0), detector_sets.wall()
    for picture in clip_faces:
        shrunk = detector_sets.small(picture, 50, canvas, rng)
        found = video.detect(shrunk.image)
        assert len(found) == 1 and found_face(found.boxes.astype(np.float64), shrunk.face) is not None


def test_a_face_found_on_a_turned_copy_maps_back_onto_itself(video, clip_faces):
    picture = clip_faces[2]
    upright = video.detect(picture.image)
    turned, back = turn(picture.image, 45)
    assert turned.shape[0] > picture.image.shape[0] and turned.shape[1] > picture.image.shape[1]  # nothing cut off
    seen = video.find(turned)
    boxes, keypoints = map_back(video.framing.apply(seen.boxes), seen.keypoints, back)
    assert iou_matrix(np.round(boxes[:1]), upright.boxes[:1])[0, 0] > 0.7
    assert np.abs(keypoints[0, :2] - upright.keypoints[0, :2]).max() < 0.06 * upright.boxes[0, 2]  # both eyes


def _photos(change, count: int = 10) -> list[Picture]:
    require_shared(detector_sets.WILD_DEV, "../shared/wild-dev missing")
    haar, blazeface = create_detector("haar"), create_detector("blazeface")
    out = []
    for i, image in enumerate(detector_sets.photos(6)[:count]):
        face = detector_sets.true_face(image, haar, blazeface)
        if face is not None:
            out += change(Picture(image, face, "photo", i))
    return out


def test_stills_turned_45_degrees_are_found_by_the_turned_looks(video, still):
    pictures = _photos(lambda p: [detector_sets.rotated(p, 45), detector_sets.rotated(p, -45)])
    hits = {name: sum(found_face(detector.detect(p.image).boxes.astype(np.float64), p.face) is not None for p in pictures)
            for name, detector in (("video", video), ("still", still))}
    assert len(pictures) >= 16
    assert hits["still"] >= 0.9 * len(pictures) and hits["still"] > hits["video"]


def test_dark_stills_the_full_search_misses_are_found_by_the_brightened_look(video, still):
    """Web photos at 8% brightness: of those the search without second looks misses, most are found."""
    pictures = _photos(lambda p: [detector_sets.dark(p, 0.08)], count=40)
    missed = [p for p in pictures if found_face(video.detect(p.image).boxes.astype(np.float64), p.face) is None]
    assert len(missed) >= 2  # the photos hold such faces: the test has something to find
    found = [p for p in missed if found_face(still.detect(p.image).boxes.astype(np.float64), p.face) is not None]
    assert len(found) >= 0.6 * len(missed)


def test_no_box_on_face_free_stills_after_every_look(still, clip_faces):
    wall = clip_faces[0].image[:, :240]
    for variant in (wall, cv2.resize(wall, (640, 360)), cv2.flip(wall, 1), cv2.convertScaleAbs(wall, alpha=0.1)):
        assert len(still.detect(variant)) == 0
    for gain in (0.1, 0.3):  # the dark ones got a brightened look: to 220 at the 99th percentile, at most x8
        dim = cv2.convertScaleAbs(wall, alpha=gain)
        lifted = lift(dim)
        assert lifted is not None
        assert np.percentile(lifted, 99) == pytest.approx(min(LIFT_TO, MAX_GAIN * np.percentile(dim, 99)), abs=3)
    assert lift(cv2.convertScaleAbs(wall, alpha=2.0)) is None  # a bright picture gets none


def test_far_faces_case_every_face_found_as_the_app_searches_a_still(still):
    """120 and 90 px faces in 1080p stills: 400 px tiles make them 58 and 43 px to the model."""
    folder = require_shared(CASES / "far-faces-downscaled", "../shared/cases/far-faces-downscaled missing")
    for name in ("far_120px_1080p.png", "far_90px_1080p.png"):
        found = still.detect(cv2.imread(str(folder / name)))
        assert len(found) == 5, name
        centres = found.boxes[:, :2] + found.boxes[:, 2:] / 2
        assert np.ptp(centres[:, 1]) < 40 and np.diff(np.sort(centres[:, 0])).min() > 200  # one row of five faces


def test_the_brightened_look_draws_no_small_box_on_a_frame_with_the_face_cut_out(still, video):
    """Clip frames 88, 224 and 284 with the face cut out (tools/detector_sets.py's face-free set): the
    brightened look once showed a 17 px face on each; a second look keeps only faces of min-face size."""
    haar = create_detector("haar")
    frames = detector_sets.clip_frames(1)
    for index in (88, 224, 284):
        face = detector_sets.true_face(frames[index], haar, video)
        cut = detector_sets.face_free([], [Picture(frames[index], face, "clip", index)])[0]
        assert len(still.detect(cut.image)) == 0, index
