"""Pre-trained multimodal vectors as side information of an ID model: Vector, SimScore and
SimTier (Taobao multimodal paper, "Enhancing Taobao Display Advertising with Multimodal
Representations", arXiv:2407.19467, §4.2 and §6.1.3).

The ID-based model (§2) embeds the target item and the history items as ID fields and feeds
them to a behaviour module (the zoo's backbones; the paper's production model is DIN). Each
method adds the cached vector of the chosen modality (``model.multimodal.modality``: image,
text or both) in its own way, all through :class:`MultimodalSide`, a setting of every zoo
model (``model.multimodal.side``):

- **Vector**: each item's vector joins its ID fields, so the behaviour module sees it (§4,
  first paragraph; §6.1.3 "concatenated with other ID embeddings within the model"). The
  zoo's fields are all ``D`` wide (FM pairs any two), so the vector enters as one more field
  through a learnt linear projection ``P v`` (no bias: an item without a vector gets a zero
  field). The paper does not say how it pools the history; here it is the backbone's own
  pooling (DIN: target attention over ``[ids | P v]``), as the paper's §4 describes.
- **SimScore**: the cosine similarity ``s_i`` of each history item's vector to the target's
  is that item's side information (§6.1.3), embedded as one more field ``s_i w`` (one learnt
  ``D``-vector per modality, the usual embedding of a numeric feature); the target's own field
  is its similarity to itself (1, or 0 without a vector). The paper gives no form; this one
  keeps the ablation honest: Vector and SimScore enter the model at the same place, and
  SimScore carries strictly less (one number per item instead of a vector).
- **SimTier**: the similarities' counts in N tiers (:class:`~ppm.layers.simtier.SimTier`),
  an N-vector (per modality) concatenated into the MLP input (§4.2).

Vectors are read from the model's shared embedding-cache layer (one table in memory and in the
SavedModel) by the item ids *before* ``model.id_dropout``: content is known for every item.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf
import tf_keras as keras

from ppm.configs.models import MULTIMODAL_SIDE
from ppm.layers.simtier import SimTier, cosine_similarities
from ppm.models.modules import recent_history


@keras.utils.register_keras_serializable(package="ppm")
class ModalVectors(keras.layers.Layer):
    """The cached vectors of some of the cache's modalities, one row per modality.

    Args:
      cache: the shared :class:`~ppm.layers.CachedItemEmbedding` (or its config).
      modalities: those to read, out of the cache's (``("image",)``, ``("text", "image")``).

    Call: string ids ``[...]`` -> float32 ``[..., M, dim]`` (zeros for an item the cache does
    not hold or that lacks the modality).

    Raises:
      ValueError: the cache lacks a modality (the message says which it holds).
    """

    def __init__(self, cache, modalities: Sequence[str] = ("image",), **kwargs):
        super().__init__(**kwargs)
        if isinstance(cache, dict):
            cache = keras.layers.deserialize(cache)
        modalities = tuple(str(m) for m in modalities)
        missing = [m for m in modalities if m not in cache.modalities]
        if not modalities or missing:
            raise ValueError(
                f"model.multimodal.modality reads {list(modalities)} but the embedding cache "
                f"holds {list(cache.modalities)}: choose one it holds "
                f"(model.multimodal.modality={'text' if 'text' in cache.modalities else 'image'})")
        self.cache, self.modalities = cache, modalities
        self.columns = [cache.modalities.index(m) for m in modalities]

    @property
    def dim(self) -> int:
        return self.cache.dim

    @property
    def width(self) -> int:
        """Width of the flattened vectors, ``M * dim``."""
        return len(self.modalities) * self.cache.dim

    def call(self, ids):
        table = self.cache(ids)["embedding"]  # [..., C * dim], the cache's modalities
        shape = tf.shape(table)
        per_modality = tf.reshape(table, tf.concat(
            [shape[:-1], [len(self.cache.modalities), self.cache.dim]], 0))
        return tf.gather(per_modality, self.columns, axis=-2)

    def get_config(self):
        return {**super().get_config(), "cache": keras.layers.serialize(self.cache),
                "modalities": list(self.modalities)}


def flat_modalities(vectors):
    """``[..., M, dim] -> [..., M * dim]``."""
    shape = tf.shape(vectors)
    return tf.reshape(vectors, tf.concat(
        [shape[:-2], [vectors.shape[-2] * vectors.shape[-1]]], 0))


@keras.utils.register_keras_serializable(package="ppm")
class MultimodalSide(keras.layers.Layer):
    """Vector / SimScore fields and SimTier counts for the zoo's fields (module docstring).

    Args:
      vectors: the :class:`ModalVectors` (or its config).
      methods: any of ``vector``, ``simscore``, ``simtier``.
      field_dim: D, the width of the zoo's fields.
      num_tiers: SimTier's N.
      max_history: the history cut of the model's fields (``data.max_history``; 0: all).
      init_stddev: N(0, s) initialiser of the projections.

    Call: ``(features, fields)``, the example's features and the
    :class:`~ppm.models.fields.FieldEmbedding` dict -> ``(fields, dense)``: the fields with
    :attr:`num_fields` more fields on ``target [B, 4 + k, D]`` and ``history
    [B, T, 4 + k, D]``, and ``dense``, a list of ``[B, d]`` tensors for the MLP input (SimTier's
    ``[B, M * N]``, or empty).
    """

    def __init__(self, vectors, methods: Sequence[str], field_dim: int, num_tiers: int = 10,
                 max_history: int = 0, init_stddev: float = 0.01, **kwargs):
        super().__init__(**kwargs)
        if isinstance(vectors, dict):
            vectors = keras.layers.deserialize(vectors)
        methods = [str(m) for m in methods]
        bad = [m for m in methods if m not in MULTIMODAL_SIDE]
        if not methods or bad or len(set(methods)) != len(methods):
            raise ValueError(f"methods must be distinct values of {MULTIMODAL_SIDE}, got "
                             f"{methods}")
        if field_dim < 1 or max_history < 0:
            raise ValueError(f"field_dim must be >= 1 and max_history >= 0, got {field_dim}, "
                             f"{max_history}")
        self.vectors, self.methods = vectors, methods
        self.field_dim, self.num_tiers = int(field_dim), int(num_tiers)
        self.max_history, self.init_stddev = int(max_history), float(init_stddev)
        init = keras.initializers.RandomNormal(stddev=init_stddev)
        self.projection = (keras.layers.Dense(self.field_dim, use_bias=False,
                                              kernel_initializer=init, name="vector_projection")
                           if "vector" in methods else None)
        self.score_embedding = (keras.layers.Dense(self.field_dim, use_bias=False,
                                                   kernel_initializer=init,
                                                   name="score_embedding")
                                if "simscore" in methods else None)
        self.simtier = SimTier(num_tiers, name="simtier") if "simtier" in methods else None

    @property
    def num_fields(self) -> int:
        """Fields added to every item (Vector's and SimScore's)."""
        return sum(m in self.methods for m in ("vector", "simscore"))

    def call(self, features, fields):
        feats, _ = recent_history(features, self.max_history)
        target = self.vectors(feats["item_id"])  # [B, M, d]
        history = self.vectors(feats["hist_item_id"])  # [B, T, M, d]
        mask = fields["mask"]
        new_target, new_history, dense = [], [], []
        if self.projection is not None:
            new_target.append(self.projection(flat_modalities(target)))
            new_history.append(self.projection(flat_modalities(history)))
        if self.score_embedding is not None or self.simtier is not None:
            scores, _ = cosine_similarities(target, history, mask)  # [B, T, M]
        if self.score_embedding is not None:
            itself = tf.cast(tf.norm(target, axis=-1) > 0, tf.float32)  # [B, M]
            new_target.append(self.score_embedding(itself))
            new_history.append(self.score_embedding(scores))
        if self.simtier is not None:
            dense.append(self.simtier({"target": target, "history": history, "mask": mask}))
        out = dict(fields)
        if new_target:
            dtype = fields["target"].dtype
            out["target"] = tf.concat([fields["target"], tf.cast(
                tf.stack(new_target, axis=-2), dtype)], axis=-2)
            out["history"] = tf.concat([fields["history"], tf.cast(
                tf.stack(new_history, axis=-2), dtype)], axis=-2)
        return out, dense

    def get_config(self):
        return {**super().get_config(), "vectors": keras.layers.serialize(self.vectors),
                "methods": self.methods, "field_dim": self.field_dim,
                "num_tiers": self.num_tiers, "max_history": self.max_history,
                "init_stddev": self.init_stddev}
