"""Losses written in TensorFlow ops only, importable from both Keras worlds.

The ranking models (Keras 2, ``tf_keras``) and the encoders (Keras 3) must not import each
other's Keras (docs/architecture.md, "Two Keras worlds"); these functions use ``tf`` alone, so
either side can call them on its tensors.

- :func:`binary_cross_entropy`: the CTR loss of every ranking task (PPM Eq. 6), on logits.
- :func:`info_nce`: the in-batch contrastive loss of two-tower alignment (e.g. the Taobao
  multimodal paper's MoCo / InfoNCE term; van den Oord et al. 2018, arXiv:1807.03748).
- :func:`topk_labels`: GRACE's rank-consistency labels from the ranking model's order (GRACE
  §2.3, Eq. 6), and :func:`alignment_info_nce`, its generalization loss (§2.4, Eq. 10).
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


def topk_labels(rank, ks):
    """GRACE Eq. 6: ``y^k = 1`` when the ranking model put the candidate in its top k.

    Args:
      rank: the ranking model's order of each candidate in its request, int [B], 0-based as
        in the canonical format (0 the best, like ``position``; Eq. 6's 1-based
        ``pos <= k`` is ``rank < k``); negative (the examples' ``-1``) when unknown, e.g. a
        randomly sampled item that was never recalled: in no top k.
      ks: the k of each consistency task, e.g. ``(10, 30, 50, 100)``.

    Returns:
      float32 ``[B, len(ks)]`` of 0/1.

    Raises:
      ValueError: ``ks`` empty or not positive.
    """
    ks = [int(k) for k in ks]
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    rank = tf.cast(rank, tf.int64)[..., None]
    return tf.cast((rank >= 0) & (rank < tf.constant(ks, tf.int64)), tf.float32)


def alignment_info_nce(items, pretrained, has_pretrained, temperature: float = 0.1,
                       negatives: str = "pretrained", normalize: bool = True):
    """GRACE Eq. 10: InfoNCE pulling each item's representation ``phi(x_i)`` to its pre-trained
    embedding ``psi(x_i)``, for the items that have one (the set P), float32 [B] (0 elsewhere).

    Eq. 10 writes the denominator over ``<phi(x_i), phi(x_j)>``. Read literally, the positive
    pair ``<phi(x_i), psi(x_i)>`` is not among the denominator's terms, so the softmax is not
    one (its "probability" is not bounded by 1) and the term ``j = i`` is ``phi(x_i)`` with
    itself (a constant once normalised). The paper calls the loss InfoNCE (van den Oord et al.,
    arXiv:1807.03748), whose denominator holds the positive and the negatives of the same kind:
    so by default (``negatives="pretrained"``) the denominator runs over ``psi(x_j)`` of the
    batch's items in P, a proper softmax whose loss is >= 0 and which pushes ``phi(x_i)`` away
    from the other items' pre-trained embeddings. ``negatives="items"`` keeps Eq. 10 as printed
    (``phi(x_j)`` of every item of the batch), which pushes the item representations apart
    from one another (the paper's "increase the distance between item embeddings").

    Args:
      items: ``phi(x)``, float [B, D].
      pretrained: ``psi(x)``, float [B, D] (any value where ``has_pretrained`` is False).
      has_pretrained: bool [B], the set P.
      temperature: tau.
      negatives: ``pretrained`` (InfoNCE) or ``items`` (Eq. 10 as printed).
      normalize: L2-normalise ``phi`` and ``psi`` first (the inner product is then a cosine).

    Returns:
      the loss per row, float32 [B]: 0 for rows outside P; sum it and divide by the batch.

    Raises:
      ValueError: ``temperature <= 0`` or an unknown ``negatives``.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if negatives not in ("pretrained", "items"):
        raise ValueError(f"negatives must be 'pretrained' or 'items', got {negatives!r}")
    phi, psi = tf.cast(items, tf.float32), tf.cast(pretrained, tf.float32)
    if normalize:
        phi, psi = tf.math.l2_normalize(phi, axis=-1), tf.math.l2_normalize(psi, axis=-1)
    in_p = tf.cast(has_pretrained, tf.bool)
    positive = tf.reduce_sum(phi * psi, axis=-1) / temperature  # [B]
    if negatives == "pretrained":
        logits = tf.matmul(phi, psi, transpose_b=True) / temperature  # [B, B]: <phi_i, psi_j>
        allowed = tf.broadcast_to(in_p[None, :], tf.shape(logits))
    else:
        logits = tf.matmul(phi, phi, transpose_b=True) / temperature  # <phi_i, phi_j>
        allowed = tf.ones_like(logits, tf.bool)
    denominator = tf.reduce_logsumexp(tf.where(allowed, logits, -1e9), axis=-1)
    return tf.where(in_p, denominator - positive, 0.0)


LOSSES = {"bce": binary_cross_entropy}


def get(name: str):
    """The per-example task loss ``(labels [B], logits [B]) -> [B]`` called ``name``.

    Raises:
      ValueError: unknown name (the message lists the known ones).
    """
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; known: {sorted(LOSSES)}")
    return LOSSES[name]
