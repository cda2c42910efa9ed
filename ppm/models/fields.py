"""The zoo's shared input layer: every feature of an example as an embedded *field*.

The baselines of PPM Table 2 (Wide&Deep, DeepFM, DIN, DSIN, MIAN) read the same inputs in
different ways; :class:`FieldEmbedding` embeds them once, for whichever backbone the model has:

- the target item's four ID fields (sku, shop, brand, category; Eq. 7's ``E_*``), and the same
  for every history item, each ``id_dim`` wide, with the history's padding mask (``hist_len``);
- the user profile features (the paper's D), hashed, ``id_dim`` wide as well: every field has one
  width, as DeepCTR's ``embedding_dim`` for all sparse features, so FM can pair any two
  (URM keeps its own ``profile_dim``);
- the context: the display position, embedded, ``id_dim`` wide.

Hashed linear parts (Wide&Deep's wide part, DeepFM's first order) read the raw features
instead (:func:`raw_inputs`); the field dict carries them under ``raw``.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf
import tf_keras as keras

from ppm.layers.hash_embedding import HashEmbedding
from ppm.models.modules import HIST, ItemIdEmbedding, recent_history


@keras.utils.register_keras_serializable(package="ppm")
class FieldEmbedding(keras.layers.Layer):
    """Target, history, profile and context fields of a batch (the zoo's embedding layer).

    Args:
      items: the :class:`~ppm.models.modules.ItemIdEmbedding` of target and history items (or
        its config); its ``dim`` is every field's width D.
      profile_features: names of the user profile features.
      profile_hash_bins: hash buckets per profile feature.
      num_positions: display positions embedded (larger ones share the last row).
      max_history: use the ``max_history`` most recent history items (0: all).
      init_stddev: N(0, s) initialiser.

    Call: feature dict (``ppm.features`` names) -> dict of
      ``target [B, 4, D]``, ``history [B, T, 4, D]``, ``mask [B, T]`` (bool, True for real
      items), ``hist_len [B]`` (int32), ``profile [B, P, D]``, ``context [B, 1, D]``, and
      ``hist_session [B, T]`` (int32) when the features have it, and ``raw`` (the feature
      dict itself, for hashed linear parts). Flattened items
      (``[B, 4D]``, ``[B, T, 4D]``) are :func:`flat`.
    """

    def __init__(self, items: ItemIdEmbedding, profile_features: Sequence[str] = (),
                 profile_hash_bins: int = 64, num_positions: int = 64, max_history: int = 0,
                 init_stddev: float = 0.01, **kwargs):
        super().__init__(**kwargs)
        if isinstance(items, dict):
            items = keras.layers.deserialize(items)
        if num_positions < 1:
            raise ValueError(f"num_positions must be >= 1, got {num_positions}")
        if max_history < 0:
            raise ValueError(f"max_history must be >= 0, got {max_history}")
        self.items = items
        self.profile_features = [str(f) for f in profile_features]
        self.profile_hash_bins, self.num_positions = int(profile_hash_bins), int(num_positions)
        self.max_history, self.init_stddev = int(max_history), float(init_stddev)
        self.profile_embeddings = [
            HashEmbedding(self.profile_hash_bins, items.dim, init_stddev=init_stddev,
                          name=f"{name}_embedding") for name in self.profile_features]
        self.position_embedding = keras.layers.Embedding(
            self.num_positions, items.dim,
            embeddings_initializer=keras.initializers.RandomNormal(stddev=init_stddev),
            name="position_embedding")

    @property
    def dim(self) -> int:
        return self.items.dim

    def call(self, features):
        feats, hist_len = recent_history(features, self.max_history)
        target = self.items.fields(feats)
        history = self.items.fields(feats, HIST)
        mask = tf.sequence_mask(hist_len, tf.shape(history)[1])
        batch = tf.shape(target)[0]
        if self.profile_embeddings:
            profile = tf.stack([emb(feats[name]) for name, emb in
                                zip(self.profile_features, self.profile_embeddings)], axis=1)
        else:
            profile = tf.zeros([batch, 0, self.dim], target.dtype)
        position = tf.clip_by_value(tf.cast(feats["position"], tf.int32), 0,
                                    self.num_positions - 1)
        out = {"target": target, "history": history, "mask": mask, "hist_len": hist_len,
               "profile": profile, "context": self.position_embedding(position)[:, None]}
        out["raw"] = dict(features)
        if "hist_session" in feats:
            out["hist_session"] = tf.cast(feats["hist_session"], tf.int32)
        return out

    def get_config(self):
        return {**super().get_config(), "items": keras.layers.serialize(self.items),
                "profile_features": self.profile_features,
                "profile_hash_bins": self.profile_hash_bins,
                "num_positions": self.num_positions, "max_history": self.max_history,
                "init_stddev": self.init_stddev}


def flat(fields):
    """``[..., F, D] -> [..., F * D]`` (an item's fields side by side, as Eq. 7)."""
    shape = tf.shape(fields)
    return tf.reshape(fields, tf.concat([shape[:-2], [fields.shape[-2] * fields.shape[-1]]], 0))


def masked_mean(values, mask):
    """Mean over axis 1 of ``values [B, T, ...]`` where ``mask [B, T]``; 0 for an empty row."""
    m = tf.cast(mask, values.dtype)
    m = tf.reshape(m, tf.concat([tf.shape(m), tf.ones([values.shape.rank - 2], tf.int32)], 0))
    total = tf.reduce_sum(values * m, axis=1)
    return total / tf.maximum(tf.reduce_sum(m, axis=1), tf.cast(1.0, values.dtype))


def raw_inputs(features, names, hist_len, max_history: int = 0) -> dict:
    """``{name: string tensor}`` of raw features for hashed linear parts (Wide&Deep, DeepFM's
    first order): integer features become their decimal strings; history features keep the
    ``max_history`` most recent items, and every slot at or past ``hist_len [B]`` becomes
    ``""`` (padding: no weight), whatever it held."""
    out = {}
    for name in names:
        x = features[name]
        x = x if x.dtype == tf.string else tf.strings.as_string(x)
        if name.startswith(HIST) and x.shape.rank == 2:
            if max_history:
                x = x[:, :max_history]
            x = tf.where(tf.sequence_mask(hist_len, tf.shape(x)[1]), x, "")
        out[name] = x
    return out
