"""What a client reads when its request is wrong: one short, specific line, on REST and gRPC alike
(both go through `codec.check_images` and `errors.from_tf_error`), and a config error that names
its file."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from poster_similarity.serving.server import codec
from poster_similarity.serving.server.config import read_model_config
from poster_similarity.serving.server.errors import RequestError, from_tf_error, short_tf_message
from poster_similarity.serving.server.limits import Limits


def _png(fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 12), (200, 30, 30)).save(buf, fmt)
    return buf.getvalue()


@pytest.mark.parametrize("data, shown", [(b"hello, not a poster", "19 bytes starting b'hello, n'"),
                                         (_png("WEBP"), "a WEBP image"),
                                         (b"", "0 bytes starting b''")])
def test_image_input_that_is_not_a_decodable_image_is_refused_in_one_line(data, shown):
    arrays = {"image_bytes": np.array([_png(), data], dtype=object)}
    with pytest.raises(RequestError) as e:
        codec.check_images(arrays, Limits())
    assert e.value.http_status == 400 and e.value.grpc_code == "INVALID_ARGUMENT"
    assert e.value.message == ('Input "image_bytes" row 1 is not a supported image (JPEG, PNG, GIF or BMP, with a '
                               f"complete header): got {shown}")


def test_other_string_inputs_are_not_taken_for_images():
    codec.check_images({"image_bytes": np.array([_png()], dtype=object),
                        "history": np.array([[b"tt001", b""]], dtype=object)}, Limits())


def _decode_error(data: bytes):
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def decode(x):
        return tf.map_fn(lambda b: tf.reduce_sum(tf.io.decode_image(b, channels=3, expand_animations=False)), x,
                         fn_output_signature=tf.uint8)

    with pytest.raises(tf.errors.InvalidArgumentError) as e:
        decode(tf.constant([data]))
    return e.value


def test_a_graph_decode_error_becomes_one_line_that_says_so():
    """A JPEG whose header is fine and whose data is not passes the header check; the decoder's
    error (Graph execution error + node trace + Python stack) is cut to its cause."""
    err = from_tf_error(_decode_error(b"\xff\xd8\xff\xe0" + b"0" * 64))
    assert "\n" not in err.message and err.http_status == 400
    assert err.message.startswith("image could not be decoded: ")
    assert "Invalid JPEG data" in err.message
    assert not any(s in err.message for s in ("Graph execution", "Detected at node", "[Op:", "{{node", "File \""))


def test_short_message_keeps_a_plain_error_as_it_is():
    assert short_tf_message("k must be at most 100 [Op:TopKV2]") == "k must be at most 100"
    assert short_tf_message("plain words") == "plain words"


def test_a_malformed_model_config_names_its_file(tmp_path):
    path = tmp_path / "models.config"
    path.write_text("model_config_list { config { name: 'posters' base_path: '/m' \n")
    with pytest.raises(ValueError) as e:
        read_model_config(str(path))
    assert str(e.value).startswith(f"{path}: ") and "\n" not in str(e.value)
    with pytest.raises(ValueError) as e:
        read_model_config(str(tmp_path / "missing.config"))
    assert str(e.value) == f"{tmp_path / 'missing.config'}: No such file or directory"


@pytest.mark.parametrize("kind", ["brute_force", "scann"])
def test_metadata_gives_answers_their_documented_rank(kind):
    """docs/serving.md says `movie_ids`/`scores` are [B, k]: the signatures must say so too, or
    /metadata answers `unknown_rank` and a client cannot size its buffers."""
    from tests.tiny_export import loaded

    model = loaded(kind)
    report_k = 10  # tests/standin_export.py exports the IndexConfig default
    for name in ("serving_default", "neighbors", "recommend"):
        outputs = model.signatures[name].structured_outputs
        for key in ("movie_ids", "scores"):
            assert outputs[key].shape.as_list() == [None, report_k], (name, key)
    for name in ("neighbors_filtered", "similar_filtered", "recommend_filtered"):
        assert model.signatures[name].structured_outputs["movie_ids"].shape.rank == 2  # [B, max k of the batch]
