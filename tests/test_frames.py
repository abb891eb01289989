"""Frame / image validation: every bad input gets a code and a message, before pixels are allocated."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

from emotion_detector.frames import FrameError, ImageLimits, decode_image

LIMITS = ImageLimits(max_bytes=5 * 1024 * 1024, max_pixels=40_000_000, max_side_px=10_000)


@pytest.fixture(scope="module")
def photo_jpeg(shared_dir) -> bytes:
    return (shared_dir / "media" / "images" / "single_face.jpg").read_bytes()


def png_header_only(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk


def jpeg_with_size(jpeg: bytes, width: int, height: int) -> bytes:
    """Rewrite the SOF header's dimensions (a 'decompression bomb' header on a small file)."""
    data = bytearray(jpeg)
    offset = 2
    while data[offset + 1] not in (0xC0, 0xC1, 0xC2):
        offset += 2 + struct.unpack(">H", data[offset + 2 : offset + 4])[0]
    data[offset + 5 : offset + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def test_a_half_jpeg_with_a_forged_end_marker_is_refused(photo_jpeg):
    forged = photo_jpeg[: len(photo_jpeg) // 2] + b"\xff\xd9"
    assert cv2.imdecode(np.frombuffer(forged, np.uint8), cv2.IMREAD_COLOR) is not None  # what OpenCV alone does
    with pytest.raises(FrameError) as refused:
        decode_image(forged, LIMITS)
    assert refused.value.code == "corrupt_frame" and "corrupt" in refused.value.message


@pytest.mark.parametrize("name", ["single_face.jpg", "biden.jpg", "BWPictureHuman.jpg"])
def test_strict_jpeg_decoding_gives_opencvs_pixels(shared_dir, name):
    data = (shared_dir / "media" / "images" / name).read_bytes()
    expected = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(decode_image(data, LIMITS), expected)


def test_real_jpeg_and_png_decode(photo_jpeg):
    image = decode_image(photo_jpeg, LIMITS)
    assert image.ndim == 3 and image.shape[2] == 3
    _, png = cv2.imencode(".png", image)
    np.testing.assert_array_equal(decode_image(png.tobytes(), LIMITS), image)


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda jpeg: b"", "empty_frame"),
        (lambda jpeg: b"GIF89a" + b"\0" * 100, "unsupported_format"),
        (lambda jpeg: b"just some text, not an image", "unsupported_format"),
        (lambda jpeg: jpeg[: len(jpeg) // 2], "truncated_frame"),
        (lambda jpeg: jpeg[:40], "corrupt_frame"),  # cut inside the headers
        (lambda jpeg: b"\xff" * (50 * 1024 * 1024), "frame_too_large"),
        (lambda jpeg: jpeg_with_size(jpeg, 20000, 20000), "image_too_large"),
        (lambda jpeg: png_header_only(20000, 20000), "image_too_large"),
        (lambda jpeg: png_header_only(640, 480), "truncated_frame"),
        (lambda jpeg: jpeg[:2] + b"\xff\xd9", "corrupt_frame"),
        (lambda jpeg: b"BM" + b"\0" * 100, "unsupported_format"),  # BMP: decodable by OpenCV, refused by content
        (lambda jpeg: b"RIFF\0\0\0\0WEBPVP8 " + b"\0" * 100, "unsupported_format"),
        (lambda jpeg: b"\0" * 1000, "unsupported_format"),
        (lambda jpeg: jpeg_with_size(jpeg, 10_001, 10), "image_too_large"),  # one side over the limit, few pixels
        (lambda jpeg: png_header_only(10, 10_001), "image_too_large"),
        (lambda jpeg: png_header_only(7_000, 7_000), "image_too_large"),  # sides allowed, 49 M pixels are not
        (lambda jpeg: jpeg_with_size(jpeg, 0, 480), "corrupt_frame"),
        (lambda jpeg: png_header_only(640, 0), "corrupt_frame"),
        (lambda jpeg: png_header_only(640, 480)[:20], "corrupt_frame"),  # cut inside IHDR
        # Half a JPEG with a forged end marker: OpenCV alone would decode it, the lower half grey.
        (lambda jpeg: jpeg[: len(jpeg) // 2] + b"\xff\xd9", "corrupt_frame"),
        (lambda jpeg: jpeg[: len(jpeg) - 2000] + b"\xff\xd9", "corrupt_frame"),
    ],
)
def test_bad_frames_are_refused_with_a_code(photo_jpeg, make, code):
    with pytest.raises(FrameError) as refused:
        decode_image(make(photo_jpeg), LIMITS)
    assert refused.value.code == code
    assert refused.value.message
