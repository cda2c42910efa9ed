"""Hashed embeddings for open-ended string features (user profile, PPM's D in Eq. 10; GRACE's
hash-ID table, §2.4), and a count of their collisions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf
import tf_keras as keras


def hash_buckets(values: Sequence[str], num_bins: int) -> np.ndarray:
    """The bucket :class:`HashEmbedding` gives each value (Keras ``Hashing``: FarmHash64 modulo
    ``num_bins``, stable across runs and machines). int64 [N]."""
    layer = keras.layers.Hashing(int(num_bins))
    return layer(tf.constant([str(v) for v in values])).numpy().astype(np.int64)


def collision_report(values: Sequence[str], num_bins: int) -> dict:
    """How many distinct ``values`` share a hash bucket with another value.

    Returns:
      ``{"values", "num_bins", "buckets_used", "colliding_values", "colliding_share",
      "largest_bucket"}``: ``colliding_values`` counts the distinct values whose bucket holds
      another distinct value too (their embeddings are shared).
    """
    distinct = sorted(set(str(v) for v in values))
    if not distinct:
        return {"values": 0, "num_bins": int(num_bins), "buckets_used": 0,
                "colliding_values": 0, "colliding_share": 0.0, "largest_bucket": 0}
    _, counts = np.unique(hash_buckets(distinct, num_bins), return_counts=True)
    colliding = int(counts[counts > 1].sum())
    return {"values": len(distinct), "num_bins": int(num_bins), "buckets_used": len(counts),
            "colliding_values": colliding, "colliding_share": colliding / len(distinct),
            "largest_bucket": int(counts.max())}


@keras.utils.register_keras_serializable(package="ppm")
class HashEmbedding(keras.layers.Layer):
    """String -> ``Hashing(num_bins)`` (FarmHash, stable across runs) -> embedding.

    Suited to low-cardinality features with no vocabulary file, such as profile buckets;
    collisions are possible by design.

    Args:
      num_bins: hash buckets (embedding rows).
      dim: embedding width.
      init_stddev: N(0, s) initialiser.

    Call: strings ``[...] -> [..., dim]``.
    """

    def __init__(self, num_bins: int, dim: int, init_stddev: float = 0.01, **kwargs):
        super().__init__(**kwargs)
        if num_bins < 1 or dim < 1:
            raise ValueError(f"num_bins and dim must be >= 1, got {num_bins}, {dim}")
        self.num_bins, self.dim, self.init_stddev = int(num_bins), int(dim), float(init_stddev)
        self.hashing = keras.layers.Hashing(num_bins, name="hashing")
        self.embedding = keras.layers.Embedding(
            num_bins, dim,
            embeddings_initializer=keras.initializers.RandomNormal(stddev=init_stddev),
            name="embedding")

    def call(self, values):
        return self.embedding(self.hashing(tf.convert_to_tensor(values)))

    def get_config(self):
        return {**super().get_config(), "num_bins": self.num_bins, "dim": self.dim,
                "init_stddev": self.init_stddev}
