"""Still images decoded the way an image viewer shows them: one function for files and bytes.

* **Orientation**: phones store portraits sideways with an EXIF ``Orientation`` tag. OpenCV
  applies it for every flag set except ``IMREAD_UNCHANGED``; measured on JPEG, PNG, WebP and
  TIFF files with tags 3/6/8 it gives the same pixels as Pillow's ``ImageOps.exif_transpose``.
  So boxes found here are in the coordinates of the upright picture a person sees.
* **Bit depth**: 16-bit files often hold 10-, 12- or 14-bit camera data; dividing by 256
  would leave them near black. Values are scaled by the real depth: a PNG's ``sBIT`` chunk
  where it has one, else the smallest of 10/12/14/16 bits that holds the largest value.
* **Limits**: an image over OpenCV's pixel limit is read at 1/2, 1/4 or 1/8 size where the
  format can decode reduced (JPEG); otherwise the error names the limit and how to raise it.

* **Frames**: animated GIF, WebP and PNG (APNG) and multi-page TIFF hold several pictures;
  OpenCV's decoder reads the first only. :func:`read_image_frames` gives every one (Pillow
  composes each frame as a viewer shows it), so none is dropped silently.

Other code (the folder and file sources, a REST API, batch jobs) calls
:func:`decode_image_bytes` or :func:`read_image_file` and gets upright 3-channel uint8 BGR.
"""

from __future__ import annotations

import io
import logging
import os
import struct
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from detector.errors import SourceError

log = logging.getLogger(__name__)

#: Applies EXIF orientation (IMREAD_UNCHANGED would not), keeps 16-bit and float samples,
#: and gives 1 or 3 channels (alpha is dropped: the model sees no transparency).
READ_FLAGS = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR
#: Reduced-size reads, tried in order when the full picture is over the decoder's pixel limit.
REDUCED_READS = ((2, cv2.IMREAD_REDUCED_COLOR_2), (4, cv2.IMREAD_REDUCED_COLOR_4), (8, cv2.IMREAD_REDUCED_COLOR_8))
CAMERA_BIT_DEPTHS = (10, 12, 14, 16)
PIXEL_LIMIT_ENV = "OPENCV_IO_MAX_IMAGE_PIXELS"  # OpenCV's own setting, default 2**30 pixels


class ImageDecodeError(SourceError):
    """The bytes are not an image this decoder reads, or the image is over its limits.
    The message says which, in one line, without the file name (callers add it)."""


def decode_image_bytes(data: bytes) -> np.ndarray:
    """Encoded image bytes (JPEG, PNG, TIFF, WebP, BMP, PNM...) -> upright BGR uint8 ``(H, W, 3)``.

    Raises :class:`ImageDecodeError` for empty, damaged or unsupported data and for an image
    over the decoder's pixel limit that cannot be read at reduced size.
    """
    buffer = np.frombuffer(data, dtype=np.uint8)
    if not buffer.size:
        raise ImageDecodeError("empty file")
    try:
        image = cv2.imdecode(buffer, READ_FLAGS)
    except cv2.error as error:
        if "CV_IO_MAX_IMAGE_PIXELS" not in str(error):
            raise ImageDecodeError("damaged image data") from None
        image = _decode_reduced(buffer)
    if image is None or image.size == 0:
        raise ImageDecodeError("not an image this decoder reads, or damaged or truncated")
    return to_bgr8(image, significant_bits=_png_significant_bits(data))


def read_image_file(path: Path) -> np.ndarray:
    """:func:`decode_image_bytes` for a file, read as bytes so non-ASCII paths work on Windows.
    Raises :class:`ImageDecodeError` naming the file."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise ImageDecodeError(f"cannot read {path}: {error.strerror or error}") from None
    try:
        return decode_image_bytes(data)
    except ImageDecodeError as error:
        raise ImageDecodeError(f"{Path(path).name}: {error}") from None


def frame_count(data: bytes) -> int:
    """How many pictures an encoded image holds (animation frames, TIFF pages): 1 for a plain
    still and for anything Pillow does not read (OpenCV-only formats)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            return max(1, int(getattr(image, "n_frames", 1)))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return 1


