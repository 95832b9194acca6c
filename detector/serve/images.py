"""Uploaded bytes -> a BGR image, inside the server's size limits.

Limits are checked before anything is decoded: the byte size, then the pixel count the
file's header declares (a few hundred KB of PNG can unpack to gigabytes), and the pixel
count again once decoded. Formats whose header Pillow does not read are held to the
limit by OpenCV's own header check (``main.py serve`` sets it: see
:func:`~detector.serve.cli.limit_decoder_pixels`). A failure is a
:class:`BadImage` carrying the HTTP status the client gets (400 unreadable, 413 too
large), never an exception the server has to survive.
"""

from __future__ import annotations

import base64
import binascii
import io

import numpy as np

from detector.imageio import PIXEL_LIMIT_ENV, ImageDecodeError, decode_image_bytes
from detector.serve.config import ServeConfig


class BadImage(ValueError):
    """Input that is not a usable image; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def check_declared_size(data: bytes, max_pixels: int) -> None:
    """Refuse a picture by the size its header states, before its pixels are unpacked
    (Pillow opens lazily). Formats Pillow does not read pass, to be checked once decoded.

    Raises:
        BadImage: 413 when the header states more than ``max_pixels``.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except Image.DecompressionBombError:  # Pillow's own cap, far above any sane limit
        raise BadImage(413, f"image has over {2 * Image.MAX_IMAGE_PIXELS} pixels; the limit is {max_pixels}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return
    if width * height > max_pixels:
        raise BadImage(413, f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}")


def decode_upload(data: bytes, config: ServeConfig) -> np.ndarray:
    """``(H, W, 3)`` uint8 BGR from an uploaded file's bytes.

    Raises:
        BadImage: 400 when empty or undecodable, 413 when over ``config.max_bytes`` or ``config.max_pixels``.
    """
    if not data:
        raise BadImage(400, "empty upload: send an image file")
    if len(data) > config.max_bytes:
        raise BadImage(413, f"image is {len(data)} bytes; the limit is {config.max_bytes}")
    check_declared_size(data, config.max_pixels)
    try:
        image = decode_image_bytes(data)  # as the app reads a file: orientation, bit depth, decoder limits
    except ImageDecodeError as error:
        if PIXEL_LIMIT_ENV in str(error):  # OpenCV's header check, set to max_pixels by main.py serve
            raise BadImage(413, f"image has more pixels than the limit of {config.max_pixels}") from None
        raise BadImage(400, str(error)) from None
    height, width = image.shape[:2]
    if height * width > config.max_pixels:
        raise BadImage(413, f"image is {width}x{height} = {width * height} pixels; the limit is {config.max_pixels}")
    return image


def base64_limit(max_bytes: int) -> int:
    """Characters of base64 for ``max_bytes`` bytes: 4 for every 3, the last group padded."""
    return (max_bytes + 2) // 3 * 4


def decode_base64(text: str, config: ServeConfig) -> np.ndarray:
    """An image given as a data URL (``data:image/jpeg;base64,...``) or bare base64, as
    browser clients of the ``/face`` contract send it.

    Raises:
        BadImage: 400 when the text is not base64 or not an image, 413 when too large.
    """
    payload = text.split(",", 1)[1] if text.startswith("data:") and "," in text else text
    if len(payload) > base64_limit(config.max_bytes):
        raise BadImage(413, f"image is over the limit of {config.max_bytes} bytes")
    try:
        data = base64.b64decode("".join(payload.split()), validate=True)  # line breaks allowed
    except (binascii.Error, ValueError):
        raise BadImage(400, "imgBase64 is not base64 (nor a base64 data URL)") from None
    return decode_upload(data, config)
