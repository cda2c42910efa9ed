"""Hashed embeddings for open-ended string features (user profile, PPM's D in Eq. 10)."""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras


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