def read_image_frames(path: Path) -> tuple[int, Iterator[np.ndarray]]:
    """``(count, frames)`` of an image file: the one picture of a still (:func:`read_image_file`),
    or every frame or page of an animated or multi-page file, each upright BGR uint8
    ``(H, W, 3)``. The iterator raises :class:`ImageDecodeError` (naming the file) at a frame
    that cannot be decoded."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise ImageDecodeError(f"cannot read {path}: {error.strerror or error}") from None
    count = frame_count(data)
    if count == 1:
        return 1, iter([read_image_file(path)])
    return count, _pillow_frames(data, Path(path).name)


def _pillow_frames(data: bytes, name: str) -> Iterator[np.ndarray]:
    from PIL import Image, ImageOps, ImageSequence

    try:
        with Image.open(io.BytesIO(data)) as image:
            for frame in ImageSequence.Iterator(image):
                yield _from_pillow(ImageOps.exif_transpose(frame))
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageDecodeError(f"{name}: a frame cannot be decoded: {error}") from None


def _from_pillow(frame) -> np.ndarray:
    """A Pillow picture -> BGR uint8, 16-bit and float pages scaled as :func:`to_bgr8` does."""
    if frame.mode in ("I;16", "I;16B", "I;16L", "I"):
        return to_bgr8(np.clip(np.asarray(frame), 0, 65535).astype(np.uint16))
    if frame.mode == "F":
        return to_bgr8(np.asarray(frame, np.float32))
    return np.ascontiguousarray(np.asarray(frame.convert("RGB"))[:, :, ::-1])


def _decode_reduced(buffer: np.ndarray) -> np.ndarray:
    """The first reduced read that fits the pixel limit; the limit named in the error otherwise."""
    for factor, flags in REDUCED_READS:
        try:
            image = cv2.imdecode(buffer, flags)
        except cv2.error:
            continue
        if image is not None and image.size:
            log.warning("image over the decoder's pixel limit: read at 1/%d size (%dx%d); boxes are in that size",
                        factor, image.shape[1], image.shape[0])
            return image
    limit = os.environ.get(PIXEL_LIMIT_ENV, str(2**30))
    raise ImageDecodeError(f"more pixels than the decoder's limit of {limit} and this format cannot be read at "
                           f"reduced size (set {PIXEL_LIMIT_ENV} higher to read it, memory permitting)")


def _png_significant_bits(data: bytes) -> int | None:
    """A PNG's ``sBIT`` chunk (the bits per sample that carry data), read from the header
    chunks before the pixels; None for other formats or a PNG without one."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    offset = 8
    while offset + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if kind == b"sBIT":
            return max(data[offset + 8 : offset + 8 + length] or b"\x00") or None
        if kind in (b"IDAT", b"IEND"):
            return None
        offset += 12 + length
    return None


def bit_depth(image: np.ndarray, significant_bits: int | None = None) -> int:
    """The real bit depth of a uint16 image: ``significant_bits`` when the file says it, else
    the smallest of 10/12/14/16 bits that holds its largest value (camera data is stored so)."""
    if significant_bits and 8 < significant_bits <= 16:
        return significant_bits
    peak = int(image.max()) if image.size else 0
    return next(bits for bits in CAMERA_BIT_DEPTHS if peak < 2**bits)


def to_bgr8(image: np.ndarray, significant_bits: int | None = None) -> np.ndarray:
    """Any decoded image (gray, BGRA, 16-bit, float) -> 3-channel uint8 BGR ``(H, W, 3)``.

    uint16 is scaled by its real depth (:func:`bit_depth`); float images are stretched
    min-max (they carry no range of their own)."""
    if image.dtype == np.uint16:
        top = 2 ** bit_depth(image, significant_bits) - 1
        image = np.clip(np.rint(image.astype(np.float32) * (255.0 / top)), 0, 255).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = np.nan_to_num(image.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if image.ndim == 3 and image.shape[2] not in (1, 3, 4):  # e.g. gray + alpha in two planes
        image = np.ascontiguousarray(image[:, :, 0])
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image
