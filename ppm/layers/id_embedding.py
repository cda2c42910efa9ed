"""ID embeddings with an out-of-vocabulary bucket (PPM §3.2.1, Eq. 7: E_sku, E_shop, ...)."""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf
import tf_keras as keras

# Stands in for an empty vocabulary (StringLookup refuses one); never a real id.
_NO_VOCABULARY = "\x00<no vocabulary>"


@keras.utils.register_keras_serializable(package="ppm")
class IdEmbedding(keras.layers.Layer):
    """Raw string ids -> trainable embeddings, through a static hash table (StringLookup).

    Ids outside ``vocabulary`` (new items, the padding id ``""``) share the out-of-vocabulary
    rows: an ID model has learnt nothing for them, which is exactly why ID-based rankers fail
    on new items and why PPM's ID-free module helps there (PPM §1, Fig. 2).

    Args:
      vocabulary: the known ids (from ``examples/vocab/<field>.tsv``), without ``""``.
      dim: embedding width (PPM: 64).
      num_oov_indices: hash buckets for unknown ids (row 0 .. num_oov_indices - 1).
      init_stddev: N(0, s) initialiser.

    Call: string ids of any shape ``[...] -> [..., dim]``.
    """

    def __init__(self, vocabulary: Sequence[str], dim: int = 64, num_oov_indices: int = 1,
                 init_stddev: float = 0.01, **kwargs):
        super().__init__(**kwargs)
        vocabulary = [str(v) for v in vocabulary]
        if "" in vocabulary:
            raise ValueError("the vocabulary must not hold the empty id (the padding value)")
        if len(set(vocabulary)) != len(vocabulary):
            raise ValueError("the vocabulary repeats ids")
        if dim < 1 or num_oov_indices < 1:
            raise ValueError(f"dim and num_oov_indices must be >= 1, got {dim}, "
                             f"{num_oov_indices}")
        self.vocabulary, self.dim = vocabulary, int(dim)
        self.num_oov_indices, self.init_stddev = int(num_oov_indices), float(init_stddev)
        # An empty vocabulary (e.g. a dataset without brands) still works: every id is OOV.
        self.lookup = keras.layers.StringLookup(
            vocabulary=vocabulary or [_NO_VOCABULARY], num_oov_indices=num_oov_indices,
            mask_token=None,
            name="lookup")
        self.embedding = keras.layers.Embedding(
            max(len(vocabulary), 1) + num_oov_indices, dim,
            embeddings_initializer=keras.initializers.RandomNormal(stddev=init_stddev),
            name="embedding")

    def rows(self, ids):
        """Row of each id in the embedding table (int64, OOV ids < ``num_oov_indices``)."""
        return self.lookup(ids)

    def call(self, ids):
        return self.embedding(self.lookup(tf.convert_to_tensor(ids)))

    def get_config(self):
        return {**super().get_config(), "vocabulary": self.vocabulary, "dim": self.dim,
                "num_oov_indices": self.num_oov_indices, "init_stddev": self.init_stddev}
