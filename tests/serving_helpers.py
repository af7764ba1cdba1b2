"""Small helpers shared by the serving tests: JSON over HTTP, `{"b64": …}` values, crafted image headers."""
from __future__ import annotations

import base64
import io
import json
import struct
import urllib.error
import urllib.request
import zlib


def b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode("ascii")}


def http(method: str, url: str, body=None, raw: bytes | None = None) -> tuple[int, dict]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


# -- image headers declaring 12,000 x 12,000 pixels in a few hundred bytes -------------------------
def png_header(w: int, h: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    idat = zlib.compress(b"\x00" * 4096)
    return (b"\x89PNG\r\n\x1a\n" + chunk + struct.pack(">I", len(idat)) + b"IDAT" + idat
            + struct.pack(">I", zlib.crc32(b"IDAT" + idat)))


def jpeg_header(w: int, h: int) -> bytes:
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, h, w, 1) + b"\x01\x11\x00"
    return b"\xff\xd8\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + sof


def gif_header(w: int, h: int) -> bytes:
    return b"GIF89a" + struct.pack("<HHBBB", w, h, 0, 0, 0) + b"\x2c" + struct.pack("<HHHHB", 0, 0, w, h, 0) \
        + b"\x02\x02\x44\x01\x00\x3b"


def bmp_header(w: int, h: int) -> bytes:
    return b"BM" + struct.pack("<IHHI", 54, 0, 0, 54) + struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, 0, 0, 0, 0, 0)


def webp_header(w: int, h: int) -> bytes:
    vp8x = struct.pack("<I", 0) + (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", 4 + 8 + len(vp8x)) + b"WEBP" + b"VP8X" + struct.pack("<I", len(vp8x)) + vp8x


# -- GIFs whose cost is in their frames or their block structure ---------------------------------
def animated_gif(w: int, h: int, frames: int) -> bytes:
    """Solid frames of alternating colours: each frame differs from the last everywhere, so the
    encoder writes every frame at full canvas size (a few hundred bytes of LZW each)."""
    from PIL import Image

    imgs = [Image.new("P", (w, h), i % 2) for i in range(frames)]
    for img in imgs:
        img.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    buf = io.BytesIO()
    imgs[0].save(buf, format="GIF", save_all=True, append_images=imgs[1:], optimize=False, disposal=1)
    return buf.getvalue()


def sub_block_gif(blocks: int) -> bytes:
    """A 10×10 GIF whose comment extension holds `blocks` one-byte data sub-blocks (2 bytes each),
    then one 10×10 frame: the walk takes `blocks` + 6 steps (introducer, sub-blocks, terminator,
    descriptor, its sub-block, terminator, trailer)."""
    return (b"GIF89a" + struct.pack("<HHBBB", 10, 10, 0, 0, 0) + b"\x21\xfe" + b"\x01x" * blocks + b"\x00"
            + gif_header(10, 10)[13:])
