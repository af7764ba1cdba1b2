"""Transform building blocks: decode, aspect-preserving resize with padding, pixel round trip."""
import io

import numpy as np
import tensorflow as tf
from PIL import Image

from poster_similarity.components.preprocessing import decode_and_pad, decode_pixels, encode_pixels


def _jpeg(w, h, color=(200, 30, 30), fmt="JPEG", mode="RGB"):
    buf = io.BytesIO()
    Image.new(mode, (w, h), color if mode == "RGB" else color[0]).save(buf, fmt)
    return buf.getvalue()


def test_poster_keeps_its_aspect_and_square_images_are_padded_not_squashed():
    poster = decode_and_pad(_jpeg(200, 300), 144, 96).numpy()  # 2:3 into 2:3: no padding
    assert poster.shape == (144, 96, 3) and poster.dtype == np.uint8
    assert poster[:, :, 0].min() > 150  # red everywhere
    square = decode_and_pad(_jpeg(300, 300), 144, 96).numpy()
    assert square[72, :, 0].min() > 150 and square[30:114, 48, 0].min() > 150  # the middle is image …
    assert square[0, :, 0].max() < 10 and square[-1, :, 0].max() < 10  # … top/bottom rows are padding


def test_png_grayscale_and_rgba_decode_to_rgb():
    for data in (_jpeg(20, 30, fmt="PNG"), _jpeg(20, 30, (90, 90, 90), fmt="PNG", mode="L"),
                 _jpeg(20, 30, (1, 2, 3, 4), fmt="PNG", mode="RGBA")):
        assert decode_and_pad(data, 30, 20).shape == (30, 20, 3)


def test_pixel_round_trip_is_lossless_and_compact():
    images = tf.constant([_jpeg(200, 300), _jpeg(100, 150, (10, 200, 10))])
    enc = encode_pixels(images, 144, 96)
    dec = decode_pixels(enc, 144, 96).numpy()
    np.testing.assert_array_equal(dec[0], decode_and_pad(images[0], 144, 96).numpy())
    raw = 144 * 96 * 3
    assert all(raw <= len(s) < raw + 64 for s in enc.numpy())  # uint8 + a small header; float32 would be 4×


def test_bad_bytes_raise_invalid_argument():
    import pytest

    with pytest.raises(tf.errors.InvalidArgumentError):
        encode_pixels(tf.constant([b"not an image"]), 32, 32)


def test_images_over_the_pixel_limit_are_rejected_before_decoding():
    """A 5000×5000 greyscale PNG is a ~35 KB file but 25 M pixels (> the 4096² default): the
    assertion names the limit and the declared size. Within the limit, decoding is unchanged."""
    import pytest

    big = _jpeg(5000, 5000, fmt="PNG", mode="L")
    assert len(big) < 100_000
    with pytest.raises(tf.errors.InvalidArgumentError, match="max_image_pixels=16777216") as e:
        decode_and_pad(big, 30, 20)
    assert "width, height, frames: 5000 5000 1" in e.value.message
    with pytest.raises(tf.errors.InvalidArgumentError, match="max_image_pixels=500"):
        decode_and_pad(_jpeg(20, 30), 30, 20, max_pixels=500)
    assert decode_and_pad(_jpeg(20, 30), 30, 20, max_pixels=600).shape == (30, 20, 3)


def test_image_size_is_the_backbones_unless_configured():
    """The production default trains nasnet_large at its native 331×331; the CPU preset
    efficientnet_lite0 at 224×160 (portrait, like the posters); `image_size` overrides either."""
    from poster_similarity.components.preprocessing import image_size
    from poster_similarity.core.config import load_config

    assert image_size(load_config()) == (331, 331)
    assert image_size(load_config("configs/demo.yaml")) == (224, 160)
    assert image_size(load_config(None, ["image_size=[60, 40]"])) == (60, 40)
