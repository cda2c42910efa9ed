"""GRACE, the generalizable and rank-consistent pre-ranking model (Xu et al., "Optimizing
E-commerce Search: Toward a Generalizable and Rank-Consistent Pre-Ranking Model", SIGIR 2024,
arXiv:2405.05606).

A :class:`~ppm.models.ranker.Ranker` whose parts are:

- fields (:class:`GraceFields`): the user (profile features, hashed, and the mean of the
  clicked history items), the query (a bag of hashed words: search examples only) and the
  candidate item (:class:`GraceItemEmbedding`), with no display position: pre-ranking runs
  before anything is displayed;
- backbone (:class:`GraceBackbone`): ``[item | history mean | query]``, and in training the
  alignment loss of §2.4 (Eq. 10) on the items that have a pre-trained graph embedding;
- head: ``model.head`` (PLE, §2.2; MMoE for Table 1's MMoE row);
- tasks: ``model.tasks``, e.g. ``click`` and ``order`` (Eq. 2-4) and one ``top<k>`` task per
  k of K (Eq. 6-9), weighted ``lambda1 * w_k`` by ``model.task_weights`` (Eq. 11); the
  distillation baseline adds a ``ranker_score`` task (:func:`ppm.features.derived_labels`).

Item representations (``model.grace.item_representation``, Table 2): ``generalized`` is the
paper's ``concat(hash-ID embedding, brand, shop, category embeddings)``; ``attributes`` drops
the hash ID; ``id`` uses the item-id vocabulary (the PLE baseline); ``pretrained`` puts the
graph embeddings in a fixed table instead.

Choices that are ours: Eq. 10's sum over P is divided by the batch size, as Eq. 2-3 are, so
``lambda2`` means the same at any batch size; ``phi(x)`` is the item representation projected
to the graph embeddings' width (a dense layer: the concatenation is wider than the table); the
history enters as the masked mean of the same item representation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf
import tf_keras as keras

from ppm import losses
from ppm.features import QUERY
from ppm.layers.hash_embedding import HashEmbedding
from ppm.layers.id_embedding import IdEmbedding
from ppm.models import registry
from ppm.models.fields import masked_mean
from ppm.models.modules import HIST, recent_history
from ppm.models.ranker import Ranker

ATTRIBUTES = ("shop_id", "brand_id", "category_id")
REPRESENTATIONS = ("generalized", "attributes", "id", "pretrained")


@keras.utils.register_keras_serializable(package="ppm")
class PretrainedItemTable(keras.layers.Layer):
    """Item id -> its pre-trained embedding (GRACE's psi), a fixed table.

    Args:
      item_ids: the items that have one (row ``i + 1`` is ``item_ids[i]``; row 0, zeros, is for
        every other id).
      dim: embedding width.
      embeddings: float [len(item_ids), dim] (zeros when omitted, e.g. before a checkpoint is
        restored).

    Call: string ids ``[...]`` -> ``(vectors [..., dim], has [...] bool)``.
    """

    def __init__(self, item_ids: Sequence[str], dim: int, embeddings=None, **kwargs):
        super().__init__(**kwargs)
        self.item_ids, self.dim = [str(i) for i in item_ids], int(dim)
        if not self.item_ids or "" in self.item_ids or len(set(self.item_ids)) != len(
                self.item_ids):
            raise ValueError("pre-trained item ids must be unique, non-empty, and at least one")
        initial = np.zeros([len(self.item_ids) + 1, self.dim], np.float32)
        if embeddings is not None:
            embeddings = np.asarray(embeddings, np.float32)
            if embeddings.shape != (len(self.item_ids), self.dim):
                raise ValueError(f"embeddings have shape {embeddings.shape}, expected "
                                 f"({len(self.item_ids)}, {self.dim})")
            initial[1:] = embeddings
        self._initial = initial
        self.lookup = keras.layers.StringLookup(vocabulary=self.item_ids, num_oov_indices=1,
                                                name="lookup")

    def build(self, input_shape):
        self.table = self.add_weight(
            "table", shape=self._initial.shape, trainable=False,
            initializer=keras.initializers.Constant(self._initial))
        super().build(input_shape)

    def call(self, ids):
        rows = self.lookup(ids)
        return tf.nn.embedding_lookup(self.table, rows), rows > 0

    def get_config(self):
        # The table travels as weights (checkpoints, SavedModel), not in the config.
        return {**super().get_config(), "item_ids": self.item_ids, "dim": self.dim}


@keras.utils.register_keras_serializable(package="ppm")
class QueryEmbedding(keras.layers.Layer):
    """The query as the mean embedding of its lower-cased words, each hashed to one of
    ``num_bins`` rows; an empty query is a zero vector.

    Call: strings ``[B]`` -> float ``[B, dim]``.
    """

    def __init__(self, num_bins: int, dim: int, init_stddev: float = 0.01, **kwargs):
        super().__init__(**kwargs)
        self.num_bins, self.dim, self.init_stddev = int(num_bins), int(dim), float(init_stddev)
        self.embedding = keras.layers.Embedding(
            self.num_bins, self.dim,
            embeddings_initializer=keras.initializers.RandomNormal(stddev=init_stddev),
            name="embedding")

    def call(self, query):
        words = tf.strings.split(tf.strings.lower(query))
        rows = tf.strings.to_hash_bucket_fast(words, self.num_bins)
        vectors = tf.ragged.map_flat_values(self.embedding, rows)
        count = tf.cast(tf.maximum(words.row_lengths(), 1), vectors.dtype)[:, None]
        return tf.reduce_sum(vectors, axis=1) / count

    def get_config(self):
        return {**super().get_config(), "num_bins": self.num_bins, "dim": self.dim,
                "init_stddev": self.init_stddev}


@keras.utils.register_keras_serializable(package="ppm")
class GraceItemEmbedding(keras.layers.Layer):
    """An item's representation (GRACE §2.4; the Table 2 variants).

    Args:
      representation: ``generalized``, ``attributes``, ``id`` or ``pretrained``.
      vocabularies: ``{field: ids}`` of the shop, brand and category fields (and ``item_id``
        for ``id``).
      dim: width of each embedding.
      hash_buckets: rows of the hash-ID table (``generalized``).
      pretrained: the :class:`PretrainedItemTable` (``pretrained``).
      init_stddev: N(0, s) initialiser.

    Call: ``(features, prefix)`` -> float ``[..., width]`` from ``features[prefix + field]``.
    """

    def __init__(self, representation: str, vocabularies: Mapping[str, Sequence[str]],
                 dim: int, hash_buckets: int = 1, pretrained=None, init_stddev: float = 0.01,
                 **kwargs):
        super().__init__(**kwargs)
        if representation not in REPRESENTATIONS:
            raise ValueError(f"representation must be one of {REPRESENTATIONS}, got "
                             f"{representation!r}")
        if isinstance(pretrained, dict):
            pretrained = keras.layers.deserialize(pretrained)
        if representation == "pretrained" and pretrained is None:
            raise ValueError("the pretrained representation needs the pre-trained table")
        fields = ATTRIBUTES + (("item_id",) if representation == "id" else ())
        self.representation, self.dim = representation, int(dim)
        self.hash_buckets, self.init_stddev = int(hash_buckets), float(init_stddev)
        self.vocabularies = {f: list(vocabularies[f]) for f in fields}
        self.attributes = [IdEmbedding(self.vocabularies[f], dim, init_stddev=init_stddev,
                                       name=f"{f}_embedding") for f in ATTRIBUTES]
        self.item = None
        if representation == "generalized":
            self.item = HashEmbedding(self.hash_buckets, dim, init_stddev=init_stddev,
                                      name="hash_id_embedding")
        elif representation == "id":
            self.item = IdEmbedding(self.vocabularies["item_id"], dim, init_stddev=init_stddev,
                                    name="item_id_embedding")
        self.pretrained = pretrained if representation == "pretrained" else None

    @property
    def width(self) -> int:
        extra = self.pretrained.dim if self.pretrained is not None else (
            self.dim if self.item is not None else 0)
        return self.dim * len(ATTRIBUTES) + extra

    def call(self, features, prefix: str = ""):
        parts = [e(features[prefix + f]) for f, e in zip(ATTRIBUTES, self.attributes)]
        ids = features[prefix + "item_id"]
        if self.item is not None:
            parts.insert(0, self.item(ids))
        elif self.pretrained is not None:
            parts.insert(0, self.pretrained(ids)[0])
        return tf.concat(parts, axis=-1)

    def get_config(self):
        return {**super().get_config(), "representation": self.representation,
                "vocabularies": self.vocabularies, "dim": self.dim,
                "hash_buckets": self.hash_buckets, "init_stddev": self.init_stddev,
                "pretrained": None if self.pretrained is None
                else keras.layers.serialize(self.pretrained)}


@keras.utils.register_keras_serializable(package="ppm")
class GraceFields(keras.layers.Layer):
    """The embedded inputs of GRACE: ``F(U, Q, S)`` of §2.1.

    Args:
      items: the :class:`GraceItemEmbedding` (or its config).
      profile_features: the user profile features, hashed (``profile_hash_bins`` rows each).
      query_hash_bins: hash buckets of the query's words; 0 when the examples have no query.
      max_history: history items read (0: all).

    Call: features -> ``{"target": [B, w], "history": [B, w] (masked mean), "query": [B, D]
      (absent without a query), "profile": [B, P, D], "raw": features}``.
    """

    def __init__(self, items, profile_features: Sequence[str] = (), profile_hash_bins: int = 64,
                 query_hash_bins: int = 0, max_history: int = 0, init_stddev: float = 0.01,
                 **kwargs):
        super().__init__(**kwargs)
        if isinstance(items, dict):
            items = keras.layers.deserialize(items)
        self.items, self.profile_features = items, [str(f) for f in profile_features]
        self.profile_hash_bins, self.query_hash_bins = int(profile_hash_bins), int(
            query_hash_bins)
        self.max_history, self.init_stddev = int(max_history), float(init_stddev)
        self.profile_embeddings = [
            HashEmbedding(self.profile_hash_bins, items.dim, init_stddev=init_stddev,
                          name=f"{name}_embedding") for name in self.profile_features]
        self.query = (QueryEmbedding(self.query_hash_bins, items.dim, init_stddev=init_stddev,
                                     name="query_embedding") if self.query_hash_bins else None)

    def call(self, features):
        feats, hist_len = recent_history(features, self.max_history)
        target = self.items(feats)
        history = self.items(feats, HIST)
        mask = tf.sequence_mask(hist_len, tf.shape(history)[1])
        if self.profile_embeddings:
            profile = tf.stack([emb(feats[name]) for name, emb in
                                zip(self.profile_features, self.profile_embeddings)], axis=1)
        else:
            profile = tf.zeros([tf.shape(target)[0], 0, self.items.dim], target.dtype)
        out = {"target": target, "history": masked_mean(history, mask), "profile": profile,
               "raw": dict(features)}
        if self.query is not None:
            out["query"] = self.query(feats[QUERY])
        return out

    def get_config(self):
        return {**super().get_config(), "items": keras.layers.serialize(self.items),
                "profile_features": self.profile_features,
                "profile_hash_bins": self.profile_hash_bins,
                "query_hash_bins": self.query_hash_bins, "max_history": self.max_history,
                "init_stddev": self.init_stddev}


@keras.utils.register_keras_serializable(package="ppm")
class GraceBackbone(keras.layers.Layer):
    """``[item | history mean | query]``, and the alignment loss (Eq. 10) in training.

    Args:
      pretrained: the :class:`PretrainedItemTable` of psi, or None (no alignment loss).
      alignment_weight: lambda2 (Eq. 11).
      temperature: tau.
      negatives: Eq. 10's denominator (:func:`ppm.losses.alignment_info_nce`).
      init_stddev: N(0, s) initialiser of phi's projection.

    Call: the :class:`GraceFields` dict -> ``{"vector": [B, d]}``; in training it adds
    ``lambda2 * sum_{i in P} L_cl(i) / B`` to the layer's losses.
    """

    def __init__(self, pretrained=None, alignment_weight: float = 0.0, temperature: float = 0.1,
                 negatives: str = "pretrained", init_stddev: float = 0.01, **kwargs):
        super().__init__(**kwargs)
        if isinstance(pretrained, dict):
            pretrained = keras.layers.deserialize(pretrained)
        self.alignment_weight, self.temperature = float(alignment_weight), float(temperature)
        self.negatives, self.init_stddev = str(negatives), float(init_stddev)
        self.pretrained = pretrained if self.alignment_weight > 0 else None
        self.phi = None if self.pretrained is None else keras.layers.Dense(
            self.pretrained.dim, kernel_initializer=keras.initializers.RandomNormal(
                stddev=init_stddev), name="phi")

    def alignment_loss(self, fields):
        """``sum_{i in P} L_cl(i) / B`` of a batch (0 without a pre-trained table)."""
        if self.pretrained is None:
            return tf.constant(0.0)
        psi, has = self.pretrained(fields["raw"]["item_id"])
        per_row = losses.alignment_info_nce(self.phi(fields["target"]), psi, has,
                                            temperature=self.temperature,
                                            negatives=self.negatives)
        return tf.reduce_sum(per_row) / tf.cast(tf.shape(per_row)[0], tf.float32)

    def call(self, fields, training=None):
        parts = [fields["target"], fields["history"]]
        if "query" in fields:
            parts.append(fields["query"])
        if self.phi is not None and not self.phi.built:  # before the optimizer sees variables
            self.phi.build(fields["target"].shape)
        if training and self.pretrained is not None:
            self.add_loss(self.alignment_weight * self.alignment_loss(fields))
        return {"vector": tf.concat(parts, axis=-1)}

    def get_config(self):
        return {**super().get_config(), "alignment_weight": self.alignment_weight,
                "temperature": self.temperature, "negatives": self.negatives,
                "init_stddev": self.init_stddev,
                "pretrained": None if self.pretrained is None
                else keras.layers.serialize(self.pretrained)}


def pretrained_table(path: str) -> PretrainedItemTable:
    """The graph embeddings of ``python -m ppm.graph.pretrain`` as a fixed table."""
    from ppm.graph import load_embeddings  # noqa: PLC0415 - only GRACE reads them

    ids, matrix = load_embeddings(path)
    return PretrainedItemTable(ids, matrix.shape[1], embeddings=matrix, name="graph_embeddings")


@registry.register("grace")
def build(config, inputs, parts) -> Ranker:
    m, g = config.model, config.model.grace
    needs_table = g.alignment_weight > 0 or g.item_representation == "pretrained"
    table = pretrained_table(g.graph_embeddings) if needs_table else None
    items = GraceItemEmbedding(g.item_representation, inputs.vocabularies, m.id_dim,
                               hash_buckets=g.hash_buckets, pretrained=table,
                               init_stddev=m.init_stddev, name="items")
    fields = GraceFields(items, inputs.schema.profile_features,
                         profile_hash_bins=m.profile_hash_bins,
                         query_hash_bins=g.query_hash_bins if inputs.schema.search else 0,
                         max_history=config.data.max_history, init_stddev=m.init_stddev,
                         name="fields")
    backbone = GraceBackbone(table, alignment_weight=g.alignment_weight,
                             temperature=g.temperature, negatives=g.alignment_negatives,
                             init_stddev=m.init_stddev, name="grace")
    return Ranker(fields, backbone, parts.head(), **parts.ranker_kwargs(), name="grace")
