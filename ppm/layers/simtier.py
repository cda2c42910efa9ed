"""SimTier: the similarities of the history to the candidate, as counts per tier (Taobao
multimodal paper, "Enhancing Taobao Display Advertising with Multimodal Representations",
arXiv:2407.19467, §4.2, Eq. 2 and Algorithm 1).

For the candidate's multimodal vector ``v_c`` and the history's ``v_1..v_L``::

    s_i = v_i . v_c                                   (Eq. 2, vectors L2-normalised)
    tier_i = bin of s_i among N equal tiers over [-1, 1]
    SimTier = [#{i: tier_i = k} for k in 0..N-1]      (an N-vector of counts)

The N-vector joins the MLP input: a set of high-dimensional vectors becomes a few numbers
that an ID model trained for one pass can learn to use (§4.1, Observation 1).

Decisions where the paper is silent or its pseudocode is off by one:

- **Tier edges.** Algorithm 1 computes ``ceil((s + 1) / 2 * N)`` and counts tiers 0..N-1:
  s = -1 alone lands in tier 0, and every s in ``(1 - 2/N, 1]`` lands in tier N, which is
  never counted (the most similar items vanish). Here tier ``k`` is
  ``[-1 + 2k/N, -1 + 2(k+1)/N)``, i.e. ``floor((s + 1) / 2 * N)``, and the last tier is
  closed at 1: s = -1 is in tier 0, s = 1 in tier N-1, a score on an inner edge in the tier
  above it. Scores are clipped to [-1, 1] first (normalised vectors can exceed 1 by
  rounding).
- **What is not counted.** Padded history slots (``mask`` False) and items without a vector
  (the zero vector: not in the cache, or without that modality) have no similarity, so they
  are in no tier; a candidate without a vector gives all-zero counts. A zero vector would
  otherwise score 0 and fill the middle tier with items the model knows nothing about.
- **Several modalities.** With ``[B, M, D]`` candidates and ``[B, L, M, D]`` histories (text
  and image), each modality has its own N tiers: the output is ``[B, M * N]``, modality-major.
- The counts are raw (not divided by the history's length), as in Algorithm 1.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

_EPS = 1e-12


def cosine_similarities(target, history, mask=None):
    """Cosine similarity of each history item to the target, and whether it is defined.

    Args:
      target: float ``[B, D]`` or ``[B, M, D]`` (M modalities).
      history: float ``[B, L, D]`` or ``[B, L, M, D]``.
      mask: optional bool ``[B, L]``, True for real history items.

    Returns:
      ``(scores, valid)``: float32 ``[B, L]`` (or ``[B, L, M]``) in [-1, 1], 0 where not
      valid; bool of the same shape, True where both vectors are non-zero and the slot is
      real.
    """
    target, history = tf.cast(target, tf.float32), tf.cast(history, tf.float32)
    t_norm = tf.norm(target, axis=-1)
    h_norm = tf.norm(history, axis=-1)
    t = target / tf.maximum(t_norm, _EPS)[..., None]
    h = history / tf.maximum(h_norm, _EPS)[..., None]
    scores = tf.reduce_sum(h * t[:, None], axis=-1)  # [B, L(, M)]
    valid = (h_norm > 0) & (t_norm > 0)[:, None]
    if mask is not None:
        mask = tf.cast(mask, tf.bool)
        if valid.shape.rank == 3:
            mask = mask[..., None]
        valid &= mask
    scores = tf.where(valid, tf.clip_by_value(scores, -1.0, 1.0), 0.0)
    return scores, valid


def tier_indices(scores, num_tiers: int):
    """Tier of each score in [-1, 1]: ``floor((s + 1) / 2 * N)`` clipped to ``[0, N-1]``
    (tier k is ``[-1 + 2k/N, -1 + 2(k+1)/N)``, the last one closed at 1). int32."""
    idx = tf.floor((tf.clip_by_value(scores, -1.0, 1.0) + 1.0) / 2.0 * num_tiers)
    return tf.clip_by_value(tf.cast(idx, tf.int32), 0, num_tiers - 1)


@keras.utils.register_keras_serializable(package="ppm")
class SimTier(keras.layers.Layer):
    """Counts of the history's similarities to the candidate in N tiers (Algorithm 1).

    Args:
      num_tiers: N, the tiers over [-1, 1].

    Call:
      inputs: dict with ``target`` float ``[B, D]`` or ``[B, M, D]``, ``history`` float
        ``[B, L, D]`` or ``[B, L, M, D]``, optional ``mask`` bool ``[B, L]``. Vectors need not
        be normalised: the similarity is the cosine.

    Returns:
      float ``[B, M * N]`` (``[B, N]`` for rank-2 targets) in the compute dtype.

    Raises:
      ValueError: ``num_tiers < 1``, missing inputs or mismatched ranks.
    """

    def __init__(self, num_tiers: int = 10, **kwargs):
        super().__init__(**kwargs)
        if int(num_tiers) < 1:
            raise ValueError(f"num_tiers must be >= 1, got {num_tiers}")
        self.num_tiers = int(num_tiers)

    def build(self, input_shape):
        if not isinstance(input_shape, dict) or not {"target", "history"} <= set(input_shape):
            raise ValueError("SimTier takes a dict with 'target' and 'history' (and 'mask')")
        t, h = tf.TensorShape(input_shape["target"]), tf.TensorShape(input_shape["history"])
        if t.rank not in (2, 3) or h.rank != t.rank + 1:
            raise ValueError(f"target must be [B, D] or [B, M, D] and history one rank more, "
                             f"got {t} and {h}")
        if t.rank == 3 and t[1] is None:
            raise ValueError(f"the modality axis of target must be known, got {t}")
        self._width = self.num_tiers * (1 if t.rank == 2 else int(t[1]))
        super().build(input_shape)

    def call(self, inputs):
        scores, valid = cosine_similarities(inputs["target"], inputs["history"],
                                            inputs.get("mask"))
        tiers = tf.one_hot(tier_indices(scores, self.num_tiers), self.num_tiers)
        counts = tf.reduce_sum(tiers * tf.cast(valid, tf.float32)[..., None], axis=1)
        # [B, (M,) N] -> [B, M * N]
        counts = tf.reshape(counts, [-1, self._width])
        return tf.cast(counts, self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "num_tiers": self.num_tiers}
