"""TFRecord writing/reading for the data contract (one `tf.Example` per poster).

Shared by `posters sample` and `posters import` so both produce byte-compatible shards, and by
tests/tools that need to look inside them. TensorFlow is imported lazily inside the functions:
`import tensorflow` costs ~9 s and the CLI's light subcommands must not pay it.

Contract (docs/data.md): `movie_id` bytes (required, unique), `image` bytes (JPEG/PNG, RGB
after decode), `genres` bytes list (>= 1), `title` bytes, `year` int64. All five features are
always written (title "" / year 0 when unknown) so SchemaGen infers one consistent schema.

Optional attributes for the served model's business rules (`components.retrieval_rules`), written
only when a poster has them, so a catalogue without them keeps exactly the five-feature schema:
`tags` bytes list (open-ended strings such as `rating:R`, `region:DE`), `group` bytes (crowding
key: franchise/series id) and `duplicate_group` bytes (the near-duplicate set a poster belongs to).
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

FEATURE_MOVIE_ID = "movie_id"
FEATURE_IMAGE = "image"
FEATURE_GENRES = "genres"
FEATURE_TITLE = "title"
FEATURE_YEAR = "year"
FEATURE_TAGS = "tags"
FEATURE_GROUP = "group"
FEATURE_DUPLICATE_GROUP = "duplicate_group"
# The optional rule attributes: written only when a poster has them (module docstring).
OPTIONAL_FEATURES = (FEATURE_TAGS, FEATURE_GROUP, FEATURE_DUPLICATE_GROUP)

# Largest poster accepted anywhere (import, Transform, serving): width × height from the image
# header, checked before decoding. 4096 × 4096: a decoded RGB image of this size is 48 MiB (192 MiB
# as float32 while resizing); a 12,000 × 12,000 PNG can be a 400 KB file and would need 1.6 GiB.
MAX_IMAGE_PIXELS = 1 << 24
# Steps of a GIF's block walk (one per block introducer or data sub-block) before a GIF is rejected:
# encoders write 255-byte sub-blocks, so ~4 MB of GIF; bounds the cost of counting frames.
MAX_GIF_BLOCKS = 1 << 14

GENRE_SEPARATOR = "|"
TFRECORD_SUFFIX = ".tfrecord"
GZIP_SUFFIX = ".tfrecord.gz"


def split_genres(value: str | None) -> list[str]:
    """`"Action| Comedy||Action"` → `["Action", "Comedy"]`: stripped, empties and repeats dropped."""
    out: list[str] = []
    for g in (value or "").split(GENRE_SEPARATOR):
        g = g.strip()
        if g and g not in out:
            out.append(g)
    return out


def split_tags(value: str | None) -> list[str]:
    """CSV `tags` cell → tags: the same separator and clean-up as genres (`split_genres`)."""
    return split_genres(value)


def join_genres(genres: Iterable[str]) -> str:
    return GENRE_SEPARATOR.join(genres)


def _b(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode("utf-8")


def make_example(movie_id: str | bytes, image_bytes: bytes, genres: Iterable[str | bytes],
                 title: str | bytes = "", year: int | None = 0, tags: Iterable[str | bytes] = (),
                 group: str | bytes = "", duplicate_group: str | bytes = "") -> Any:
    """Build a contract `tf.train.Example`; raises ValueError when a required feature is empty.
    The optional attributes are written only when non-empty (module docstring)."""
    import tensorflow as tf

    movie_id_b = _b(movie_id)
    genres_b = [_b(g) for g in genres if g]
    if not movie_id_b:
        raise ValueError("movie_id is required")
    if not image_bytes:
        raise ValueError(f"{movie_id_b!r}: image bytes are empty")
    if not genres_b:
        raise ValueError(f"{movie_id_b!r}: at least one genre is required")

    def bytes_feature(values: list[bytes]) -> Any:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))

    feature = {
        FEATURE_MOVIE_ID: bytes_feature([movie_id_b]),
        FEATURE_IMAGE: bytes_feature([bytes(image_bytes)]),
        FEATURE_GENRES: bytes_feature(genres_b),
        FEATURE_TITLE: bytes_feature([_b(title or "")]),
        FEATURE_YEAR: tf.train.Feature(int64_list=tf.train.Int64List(value=[int(year or 0)])),
    }
    tags_b = list(dict.fromkeys(_b(t) for t in tags if t))  # a set, in first-seen order
    if tags_b:
        feature[FEATURE_TAGS] = bytes_feature(tags_b)
    for name, value in ((FEATURE_GROUP, group), (FEATURE_DUPLICATE_GROUP, duplicate_group)):
        if value:
            feature[name] = bytes_feature([_b(value)])
    return tf.train.Example(features=tf.train.Features(feature=feature))


def shard_name(prefix: str, index: int, count: int, gzip: bool) -> str:
    return f"{prefix}-{index:05d}-of-{count:05d}{GZIP_SUFFIX if gzip else TFRECORD_SUFFIX}"


def shard_glob(out_dir: str, prefix: str = "data") -> str:
    """Glob that matches this module's shards (and not e.g. report.json beside them)."""
    return os.path.join(out_dir, f"{prefix}-*-of-*{TFRECORD_SUFFIX}*")


