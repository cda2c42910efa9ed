"""Item embedders and sequence modules shared by PPM and URM (PPM §3.1.2, §3.2.1-3.2.2).

A *sequence module* embeds the target item and every history item, then encodes them with a
:class:`~ppm.layers.BehaviorTransformer`, returning ``(user, item)`` representations:

- IDSM (§3.2.1, Eq. 7): items as ``[E_sku | E_shop | E_brand | E_category]``
  (:class:`ItemIdEmbedding`);
- the PPM module (§3.1.2 / §3.2.2, Eq. 8): items as cached ``[E_title | E_image]``
  (:class:`ModalItemEmbedding`), ID-free;
- Table 3's ``base``: both concatenated, through one shared transformer.

PPM and URM both hold their PPM module under the attribute ``ppm``, so URM restores it from a
``ppm_pretrain`` checkpoint by object path (``model/ppm/...``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import tensorflow as tf
import tf_keras as keras

from ppm.features import ID_FIELDS
from ppm.layers import IdEmbedding
from ppm.layers.embedding_cache import CachedItemEmbedding, rows_are_computed

HIST = "hist_"
NUM_FLAG_STATES = 4  # has_title + 2 * has_image


def recent_history(features, max_history: int = 0):
    """``(features, hist_len int32 [B])`` with every history feature cut to the
    ``max_history`` most recent items (0: all) and ``hist_len`` capped to match."""
    feats = dict(features)
    hist_len = tf.cast(feats["hist_len"], tf.int32)
    if max_history:
        for key in [k for k in feats if k.startswith(HIST) and k != "hist_len"]:
            feats[key] = feats[key][:, :max_history]
        hist_len = tf.minimum(hist_len, max_history)
    return feats, hist_len


@keras.utils.register_keras_serializable(package="ppm")
class ItemIdEmbedding(keras.layers.Layer):
    """``[E_sku | E_shop | E_brand | E_category]`` of target or history items (Eq. 7).

    Args:
      vocabularies: ``{field: ids}`` for every field of :data:`ppm.features.ID_FIELDS`.
      dim: width of each ID embedding (the output is ``4 * dim``).
      init_stddev: N(0, s) initialiser.

    Call: ``(features, prefix)`` -> float [..., 4 * dim] from ``features[prefix + field]``.
    """

    def __init__(self, vocabularies: Mapping[str, Sequence[str]], dim: int = 64,
                 init_stddev: float = 0.01, **kwargs):
        super().__init__(**kwargs)
        missing = [f for f in ID_FIELDS if f not in vocabularies]
        if missing:
            raise ValueError(f"vocabularies lack {missing}")
        self.vocabularies = {f: list(vocabularies[f]) for f in ID_FIELDS}
        self.dim, self.init_stddev = int(dim), float(init_stddev)
        self.embeddings = [IdEmbedding(self.vocabularies[f], dim, init_stddev=init_stddev,
                                       name=f"{f}_embedding") for f in ID_FIELDS]

    @property
    def width(self) -> int:
        return len(ID_FIELDS) * self.dim

    def call(self, features, prefix: str = ""):
        return tf.concat(self._each(features, prefix), axis=-1)

    def fields(self, features, prefix: str = ""):
        """The four embeddings as fields, ``[..., 4, dim]`` (FM, MIAN: one field each)."""
        return tf.stack(self._each(features, prefix), axis=-2)

    def _each(self, features, prefix):
        return [e(features[prefix + f]) for f, e in zip(ID_FIELDS, self.embeddings)]

    def get_config(self):
        return {**super().get_config(), "vocabularies": self.vocabularies, "dim": self.dim,
                "init_stddev": self.init_stddev}


@keras.utils.register_keras_serializable(package="ppm")
class ModalItemEmbedding(keras.layers.Layer):
    """Cached ``[E_title | E_image]`` (Eq. 8) plus a learnt embedding of the presence flags.

    With a single-modality cache (a dataset without images) the item is ``E_title`` alone (or
    ``E_image`` alone), ``cache.dim`` wide; the absent modality's flag is always 0.

    An item without a title or an image has a zero vector there (embedding cache contract);
    the flag embedding (4 states of ``has_title``, ``has_image``) lets the model tell "missing"
    from "small", and gives unknown items (reserved row, both flags 0) a learnt vector. This
    addition is ours; the paper does not say how missing modalities are handled.

    Args:
      cache: a :class:`~ppm.layers.CachedItemEmbedding` (or its config).
      init_stddev: N(0, s) initialiser of the flag embedding.

    Call: ``(features, prefix)`` -> float [..., cache.width] from
    ``features[prefix + "item_id"]``.
    """

    def __init__(self, cache, init_stddev: float = 0.01, **kwargs):
        super().__init__(**kwargs)
        if isinstance(cache, dict):
            cache = keras.layers.deserialize(cache)
        self.cache, self.init_stddev = cache, float(init_stddev)
        self.flag_embedding = keras.layers.Embedding(
            NUM_FLAG_STATES, cache.width,
            embeddings_initializer=keras.initializers.RandomNormal(stddev=init_stddev),
            name="flag_embedding")
        self.folded = False  # set by fold_into_cache(): the table holds the whole item token

    @property
    def width(self) -> int:
        return self.cache.width

    def call(self, features, prefix: str = ""):
        looked_up = self.cache(features[prefix + "item_id"])
        # The table is float32; under mixed precision the tokens are float16.
        embedding = tf.cast(looked_up["embedding"], self.compute_dtype)
        if self.folded and not rows_are_computed():
            return embedding
        flags = tf.cast(looked_up["flags"], tf.int32)
        return embedding + self.flag_embedding(flags[..., 0] + 2 * flags[..., 1])

    def fold_into_cache(self) -> None:
        """Adds each row's flag embedding to the cache's table, in place, so that a lookup
        gives the whole item token (the paper's "intermediate results cached"): one gather
        per item instead of two gathers, an embedding lookup and an add.

        Exact: row ``r`` of the table becomes ``table[r] + flag_embedding[state(r)]``, the same
        float32 sum the live path computes after its gathers (bitwise equal; under mixed
        precision the live path adds in float16, so the two differ by its rounding).

        Only for serving a trained model (:func:`ppm.export.export`): the cache must have no
        other reader and the flag embedding must not train any more. Idempotent.
        """
        if self.folded:
            return
        if not self.cache.built or not self.flag_embedding.built:
            raise ValueError(f"{self.name}: call the model once before folding its item tokens")
        flags = tf.cast(self.cache.flag_table, tf.int32)
        states = flags[:, 0] + 2 * flags[:, 1]
        self.cache.table.assign(self.cache.table + tf.gather(
            tf.cast(self.flag_embedding.embeddings, tf.float32), states))
        self.folded = True

    def get_config(self):
        return {**super().get_config(), "cache": keras.layers.serialize(self.cache),
                "init_stddev": self.init_stddev}


@keras.utils.register_keras_serializable(package="ppm")
class SequenceModule(keras.layers.Layer):
    """Item embedders + Behavior-Transformer: IDSM, the PPM module, or base's shared module.

    Args:
      embedders: item embedders (``ItemIdEmbedding``, ``ModalItemEmbedding``) whose outputs
        are concatenated per item.
      transformer: the :class:`~ppm.layers.BehaviorTransformer` (or its config).
      max_history: use the ``max_history`` most recent history items (0: all).

    Call: feature dict (``ppm.features`` names) -> ``(user [B, H], item [B, H])``.
    """

    def __init__(self, embedders: Sequence, transformer, max_history: int = 0, **kwargs):
        super().__init__(**kwargs)
        embedders = [keras.layers.deserialize(e) if isinstance(e, dict) else e
                     for e in embedders]
        if not embedders:
            raise ValueError("a sequence module needs at least one item embedder")
        if isinstance(transformer, dict):
            transformer = keras.layers.deserialize(transformer)
        if max_history < 0:
            raise ValueError(f"max_history must be >= 0, got {max_history}")
        self.embedders, self.transformer = embedders, transformer
        self.max_history = int(max_history)

    @property
    def width(self) -> int:
        return sum(e.width for e in self.embedders)

    def _embed(self, features, prefix):
        parts = [e(features, prefix) for e in self.embedders]
        return parts[0] if len(parts) == 1 else tf.concat(parts, axis=-1)

    def call(self, features, training=None):
        feats, hist_len = recent_history(features, self.max_history)
        return self.transformer({
            "history": self._embed(feats, HIST),
            "target": self._embed(feats, ""),
            "hist_position": feats["hist_position"],
            "hist_recency": feats["hist_recency"],
            "hist_len": hist_len,
            "position": feats["position"],
        }, training=training)

    def get_config(self):
        return {**super().get_config(),
                "embedders": [keras.layers.serialize(e) for e in self.embedders],
                "transformer": keras.layers.serialize(self.transformer),
                "max_history": self.max_history}


def fold_item_tokens(model) -> list[str]:
    """Folds every :class:`ModalItemEmbedding` of a trained ``model`` into its cache's table
    (:meth:`ModalItemEmbedding.fold_into_cache`) where that is exact: the cache is read by
    that embedder alone. Returns the names of the embedders folded; a cache with several
    readers (e.g. a plug-in and a multimodal side sharing it) stays as it is."""
    layers = list(model._flatten_layers(include_self=True, recursive=True))  # noqa: SLF001
    readers: dict[int, list] = {}
    for layer in layers:
        for child in layer._flatten_layers(include_self=False, recursive=False):  # noqa: SLF001
            if isinstance(child, CachedItemEmbedding):
                readers.setdefault(id(child), []).append(layer)
    folded = []
    for layer in layers:
        if isinstance(layer, ModalItemEmbedding) and not layer.folded:
            if [r is layer for r in readers.get(id(layer.cache), [])] == [True]:
                layer.fold_into_cache()
                folded.append(layer.name)
    return folded
