"""The Behavior-Transformer backbone (PPM §3.1.2, Eq. 3-5; also IDSM, §3.2.1, Eq. 7).

The layer encodes a user's behaviour sequence together with the target item. Inputs are item
representations that the caller has already embedded (cached [title | image] vectors for PPM,
concatenated ID embeddings for IDSM), so one backbone serves both modules::

    E = E_input + E_position + E_recency                                (Eq. 3 / 7 / 8)
    h_0 = [e_target, e_1, ..., e_L]                                     (Eq. 4)
    h_i = Trm(h_{i-1}, h_{i-1}, h_{i-1}),  i = 1..num_layers            (Eq. 5)

``Trm`` is tf-models-official's bidirectional ``TransformerEncoderBlock``. Decisions where the
paper is silent, as in Alibaba's Behavior Sequence Transformer (Chen et al., 2019):

- The target item is the first token, so history and target attend to each other; the target
  representation is the last layer's output at that token.
- The user representation is the mean of the last layer's outputs over the real (unpadded)
  history tokens; it is zero for an empty history.
- E_position embeds the display position (the target's ``position``, each past click's
  ``hist_position``), clipped to ``num_positions - 1``. E_recency embeds the history's recency
  bucket; the target gets a reserved extra bucket ("now").
- Padding tokens (index >= ``hist_len``) are masked as attention keys, so their content cannot
  change any output.

``target_mode="history"`` (PPM Eq. 4-5 read literally, ``h_0 = [e_1, ..., e_|S|]``) runs the
transformer over the history alone: the user representation (the same masked mean) no longer
depends on the candidate, and the target representation is its Eq. 3 input (the embedding plus
its position and the reserved "now" recency bucket), to be concatenated after it (§3.1.3). The
user side is then computed once per distinct user in a batch when not training: rows whose
user-side inputs are bitwise equal (a ranking request repeats its user for every candidate) are
found with ``tf.fingerprint`` and ``tf.unique``, the transformer runs on one row of each, and the
result is gathered back: exact, whatever mix of users TF Serving's batching puts together.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras
from official.nlp.modeling.layers import TransformerEncoderBlock

from ppm.features import NUM_RECENCY_BUCKETS

INPUT_KEYS = ("history", "target", "hist_position", "hist_recency", "hist_len", "position")
TARGET_MODES = ("token", "history")


@keras.utils.register_keras_serializable(package="ppm")
class BehaviorTransformer(keras.layers.Layer):
    """Bidirectional transformer over [target, history] with position and recency embeddings.

    Args:
      num_layers: transformer blocks (PPM: 2).
      num_heads: attention heads (PPM: 4); must divide the input width.
      intermediate_size: width of each block's feed-forward layer.
      dropout: attention and output dropout of each block.
      num_positions: rows of the position embedding (positions are clipped into it).
      num_recency_buckets: recency buckets of the history (one more row is reserved for
        the target).
      init_stddev: N(0, s) initialiser of embeddings and kernels (PPM §4.2.3: 0.01).
      target_mode: ``token`` (the target is the first token) or ``history`` (the transformer
        reads the history only; module docstring).

    Call:
      inputs: dict with ``history`` float [B, L, H], ``target`` float [B, H],
        ``hist_position`` int [B, L], ``hist_recency`` int [B, L], ``hist_len`` int [B],
        ``position`` int [B].

    Returns:
      ``(user, target)``, both float [B, H].

    Raises:
      ValueError: bad arguments, or an input width not divisible by ``num_heads``.
    """

    def __init__(self, num_layers: int = 2, num_heads: int = 4, intermediate_size: int = 256,
                 dropout: float = 0.1, num_positions: int = 64,
                 num_recency_buckets: int = NUM_RECENCY_BUCKETS, init_stddev: float = 0.01,
                 target_mode: str = "token", **kwargs):
        super().__init__(**kwargs)
        if target_mode not in TARGET_MODES:
            raise ValueError(f"target_mode must be one of {TARGET_MODES}, got {target_mode!r}")
        self.target_mode = str(target_mode)
        for name, value in (("num_layers", num_layers), ("num_heads", num_heads),
                            ("intermediate_size", intermediate_size),
                            ("num_positions", num_positions),
                            ("num_recency_buckets", num_recency_buckets)):
            if int(value) < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.num_layers, self.num_heads = int(num_layers), int(num_heads)
        self.intermediate_size, self.dropout = int(intermediate_size), float(dropout)
        self.num_positions, self.num_recency_buckets = int(num_positions), int(
            num_recency_buckets)
        self.init_stddev = float(init_stddev)

    def build(self, input_shape):
        missing = [k for k in INPUT_KEYS if k not in input_shape]
        if missing:
            raise ValueError(f"BehaviorTransformer inputs lack {missing}; expects {INPUT_KEYS}")
        width = int(input_shape["history"][-1])
        if width % self.num_heads:
            raise ValueError(f"input width {width} is not divisible by num_heads "
                             f"{self.num_heads}")
        init = lambda: keras.initializers.RandomNormal(stddev=self.init_stddev)
        self.position_embedding = keras.layers.Embedding(
            self.num_positions, width, embeddings_initializer=init(), name="position_embedding")
        self.recency_embedding = keras.layers.Embedding(
            self.num_recency_buckets + 1, width, embeddings_initializer=init(),
            name="recency_embedding")
        self.blocks = [
            TransformerEncoderBlock(
                num_attention_heads=self.num_heads, inner_dim=self.intermediate_size,
                inner_activation="gelu", output_dropout=self.dropout,
                attention_dropout=self.dropout, kernel_initializer=init(), name=f"block_{i}")
            for i in range(self.num_layers)]
        super().build(input_shape)

    def call(self, inputs, training=None):
        if self.target_mode == "history":
            return self._history_only(inputs, training)
        history, target = inputs["history"], inputs["target"]
        length = tf.shape(history)[1]
        tokens = tf.concat([target[:, None, :], history], axis=1)  # [B, 1 + L, H]
        position = tf.concat([tf.reshape(inputs["position"], [-1, 1]),
                              tf.cast(inputs["hist_position"], inputs["position"].dtype)], 1)
        recency = tf.clip_by_value(tf.cast(inputs["hist_recency"], tf.int32), 0,
                                   self.num_recency_buckets - 1)
        target_bucket = tf.fill([tf.shape(history)[0], 1], self.num_recency_buckets)
        recency = tf.concat([target_bucket, recency], axis=1)
        x = self._embed(tokens, position, recency)  # Eq. 3
        valid = tf.sequence_mask(tf.reshape(inputs["hist_len"], [-1]), length)  # [B, L]
        valid = tf.concat([tf.ones_like(valid[:, :1]), valid], axis=1)  # the target is real
        x = self._blocks(x, valid, training)
        return _masked_mean(x[:, 1:], valid[:, 1:]), x[:, 0]

    def _embed(self, tokens, position, recency):
        """Eq. 3: the tokens plus their position and recency embeddings."""
        position = tf.clip_by_value(tf.cast(position, tf.int32), 0, self.num_positions - 1)
        return (tokens + tf.cast(self.position_embedding(position), tokens.dtype)
                + tf.cast(self.recency_embedding(recency), tokens.dtype))

    def _blocks(self, x, valid, training):
        """Eq. 5: the encoder blocks over tokens ``x`` [B, T, H] whose real ones are ``valid``
        [B, T] (every query may attend to every real key)."""
        mask = tf.cast(valid[:, None, :], x.dtype) * tf.ones_like(x[:, :, :1])  # [B, T, T]
        for block in self.blocks:
            x = block([x, mask], training=training)
        return x

    def _encode_history(self, history, hist_position, hist_recency, hist_len, training):
        """The user representation of history-only mode, [B, H]."""
        recency = tf.clip_by_value(tf.cast(hist_recency, tf.int32), 0,
                                   self.num_recency_buckets - 1)
        x = self._embed(history, hist_position, recency)
        valid = tf.sequence_mask(tf.reshape(hist_len, [-1]), tf.shape(history)[1])
        return _masked_mean(self._blocks(x, valid, training), valid)

    def _history_only(self, inputs, training):
        history, target = inputs["history"], inputs["target"]
        user_inputs = (history, inputs["hist_position"], inputs["hist_recency"],
                       tf.reshape(inputs["hist_len"], [-1]))
        if training:
            user = self._encode_history(*user_inputs, training=training)
        else:  # once per distinct user of the batch (exact: bitwise-equal inputs)
            first, index = distinct_rows(user_inputs)
            user = tf.gather(self._encode_history(
                *[tf.gather(x, first) for x in user_inputs], training=training), index)
        now = tf.fill([tf.shape(target)[0]], self.num_recency_buckets)
        return user, self._embed(target, tf.reshape(inputs["position"], [-1]), now)

    def get_config(self):
        return {**super().get_config(), "target_mode": self.target_mode,
                "num_layers": self.num_layers,
                "num_heads": self.num_heads, "intermediate_size": self.intermediate_size,
                "dropout": self.dropout, "num_positions": self.num_positions,
                "num_recency_buckets": self.num_recency_buckets,
                "init_stddev": self.init_stddev}


def _masked_mean(x, valid):
    """The mean of ``x`` [B, T, H] over the ``valid`` [B, T] tokens (0 where there are none)."""
    weights = tf.cast(valid[:, :, None], x.dtype)
    return tf.math.divide_no_nan(tf.reduce_sum(x * weights, axis=1),
                                 tf.reduce_sum(weights, axis=1))


def distinct_rows(tensors):
    """``(first, index)``: for a tuple of tensors sharing dim 0, the first row of each distinct
    combination of rows (bitwise, by ``tf.fingerprint``) and each row's distinct number, so that
    ``tf.gather(f(tf.gather(x, first)), index) == f(x)`` for any row-wise ``f``."""
    prints = [tf.fingerprint(tf.reshape(x, [tf.shape(x)[0], -1])) for x in tensors]
    key = tf.fingerprint(tf.concat(prints, axis=1))  # [B, 8] uint8
    key = tf.bitcast(key, tf.int64)  # [B]
    _, index = tf.unique(key)
    count = tf.maximum(tf.reduce_max(index) + 1, 0)  # 0 for an empty batch
    first = tf.math.unsorted_segment_min(tf.range(tf.shape(key)[0]), index, count)
    return first, index
