"""DIN's local activation unit: attention of the candidate over the history (Zhou et al., KDD
2018, arXiv:1706.06978, section "The structure of Deep Interest Network", Eq. 3 and Fig. 2).

For the candidate (target) ``t`` and the history ``h_1..h_T``::

    a_j = MLP([h_j, t, h_j - t, h_j * t])          (the activation unit, Fig. 2)
    v_U(t) = sum_j a_j * h_j                        (Eq. 3)

Decisions where the paper is silent or where implementations differ:

- The unit's input is ``[h, t, h - t, h * t]``. DIN's Fig. 2 feeds the two embeddings and
  their product; the difference and this order are this repository's specification. DeepCTR's
  ``LocalActivationUnit`` concatenates ``[t, h, t - h, t * h]``: the same family of functions
  (a permutation of the first layer's rows and a sign).
- The hidden layers are Dense + Dice/PReLU/sigmoid (DeepCTR's DIN: ``att_hidden_size=(80, 40)``,
  ``att_activation="dice"``), then a linear unit to one score. ``hidden_units=()`` makes the
  score a linear function of the four blocks. Kernels are N(0, ``init_stddev``) (this repo's
  choice; DeepCTR uses Glorot-normal), biases zero.
- DIN does not normalise the weights (Eq. 3 relaxes sum_j a_j = 1 to keep the intensity of the
  user's interest); ``normalize=True`` takes a softmax over the real items
  (DeepCTR's ``weight_normalization``).
- Padded items (mask False) get weight 0, are zeroed before the unit (so garbage there cannot
  reach a gradient) and are left out of Dice's batch statistics. A history with no real item
  gives the zero vector, also with ``normalize=True``.
- Scores, weights and the weighted sum are float32; the output is cast to the layer's compute
  dtype (float16 under ``mixed_float16``).
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf
import tf_keras as keras

from ppm.layers.dice import Dice

ACTIVATIONS = ("dice", "prelu", "sigmoid")
INPUT_KEYS = ("query", "keys")
# Finite, so that a fully masked row gives a (discarded) uniform softmax instead of NaN.
_MASKED_LOGIT = -1e9


@keras.utils.register_keras_serializable(package="ppm")
class TargetAttention(keras.layers.Layer):
    """Attention-weighted sum of the history with respect to the candidate (DIN Eq. 3).

    Args:
      hidden_units: widths of the activation unit's hidden layers (DeepCTR: 80, 40); may be
        empty (a linear score).
      activation: after each hidden layer, one of ``dice`` (:class:`Dice`), ``prelu`` or
        ``sigmoid``.
      normalize: softmax the scores over the real items (DIN: no).
      init_stddev: N(0, s) kernel initialiser of the unit.

    Call:
      inputs: dict with ``query`` float [B, D] (the candidate), ``keys`` float [B, T, D] (the
        history) and optionally ``mask`` bool [B, T] (True = a real item; all True if absent).
      training: Dice uses (and updates) batch statistics when true.

    Returns:
      float [B, D] in the compute dtype. :meth:`attention_weights` returns the weights
      ``a_j``, float32 [B, T].

    Raises:
      ValueError: bad arguments, missing inputs, bad ranks or mismatched widths.
    """

    def __init__(self, hidden_units: Sequence[int] = (80, 40), activation: str = "dice",
                 normalize: bool = False, init_stddev: float = 0.01, **kwargs):
        super().__init__(**kwargs)
        hidden_units = [int(u) for u in hidden_units]
        if any(u < 1 for u in hidden_units):
            raise ValueError(f"hidden_units must be positive widths, got {hidden_units}")
        activation = str(activation).lower()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        if not float(init_stddev) > 0.0:
            raise ValueError(f"init_stddev must be > 0, got {init_stddev}")
        self.hidden_units, self.activation = hidden_units, activation
        self.normalize, self.init_stddev = bool(normalize), float(init_stddev)
        init = lambda: keras.initializers.RandomNormal(stddev=self.init_stddev)
        policy = self.dtype_policy
        self.dense_layers = [keras.layers.Dense(u, kernel_initializer=init(), dtype=policy,
                                                name=f"dense_{i}")
                             for i, u in enumerate(hidden_units)]
        self.activation_layers = [self._activation_layer(f"{activation}_{i}")
                                  for i in range(len(hidden_units))]
        self.score_layer = keras.layers.Dense(1, kernel_initializer=init(), dtype=policy,
                                              name="score")

    def _activation_layer(self, name):
        if self.activation == "dice":
            return Dice(dtype=self.dtype_policy, name=name)
        if self.activation == "prelu":
            return keras.layers.PReLU(dtype=self.dtype_policy, name=name)
        return keras.layers.Activation("sigmoid", dtype=self.dtype_policy, name=name)

    def build(self, input_shape):
        if not isinstance(input_shape, dict):
            raise ValueError(f"TargetAttention expects a dict with {INPUT_KEYS} (and "
                             f"optionally 'mask'), got {input_shape}")
        missing = [k for k in INPUT_KEYS if k not in input_shape]
        if missing:
            raise ValueError(f"TargetAttention inputs lack {missing}; expects {INPUT_KEYS} "
                             f"and optionally 'mask'")
        query, keys = tf.TensorShape(input_shape["query"]), tf.TensorShape(input_shape["keys"])
        if query.rank != 2 or keys.rank != 3:
            raise ValueError(f"query must be [B, D] and keys [B, T, D], got {query} and {keys}")
        if query[-1] is None or query[-1] != keys[-1]:
            raise ValueError(f"query width {query[-1]} != keys width {keys[-1]} (or unknown)")
        if input_shape.get("mask") is not None and tf.TensorShape(input_shape["mask"]).rank != 2:
            raise ValueError(f"mask must be [B, T], got {input_shape['mask']}")
        super().build(input_shape)

    def _weights(self, inputs, training):
        """``(weights float32 [B, T], keys with padded items zeroed [B, T, D])``."""
        if not self.built:
            self.build(tf.nest.map_structure(lambda t: tf.convert_to_tensor(t).shape, inputs))
        keys = tf.cast(inputs["keys"], self.compute_dtype)
        query = tf.cast(inputs["query"], self.compute_dtype)
        mask = inputs.get("mask")
        mask = (tf.ones(tf.shape(keys)[:2], tf.bool) if mask is None
                else tf.cast(mask, tf.bool))
        keys = tf.where(mask[:, :, None], keys, tf.zeros_like(keys))
        width = keys.shape[-1]
        query = tf.broadcast_to(query[:, None, :], tf.shape(keys))
        x = tf.concat([keys, query, keys - query, keys * query], axis=-1)  # [B, T, 4D]
        x, flat_mask = tf.reshape(x, [-1, 4 * width]), tf.reshape(mask, [-1])
        for dense, act in zip(self.dense_layers, self.activation_layers):
            x = dense(x)
            x = act(x, mask=flat_mask, training=training) if isinstance(act, Dice) else act(x)
        scores = tf.reshape(tf.cast(self.score_layer(x), tf.float32), tf.shape(mask))
        if self.normalize:
            scores = tf.nn.softmax(tf.where(mask, scores, _MASKED_LOGIT), axis=-1)
        return tf.where(mask, scores, tf.zeros_like(scores)), keys

    def attention_weights(self, inputs, training=None):
        """The weights ``a_j``, float32 [B, T]: 0 on padded items; with ``normalize``, a
        softmax over the real items (all 0 for a row with none). Same inputs as ``call``."""
        return self._weights(inputs, training)[0]

    def call(self, inputs, training=None):
        weights, keys = self._weights(inputs, training)
        pooled = tf.einsum("bt,btd->bd", weights, tf.cast(keys, tf.float32))  # Eq. 3
        return tf.cast(pooled, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape["query"])

    def get_config(self):
        return {**super().get_config(), "hidden_units": self.hidden_units,
                "activation": self.activation, "normalize": self.normalize,
                "init_stddev": self.init_stddev}
