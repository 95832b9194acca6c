"""Crops levelled by the eye line (detector/align.py), on the sample clip's real face."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import REPO_ROOT
from detector.align import eye_angle, face_crops, levelled_crop


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    capture = cv2.VideoCapture(str(REPO_ROOT / "samples" / "sample_face.mp4"))
    capture.set(cv2.CAP_PROP_POS_FRAMES, 118)
    ok, image = capture.read()
    capture.release()
    assert ok
    return image


@pytest.mark.parametrize("eyes, expected", [
    ([[10, 50], [30, 50]], 0.0),
    ([[10, 50], [30, 30]], 45.0),  # the person's left eye higher on the image: turned counter-clockwise
    ([[10, 50], [30, 70]], -45.0),
    ([[30, 50], [10, 50]], 180.0),  # upside down
])
def test_eye_angle(eyes, expected):
    keypoints = np.array([*eyes, [0, 0], [0, 0], [0, 0], [0, 0]], np.float32)
    angle = eye_angle(keypoints)
    assert (abs(angle) if expected == 180.0 else angle) == pytest.approx(expected)


def test_level_crop_of_a_zero_angle_is_the_frames_own_crop(frame):
    box = np.array([300, 80, 240, 240])
    np.testing.assert_array_equal(levelled_crop(frame, box, 0.0), frame[80:320, 300:540])
    assert face_crops(frame, box[None], None)[0].shape == (240, 240, 3)


@pytest.mark.parametrize("degrees", [-30, 20, 45])
def test_levelling_undoes_a_known_rotation_of_the_real_face(frame, degrees):
    """Turn the frame about the face centre by a known angle: the levelled crop at that angle is
    the upright crop again (but for the corners rotated in from outside the turned frame)."""
    box = np.array([310, 100, 240, 240])
    centre = (box[0] + box[2] / 2, box[1] + box[3] / 2)
    turned = cv2.warpAffine(frame, cv2.getRotationMatrix2D(centre, degrees, 1.0), frame.shape[1::-1],
                            borderMode=cv2.BORDER_REPLICATE)
    upright = frame[100:340, 310:550].astype(np.float32)
    levelled = levelled_crop(turned, box, degrees).astype(np.float32)
    unlevelled = turned[100:340, 310:550].astype(np.float32)
    middle = (slice(60, 180), slice(60, 180))  # the inner face, inside the circle both rotations keep
    error = np.abs(levelled[middle] - upright[middle]).mean()
    assert error < 6 and error < 0.3 * np.abs(unlevelled[middle] - upright[middle]).mean()


def test_face_crops_levels_each_face_by_its_own_keypoints(frame):
    boxes = np.array([[310, 100, 240, 240], [0, 0, 100, 100]])
    keypoints = np.zeros((2, 6, 2), np.float32)
    keypoints[0, :2] = [[380, 200], [480, 200]]  # level eyes: the frame's own crop
    keypoints[1, :2] = [[20, 60], [80, 0]]  # 45 degrees
    crops = face_crops(frame, boxes, keypoints)
    np.testing.assert_array_equal(crops[0], frame[100:340, 310:550])
    assert crops[1].shape == (100, 100, 3) and not np.array_equal(crops[1], frame[0:100, 0:100])
    assert all(np.array_equal(a, b) for a, b in zip(face_crops(frame, boxes, keypoints, level=False),
                                                  [frame[100:340, 310:550], frame[0:100, 0:100]]))
