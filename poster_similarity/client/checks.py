"""Argument checks of the client commands (`posters query`, `posters gallery`), run before anything
is sent or any TensorFlow import (reading TFRecords costs ~10 s).

A user mistake is answered here, in one line and at once, instead of by the server after the
upload (a raw `DecodeImage` op error for a text file) or by a confident but meaningless answer
(`-k 0`: an empty list; `-k -3`: seven results). Pure Python + Pillow.
"""
from __future__ import annotations

import glob as globlib
import io
import os

# What the served model's `tf.io.decode_image` (TensorFlow 2.15) reads; the file's first bytes.
SUPPORTED_IMAGES = {"JPEG": (b"\xff\xd8\xff",), "PNG": (b"\x89PNG\r\n\x1a\n",), "GIF": (b"GIF87a", b"GIF89a"),
                    "BMP": (b"BM",)}
SUPPORTED_TEXT = "JPEG, PNG, GIF or BMP"


class UsageError(ValueError):
    """A mistake in the command's arguments: the command prints `posters <cmd>: error: <message>`
    on one line and exits 2."""


def image_format(data: bytes) -> str | None:
    """The supported format whose signature `data` starts with, or None."""
    for name, magics in SUPPORTED_IMAGES.items():
        if data.startswith(magics):
            return name
    return None


def check_image_bytes(data: bytes, name: str) -> None:
    """Refuse bytes the model cannot decode, naming what they are.

    Args:
        data: the file's bytes.
        name: how to name the file in the message (its path).

    Raises:
        UsageError: empty, not an image, an image format the model does not read (e.g. WebP,
            TIFF), or a damaged/truncated image of a supported format.
    """
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise UsageError(f"{name}: empty file, not an image")
    fmt = image_format(data)
    try:
        with Image.open(io.BytesIO(data)) as im:
            found = im.format
            if fmt is not None:
                im.load()  # decodes the pixels: a truncated or corrupt file fails here, as on the server
    except UnidentifiedImageError:
        raise UsageError(f"{name}: not an image (the model reads {SUPPORTED_TEXT})") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise UsageError(f"{name}: a damaged {fmt or 'image'} file ({' '.join(str(e).split())})") from None
    if fmt is None:
        raise UsageError(f"{name}: a {found} image; the model reads {SUPPORTED_TEXT} only")


def read_images(paths: list[str]) -> list[bytes]:
    """The bytes of each image file, each checked by `check_image_bytes`.

    Raises:
        UsageError: a path that is missing, a folder, unreadable, or not a supported image.
    """
    blobs = []
    for path in paths:
        if os.path.isdir(path):
            raise UsageError(f"{path}: a folder, not an image file")
        if not os.path.isfile(path):
            raise UsageError(f"image file not found: {path}")
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise UsageError(f"cannot read {path}: {e.strerror or e}") from None
        check_image_bytes(data, path)
        blobs.append(data)
    return blobs


def check_server(address: str, flag: str = "--server") -> None:
    """`host:port` (an `http://` prefix is accepted): without a port REST would silently go to port 80.

    Raises:
        UsageError: no port, or a port that is not a number in 1..65535.
    """
    host, sep, port = address.removeprefix("http://").rstrip("/").rpartition(":")
    if not sep or not host:
        raise UsageError(f"{flag} {address!r}: expected HOST:PORT, e.g. localhost:8501")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise UsageError(f"{flag} {address!r}: the port must be a number in 1..65535")


def check_k(k: int) -> None:
    """`-k` is how many results to print per query; the model's own limit is checked on its answer.

    Raises:
        UsageError: k < 1.
    """
    if k < 1:
        raise UsageError(f"-k must be >= 1, got {k}")


def check_catalogue(pattern: str | None, flag: str = "--catalogue") -> None:
    """The catalogue glob matches at least one file (checked before the server is asked).

    Raises:
        UsageError: no file matches.
    """
    if pattern and not globlib.glob(pattern):
        raise UsageError(f"{flag} {pattern!r} matches no files")


def check_file(path: str | None, flag: str) -> None:
    """An optional input file exists and is a file.

    Raises:
        UsageError: it is missing or a folder.
    """
    if path and not os.path.isfile(path):
        raise UsageError(f"{flag} {path}: {'a folder, not a file' if os.path.isdir(path) else 'no such file'}")
