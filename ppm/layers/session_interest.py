"""Session layers of the Deep Session Interest Network (DSIN, Feng et al. 2019, arXiv:1905.06482).

A user's history (most recent first, ``hist_session`` from :func:`ppm.features.session_ids`)
is cut into sessions and read in four steps, one layer each::

    Q = split_sessions(history)                          Q_k [L, D], k < S    (§4.1)
    I_k = Avg(MHSA(Q_k + BE_k))                          BE_(k,t,c) = w^K_k + w^T_t + w^C_c
                                                                              (§4.2, Eq. 2-5)
    H = Bi-LSTM(I_0, ..., I_(S-1)),  H_k = h_k(fwd) ⊕ h_k(bwd)                (§4.3, Eq. 6-7)
    U = sum_k a_k I_k,  a_k = softmax_k(I_k W X_I)  over the real sessions    (§4.4, Eq. 8-9)

(:class:`SessionSplit`, :class:`SessionInterestExtractor`, :class:`SessionInterestInteractor`,
:class:`SessionActivation`; the activation is applied both to ``I`` and to ``H``.) Decisions
where the paper is silent, with DeepCTR's DSIN (``deepctr/models/sequence/dsin.py``) where it
has one:

- Session 0 is the most recent one and item 0 of a session its most recent item; a session
  keeps its ``L`` most recent items and sessions from index ``S`` on are dropped (DeepCTR:
  ``sess_max_count=5``; the paper's Alimama data cut sessions to 10 items).
- The self-attention is tf-models-official's ``TransformerEncoderBlock`` (attention, residual
  and LayerNorm, ReLU feed-forward of width ``4 D`` as DeepCTR's ``Transformer``, residual and
  LayerNorm), shared by all sessions. DeepCTR's "blinding" (an item may not attend to itself)
  is not in the paper and not done here.
- Padded items are masked as attention keys and left out of the average, so their content
  cannot change any output; an empty session's interest is zero.
- The Bi-LSTM is one layer (DeepCTR stacks two and averages the directions, ``'ave'``); its
  forward direction runs from the most recent session into the past, and both directions skip
  masked sessions. It is a plain ``RNN(LSTMCell)`` loop: over a handful of sessions cuDNN
  gains nothing, and the loop saves fast. Not unrolled as DeepCTR's: unrolled, tf_keras 2.20's
  backward direction gave zeros at the first session under a mask.
- The activation's bilinear form has no bias and no scaling; a user without sessions gets zeros.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras
from official.nlp.modeling.layers import TransformerEncoderBlock

_MERGE_MODES = ("concat", "ave", "sum", "mul")


def _positive(**values) -> None:
    for name, value in values.items():
        if int(value) < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")


def _check_dropout(dropout: float) -> None:
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")


def _check_stddev(init_stddev: float) -> None:
    if not init_stddev > 0:
        raise ValueError(f"init_stddev must be > 0, got {init_stddev}")


def _check_rank(layer: str, name: str, shape, rank: int) -> None:
    if shape.rank != rank:
        raise ValueError(f"{layer}: {name} must have rank {rank}, got shape {shape}")


def split_sessions(items, session, hist_len, max_sessions: int = 5, session_length: int = 10):
    """Cuts histories into sessions (DSIN §4.1): ``Q_k`` = the items of session ``k``.

    Item ``t`` of a row (``t < hist_len``) goes to session ``session[t]``, at the slot after
    the earlier items (smaller ``t``, i.e. more recent) of that session. A session keeps its
    ``session_length`` most recent items; sessions ``>= max_sessions`` (and negative ids) are
    dropped; items from ``hist_len`` on are padding and ignored whatever they hold. Ids need not
    be consecutive or sorted. Works in graph mode (and under XLA) with dynamic ``B`` and ``T``:
    one ``unsorted_segment_sum`` places every item, dropped ones in a spare slot cut off after.

    Args:
      items: float [B, T, D], most recent first.
      session: int [B, T], the session index of each item (0 = most recent session).
      hist_len: int [B], the number of real items of each row.
      max_sessions: S.
      session_length: L.

    Returns:
      ``(sessions, mask)``: ``sessions`` [B, S, L, D] (zeros where empty) and ``mask`` bool
      [B, S, L], True where a slot holds a real item.

    Raises:
      ValueError: ``max_sessions`` or ``session_length`` < 1, or ``items`` not of rank 3.
    """
    _positive(max_sessions=max_sessions, session_length=session_length)
    num_s, num_l = int(max_sessions), int(session_length)
    items = tf.convert_to_tensor(items)
    _check_rank("split_sessions", "items", items.shape, 3)
    width = items.shape[-1]
    batch, length = tf.shape(items)[0], tf.shape(items)[1]
    session = tf.cast(session, tf.int32)
    real = tf.sequence_mask(tf.cast(tf.reshape(hist_len, [-1]), tf.int32), length)  # [B, T]
    kept = real & (session >= 0) & (session < num_s)
    onehot = tf.one_hot(tf.where(kept, session, -1), num_s, dtype=tf.int32)  # [B, T, S]
    # Rank of an item in its session: how many items before it (more recent) share the session.
    rank = tf.reduce_sum(tf.cumsum(onehot, axis=1, exclusive=True) * onehot, axis=-1)
    kept &= rank < num_l
    slots = num_s * num_l + 1  # the last one receives the dropped items
    slot = tf.where(kept, session * num_l + rank, slots - 1) + tf.range(batch)[:, None] * slots
    flat = tf.math.unsorted_segment_sum(tf.reshape(items, [-1, width]), tf.reshape(slot, [-1]),
                                        batch * slots)
    sessions = tf.reshape(tf.reshape(flat, [batch, slots, width])[:, :-1],
                          [batch, num_s, num_l, width])
    filled = tf.math.unsorted_segment_sum(tf.reshape(tf.cast(kept, tf.int32), [-1]),
                                          tf.reshape(slot, [-1]), batch * slots)
    mask = tf.reshape(tf.reshape(filled, [batch, slots])[:, :-1] > 0, [batch, num_s, num_l])
    return sessions, mask


@keras.utils.register_keras_serializable(package="ppm")
class SessionSplit(keras.layers.Layer):
    """:func:`split_sessions` as a layer (DSIN §4.1).

    Args:
      max_sessions: S, sessions kept (DeepCTR ``sess_max_count``: 5).
      session_length: L, most recent items kept per session.

    Call: ``[items [B, T, D], session int [B, T], hist_len int [B]]`` ->
    ``(sessions [B, S, L, D], mask bool [B, S, L])``.
    """

    def __init__(self, max_sessions: int = 5, session_length: int = 10, **kwargs):
        super().__init__(**kwargs)
        _positive(max_sessions=max_sessions, session_length=session_length)
        self.max_sessions, self.session_length = int(max_sessions), int(session_length)

    def call(self, inputs):
        items, session, hist_len = inputs
        return split_sessions(items, session, hist_len, self.max_sessions, self.session_length)

    def get_config(self):
        return {**super().get_config(), "max_sessions": self.max_sessions,
                "session_length": self.session_length}


@keras.utils.register_keras_serializable(package="ppm")
class SessionInterestExtractor(keras.layers.Layer):
    """Bias encoding and self-attention inside each session, averaged (DSIN §4.2, Eq. 2-5).

    ``Q = sessions + BE`` with ``BE[k, t, c] = w^K_k + w^T_t + w^C_c`` (session ``k``, item
    ``t`` of the session, unit ``c``); each session ``Q_k`` goes through one multi-head
    self-attention block over its real items, and ``I_k`` is the mean of the block's outputs
    over those items.

    Args:
      num_heads: attention heads (DeepCTR: 8); must divide D.
      intermediate_size: width of the block's feed-forward layer; None: 4 D (DeepCTR).
      dropout: attention and output dropout of the block.
      init_stddev: N(0, s) initialiser of the bias encoding and the kernels (DeepCTR draws
        the bias encoding from a truncated N(0, 1e-4)).

    Call:
      ``[sessions [B, S, L, D], mask bool [B, S, L]]`` (from :class:`SessionSplit`; S, L and D
      static).

    Returns:
      ``(interests [B, S, D], session_mask bool [B, S])``: zero interest and False for an
      empty session.

    Raises:
      ValueError: bad arguments, inputs of the wrong rank, or D not divisible by ``num_heads``.
    """

    def __init__(self, num_heads: int = 8, intermediate_size: int | None = None,
                 dropout: float = 0.0, init_stddev: float = 0.01, **kwargs):
        super().__init__(**kwargs)
        _positive(num_heads=num_heads)
        if intermediate_size is not None:
            _positive(intermediate_size=intermediate_size)
        _check_dropout(dropout)
        _check_stddev(init_stddev)
        self.num_heads = int(num_heads)
        self.intermediate_size = None if intermediate_size is None else int(intermediate_size)
        self.dropout, self.init_stddev = float(dropout), float(init_stddev)

    def build(self, input_shape):
        sessions, mask = (tf.TensorShape(s) for s in input_shape)
        _check_rank(self.name, "sessions", sessions, 4)
        _check_rank(self.name, "mask", mask, 3)
        num_s, num_l, width = sessions[1], sessions[2], sessions[3]
        if None in (num_s, num_l, width):
            raise ValueError(f"{self.name}: sessions need static S, L and D, got {sessions}")
        if width % self.num_heads:
            raise ValueError(f"{self.name}: input width {width} is not divisible by num_heads "
                             f"{self.num_heads}")
        init = lambda: keras.initializers.RandomNormal(stddev=self.init_stddev)
        self.session_bias = self.add_weight("session_bias", [num_s], initializer=init())
        self.position_bias = self.add_weight("position_bias", [num_l], initializer=init())
        self.unit_bias = self.add_weight("unit_bias", [width], initializer=init())
        self.block = TransformerEncoderBlock(
            num_attention_heads=self.num_heads,
            inner_dim=self.intermediate_size or 4 * width, inner_activation="relu",
            output_dropout=self.dropout, attention_dropout=self.dropout,
            kernel_initializer=init(), name="self_attention")
        super().build(input_shape)

    def call(self, inputs, training=None):
        sessions, mask = inputs
        _, num_s, num_l, width = sessions.shape
        bias = (tf.reshape(self.session_bias, [num_s, 1, 1])
                + tf.reshape(self.position_bias, [1, num_l, 1])
                + tf.reshape(self.unit_bias, [1, 1, width]))  # Eq. 2
        real = tf.cast(mask, tf.bool)[..., None]
        # Padding is zeroed (not just masked) so that even NaN garbage cannot leak through.
        x = tf.where(real, sessions + tf.cast(bias, sessions.dtype), tf.zeros_like(sessions))
        x = tf.reshape(x, [-1, num_l, width])  # one row per (user, session)
        keys = tf.cast(tf.reshape(mask, [-1, 1, num_l]), x.dtype)
        x = self.block([x, keys * tf.ones_like(x[:, :, :1])], training=training)  # Eq. 3-4
        x = tf.cast(x, sessions.dtype)  # the block ends in a float32 LayerNorm
        weights = tf.cast(tf.reshape(mask, [-1, num_l, 1]), x.dtype)
        interests = tf.math.divide_no_nan(tf.reduce_sum(x * weights, axis=1),
                                          tf.reduce_sum(weights, axis=1))  # Eq. 5
        return (tf.reshape(interests, [-1, num_s, width]),
                tf.reduce_any(tf.cast(mask, tf.bool), axis=-1))

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads,
                "intermediate_size": self.intermediate_size, "dropout": self.dropout,
                "init_stddev": self.init_stddev}


@keras.utils.register_keras_serializable(package="ppm")
class SessionInterestInteractor(keras.layers.Layer):
    """Bi-LSTM over the session interests (DSIN §4.3, Eq. 6-7).

    Args:
      units: LSTM units per direction.
      merge_mode: how the directions combine: ``"concat"`` (the paper's ⊕, output 2 units),
        ``"ave"`` (DeepCTR's default), ``"sum"`` or ``"mul"`` (output ``units``).
      dropout: dropout of the LSTM inputs (DeepCTR: 0.2).

    Call:
      ``[interests [B, S, D], session_mask bool [B, S]]``.

    Returns:
      float [B, S, 2 units] (``"concat"``) or [B, S, units]; zero at masked sessions, which
      are skipped by both directions.

    Raises:
      ValueError: bad arguments or inputs of the wrong rank.
    """

    def __init__(self, units: int, merge_mode: str = "concat", dropout: float = 0.0,
                 **kwargs):
        super().__init__(**kwargs)
        _positive(units=units)
        if merge_mode not in _MERGE_MODES:
            raise ValueError(f"merge_mode must be one of {_MERGE_MODES}, got {merge_mode!r}")
        _check_dropout(dropout)
        self.units, self.merge_mode, self.dropout = int(units), merge_mode, float(dropout)

    def build(self, input_shape):
        interests, mask = (tf.TensorShape(s) for s in input_shape)
        _check_rank(self.name, "interests", interests, 3)
        _check_rank(self.name, "session_mask", mask, 2)
        self.bi_lstm = keras.layers.Bidirectional(
            keras.layers.RNN(keras.layers.LSTMCell(self.units, dropout=self.dropout),
                             return_sequences=True, name="lstm"),
            merge_mode=self.merge_mode, name="bi_lstm")
        super().build(input_shape)

    def call(self, inputs, training=None):
        interests, mask = inputs
        real = tf.cast(mask, tf.bool)
        x = tf.where(real[..., None], interests, tf.zeros_like(interests))
        h = self.bi_lstm(x, mask=real, training=training)
        return tf.where(real[..., None], h, tf.zeros_like(h))

    def get_config(self):
        return {**super().get_config(), "units": self.units, "merge_mode": self.merge_mode,
                "dropout": self.dropout}


@keras.utils.register_keras_serializable(package="ppm")
class SessionActivation(keras.layers.Layer):
    """Target attention of the candidate over sessions, bilinear (DSIN §4.4, Eq. 8-9).

    ``a_k = exp(I_k W X) / sum_j exp(I_j W X)`` over the real sessions ``j`` and
    ``U = sum_k a_k I_k``, where ``I_k`` is a session's row (an interest ``I_k`` or a Bi-LSTM
    state ``H_k``) and ``X`` the candidate item's embedding. The softmax runs in float32.

    Args:
      init_stddev: N(0, s) initialiser of W.

    Call:
      ``[sessions [B, S, D], session_mask bool [B, S], candidate [B, D']]``.

    Returns:
      float [B, D] (the width of the sessions' rows); zeros for a user without sessions.
      :meth:`session_weights` returns the ``a_k``.

    Raises:
      ValueError: bad arguments or inputs of the wrong rank.
    """

    def __init__(self, init_stddev: float = 0.01, **kwargs):
        super().__init__(**kwargs)
        _check_stddev(init_stddev)
        self.init_stddev = float(init_stddev)

    def build(self, input_shape):
        sessions, mask, candidate = (tf.TensorShape(s) for s in input_shape)
        _check_rank(self.name, "sessions", sessions, 3)
        _check_rank(self.name, "session_mask", mask, 2)
        _check_rank(self.name, "candidate", candidate, 2)
        self.kernel = self.add_weight(
            "kernel", [sessions[-1], candidate[-1]],
            initializer=keras.initializers.RandomNormal(stddev=self.init_stddev))
        super().build(input_shape)

    def _weights_and_rows(self, inputs):
        sessions, mask, candidate = inputs
        real = tf.cast(mask, tf.bool)
        rows = tf.where(real[..., None], sessions, tf.zeros_like(sessions))
        query = tf.matmul(tf.cast(candidate, rows.dtype), tf.cast(self.kernel, rows.dtype),
                          transpose_b=True)  # W X, [B, D]
        scores = tf.cast(tf.einsum("bsd,bd->bs", rows, query), tf.float32)  # Eq. 8
        scores = tf.where(real, scores, tf.fill(tf.shape(scores), -1e9))
        # Masked sessions get exactly 0; with no real session the uniform softmax is zeroed.
        return tf.nn.softmax(scores, axis=-1) * tf.cast(real, tf.float32), rows

    def session_weights(self, inputs):
        """``a_k``, float32 [B, S]: sums to 1 over the real sessions, 0 elsewhere."""
        if not self.built:
            self(inputs)
        return self._weights_and_rows(inputs)[0]

    def call(self, inputs):
        weights, rows = self._weights_and_rows(inputs)
        return tf.einsum("bs,bsd->bd", tf.cast(weights, rows.dtype), rows)  # Eq. 9

    def get_config(self):
        return {**super().get_config(), "init_stddev": self.init_stddev}
