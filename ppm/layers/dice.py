"""Dice, DIN's data adaptive activation function (Zhou et al., KDD 2018, arXiv:1706.06978,
section "Data Adaptive Activation Function").

PReLU can be written ``f(s) = p(s) * s + (1 - p(s)) * alpha * s`` with ``p(s) = 1[s > 0]``, a
rectifying point fixed at zero. Dice replaces the step by a smooth one centred on the data::

    p(s) = sigmoid((s - E[s]) / sqrt(Var[s] + eps))
    f(s) = p(s) * s + (1 - p(s)) * alpha * s

In training ``E[s]`` and ``Var[s]`` are the mini-batch mean and variance of each channel; in
inference they are moving averages of those. Choices where the paper is silent, as in DeepCTR's
``Dice`` (a ``BatchNormalization(center=False, scale=False)`` followed by the mixture):

- Statistics are taken per channel over every other axis (batch, and time for [B, T, C]); the
  variance is the biased (population) one, as in Keras ``BatchNormalization``; gradients flow
  through the batch statistics.
- An optional mask (True = a real row) keeps padded positions out of the statistics and out of
  the moving averages. A batch with no real row is normalised with the moving averages, which
  it leaves unchanged.
- Under ``MirroredStrategy`` each replica uses its own batch statistics (as Keras
  ``BatchNormalization(synchronized=False)``); the moving averages are ``ON_READ`` variables
  that read, and save, as the mean over replicas.
- Under mixed precision everything is computed in float32 (the weights are float32 and never
  autocast) and the result is cast back to the input's dtype.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras


@keras.utils.register_keras_serializable(package="ppm")
class Dice(keras.layers.Layer):
    """Data-adaptive activation with a learnt per-channel ``alpha`` (initialised to 0).

    Args:
      epsilon: added to the variance (DeepCTR-Torch: 1e-8; DeepCTR's Keras ``Dice``: 1e-9).
      momentum: of the moving averages, ``m <- momentum * m + (1 - momentum) * batch``
        (Keras ``BatchNormalization``: 0.99).
      axis: the channel axis; statistics are per channel.

    Call:
      inputs: float [..., C] (any rank >= 2, channels on ``axis``).
      training: batch statistics (and moving-average updates) if true, moving averages
        otherwise (also when None).
      mask: optional bool, the shape of ``inputs`` without ``axis`` (e.g. [B, T] for
        [B, T, C]); False rows are left out of the statistics.

    Returns:
      The shape and dtype of ``inputs``.

    Raises:
      ValueError: bad arguments, an input of rank < 2 or an unknown channel count.
    """

    def __init__(self, epsilon: float = 1e-8, momentum: float = 0.99, axis: int = -1, **kwargs):
        super().__init__(**kwargs)
        if not float(epsilon) > 0.0:
            raise ValueError(f"epsilon must be > 0, got {epsilon}")
        if not 0.0 <= float(momentum) < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise ValueError(f"axis must be an int, got {axis!r}")
        self.epsilon, self.momentum, self.axis = float(epsilon), float(momentum), axis
        self.supports_masking = True

    def build(self, input_shape):
        shape = tf.TensorShape(input_shape)
        if shape.rank is None or shape.rank < 2:
            raise ValueError(f"Dice needs inputs of rank >= 2, got shape {shape}")
        if not -shape.rank <= self.axis < shape.rank:
            raise ValueError(f"axis {self.axis} is out of range for inputs of shape {shape}")
        self._channel_axis = self.axis % shape.rank
        channels = shape[self._channel_axis]
        if channels is None:
            raise ValueError(f"Dice needs a known channel count on axis {self.axis}, got "
                             f"shape {shape}")
        self._reduction_axes = [i for i in range(shape.rank) if i != self._channel_axis]
        self._broadcast_shape = [1] * shape.rank
        self._broadcast_shape[self._channel_axis] = channels
        # float32 whatever the policy, and not autocast to float16 inside call (as Keras BN).
        common = dict(shape=(channels,), dtype=tf.float32, experimental_autocast=False)
        self.alpha = self.add_weight(name="alpha", initializer="zeros", **common)
        stats = dict(trainable=False, synchronization=tf.VariableSynchronization.ON_READ,
                     aggregation=tf.VariableAggregation.MEAN, **common)
        self.moving_mean = self.add_weight(name="moving_mean", initializer="zeros", **stats)
        self.moving_variance = self.add_weight(name="moving_variance", initializer="ones",
                                               **stats)
        super().build(input_shape)

    def _batch_moments(self, x, mask):
        """Per-channel mean and variance over the real rows, and whether there were any."""
        if mask is None:
            weights = tf.ones_like(x)
        else:
            weights = tf.cast(tf.expand_dims(tf.cast(mask, tf.bool), self._channel_axis),
                              tf.float32) * tf.ones_like(x)
        count = tf.reduce_sum(weights, axis=self._reduction_axes)  # [C]
        denominator = tf.maximum(count, 1.0)
        mean = tf.reduce_sum(weights * x, axis=self._reduction_axes) / denominator
        centred = x - tf.reshape(mean, self._broadcast_shape)
        variance = tf.reduce_sum(weights * tf.square(centred),
                                 axis=self._reduction_axes) / denominator
        return mean, variance, count > 0

    def _training_moments(self, x, mask):
        mean, variance, seen = self._batch_moments(x, mask)
        # An empty (or fully masked) batch keeps the moving averages and is normalised by them.
        mean = tf.where(seen, mean, self.moving_mean)
        variance = tf.where(seen, variance, self.moving_variance)
        decay = 1.0 - self.momentum
        self.moving_mean.assign_sub((self.moving_mean - tf.stop_gradient(mean)) * decay)
        self.moving_variance.assign_sub(
            (self.moving_variance - tf.stop_gradient(variance)) * decay)
        return mean, variance

    def call(self, inputs, training=None, mask=None):
        x = tf.cast(inputs, tf.float32)
        if training is None:
            training = False
        mean, variance = tf.__internal__.smart_cond.smart_cond(
            training, lambda: self._training_moments(x, mask),
            lambda: (tf.identity(self.moving_mean), tf.identity(self.moving_variance)))
        mean = tf.reshape(mean, self._broadcast_shape)
        variance = tf.reshape(variance, self._broadcast_shape)
        p = tf.sigmoid((x - mean) * tf.math.rsqrt(variance + self.epsilon))
        alpha = tf.reshape(self.alpha, self._broadcast_shape)
        return tf.cast(p * x + (1.0 - p) * alpha * x, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon, "momentum": self.momentum,
                "axis": self.axis}
