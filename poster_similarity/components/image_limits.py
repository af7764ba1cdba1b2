"""The pixel limit inside the graph: image dimensions (and GIF frames) read from the bytes, no decoding.

Transform's `preprocessing_fn` runs `check_pixels` before `decode_image`, and the serving SavedModel
wraps Transform's graph, so TF Serving rejects an image bomb with INVALID_ARGUMENT (HTTP 400)
before a pixel is allocated, exactly as the local server's Python check
(`serving/image_header.py`) does. The two count the same way:

- PNG, JPEG, BMP: width × height from the header.
- GIF: (widest frame or canvas) × (tallest frame or canvas) × frames. giflib's `DGifSlurp`, which
  `decode_image` calls even with `expand_animations=False`, keeps a raster of every frame, so a
  1 MB file of a few hundred canvas-sized frames decodes to gigabytes. The frames are counted by
  walking the GIF's blocks in a `tf.while_loop`. A walk longer than `MAX_GIF_BLOCKS` steps (a
  legitimate GIF has one step per 255 bytes, so that is ~33 MB of GIF) is rejected too: it keeps
  the check's own cost bounded against a file built of 1-byte sub-blocks.
"""
from __future__ import annotations

import functools
import re

import tensorflow as tf

from poster_similarity.core.tfrecords import MAX_IMAGE_PIXELS

MAX_GIF_BLOCKS = 1 << 14  # steps of the GIF walk: one per block introducer or data sub-block
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
    """[width, height, frames, steps] of a GIF: the widest and tallest of the canvas and its frames.

    The same walk as `serving.image_header._gif`: after the header and the global colour table,
    each step reads either a block introducer (0x21 extension, 0x2C image descriptor; anything else
    ends the walk) or one data sub-block (a length byte; 0 ends the block's data). Where each step
    leads is computed for every byte position at once, so the sequential part is one gather per
    step. `steps` is `MAX_GIF_BLOCKS` when the walk was cut short there.

    Args:
        image_bytes: a scalar string holding a GIF.

    Returns:
        int64 [4].
    """
    n = tf.cast(tf.strings.length(image_bytes), tf.int64)
    padded = tf.strings.join([image_bytes, tf.constant(b"\0" * _PAD)])
    d = tf.cast(tf.io.decode_raw(padded, tf.uint8), tf.int64)
    pos = tf.range(n, dtype=tf.int64)
    b = d[:n]
    end = 2 * n  # the state past every position: the walk stops there

    def shifted(k):  # d[p + k] for every position p (the padding covers k < _PAD)
        return d[k:k + n]

    # States 0…n-1: "a block introducer at p"; n…2n-1: "a data sub-block length at p".
    # An extension (0x21, label) and an image descriptor (0x2C: 10 bytes, its colour table, the
    # LZW code size byte) are followed by data sub-blocks; a zero length ends the data.
    def state(q, data):  # the state for position q, `end` when q is past the data
        return tf.where(q >= n, end, q + (n if data else 0))

    desc_data = pos + 11 + _colour_table_bytes(shifted(9))
    block_next = tf.where(tf.equal(b, 0x21), state(pos + 2, True),
                          tf.where(tf.equal(b, 0x2C), state(desc_data, True), end))
    data_next = tf.where(b > 0, state(pos + 1 + b, True), state(pos + 1, False))
    nxt = tf.concat([block_next, data_next, [end]], 0)
    is_frame = tf.equal(b, 0x2C)
    zeros = tf.zeros([n + 1], tf.int64)
    fw = tf.concat([tf.where(is_frame, shifted(5) + 256 * shifted(6), 0), zeros], 0)
    fh = tf.concat([tf.where(is_frame, shifted(7) + 256 * shifted(8), 0), zeros], 0)
    frame = tf.concat([tf.cast(is_frame, tf.int64), zeros], 0)

    def body(s, w, h, frames, steps):
        return (tf.gather(nxt, s), tf.maximum(w, tf.gather(fw, s)), tf.maximum(h, tf.gather(fh, s)),
                frames + tf.gather(frame, s), steps + 1)

    def cond(s, w, h, frames, steps):
        return tf.logical_and(s < end, steps < MAX_GIF_BLOCKS)

    start = 13 + _colour_table_bytes(d[10])
    init = (state(start, False), _uint(padded, 6, 2, False), _uint(padded, 8, 2, False),
            tf.constant(0, tf.int64), tf.constant(0, tf.int64))
    _, w, h, frames, steps = tf.while_loop(cond, body, init)
    return tf.stack([w, h, tf.maximum(frames, 1), steps])


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
        w, h, frames, steps = tf.unstack(gif_frames(image_bytes))
        return tf.stack([w, h, frames, tf.cast(steps < MAX_GIF_BLOCKS, tf.int64)])

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
