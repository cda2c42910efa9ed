"""The embedding cache as a layer: item id -> cached [E_title | E_image] (PPM §3.2.2, Eq. 8).

A single-modality cache (``modalities=("text",)`` for a dataset without images) gives
``E_title`` alone, ``dim`` wide; the flags keep both columns (the absent one always 0).

The table is a non-trainable variable initialised from the Beam cache
(:func:`ppm.data.cache.load_cache`), so it is saved in checkpoints and inside the exported
SavedModel: a serving request carries only item ids, and no encoder runs online (the paper's
"without additional online latency"). A static hash table (``StringLookup``) maps raw ids to
rows; row 0 is reserved for ids the cache does not know (new items after the cache was built,
the padding id ``""``): a zero vector with both flags at 0, never an error.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf
import tf_keras as keras

from ppm.data import cache as cache_lib

_ROW_SOURCE: list = []  # set by rows_computed_by() while a function is traced


@contextlib.contextmanager
def rows_computed_by(fn: Callable):
    """While active, :class:`CachedItemEmbedding` calls ``fn(layer, ids)`` instead of reading
    its table. Used only to trace the *uncached* serving variant that runs the encoders in the
    request path (:mod:`ppm.serving.uncached`, the latency benchmark's counterfactual)."""
    _ROW_SOURCE.append(fn)
    try:
        yield
    finally:
        _ROW_SOURCE.pop()


def rows_are_computed() -> bool:
    """Whether :func:`rows_computed_by` is active (the table is not what the layer reads)."""
    return bool(_ROW_SOURCE)


@keras.utils.register_keras_serializable(package="ppm")
class CachedItemEmbedding(keras.layers.Layer):
    """Looks up cached title and image embeddings and their presence flags.

    Args:
      item_ids: the cache's item ids (row ``i + 1`` of the table is ``item_ids[i]``).
      dim: per-modality width; the output is ``width = len(modalities) * dim`` wide.
      embeddings: optional float [len(item_ids), width] initial table (``[title | image]``,
        the present modalities only); zeros when omitted (e.g. in ``from_config``, before
        weights are loaded).
      flags: optional [len(item_ids), 2] ``has_title``, ``has_image`` (0/1).
      modalities: the modalities the cache holds, out of ``("text", "image")`` (default both).

    Call: string ids ``[...]`` -> ``{"embedding": [..., width], "flags": [..., 2]}``.
    """

    def __init__(self, item_ids: Sequence[str], dim: int, embeddings=None, flags=None,
                 modalities: Sequence[str] = cache_lib.MODALITIES, **kwargs):
        super().__init__(**kwargs)
        try:
            self.modalities = cache_lib.check_modalities(modalities)
        except cache_lib.CacheMismatchError as e:
            raise ValueError(str(e)) from e
        item_ids = [str(i) for i in item_ids]
        if not item_ids:
            raise ValueError("the embedding cache holds no item")
        if "" in item_ids or len(set(item_ids)) != len(item_ids):
            raise ValueError("cache item ids must be unique and non-empty")
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.item_ids, self.dim = item_ids, int(dim)
        rows = len(item_ids) + 1
        table = np.zeros((rows, self.width), np.float32)
        flag_table = np.zeros((rows, 2), np.float32)
        if embeddings is not None:
            embeddings = np.asarray(embeddings, np.float32)
            if embeddings.shape != (len(item_ids), self.width):
                raise ValueError(f"embeddings must be [{len(item_ids)}, {self.width}] "
                                 f"({len(self.modalities)} modalities of dim {self.dim}), got "
                                 f"{list(embeddings.shape)}")
            table[1:] = embeddings
        if flags is not None:
            flags = np.asarray(flags, np.float32)
            if flags.shape != (len(item_ids), 2):
                raise ValueError(f"flags must be [{len(item_ids)}, 2], got {list(flags.shape)}")
            flag_table[1:] = flags
        self._initial = (table, flag_table)
        self.lookup = keras.layers.StringLookup(vocabulary=item_ids, num_oov_indices=1,
                                                mask_token=None, name="lookup")

    @classmethod
    def from_cache(cls, cache, **kwargs) -> CachedItemEmbedding:
        """Builds the layer from a loaded :class:`ppm.data.cache.EmbeddingCache`."""
        flags = np.stack([cache.has_title, cache.has_image], axis=1)
        return cls(cache.ids.tolist(), cache.dim, embeddings=cache.matrix(), flags=flags,
                   modalities=cache.modalities, **kwargs)

    @property
    def width(self) -> int:
        """Width of the looked-up embedding: ``len(modalities) * dim``."""
        return len(self.modalities) * self.dim

    def build(self, input_shape):
        table, flags = self._initial
        self.table = self.add_weight("table", shape=table.shape, dtype=tf.float32,
                                     initializer=keras.initializers.Constant(table),
                                     trainable=False)
        self.flag_table = self.add_weight("flag_table", shape=flags.shape, dtype=tf.float32,
                                          initializer=keras.initializers.Constant(flags),
                                          trainable=False)
        self._initial = None
        super().build(input_shape)

    def rows(self, ids):
        """Table row of each id (0 for unknown ids)."""
        return self.lookup(ids)

    def call(self, ids):
        if _ROW_SOURCE:
            return _ROW_SOURCE[-1](self, tf.convert_to_tensor(ids))
        rows = self.lookup(tf.convert_to_tensor(ids))
        # embedding_lookup: also a table split across parameter servers (a ShardedVariable)
        return {"embedding": tf.nn.embedding_lookup(self.table, rows),
                "flags": tf.nn.embedding_lookup(self.flag_table, rows)}

    def get_config(self):
        # The table itself travels as weights (checkpoints, SavedModel), not in the config.
        return {**super().get_config(), "item_ids": self.item_ids, "dim": self.dim,
                "modalities": list(self.modalities)}
