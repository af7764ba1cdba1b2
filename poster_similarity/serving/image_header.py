"""Image dimensions from the file header, without decoding (PNG, JPEG, GIF, BMP, WebP).

A 420 KB PNG can declare 12,000 × 12,000 pixels and cost gigabytes once decoded, so the server
checks `check_pixels` before a request reaches the model. Pure Python, no TensorFlow. The default is
the data contract's `MAX_IMAGE_PIXELS`, the limit `posters import` and the model's own decode path
(Transform's graph, so TF Serving too) enforce.

    >>> info = image_info(png_bytes)          # ImageInfo("png", 640, 960, 1) or None
    >>> check_pixels(png_bytes, 16_777_216)   # raises ImageTooLarge naming the limit
"""
from __future__ import annotations

import struct
from typing import NamedTuple

from poster_similarity.core.tfrecords import MAX_GIF_BLOCKS, MAX_IMAGE_PIXELS

DEFAULT_MAX_PIXELS = MAX_IMAGE_PIXELS  # 4096 × 4096: the data contract's limit


class ImageInfo(NamedTuple):
    format: str
    width: int
    height: int
    frames: int = 1
    walked: bool = True  # False: a GIF whose block walk stopped at MAX_GIF_BLOCKS steps

    @property
    def pixels(self) -> int:
        return self.width * self.height * max(1, self.frames)


class ImageTooLarge(ValueError):
    """The header declares more pixels than the limit allows."""


def image_info(data: bytes) -> ImageInfo | None:
    """Read the format and dimensions from an image header.

    Args:
        data: the encoded image (only the header and, for GIF, the block structure are read).

    Returns:
        ImageInfo, or None when `data` is not a recognised image or its header is truncated.
    """
    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n":
            return _png(data)
        if data[:3] == b"\xff\xd8\xff":
            return _jpeg(data)
        if data[:6] in (b"GIF87a", b"GIF89a"):
            return _gif(data)
        if data[:2] == b"BM":
            return _bmp(data)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp(data)
    except (struct.error, IndexError):
        return None
    return None


def check_pixels(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo | None:
    """Raise ImageTooLarge when the image header declares more than `max_pixels` pixels.

    Args:
        data: encoded image bytes (anything else passes: the decoder will reject it).
        max_pixels: width × height × frames allowed.

    Returns:
        The ImageInfo read, or None for data that is not a recognised image.
    """
    info = image_info(data)
    if info is not None and not info.walked:
        raise ImageTooLarge(f"GIF with more than {MAX_GIF_BLOCKS} blocks (max_gif_blocks): rejected before decoding")
    if info is not None and info.pixels > max_pixels:
        frames = f" x {info.frames} frames" if info.frames > 1 else ""
        raise ImageTooLarge(
            f"{info.format.upper()} image of {info.width}x{info.height} pixels{frames} exceeds the limit of "
            f"{max_pixels} pixels (max_image_pixels)")
    return info


def _png(d: bytes) -> ImageInfo | None:
    if d[12:16] != b"IHDR":
        return None
    w, h = struct.unpack(">II", d[16:24])
    return ImageInfo("png", w, h)


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg(d: bytes) -> ImageInfo | None:
    i = 2
    n = len(d)
    while i + 4 <= n:
        if d[i] != 0xFF:
            return None
        marker = d[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # no length
            i += 2
            continue
        (length,) = struct.unpack(">H", d[i + 2:i + 4])
        if marker in _SOF:
            h, w = struct.unpack(">HH", d[i + 5:i + 9])
            return ImageInfo("jpeg", w, h)
        if marker == 0xDA or length < 2:  # scan data before any frame header: malformed
            return None
        i += 2 + length
    return None


def _gif(d: bytes) -> ImageInfo | None:
    """Walk the blocks as `components.image_limits.gif_frames` does, step for step: reading past the
    end ends the walk (a truncated descriptor counts as a 0 × 0 frame), at most MAX_GIF_BLOCKS steps."""
    n = len(d)
    if n < 13:  # no complete screen descriptor: not an image (the decoder rejects it)
        return None
    d = d + b"\0" * 16
    w, h, flags = struct.unpack("<HHB", d[6:11])
    i = 13 + (3 * (2 << (flags & 7)) if flags & 0x80 else 0)
    frames, in_data, steps = 0, False, 0
    while i < n and steps < MAX_GIF_BLOCKS:
        b, steps = d[i], steps + 1
        if in_data:  # one data sub-block; a zero length ends the block's data
            i, in_data = i + 1 + b, b > 0
        elif b == 0x21:  # extension: label, then data sub-blocks
            i, in_data = i + 2, True
        elif b == 0x2C:  # image descriptor (+ local colour table), LZW code size, data sub-blocks
            frames += 1
            fw, fh, lflags = struct.unpack("<HHB", d[i + 5:i + 10])
            w, h = max(w, fw), max(h, fh)
            i, in_data = i + 11 + (3 * (2 << (lflags & 7)) if lflags & 0x80 else 0), True
        else:  # trailer (0x3B) or anything else ends the walk
            i = n
    return ImageInfo("gif", w, h, max(1, frames), walked=i >= n)


def _bmp(d: bytes) -> ImageInfo | None:
    (header_size,) = struct.unpack("<I", d[14:18])
    if header_size == 12:  # OS/2 BITMAPCOREHEADER
        w, h = struct.unpack("<HH", d[18:22])
    else:
        w, h = struct.unpack("<ii", d[18:26])
    return ImageInfo("bmp", abs(w), abs(h))


def _webp(d: bytes) -> ImageInfo | None:
    chunk = d[12:16]
    if chunk == b"VP8 ":
        w, h = struct.unpack("<HH", d[26:30])
        return ImageInfo("webp", w & 0x3FFF, h & 0x3FFF)
    if chunk == b"VP8L":
        b = d[21:25]
        w = 1 + (((b[1] & 0x3F) << 8) | b[0])
        h = 1 + (((b[3] & 0x0F) << 10) | (b[2] << 2) | ((b[1] & 0xC0) >> 6))
        return ImageInfo("webp", w, h)
    if chunk == b"VP8X":
        w = 1 + int.from_bytes(d[24:27], "little")
        h = 1 + int.from_bytes(d[27:30], "little")
        return ImageInfo("webp", w, h)
    return None
