"""The pixel limit inside the graph: image dimensions (and GIF frames) read from the bytes, no decoding.

Transform's `preprocessing_fn` runs `check_pixels` before `decode_image`, and the serving SavedModel
wraps Transform's graph, so TF Serving rejects an image bomb with INVALID_ARGUMENT (HTTP 400)
before a pixel is allocated, exactly as the local server's Python check
(`serving/image_header.py`) does. The two count the same way:

- PNG, JPEG, BMP: width × height from the header.
- GIF: (widest frame or canvas) × (tallest frame or canvas) × frames. giflib's `DGifSlurp`, which
  `decode_image` calls even with `expand_animations=False`, keeps a raster of every frame, so a
  1 MB file of a few hundred canvas-sized frames decodes to gigabytes. The frames are counted by
  walking the GIF's blocks in a `tf.while_loop`. A walk longer than `MAX_GIF_BLOCKS` steps is
  rejected too (in both places): an encoder writes 255-byte sub-blocks, so that is a GIF of
  ~4 MB, while a file built of 1-byte sub-blocks would make the walk long for little data. The
  bound keeps the check's own cost at 0.4 s per image at worst (measured on a busy 2-core machine).
"""
from __future__ import annotations

import functools
import re

import tensorflow as tf

from poster_similarity.core.tfrecords import MAX_GIF_BLOCKS, MAX_IMAGE_PIXELS

_PAD = 32  # bytes appended so a truncated header reads zeros instead of failing


def _uint(data: tf.Tensor, start: int, size: int, big_endian: bool) -> tf.Tensor:
    """Unsigned integer of `size` bytes at `start` of a scalar string, as int64."""
    b = tf.cast(tf.io.decode_raw(tf.strings.substr(data, start, size), tf.uint8), tf.int64)
    weights = tf.constant([256 ** i for i in range(size)][:: -1 if big_endian else 1], tf.int64)
    return tf.reduce_sum(b * weights)


def _colour_table_bytes(flags: tf.Tensor) -> tf.Tensor:
    """Size of the colour table a GIF screen/image descriptor's packed flags announce."""
    size = 3 * tf.bitwise.left_shift(tf.constant(2, tf.int64), tf.bitwise.bitwise_and(flags, 7))
    return tf.where(tf.bitwise.bitwise_and(flags, 0x80) > 0, size, tf.constant(0, tf.int64))


def gif_frames(image_bytes: tf.Tensor) -> tf.Tensor:
    """[width, height, frames, walked] of a GIF: the widest and tallest of the canvas and its frames.

    The same walk as `serving.image_header._gif`: after the header and the global colour table,
    each step reads either a block introducer (0x21 extension, 0x2C image descriptor; anything else
    ends the walk) or one data sub-block (a length byte; 0 ends the block's data). Reading past the
    end ends the walk too (a truncated descriptor still counts as a frame, of size 0 × 0). Each step
    gathers 6 bytes, so memory stays one copy of the file whatever its content. `walked` is 1 when
    the walk reached the end within `MAX_GIF_BLOCKS` steps, 0 when it was cut short.

    Args:
        image_bytes: a scalar string holding a GIF.

    Returns:
        int64 [4].
    """
    n = tf.cast(tf.strings.length(image_bytes), tf.int64)
    padded = tf.strings.join([image_bytes, tf.constant(b"\0" * _PAD)])
    d = tf.io.decode_raw(padded, tf.uint8)
    fields = tf.constant([0, 5, 6, 7, 8, 9], tf.int64)  # introducer/length, then a descriptor's w, h, flags

    def body(i, in_data, w, h, frames, steps):
        b, w0, w1, h0, h1, flags = tf.unstack(tf.cast(tf.gather(d, i + fields), tf.int64))
        is_frame = tf.logical_and(tf.logical_not(in_data), tf.equal(b, 0x2C))
        # Between blocks: an extension (label, then data) or an image descriptor (10 bytes, its
        # colour table, the LZW code size byte, then data); anything else (0x3B trailer) ends.
        block_next = tf.where(tf.equal(b, 0x21), i + 2,
                              tf.where(tf.equal(b, 0x2C), i + 11 + _colour_table_bytes(flags), n))
        # Inside a block's data: skip one sub-block; a zero length ends the data.
        nxt = tf.where(in_data, i + 1 + b, block_next)
        return (nxt, tf.logical_or(tf.logical_not(in_data), b > 0),
                tf.where(is_frame, tf.maximum(w, w0 + 256 * w1), w),
                tf.where(is_frame, tf.maximum(h, h0 + 256 * h1), h),
                frames + tf.cast(is_frame, tf.int64), steps + 1)

    def cond(i, in_data, w, h, frames, steps):
        return tf.logical_and(i < n, steps < MAX_GIF_BLOCKS)

    start = 13 + _colour_table_bytes(tf.cast(d[10], tf.int64))
    init = (start, tf.constant(False), _uint(padded, 6, 2, False), _uint(padded, 8, 2, False),
            tf.constant(0, tf.int64), tf.constant(0, tf.int64))
    i, _, w, h, frames, _ = tf.while_loop(cond, body, init)
    return tf.stack([w, h, tf.maximum(frames, 1), tf.cast(i >= n, tf.int64)])


