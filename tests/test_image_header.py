"""poster_similarity.serving.image_header: dimensions from real encoder output (Pillow), crafted huge headers, junk."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from poster_similarity.serving.image_header import (
    DEFAULT_MAX_PIXELS,
    ImageInfo,
    ImageTooLarge,
    check_pixels,
    image_info,
)
from poster_similarity.serving.server.codec import check_images
from poster_similarity.serving.server.errors import RequestError
from poster_similarity.serving.server.limits import Limits
from tests.serving_helpers import bmp_header, gif_header, jpeg_header, png_header, webp_header


def encode(fmt: str, w: int, h: int, **kw) -> bytes:
    buf = io.BytesIO()
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8))
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("fmt, kw, name", [
    ("PNG", {}, "png"), ("JPEG", {}, "jpeg"), ("JPEG", {"progressive": True}, "jpeg"), ("GIF", {}, "gif"),
    ("BMP", {}, "bmp"), ("WEBP", {}, "webp"), ("WEBP", {"lossless": True}, "webp"),
])
def test_real_files(fmt, kw, name):
    info = image_info(encode(fmt, 123, 77, **kw))
    assert info == ImageInfo(name, 123, 77, 1)


def test_animated_gif_counts_frames():
    frames = [Image.new("RGB", (40, 30), c) for c in ("red", "green", "blue")]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    info = image_info(buf.getvalue())
    assert (info.width, info.height, info.frames, info.pixels) == (40, 30, 3, 3600)
    with pytest.raises(ImageTooLarge, match="3 frames"):
        check_pixels(buf.getvalue(), 3000)


@pytest.mark.parametrize("make", [png_header, jpeg_header, gif_header, bmp_header, webp_header])
def test_crafted_huge_headers(make):
    data = make(12_000, 12_000)
    assert image_info(data).pixels == 144_000_000
    with pytest.raises(ImageTooLarge, match=f"12000x12000 pixels exceeds the limit of {DEFAULT_MAX_PIXELS}"):
        check_pixels(data)
    assert check_pixels(make(100, 100)).pixels == 10_000


@pytest.mark.parametrize("data", [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a\x01", b"BM", b"RIFF....WEBP",
                                  b"hello world", bytes(range(256)), b"\xff\xd8\xff\xda\x00\x02"])
def test_junk_and_truncated_is_not_an_image(data):
    assert image_info(data) is None
    assert check_pixels(data, 1) is None


def test_server_check_finds_images_inside_examples():
    import tensorflow as tf

    big = png_header(10_000, 10_000)
    ex = tf.train.Example(features=tf.train.Features(feature={
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[big]))})).SerializeToString()
    lim = Limits(max_image_pixels=1_000_000)
    for value in (big, ex):
        with pytest.raises(RequestError, match="exceeds the limit of 1000000") as e:
            check_images({"x": np.array([b"ok", value], dtype=object)}, lim)
        assert e.value.http_status == 400
    check_images({"x": np.array([encode("PNG", 50, 50)], dtype=object)}, lim)
