import numpy as np
import pytest
import tensorflow as tf

import ppm  # noqa: F401
from ppm.layers import CachedItemEmbedding, HashEmbedding, IdEmbedding
from tests.layers.helpers import assert_round_trip

IDS = ["i1", "i2", "i3"]
TABLE = np.arange(3 * 4, dtype=np.float32).reshape(3, 4) + 1.0
FLAGS = np.array([[1, 1], [1, 0], [0, 1]], np.float32)


def test_id_embedding_oov_bucket():
    layer = IdEmbedding(IDS, dim=3, init_stddev=1.0)
    out = layer(tf.constant([["i1", "i2"], ["new", ""]])).numpy()
    assert out.shape == (2, 2, 3)
    np.testing.assert_array_equal(out[1, 0], out[1, 1])  # unknown and padding: OOV row
    assert np.abs(out[0, 0] - out[0, 1]).max() > 0
    assert np.abs(out[0, 0] - out[1, 0]).max() > 0
    np.testing.assert_array_equal(layer.rows(tf.constant(["new", "i1", "i3"])).numpy(),
                                  [0, 1, 3])


def test_id_embedding_empty_vocabulary_and_errors():
    layer = IdEmbedding([], dim=2)
    assert layer(tf.constant(["x", ""])).shape == (2, 2)
    with pytest.raises(ValueError, match="empty id"):
        IdEmbedding(["a", ""])
    with pytest.raises(ValueError, match="repeats"):
        IdEmbedding(["a", "a"])


def test_cache_lookup_known_unknown_and_flags():
    layer = CachedItemEmbedding(IDS, dim=2, embeddings=TABLE, flags=FLAGS)
    out = layer(tf.constant(["i3", "zzz", "i1", ""]))
    np.testing.assert_array_equal(out["embedding"].numpy(),
                                  [TABLE[2], np.zeros(4), TABLE[0], np.zeros(4)])
    np.testing.assert_array_equal(out["flags"].numpy(), [FLAGS[2], [0, 0], FLAGS[0], [0, 0]])
    assert not layer.trainable_weights  # the cache is fixed (PPM §3.2.2)


def test_cache_table_lives_inside_the_saved_model(tmp_path):
    layer = CachedItemEmbedding(IDS, dim=2, embeddings=TABLE, flags=FLAGS)
    assert_round_trip(layer, tf.constant(["i2", "nope", "i1"]), tmp_path)


def test_cache_errors():
    with pytest.raises(ValueError, match="embeddings must be"):
        CachedItemEmbedding(IDS, dim=3, embeddings=TABLE)
    with pytest.raises(ValueError, match="no item"):
        CachedItemEmbedding([], dim=2)


def test_hash_embedding(tmp_path):
    layer = HashEmbedding(16, 3, init_stddev=1.0)
    out = layer(tf.constant(["M", "F", "M"])).numpy()
    np.testing.assert_array_equal(out[0], out[2])
    assert_round_trip(layer, tf.constant(["M", "F"]), tmp_path)
    assert_round_trip(IdEmbedding(IDS, dim=2, init_stddev=1.0), tf.constant(["i1", "x"]),
                      tmp_path / "id")


def test_hash_collisions_are_counted():
    from ppm.layers.hash_embedding import collision_report, hash_buckets

    ids = [f"item{i}" for i in range(200)]
    buckets = hash_buckets(ids, 50)
    # The same buckets as the layer's own hashing.
    layer = HashEmbedding(50, 3)
    np.testing.assert_array_equal(layer.hashing(tf.constant(ids)).numpy(), buckets)
    # By hand: a value collides when its bucket holds another distinct value.
    per_bucket = {}
    for i, b in zip(ids, buckets):
        per_bucket.setdefault(int(b), set()).add(i)
    expected = sum(len(v) for v in per_bucket.values() if len(v) > 1)
    report = collision_report(ids + ids[:10], 50)  # repeats are one value
    assert report["values"] == 200 and report["buckets_used"] == len(per_bucket) <= 50
    assert report["colliding_values"] == expected > 0
    assert report["largest_bucket"] == max(len(v) for v in per_bucket.values())
    assert collision_report(["a"], 10)["colliding_values"] == 0
    assert collision_report([], 10)["values"] == 0
