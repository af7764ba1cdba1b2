"""Records in the Transform output layout, for the trainer and multi-worker tests."""
import numpy as np
import tensorflow as tf

from poster_similarity.components import dataset
from poster_similarity.components.preprocessing import GENRES_XF, IMAGE_XF, MOVIE_ID_KEY, PRIMARY_XF

H, W = 24, 16


def write_transformed(path, labels, num_genres=4):
    """A GZIP TFRecord in the Transform output layout (serialised uint8 pixels, multi-hot, primary)."""
    with tf.io.TFRecordWriter(str(path), options="GZIP") as w:
        for i, lab in enumerate(labels):
            pixels = np.full((H, W, 3), i % 255, np.uint8)
            multi = np.zeros(num_genres, np.float32)
            multi[lab] = 1
            raw = tf.io.serialize_tensor(pixels).numpy()
            feat = {
                IMAGE_XF: tf.train.Feature(bytes_list=tf.train.BytesList(value=[raw])),
                GENRES_XF: tf.train.Feature(float_list=tf.train.FloatList(value=multi)),
                PRIMARY_XF: tf.train.Feature(int64_list=tf.train.Int64List(value=[lab])),
                MOVIE_ID_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[f"m{i}".encode()])),
            }
            w.write(tf.train.Example(features=tf.train.Features(feature=feat)).SerializeToString())


def transformed_features(cfg, num_genres=4):
    spec = {IMAGE_XF: tf.io.FixedLenFeature([], tf.string), GENRES_XF: tf.io.FixedLenFeature([num_genres], tf.float32),
            PRIMARY_XF: tf.io.FixedLenFeature([], tf.int64), MOVIE_ID_KEY: tf.io.FixedLenFeature([], tf.string)}
    return dataset.Features(cfg, spec, [f"g{i}" for i in range(num_genres)])
