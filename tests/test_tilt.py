"""Tilt recovery on the real sample clip with its head swung side to side (detector/tilt.py)."""

from __future__ import annotations

from tools.tilt import clip_frames, run, upright_centres


def test_a_swinging_head_keeps_its_face_and_gains_no_false_one():
    frames = clip_frames(step=3)
    centres = upright_centres(frames)
    without, with_recovery = run(frames, centres, 25, recover=False), run(frames, centres, 25, recover=True)
    assert without["with_face"] / without["frames"] < 0.85  # the upright detector does lose these
    assert with_recovery["with_face"] / with_recovery["frames"] >= 0.97
    assert with_recovery["extra_boxes"] <= without["extra_boxes"]  # no false box of its own
    assert with_recovery["centre_error_mean"] < 0.1  # on the face, not near it
