"""Decode and validate one image (a live frame or an uploaded picture) before any pixel is allocated:
size, format (by content, not name), dimensions from the header, completeness, then the decode itself."""

from __future__ import annotations

import struct
from dataclasses import dataclass

import cv2
import numpy as np
import simplejpeg

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers carry the dimensions; C4 (DHT), C8 (JPG) and CC (DAC) share the range but do not.
_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


class FrameError(ValueError):
    """A frame or image that cannot be analysed; ``code`` is the machine-readable reason."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int
    max_pixels: int
    max_side_px: int


def decode_image(data: bytes, limits: ImageLimits) -> np.ndarray:
    """JPEG or PNG bytes → BGR uint8 (H, W, 3). Raises FrameError with a code and a message that says why."""
    if not data:
        raise FrameError("empty_frame", "the frame is empty (0 bytes)")
    if len(data) > limits.max_bytes:
        raise FrameError("frame_too_large", f"the frame is {len(data)} bytes; the limit is {limits.max_bytes}")
    if data.startswith(JPEG_MAGIC):
        width, height = _jpeg_size(data)
        complete = data.rstrip(b"\x00").endswith(b"\xff\xd9")  # EOI marker (some encoders pad with zeros)
    elif data.startswith(PNG_MAGIC):
        width, height = _png_size(data)
        complete = data[-12:-8] == b"\x00\x00\x00\x00" and data[-8:-4] == b"IEND"
    else:
        raise FrameError("unsupported_format", f"expected a JPEG or PNG image, got bytes starting {data[:8].hex(' ')}")
    if width > limits.max_side_px or height > limits.max_side_px or width * height > limits.max_pixels:
        raise FrameError(
            "image_too_large",
            f"the image is {width}x{height}; the limits are {limits.max_side_px} px per side and {limits.max_pixels} pixels",
        )
    if not complete:
        raise FrameError("truncated_frame", "the image data is truncated (no end marker)")
    if data.startswith(JPEG_MAGIC):
        image = _decode_jpeg_strictly(data)
        if image is not None:
            return image
    # PNG (libpng refuses corrupt data itself), and JPEGs whose EXIF orientation or CMYK OpenCV applies.
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise FrameError("corrupt_frame", "the image data could not be decoded")
    return image


def _decode_jpeg_strictly(data: bytes) -> np.ndarray | None:
    """libjpeg-turbo (simplejpeg) with its warnings as errors: OpenCV decodes a JPEG cut short, even one with
    a forged end marker, and fills the missing part with grey, which would be analysed as if it were real.
    The same library as OpenCV's, so the pixels are the same. None when OpenCV must decode it after all
    (an EXIF orientation to apply, a CMYK picture): the data has been checked by then."""
    try:
        colorspace = simplejpeg.decode_jpeg_header(data)[2]
        if colorspace in ("CMYK", "YCCK") or data.find(b"Exif\x00\x00", 0, 64 * 1024) != -1:
            simplejpeg.decode_jpeg(data, colorspace="CMYK" if colorspace in ("CMYK", "YCCK") else "BGR", strict=True)
            return None
        image: np.ndarray = simplejpeg.decode_jpeg(data, "BGR", strict=True)
        return image
    except ValueError as error:
        raise FrameError("corrupt_frame", f"the JPEG data is corrupt ({error})") from None


def _jpeg_size(data: bytes) -> tuple[int, int]:
    offset = 2
    while offset + 4 <= len(data):
        if data[offset] != 0xFF:
            raise FrameError("corrupt_frame", f"JPEG marker expected at byte {offset}")
        marker = data[offset + 1]
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            offset += 2
            continue
        (length,) = struct.unpack(">H", data[offset + 2 : offset + 4])
        if marker in _SOF_MARKERS:
            if offset + 9 > len(data):
                break
            height, width = struct.unpack(">HH", data[offset + 5 : offset + 9])
            if width == 0 or height == 0:
                raise FrameError("corrupt_frame", f"JPEG header gives an empty image ({width}x{height})")
            return width, height
        if marker == 0xDA:  # start of scan before any frame header
            break
        offset += 2 + length
    raise FrameError("corrupt_frame", "no JPEG frame header found (truncated or not a JPEG)")


def _png_size(data: bytes) -> tuple[int, int]:
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise FrameError("corrupt_frame", "no PNG IHDR header found")
    width, height = struct.unpack(">II", data[16:24])
    if width == 0 or height == 0:
        raise FrameError("corrupt_frame", f"PNG header gives an empty image ({width}x{height})")
    return width, height
