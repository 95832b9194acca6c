"""Kept for tests that still ``from scenes import ...``: the builders live in tools/scenes.py
(tools/ must not import from tests/), so new code imports ``tools.scenes``."""

from tools.scenes import *  # noqa: F401,F403
from tools.scenes import REPO, SAMPLE_CLIP, CASCADE, FRAME_SIZE, FACE_SIDE, RealFace, background, place, detectable_faces, scene_with, write_video, iou  # noqa: F401
