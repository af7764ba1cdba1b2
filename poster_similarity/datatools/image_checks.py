"""The image half of `posters import`: one poster file → RGB JPEG/PNG bytes to store, or `Rejected`
with a reason code (the codes are listed in `ingest.REASONS` and docs/data.md)."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from poster_similarity.core import tfrecords as tfr

JPEG_QUALITY = 95


class Rejected(Exception):
    """A row/poster the import skips: `reason` is a report.json reason code, `detail` says why."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode → RGB; transparency is composited on white (posters have no alpha)."""
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):  # 16-bit/float grayscale: rescale
        arr = np.asarray(img, dtype=np.float64)
        hi = float(arr.max()) if arr.size else 0.0
        if hi > 255:
            arr = arr * (255.0 / (65535.0 if hi <= 65535 else hi))
        elif img.mode == "F" and hi <= 1.0:
            arr = arr * 255.0
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L")
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    if has_alpha:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def _decode_failure(path: Path, e: BaseException) -> Rejected:
    """Pillow reports a cut-off file as EOFError / "image file is truncated" / "broken PNG file"."""
    msg = str(e) or type(e).__name__
    truncated = isinstance(e, EOFError) or "truncat" in msg.lower() or "broken" in msg.lower()
    return Rejected("truncated" if truncated else "undecodable", f"{path.name}: {msg}")


def check_image(path: Path | None, min_size: int,
                max_pixels: int = tfr.MAX_IMAGE_PIXELS) -> tuple[bytes, dict[str, Any]]:
    """Return (bytes to store, info) or raise Rejected.

    The image is fully decoded (`load()`) so truncation is caught here rather than in Transform;
    before that, the size in its header is checked against `max_pixels` (the same limit Transform
    and the served model enforce), so a small file declaring a huge image is never decoded.
    RGB JPEG/PNG bytes are kept as they are; anything else is converted to RGB and re-encoded as
    JPEG quality 95 (info["converted"] says from what).
    """
    if path is None:
        raise Rejected("missing_file", "no poster file named in the CSV row")
    try:
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise Rejected("missing_file", f"{path} not found") from None
    except OSError as e:
        raise Rejected("missing_file", f"{path}: {e.strerror or e}") from None
    if not data:
        raise Rejected("empty_file", f"{path} is 0 bytes")
    try:
        img = Image.open(io.BytesIO(data))
        fmt = img.format
    except UnidentifiedImageError:
        raise Rejected("undecodable", f"{path.name}: not a recognised image format") from None
    except (Image.DecompressionBombError, ValueError, SyntaxError, OSError, EOFError) as e:
        raise _decode_failure(path, e) from None
    w, h = img.size  # from the header: nothing decoded yet
    if w * h > max_pixels:
        raise Rejected("too_large", f"{w}x{h} = {w * h} pixels > max_pixels={max_pixels}")
    relaxed = ImageFile.LOAD_TRUNCATED_IMAGES  # if some other code relaxed Pillow, truncation would pass
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        img.load()
    except (OSError, EOFError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise _decode_failure(path, e) from None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = relaxed
    w, h = img.size
    if min(w, h) < min_size:
        raise Rejected("too_small", f"{w}x{h}, shorter side < {min_size}px")
    info: dict[str, Any] = {"format": fmt, "mode": img.mode, "size": [w, h]}
    if img.mode == "RGB" and fmt in ("JPEG", "PNG") and "transparency" not in img.info:
        return data, info
    info["converted"] = f"{fmt} {img.mode}"
    buf = io.BytesIO()
    try:
        _to_rgb(img).save(buf, format="JPEG", quality=JPEG_QUALITY)
    except (OSError, ValueError) as e:  # a mode Pillow cannot bring to RGB
        raise Rejected("undecodable", f"{path.name}: cannot convert {fmt} {img.mode} to RGB: {e}") from None
    return buf.getvalue(), info
