"""Losses written in TensorFlow ops only, importable from both Keras worlds.

The ranking models (Keras 2, ``tf_keras``) and the encoders (Keras 3) must not import each
other's Keras (docs/architecture.md, "Two Keras worlds"); these functions use ``tf`` alone, so
either side can call them on its tensors.

- :func:`binary_cross_entropy`: the CTR loss of every ranking task (PPM Eq. 6), on logits.
- :func:`info_nce`: the in-batch contrastive loss of two-tower alignment (e.g. the Taobao
  multimodal paper's MoCo / InfoNCE term; van den Oord et al. 2018, arXiv:1807.03748).
- :data:`LOSSES` / :func:`get`: task losses by name, as a task config names them.
"""

from __future__ import annotations

import tensorflow as tf


def binary_cross_entropy(labels, logits, weights=None):
    """Per-example binary cross-entropy on logits, float32 [B].

    Args:
      labels: 0/1 (or soft) labels, [B] (any numeric dtype).
      logits: the model's logits, [B] (computed in float32 whatever their dtype, so a
        mixed-precision model's loss is not rounded to float16).
      weights: optional per-example weights [B].

    Returns:
      ``-(y log sigmoid(z) + (1 - y) log(1 - sigmoid(z)))`` per example, times ``weights``.
    """
    logits = tf.cast(logits, tf.float32)
    labels = tf.cast(labels, tf.float32)
    loss = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
    if weights is not None:
        loss *= tf.cast(weights, tf.float32)
    return loss


def summed_binary_cross_entropy(labels, logits, global_batch_size: int, weights=None):
    """This replica's share of the global mean BCE: ``sum_i BCE_i / global_batch_size``.

    Under ``tf.distribute`` every replica divides its sum by the global batch, so the
    all-reduced gradient is the gradient of the global mean (see ``RankingModel``).
    """
    if global_batch_size < 1:
        raise ValueError(f"global_batch_size must be >= 1, got {global_batch_size}")
    return tf.reduce_sum(binary_cross_entropy(labels, logits, weights)) / global_batch_size


def info_nce(queries, keys, temperature: float = 0.07, normalize: bool = True):
    """In-batch InfoNCE: row i of ``queries`` should match row i of ``keys``, float32 [B].

    Args:
      queries: [B, D] (e.g. one modality's or one tower's vectors).
      keys: [B, D] (the paired vectors); the other rows are the negatives.
      temperature: softmax temperature tau (MoCo: 0.07).
      normalize: L2-normalise both first (cosine similarity).

    Returns:
      ``-log softmax(q_i . k_j / tau)_{j=i}`` per row.

    Raises:
      ValueError: ``temperature <= 0``.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    q = tf.cast(queries, tf.float32)
    k = tf.cast(keys, tf.float32)
    if normalize:
        q, k = tf.math.l2_normalize(q, axis=-1), tf.math.l2_normalize(k, axis=-1)
    logits = tf.matmul(q, k, transpose_b=True) / temperature
    labels = tf.range(tf.shape(logits)[0])
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)


LOSSES = {"bce": binary_cross_entropy}


def get(name: str):
    """The per-example task loss ``(labels [B], logits [B]) -> [B]`` called ``name``.

    Raises:
      ValueError: unknown name (the message lists the known ones).
    """
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; known: {sorted(LOSSES)}")
    return LOSSES[name]
