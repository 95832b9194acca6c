"""A video's display matrix, read whole: rotation *and* mirror, as players apply it.

MP4/MOV files say how their frames are to be shown in the video track's ``tkhd`` box (ISO
14496-12 8.3.2): a 3x3 matrix whose 2x2 part maps a stored pixel ``(x, y)`` to
``(a*x + c*y, b*x + d*y)`` (y down). Phones' front cameras store a mirror there. OpenCV's
``CAP_PROP_ORIENTATION_AUTO`` uses only the matrix's rotation angle (FFmpeg's
``av_display_rotation_get``), so a mirror becomes a 180° turn (FFMS/ffms2#317). Here every
matrix of quarter turns and flips is applied in full; any other (a 45° turn, a scale) is left
alone, as FFmpeg's players do, with a warning.
"""

from __future__ import annotations

import logging
import struct
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np

log = logging.getLogger(__name__)

MP4_SUFFIXES = {".mp4", ".m4v", ".mov", ".3gp", ".3g2"}
_CONTAINERS = {b"moov", b"trak", b"mdia"}  # boxes whose children are searched
Orient = Callable[[np.ndarray], np.ndarray]


def _boxes(file: BinaryIO, end: int) -> list[tuple[bytes, int, int]]:
    """``(type, payload start, payload end)`` of the boxes from the file's position to ``end``."""
    found = []
    while file.tell() + 8 <= end:
        start = file.tell()
        size, kind = struct.unpack(">I4s", file.read(8))
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", file.read(8))[0], 16
        elif size == 0:
            size = end - start
        if size < header or start + size > end:
            break  # damaged: stop rather than guess
        found.append((kind, start + header, start + size))
        file.seek(start + size)
    return found


def _video_tkhd(file: BinaryIO, end: int) -> bytes | None:
    """The ``tkhd`` payload of the first track whose handler is ``vide``."""
    file.seek(0)
    for kind, start, stop in _boxes(file, end):
        if kind != b"moov":
            continue
        file.seek(start)
        for track_kind, t_start, t_stop in _boxes(file, stop):
            if track_kind != b"trak":
                continue
            file.seek(t_start)
            children = {k: (s, e) for k, s, e in _boxes(file, t_stop)}
            if b"tkhd" not in children or b"mdia" not in children:
                continue
            file.seek(children[b"mdia"][0])
            media = {k: (s, e) for k, s, e in _boxes(file, children[b"mdia"][1])}
            if b"hdlr" in media:
                file.seek(media[b"hdlr"][0] + 8)  # version/flags, pre_defined
                if file.read(4) == b"vide":
                    file.seek(children[b"tkhd"][0])
                    return file.read(children[b"tkhd"][1] - children[b"tkhd"][0])
    return None


def read_matrix(path: Path) -> tuple[float, float, float, float] | None:
    """The video track's ``(a, b, c, d)`` from an MP4/MOV file (16.16 fixed point, as floats); None where the file
    is no MP4/MOV, has no video track, or cannot be read."""
    if path.suffix.lower() not in MP4_SUFFIXES:
        return None
    try:
        with path.open("rb") as file:
            tkhd = _video_tkhd(file, path.stat().st_size)
    except (OSError, struct.error):
        return None
    if not tkhd:
        return None
    offset = 4 + (32 if tkhd[0] == 1 else 20) + 16  # version/flags, times/ids/duration, reserved/layer/group/volume
    if len(tkhd) < offset + 36:
        return None
    a, b, _u, c, d, _v = struct.unpack(">6i", tkhd[offset : offset + 24])
    return tuple(value / 65536 for value in (a, b, c, d))


def orientation(matrix: tuple[float, float, float, float] | None, name: str = "") -> Orient | None:
    """The function that turns a stored frame into the displayed one for ``matrix``; None for
    the identity, no matrix, or one that is no quarter turn or flip (ignored, with a warning)."""
    if matrix is None:
        return None
    a, b, c, d = (round(value) for value in matrix)
    whole = all(abs(value - round(value)) < 1e-3 for value in matrix)
    swap = a == 0 and d == 0 and abs(b) == 1 and abs(c) == 1
    if not whole or not (swap or (abs(a) == 1 and abs(d) == 1 and b == 0 and c == 0)):
        log.warning("%s: display matrix %s is no quarter turn or flip: frames are used as stored", name,
                    [round(v, 3) for v in matrix])
        return None
    if (a, b, c, d) == (1, 0, 0, 1):
        return None
    # the stored pixel (x, y) is shown at (a*x + c*y, b*x + d*y): a swap is a transpose, then a
    # negative factor on the new x (or y) a horizontal (or vertical) flip
    flip_x, flip_y = (c < 0, b < 0) if swap else (a < 0, d < 0)

    def orient(image: np.ndarray) -> np.ndarray:
        if swap:
            image = image.transpose(1, 0, *range(2, image.ndim))
        if flip_x:
            image = image[:, ::-1]
        if flip_y:
            image = image[::-1]
        return np.ascontiguousarray(image)

    mirrored = a * d - b * c < 0
    log.info("%s: display matrix %s: frames %s as a player shows them", name, (a, b, c, d),
             "mirrored and turned" if mirrored and swap else "mirrored" if mirrored else "turned")
    return orient