def image_dims(image_bytes: tf.Tensor) -> tf.Tensor:
    """[width, height, frames, walked] read from a JPEG/PNG/GIF/BMP file without decoding the pixels.

    Unknown formats give [0, 0, 1, 1] (decode_image then fails with its own error). The bytes are
    padded first so a truncated header reads zeros instead of failing on an out-of-range substring.
    For a GIF the width and height are the largest of the canvas and its frames, and `walked` is 0
    when its block walk stopped at `MAX_GIF_BLOCKS` (`gif_frames`); it is 1 otherwise.

    Args:
        image_bytes: a scalar string, the encoded image.

    Returns:
        int64 [4].
    """
    data = tf.strings.join([image_bytes, tf.constant(b"\0" * _PAD)])
    one = tf.constant(1, tf.int64)

    def png():
        return tf.stack([_uint(data, 16, 4, True), _uint(data, 20, 4, True), one, one])

    def gif():
        return gif_frames(image_bytes)

    def bmp():  # a negative (top-down) height is stored as two's complement
        h = _uint(data, 22, 4, False)
        return tf.stack([_uint(data, 18, 4, False), tf.where(h >= 2 ** 31, 2 ** 32 - h, h), one, one])

    def jpeg():
        hw = tf.cast(tf.image.extract_jpeg_shape(image_bytes), tf.int64)
        return tf.stack([hw[1], hw[0], one, one])

    return tf.case([
        (tf.equal(tf.strings.substr(data, 0, 4), b"\x89PNG"), png),
        (tf.equal(tf.strings.substr(data, 0, 3), b"GIF"), gif),
        (tf.equal(tf.strings.substr(data, 0, 2), b"BM"), bmp),
        (tf.equal(tf.strings.substr(data, 0, 2), b"\xff\xd8"), jpeg),
    ], default=lambda: tf.constant([0, 0, 1, 1], tf.int64), exclusive=True)


def check_pixels(image_bytes: tf.Tensor, max_pixels: int = MAX_IMAGE_PIXELS) -> tf.Operation | None:
    """Assertions that fail (InvalidArgument → HTTP 400 in TF Serving) before anything is decoded.

    Args:
        image_bytes: a scalar string, the encoded image.
        max_pixels: width × height × frames allowed (the data contract's `MAX_IMAGE_PIXELS`).

    Returns:
        The assertion op; eagerly None, having raised `tf.errors.InvalidArgumentError` if it failed.
    """
    if tf.executing_eagerly():  # an eager while_loop is a Python loop: run the graph instead
        try:
            return _compiled_check(max_pixels)(tf.convert_to_tensor(image_bytes, tf.string))
        except tf.errors.InvalidArgumentError as e:  # the assertion's own words, not the graph's trace
            m = re.search(r"assertion failed: \[([^\]]*)\](?: \[([^\]]*)\])?", e.message)
            raise tf.errors.InvalidArgumentError(None, None, " ".join(filter(None, m.groups())) if m
                                                 else e.message) from None
    dims = image_dims(image_bytes)
    walked = tf.Assert(tf.equal(dims[3], 1), [
        f"GIF with more than {MAX_GIF_BLOCKS} blocks (max_gif_blocks): rejected before decoding"])
    with tf.control_dependencies([walked]):
        return tf.Assert(dims[0] * dims[1] * dims[2] <= max_pixels, [
            f"image too large: more than max_image_pixels={max_pixels} pixels; width, height, frames:",
            dims[:3]])


@functools.lru_cache(maxsize=8)
def _compiled_check(max_pixels: int):
    @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
    def check(image_bytes):
        check_pixels(image_bytes, max_pixels)  # a stateful op: tf.function runs it

    return check
