"""poster_similarity.components.image_limits: the pixel limit inside the graph (so TF Serving has it).

Sizes are derived here rather than copied: the default limit is 4096² = 16,777,216 pixels.
"""
from __future__ import annotations

import io
import random
import struct

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from poster_similarity.components.image_limits import MAX_GIF_BLOCKS, check_pixels, image_dims
from poster_similarity.components.preprocessing import decode_and_pad
from poster_similarity.serving.image_header import ImageTooLarge, image_info
from poster_similarity.serving.image_header import check_pixels as check_image
from tests.serving_helpers import animated_gif, bmp_header, gif_header, png_header, sub_block_gif

dims = tf.function(image_dims, input_signature=[tf.TensorSpec([], tf.string)])
# 10×10 canvas without a global table; one 20×30 frame with a local colour table of 2^(1+1) = 4 entries
LOCAL_TABLE_GIF = (b"GIF89a" + struct.pack("<HHBBB", 10, 10, 0, 0, 0)
                   + b"\x2c" + struct.pack("<HHHHB", 0, 0, 20, 30, 0x81) + b"\x00" * 12 + b"\x02\x02\x44\x01\x00\x3b")


def encode(fmt: str, w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize("data", [
    encode("PNG", 123, 77), encode("JPEG", 123, 77), encode("GIF", 123, 77), encode("BMP", 123, 77),
    png_header(12_000, 12_000), gif_header(12_000, 12_000), bmp_header(300, 7),  # (a bare SOF is not a JPEG
    # to extract_jpeg_shape: it fails with its own INVALID_ARGUMENT, which is a 400 as well)
    animated_gif(40, 30, 3),
    LOCAL_TABLE_GIF,
    animated_gif(40, 30, 3)[:-1] + b"\x2c\x00",  # the trailer replaced by a truncated descriptor: a 4th frame
])
def test_the_graph_reads_what_the_servers_python_check_reads(data):
    """The local server's check (serving/image_header.py) and the graph's agree on width, height and
    frames, so TF Serving and the local server reject the same images."""
    info = image_info(data)
    assert dims(tf.constant(data)).numpy().tolist() == [info.width, info.height, info.frames, 1]


def test_the_two_gif_walks_agree_step_for_step_on_corrupted_files():
    """Byte flips and cuts of an animated GIF with local colour tables: whatever the Python walk
    reads (width, height, frames, finished), the graph reads too, so no file passes one and not the other."""
    rng = random.Random(7)
    base = animated_gif(40, 30, 3)[:-1] + LOCAL_TABLE_GIF[13:]
    for _ in range(60):
        data = bytearray(base[:rng.randrange(14, len(base) + 1)])
        for _ in range(rng.randrange(4)):
            data[rng.randrange(6, len(data))] = rng.randrange(256)
        info = image_info(bytes(data))
        assert info is not None and info.format == "gif"
        assert dims(tf.constant(bytes(data))).numpy().tolist() == [info.width, info.height, info.frames,
                                                                   int(info.walked)], bytes(data)


def test_an_animated_gif_bomb_is_rejected_before_decoding():
    """1000×1000 canvas = 1,000,000 pixels, under the limit; 20 frames of it = 20,000,000 > 16,777,216.
    giflib keeps every frame's raster even for `expand_animations=False` (measured: a 1 MB GIF of
    120 3000×3000 frames took decode_image 6.6 s and +1.06 GB RSS), so the frames count."""
    bomb = animated_gif(1000, 1000, 20)
    assert len(bomb) < 100_000
    with pytest.raises(tf.errors.InvalidArgumentError, match="max_image_pixels=16777216") as e:
        decode_and_pad(bomb, 30, 20)
    assert "width, height, frames: 1000 1000 20" in e.value.message
    assert decode_and_pad(animated_gif(1000, 1000, 16), 30, 20).shape == (30, 20, 3)  # 16,000,000 fits


def test_the_gif_walk_is_bounded():
    """A GIF of one-byte sub-blocks makes the walk one step per 2 bytes. `sub_block_gif(k)` takes
    k + 6 steps: at exactly MAX_GIF_BLOCKS it finishes; one more and it is rejected (its own message,
    in the graph and in the server's check) instead of walking on."""
    assert dims(tf.constant(sub_block_gif(MAX_GIF_BLOCKS - 6))).numpy().tolist() == [10, 10, 1, 1]
    assert image_info(sub_block_gif(MAX_GIF_BLOCKS - 6)).walked
    check_pixels(tf.constant(sub_block_gif(MAX_GIF_BLOCKS - 6)))
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"more than {MAX_GIF_BLOCKS} blocks"):
        check_pixels(tf.constant(sub_block_gif(MAX_GIF_BLOCKS - 5)))
    assert not image_info(sub_block_gif(MAX_GIF_BLOCKS - 5)).walked
    with pytest.raises(ImageTooLarge, match=f"more than {MAX_GIF_BLOCKS} blocks"):
        check_image(sub_block_gif(MAX_GIF_BLOCKS - 5))


@pytest.mark.parametrize("data", [b"", b"\x89PNG", b"hello"])
def test_unknown_or_truncated_headers_read_zero(data):
    """Nothing to read: [0, 0] pixels, left to decode_image's own error."""
    assert dims(tf.constant(data)).numpy().tolist() == [0, 0, 1, 1]


@pytest.mark.parametrize("data", [b"GIF89a", b"GIF89a\x10\x00\x10\x00\x80", gif_header(50, 50)[:20],
                                  gif_header(50, 50)[:-1] + b"\x2c", b"GIF" + bytes(range(256)) * 4])
def test_truncated_and_junk_gifs_end_the_walk(data):
    """Every index past the data ends the walk; the decoder then gives its own error (or an image)."""
    w, h, frames, walked = dims(tf.constant(data)).numpy().tolist()
    assert frames >= 1 and walked == 1 and w >= 0 and h >= 0


def test_the_serving_signature_rejects_the_bomb(tmp_path):
    """The exported SavedModel's own decode path (what TF Serving runs) answers INVALID_ARGUMENT."""
    from tests import tiny_export

    model = tf.saved_model.load(tiny_export.cached("brute_force"))
    with pytest.raises(tf.errors.InvalidArgumentError, match="max_image_pixels"):
        model.signatures["serving_default"](image_bytes=tf.constant([animated_gif(1000, 1000, 20)]))
    out = model.signatures["serving_default"](image_bytes=tf.constant([animated_gif(100, 150, 3)]))
    assert out["movie_ids"].shape[0] == 1
