"""A picture that is itself a face gets a result: the whole-image stage of the pipeline.

Users hand the app face crops (a 48x48 FER2013 picture, a 224x224 headshot) that the Haar
detector cannot find a face *in*: it looks for a face with background around it. A
picture is *face-sized* when it is square or portrait (a tight face crop) and no larger than a headshot
(:func:`is_face_picture`); in one, a detection smaller than half its shorter side is not
the face it shows. Modes (``--whole-image``):

* ``auto``: a face-sized picture with no face-filling detection is classified whole,
  flagged ``"whole_image": true`` in the JSON lines; other frames are left alone.

The whole picture is one face with an id from the pipeline's counter (the face finder's):
one id per source, so each image of a folder is its own face and a video keeps one.
* ``always``: every frame is classified whole (detection is skipped; the app leaves the
  detect stage out).
* ``never``: detection only; a frame without a detected face has no result.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Iterator

import numpy as np

from detector.errors import check_settings

from detector.config import WHOLE_IMAGE_MODES
from detector.results import Faces, FrameResult, Stage

FACE_PICTURE_MAX_SIDE = 512  # px: a headshot or crop; larger pictures are scenes
FACE_PICTURE_MIN_SIDE = 24  # px: Haar's smallest window; below it there is no face to see
FACE_PICTURE_ASPECT = (0.6, 1.25)  # width / height of face crops and passport-style headshots; a tight
# crop of a face is taller than wide (forehead to chin: 0.65-0.8, as most of wild-dev's crops Haar finds nothing in)
FACE_SHARE = 0.5  # in a face-sized picture, the face spans at least this share of the shorter side


def is_face_picture(height: int, width: int) -> bool:
    """Whether a ``height x width`` picture is the size and shape of a face crop."""
    low, high = FACE_PICTURE_ASPECT
    return (FACE_PICTURE_MIN_SIDE <= min(height, width) and max(height, width) <= FACE_PICTURE_MAX_SIDE
            and low <= width / height <= high)


class WholeImageFallback(Stage):
    """Pipeline stage after detection, before classification (``FrameResult -> FrameResult``)."""

    def __init__(self, mode: str = "auto", ids: Iterator[int] | None = None):
        check_settings(f"--whole-image must be one of {', '.join(WHOLE_IMAGE_MODES)}, got {mode!r}" if mode not in WHOLE_IMAGE_MODES else "")
        self.mode = mode
        self._ids = ids if ids is not None else itertools.count(1)  # the pipeline's: shared with the face finder
        self._id: int | None = None  # the whole picture's face id in this source

    def __call__(self, result: FrameResult) -> FrameResult:
        height, width = result.image.shape[:2]
        if self.mode == "never" or (self.mode == "auto" and not is_face_picture(height, width)):
            return result
        if self.mode == "auto":
            sides = np.minimum(result.faces.boxes[:, 2], result.faces.boxes[:, 3])
            keep = sides >= FACE_SHARE * min(height, width)
            if keep.any():
                return replace(result, faces=result.faces.take(keep))
        if self._id is None:
            self._id = next(self._ids)
        return replace(result, faces=Faces(np.array([[0, 0, width, height]]), ids=np.array([self._id])), whole_image=True)

    def reset(self) -> None:
        """A new source (the next image of a folder): its whole picture is a new face, with a new id."""
        self._id = None
