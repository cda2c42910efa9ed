"""Contrastive objectives and MoCo state for pre-training the modality encoders.

* :func:`info_nce_loss`: InfoNCE with in-batch negatives and, optionally, a memory bank. It is the
  SimCSE-style query matching loss of PPM §3.1.1, Eq. 1 (query text vs title of the clicked item)
  and the InfoNCE loss of Taobao §3.3, Eq. 1 (query vs purchased item, negatives from a queue).
* :class:`LearnableTemperature`: the temperature tau of both equations, learnable as in Taobao
  §3.3 ("tau represents a learnable temperature parameter").
* :func:`triplet_loss`: the hinge on <Query, Positive, Negative> triplets with hard negatives of
  Taobao §6.1.1-6.1.2.
* :class:`MomentumQueue` and :func:`momentum_update`: the MoCo memory bank (K = 196,800) and the
  momentum-updated key encoder of Taobao §3.2.

All similarities are dot products of L2-normalised vectors, i.e. cosine similarities (Taobao §3.3).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import ppm.encoders.backend  # noqa: F401  (selects the TensorFlow backend before keras loads)

# isort: split
import keras
import tensorflow as tf

from ppm.encoders.contract import DEFAULT_DIM

PAPER_QUEUE_SIZE = 196_800  # Taobao §3.3: "we set the value of K to 196,800".


def _as_float32_matrix(x, name: str) -> tf.Tensor:
    x = tf.cast(tf.convert_to_tensor(x), tf.float32)
    if x.shape.rank != 2:
        raise ValueError(f"`{name}` must be a [batch, dim] matrix, got shape {x.shape}")
    return x


def info_nce_loss(query, key, temperature, queue=None) -> tf.Tensor:
    """InfoNCE with the diagonal as positives (PPM §3.1.1, Eq. 1; Taobao §3.3, Eq. 1).

    Row ``i`` of ``query`` is scored against every key of the batch and every row of ``queue``;
    the positive is ``key[i]``, all other in-batch keys and all queue rows are negatives::

        loss_i = -log(exp(q_i.k_i / tau)
                      / (sum_j exp(q_i.k_j / tau) + sum_m exp(q_i.queue_m / tau)))

    Without a queue this is PPM's query matching loss; with the MoCo queue it is Taobao's SCL
    loss with extra in-batch negatives. Enqueue the keys of a step only after computing its loss,
    otherwise the positives appear again among the negatives. Under ``MirroredStrategy`` the
    in-batch negatives are those of the replica; the mean is over the replica's batch.

    Computed in float32 whatever the input dtype (mixed precision).

    Args:
      query: ``[B, d]`` L2-normalised queries (e.g. search query embeddings).
      key: ``[B, d]`` L2-normalised keys; ``key[i]`` is the positive of ``query[i]``.
      temperature: positive scalar tau (a float or the output of :class:`LearnableTemperature`).
      queue: optional ``[K, d]`` L2-normalised extra negatives (:class:`MomentumQueue`).

    Returns:
      The mean cross-entropy over the batch, a float32 scalar.

    Raises:
      ValueError: on rank or dimension mismatches or a non-positive Python temperature.
    """
    query = _as_float32_matrix(query, "query")
    key = _as_float32_matrix(key, "key")
    if not query.shape.is_compatible_with(key.shape):
        raise ValueError(f"`query` {query.shape} and `key` {key.shape} must have the same shape")
    if isinstance(temperature, (int, float)) and temperature <= 0:
        raise ValueError(f"`temperature` must be positive, got {temperature}")
    temperature = tf.cast(temperature, tf.float32)
    logits = tf.matmul(query, key, transpose_b=True)  # [B, B]
    if queue is not None:
        queue = _as_float32_matrix(queue, "queue")
        if not query.shape[-1:].is_compatible_with(queue.shape[-1:]):
            raise ValueError(
                f"`queue` rows have dim {queue.shape[-1]}, `query` rows have {query.shape[-1]}")
        logits = tf.concat([logits, tf.matmul(query, queue, transpose_b=True)], axis=1)
    logits = logits / temperature
    labels = tf.range(tf.shape(query)[0])
    return tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))


def triplet_loss(anchor, positive, negative, margin: float) -> tf.Tensor:
    """Triplet hinge on cosine similarities (Taobao §6.1.2; hard negatives of §6.1.1).

    Taobao §6.1.2: "SCL applies triplet loss [23] to each <Query, Positive, Negative> triplet to
    effectively discriminate hard negatives". The paper gives no formula; it measures similarity
    as the dot product of L2-normalised vectors (§3.3), so the hinge is on cosine similarity:
    ``mean_i max(0, margin - cos(a_i, p_i) + cos(a_i, n_i))``. On unit vectors this is FaceNet's
    squared-distance triplet loss with the margin halved (``|a - p|^2 = 2 - 2 cos(a, p)``).

    Args:
      anchor: ``[B, d]`` queries (normalised here, so any scale works).
      positive: ``[B, d]`` purchased items.
      negative: ``[B, d]`` hard negatives (e.g. clicked items triggered by the positive).
      margin: non-negative margin between positive and negative similarity.

    Returns:
      The mean hinge over the batch, a float32 scalar.

    Raises:
      ValueError: on shape mismatches or a negative margin.
    """
    if margin < 0:
        raise ValueError(f"`margin` must be non-negative, got {margin}")
    anchor = _as_float32_matrix(anchor, "anchor")
    positive = _as_float32_matrix(positive, "positive")
    negative = _as_float32_matrix(negative, "negative")
    if not (anchor.shape.is_compatible_with(positive.shape)
            and anchor.shape.is_compatible_with(negative.shape)):
        raise ValueError(f"`anchor` {anchor.shape}, `positive` {positive.shape} and `negative` "
                         f"{negative.shape} must have the same shape")
    anchor, positive, negative = (tf.math.l2_normalize(x, axis=-1)
                                  for x in (anchor, positive, negative))
    sim_pos = tf.reduce_sum(anchor * positive, axis=-1)
    sim_neg = tf.reduce_sum(anchor * negative, axis=-1)
    return tf.reduce_mean(tf.nn.relu(margin - sim_pos + sim_neg))


@keras.saving.register_keras_serializable(package="ppm")
class LearnableTemperature(keras.layers.Layer):
    """The learnable temperature tau of InfoNCE (Taobao §3.3, Eq. 1; PPM §3.1.1, Eq. 1).

    Holds ``log(tau)`` so that tau stays positive and its updates are relative. tau is clamped to
    ``[min_value, max_value]`` twice: a constraint clips ``log(tau)`` after each optimizer step (so
    the parameter cannot drift into the region where the gradient is zero) and the forward pass
    clips tau (so direct assignments or optimizers that skip constraints stay in range too).

    Call it with no arguments (or any ignored input) to get tau, a float32 scalar.

    Args:
      initial_value: tau at initialisation, e.g. 0.07 (MoCo, CLIP).
      min_value: lower bound of tau (0.01 is CLIP's logit scale cap of 100).
      max_value: upper bound of tau.
      **kwargs: passed to :class:`keras.layers.Layer`.

    Raises:
      ValueError: unless ``0 < min_value <= initial_value <= max_value``.
    """

    def __init__(self, initial_value: float = 0.07, min_value: float = 0.01,
                 max_value: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        if not 0 < min_value <= initial_value <= max_value:
            raise ValueError(
                "LearnableTemperature needs 0 < min_value <= initial_value <= max_value, got "
                f"min_value={min_value}, initial_value={initial_value}, max_value={max_value}")
        self.initial_value = float(initial_value)
        self.min_value = float(min_value)
        self.max_value = float(max_value)
        log_min, log_max = math.log(self.min_value), math.log(self.max_value)
        # float32 and no autocast: tau divides logits that feed a softmax (keep it float32 under
        # mixed precision).
        self.log_temperature = self.add_weight(
            shape=(), dtype="float32", autocast=False, name="log_temperature",
            initializer=keras.initializers.Constant(math.log(self.initial_value)),
            constraint=lambda w: keras.ops.clip(w, log_min, log_max))
        self.built = True

    def call(self, inputs=None):
        del inputs  # only lets the layer be wired into a functional model
        return tf.clip_by_value(tf.exp(tf.convert_to_tensor(self.log_temperature)),
                                self.min_value, self.max_value)

    def compute_output_shape(self, input_shape=None):
        return ()

    def get_config(self):
        config = super().get_config()
        config.update(initial_value=self.initial_value, min_value=self.min_value,
                      max_value=self.max_value)
        return config


def _random_unit_rows(seed: int | None):
    """An initializer of rows drawn from N(0, I) and L2-normalised (MoCo's initial queue)."""
    normal = keras.initializers.RandomNormal(seed=seed)

    def initializer(shape, dtype=None):
        return tf.math.l2_normalize(normal(shape, dtype=dtype), axis=-1)

    return initializer


@keras.saving.register_keras_serializable(package="ppm")
class MomentumQueue(keras.layers.Layer):
    """The MoCo memory bank of keys used as extra negatives (Taobao §3.2 and §3.3, Eq. 1).

    A ring buffer ``queue`` ``[K, d]`` (non-trainable, initialised with random unit rows) and a
    ``pointer`` to the oldest row. :meth:`enqueue` overwrites the oldest rows with the newest
    keys. Calling the layer returns the queue, ``[K, d]`` float32.

    Under ``tf.distribute.MirroredStrategy``, :meth:`enqueue` in replica context all-gathers the
    keys of every replica (in replica order), so that each step adds the global batch, and every
    replica's copy of the queue receives the same rows (see the comment in ``__init__``).
    Create the layer inside ``strategy.scope()``.

    Args:
      queue_size: K, the number of keys held (Taobao §3.3 uses 196,800).
      dim: d, the key dimension.
      seed: seed of the random initial rows (None: unseeded).
      **kwargs: passed to :class:`keras.layers.Layer`.

    Raises:
      ValueError: if ``queue_size`` or ``dim`` is not positive.
    """

    def __init__(self, queue_size: int = PAPER_QUEUE_SIZE, dim: int = DEFAULT_DIM,
                 seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if queue_size <= 0 or dim <= 0:
            raise ValueError(
                f"MomentumQueue needs positive queue_size and dim, got {queue_size}, {dim}")
        self.queue_size = int(queue_size)
        self.dim = int(dim)
        self.seed = seed
        # Under MirroredStrategy these become MirroredVariables (synchronization "auto" means
        # ON_WRITE there): one copy per device, and a write in replica context goes through a
        # merge_call that aggregates the replicas' values before writing every copy.
        # ONLY_FIRST_REPLICA broadcasts replica 0's value to all copies, so the copies cannot
        # diverge and no K x d all-reduce is paid. It is exact because every replica writes the
        # same thing: `enqueue` all-gathers the keys first. (NONE would let each replica write
        # only its own copy, trusting identical computations; SUM/MEAN would all-reduce, and
        # MEAN is refused for the int64 pointer.)
        self.queue = self.add_weight(
            shape=(self.queue_size, self.dim), dtype="float32", trainable=False, autocast=False,
            initializer=_random_unit_rows(seed), aggregation="only_first_replica", name="queue")
        self.pointer = self.add_weight(
            shape=(), dtype="int64", trainable=False, initializer="zeros",
            aggregation="only_first_replica", name="pointer")
        self.built = True

    def call(self, inputs=None):
        del inputs  # only lets the layer be wired into a functional model
        return tf.convert_to_tensor(self.queue)

    def compute_output_shape(self, input_shape=None):
        return (self.queue_size, self.dim)

    def enqueue(self, keys) -> None:
        """Writes ``keys`` at the pointer (wrapping around) and advances it (Taobao §3.2).

        In replica context of a multi-replica strategy, writes the keys of all replicas,
        replica 0's first. If more than K keys arrive at once, only the last K are kept.

        Args:
          keys: ``[n, d]`` L2-normalised keys of the momentum encoder (no gradient flows).

        Raises:
          ValueError: if ``keys`` is not ``[n, dim]``.
        """
        keys = tf.stop_gradient(tf.cast(tf.convert_to_tensor(keys), self.queue.dtype))
        if keys.shape.rank != 2 or not keys.shape[-1:].is_compatible_with([self.dim]):
            raise ValueError(f"`keys` must be [n, {self.dim}], got shape {keys.shape}")
        ctx = tf.distribute.get_replica_context()
        if ctx is not None and ctx.num_replicas_in_sync > 1:
            keys = ctx.all_gather(keys, axis=0)
        size = tf.constant(self.queue_size, tf.int64)
        n = tf.shape(keys, out_type=tf.int64)[0]
        kept = tf.minimum(n, size)  # scatter with repeated indices has no defined winner
        keys = keys[n - kept:]
        pointer = tf.convert_to_tensor(self.pointer)
        rows = (pointer + n - kept + tf.range(kept, dtype=tf.int64)) % size
        # A sparse write of the new rows on the underlying tf.Variable (Keras variables have no
        # scatter): O(n d) per step instead of rewriting the whole K x d queue.
        self.queue.value.scatter_update(tf.IndexedSlices(keys, rows))
        self.pointer.assign((pointer + n) % size)

    def get_config(self):
        config = super().get_config()
        config.update(queue_size=self.queue_size, dim=self.dim, seed=self.seed)
        return config


def momentum_update(online_variables: Sequence, momentum_variables: Sequence,
                    momentum: float) -> None:
    """MoCo's momentum update ``key = m * key + (1 - m) * online`` (Taobao §3.2).

    Under a distribution strategy in replica context, the update runs once in cross-replica
    context (``merge_call``) and writes every copy of each momentum variable, whatever its
    aggregation (a replica-context write would be summed across replicas for SUM variables).

    Args:
      online_variables: variables of the online (query) encoder.
      momentum_variables: the matching variables of the momentum (key) encoder, same order.
      momentum: m in [0, 1], e.g. 0.999.

    Raises:
      ValueError: if the lists differ in length, a pair differs in shape, or m is out of range.
    """
    online_variables = list(online_variables)
    momentum_variables = list(momentum_variables)
    if len(online_variables) != len(momentum_variables):
        raise ValueError(f"momentum_update got {len(online_variables)} online variables and "
                         f"{len(momentum_variables)} momentum variables")
    for i, (online, target) in enumerate(zip(online_variables, momentum_variables)):
        if tuple(online.shape) != tuple(target.shape):
            raise ValueError(
                f"momentum_update: variable {i} has shape {tuple(online.shape)} "
                f"({getattr(online, 'path', online.name)}) in the online encoder but "
                f"{tuple(target.shape)} ({getattr(target, 'path', target.name)}) in the "
                "momentum encoder")
    if isinstance(momentum, (int, float)) and not 0.0 <= momentum <= 1.0:
        raise ValueError(f"`momentum` must be in [0, 1], got {momentum}")

    def update(*_):
        for online, target in zip(online_variables, momentum_variables):
            m = tf.cast(momentum, target.dtype)
            online = tf.cast(tf.convert_to_tensor(online), target.dtype)
            target.assign(m * tf.convert_to_tensor(target) + (1 - m) * online)

    ctx = tf.distribute.get_replica_context()
    if ctx is not None and tf.distribute.has_strategy():
        ctx.merge_call(update)
    else:
        update()