def write_sharded(examples_iter: Iterable[Any], out_dir: str, shards: int = 4, gzip: bool = False,
                  prefix: str = "data") -> list[str]:
    """Write examples round-robin into `<prefix>-0000i-of-0000n.tfrecord[.gz]`; returns the paths.

    Streaming (the import never holds the whole dataset in memory). Round-robin keeps the shards
    balanced and the output deterministic. When fewer examples than `shards` arrive, only the
    shards actually used are kept and named `-of-<used>`, so no empty shard files are produced
    (zero examples → no files).
    """
    import tensorflow as tf

    if shards < 1:
        raise ValueError("shards must be >= 1")
    os.makedirs(out_dir, exist_ok=True)
    options = tf.io.TFRecordOptions(compression_type="GZIP" if gzip else "")
    writers: list[Any] = []
    count = 0
    try:
        for ex in examples_iter:
            data = ex if isinstance(ex, bytes) else ex.SerializeToString(deterministic=True)
            i = count % shards
            if i == len(writers):  # round-robin: shard i is first needed right after i-1
                writers.append(tf.io.TFRecordWriter(
                    os.path.join(out_dir, shard_name(prefix, i, shards, gzip)), options))
            writers[i].write(data)
            count += 1
    finally:
        for w in writers:
            w.close()
    used = len(writers)
    paths = []
    for i in range(used):
        src = os.path.join(out_dir, shard_name(prefix, i, shards, gzip))
        dst = os.path.join(out_dir, shard_name(prefix, i, used, gzip))
        if src != dst:
            os.replace(src, dst)
        paths.append(dst)
    return paths


def parse_example(serialized: bytes) -> dict[str, Any]:
    """Serialized contract Example → `{"movie_id": str, "image": bytes, "genres": [str], "title": str,
    "year": int, "tags": [str], "group": str, "duplicate_group": str}` (text decoded as UTF-8; a
    missing optional feature reads as "" / 0 / [])."""
    import tensorflow as tf

    feats = tf.train.Example.FromString(serialized).features.feature

    def texts(name: str) -> list[str]:
        return [v.decode("utf-8") for v in feats[name].bytes_list.value] if name in feats else []

    ints = list(feats[FEATURE_YEAR].int64_list.value) if FEATURE_YEAR in feats else []
    image = list(feats[FEATURE_IMAGE].bytes_list.value) if FEATURE_IMAGE in feats else []
    return {
        FEATURE_MOVIE_ID: (texts(FEATURE_MOVIE_ID) or [""])[0],
        FEATURE_IMAGE: image[0] if image else b"",
        FEATURE_GENRES: texts(FEATURE_GENRES),
        FEATURE_TITLE: (texts(FEATURE_TITLE) or [""])[0],
        FEATURE_YEAR: int(ints[0]) if ints else 0,
        FEATURE_TAGS: texts(FEATURE_TAGS),
        FEATURE_GROUP: (texts(FEATURE_GROUP) or [""])[0],
        FEATURE_DUPLICATE_GROUP: (texts(FEATURE_DUPLICATE_GROUP) or [""])[0],
    }


def iter_serialized(glob_pattern: str) -> Iterator[bytes]:
    """Raw records of every file matching the glob (sorted); `.gz` files are read as GZIP."""
    import tensorflow as tf

    for path in sorted(tf.io.gfile.glob(glob_pattern)):
        ds = tf.data.TFRecordDataset(path, compression_type="GZIP" if path.endswith(".gz") else "")
        for record in ds.as_numpy_iterator():
            yield bytes(record)


def read_examples(glob_pattern: str) -> Iterator[dict[str, Any]]:
    """Parsed contract dicts (see `parse_example`) from every matching TFRecord file."""
    for record in iter_serialized(glob_pattern):
        yield parse_example(record)
