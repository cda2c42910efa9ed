"""MIAN: the Multi-Interactive Layer (Zhang et al., WSDM 2021, arXiv 2012.06968, §3).

A PPM Table 2 baseline. MIAN's Multi-Interactive Layer has three *local* modules, each pairing
the candidate item with one kind of feature, and one *global* module over everything::

    IBIM: Pre-LN Transformer over the behaviours, then candidate attention   -> v_ibim
    IUIM: candidate attention over the user-profile field embeddings        -> v_iuim
    ICIM: the same over the context field embeddings                        -> v_icim
    GIM:  interactions among the low-order embeddings (candidate, behaviours, user, context)
          and the high-order module outputs, and one weight per representation
          ("balance the different impacts"), concatenated for the prediction DNN.

Sources. The paper's full text was not reachable from here; what we read is its abstract (arXiv
and ar5iv pages) and two summaries of §3: recohut's model page ("IBIM uses Pre-LN Transformer to
adaptively explore the user preferences of sequential behaviors at different subspaces ... GIM
is designed to study and weigh the influence between the low-order features after the
embedding layer and high-order features generated from three local interaction modules") and
the Chinese notes in github.com/ShaoQiBNU/CTR_MIAN (IBIM = Pre-LN Transformer giving one hidden
state per behaviour, then an attention of each hidden state against the candidate, weighted
sum; IUIM/ICIM model the relation of *each* user/context field with the candidate and share
one structure; GIM sees seven representations: candidate, behaviour sequence, user profile,
context (low order) and the three module outputs (high order), and the paper visualises one
global-attention weight per representation). Equations were not available, so the operators
below are ours, chosen as the standard forms of the operations those texts name. No public
reference code of MIAN is known.

Choices that are ours (the summaries are silent):

- Every attention is multi-head scaled dot-product attention (Vaswani et al., 2017) with
  learnt query/key/value/output projections of width D; the same ``num_heads`` everywhere.
- IBIM: the candidate is *not* a token of the transformer (the notes put the candidate
  attention after it); the transformer sees the behaviours only, with padded behaviours masked
  as keys. Blocks are tf-models-official's ``TransformerEncoderBlock`` with ``norm_first=True``
  (Pre-LN, Xiong et al., 2020) and GELU, followed by the final LayerNorm of the Pre-LN stack.
  No position embedding is added here: a caller who wants order information adds it to
  ``history`` before the call (as PPM's Behavior-Transformer does with E_position).
- IUIM/ICIM: one :class:`ItemFieldInteraction` each, the candidate as the single query over the
  field embeddings; its key projection has no bias (a key bias shifts every logit of a query
  equally, so softmax ignores it and it would get no gradient).
- GIM (:class:`GlobalInteraction`): the seven representations are tokens; the three pooled
  low-order ones are the masked mean of the behaviour embeddings and the mean of the user and
  of the context field embeddings. One Pre-LN transformer block (self-attention + FFN) plus a
  final LayerNorm models their interactions; then an additive attention scorer
  ``a_k = h^T tanh(W z_k + b)`` (Bahdanau-style; cf. AFM's attention net, DeepCTR ``AFMLayer``)
  gives weights ``alpha = softmax_k(a)``, and the output is ``[alpha_1 z_1 | ... | alpha_7 z_7]``
  (width 7 * D), the concatenation the prediction DNN takes.
- Missing inputs: a row with no real behaviour, or a model with no profile (P = 0) or no
  context (C = 0) fields, gives zero vectors for the affected representations, which are also
  masked out of GIM's attention and weights; their output slots are zero.
- Defaults: ``num_layers=2``, ``num_heads=4`` and ``dropout=0.1`` are PPM's Behavior-Transformer
  settings (PPM §4.2.3), for a like-for-like comparison; ``intermediate_size=None`` means 4 * D
  (Vaswani et al.); kernels N(0, 0.01) (PPM §4.2.3).
"""

from __future__ import annotations

import math

import tensorflow as tf
import tf_keras as keras
from official.nlp.modeling.layers import TransformerEncoderBlock

NORM_EPSILON = 1e-6
TOKENS = ("target", "history", "user", "context", "ibim", "iuim", "icim")
_NEG = -1e9


def _check_common(num_heads: int, dropout: float, init_stddev: float) -> None:
    if int(num_heads) < 1:
        raise ValueError(f"num_heads must be >= 1, got {num_heads}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    if init_stddev <= 0:
        raise ValueError(f"init_stddev must be > 0, got {init_stddev}")


def _check_intermediate(intermediate_size) -> int | None:
    if intermediate_size is None:
        return None
    if int(intermediate_size) < 1:
        raise ValueError(f"intermediate_size must be >= 1 or None, got {intermediate_size}")
    return int(intermediate_size)


def _width(shape, name: str, rank: int) -> int:
    shape = tf.TensorShape(shape)
    if shape.rank != rank or shape[-1] is None:
        raise ValueError(f"{name} must have rank {rank} and a known last dimension, got {shape}")
    return int(shape[-1])


def _check_heads(width: int, num_heads: int) -> None:
    if width % num_heads:
        raise ValueError(f"input width {width} is not divisible by num_heads {num_heads}")


def _pre_ln_block(layer, width: int, name: str) -> TransformerEncoderBlock:
    return TransformerEncoderBlock(
        num_attention_heads=layer.num_heads, inner_dim=layer.intermediate_size or 4 * width,
        inner_activation="gelu", norm_first=True, norm_epsilon=NORM_EPSILON,
        output_dropout=layer.dropout, attention_dropout=layer.dropout,
        kernel_initializer=keras.initializers.RandomNormal(stddev=layer.init_stddev), name=name)


def _build(layer, shape) -> None:
    """Builds a sub-layer now, under its own name scope (so its weights are named after it)."""
    with tf.name_scope(layer.name):
        layer.build(shape)


def _key_mask(valid, dtype):
    """``[B, N]`` bool -> ``[B, N, N]`` attention mask: every query may see every valid key."""
    keys = tf.cast(valid, dtype)[:, None, :]
    return keys * tf.ones_like(keys[:, 0, :, None])


@keras.utils.register_keras_serializable(package="ppm")
class ItemFieldInteraction(keras.layers.Layer):
    """Candidate-item attention over a set of field embeddings (MIAN's IUIM and ICIM, §3).

    With query ``q = W_q e_c + b_q``, keys ``k_n = W_k e_n`` and values ``v_n = W_v e_n + b_v``
    split into ``num_heads`` heads of width ``d = D / num_heads``:
    ``alpha_hn = softmax_n(q_h . k_hn / sqrt(d))`` and
    ``out = W_o [sum_n alpha_1n v_1n | ... | sum_n alpha_Hn v_Hn] + b_o``.
    Masked fields get zero weight; a row without any valid field (or N = 0) outputs zeros.
    Also used by :class:`ItemBehaviourInteraction` to pool the transformer states.

    Args:
      num_heads: attention heads; must divide D.
      dropout: dropout on the attention weights (training only).
      init_stddev: N(0, s) kernel initialiser.

    Call:
      inputs: dict with ``target`` float [B, D], ``fields`` float [B, N, D] and optionally
        ``mask`` bool [B, N] (True = real field; absent: all real).

    Returns:
      float [B, D]. :meth:`attention_weights` gives ``alpha`` as float32 [B, num_heads, N].

    Raises:
      ValueError: bad arguments, missing inputs, mismatched widths or D not divisible by
        ``num_heads``.
    """

    def __init__(self, num_heads: int = 4, dropout: float = 0.1, init_stddev: float = 0.01,
                 **kwargs):
        super().__init__(**kwargs)
        _check_common(num_heads, dropout, init_stddev)
        self.num_heads, self.dropout = int(num_heads), float(dropout)
        self.init_stddev = float(init_stddev)
        self.dropout_layer = keras.layers.Dropout(self.dropout) if self.dropout else None

    def build(self, input_shape):
        for key in ("target", "fields"):
            if key not in input_shape:
                raise ValueError(f"ItemFieldInteraction inputs lack {key!r}; expects target, "
                                 f"fields and optionally mask")
        width = _width(input_shape["target"], "target", 2)
        if _width(input_shape["fields"], "fields", 3) != width:
            raise ValueError(f"fields width {input_shape['fields'][-1]} != target width {width}")
        _check_heads(width, self.num_heads)
        init = lambda: keras.initializers.RandomNormal(stddev=self.init_stddev)
        self.query_dense = keras.layers.Dense(width, kernel_initializer=init(), name="query")
        self.key_dense = keras.layers.Dense(width, use_bias=False, kernel_initializer=init(),
                                            name="key")
        self.value_dense = keras.layers.Dense(width, kernel_initializer=init(), name="value")
        self.output_dense = keras.layers.Dense(width, kernel_initializer=init(), name="output")
        for dense in (self.query_dense, self.key_dense, self.value_dense, self.output_dense):
            _build(dense, tf.TensorShape([None, width]))
        self.width = width
        super().build(input_shape)

    def _weights(self, target, fields, mask):
        heads, size = self.num_heads, self.width // self.num_heads
        batch, count = tf.shape(fields)[0], tf.shape(fields)[1]
        query = tf.reshape(self.query_dense(target), [batch, heads, size])
        key = tf.reshape(self.key_dense(fields), [batch, count, heads, size])
        logits = tf.cast(tf.einsum("bhd,bnhd->bhn", query, key), tf.float32) / math.sqrt(size)
        if mask is not None:
            logits += (1.0 - tf.cast(mask, tf.float32))[:, None, :] * _NEG
        weights = tf.nn.softmax(logits, axis=-1)
        if mask is not None:  # a row with every field masked gets all-zero weights
            weights *= tf.cast(mask, tf.float32)[:, None, :]
        return weights

    def _split(self, inputs):
        target = tf.cast(inputs["target"], self.compute_dtype)
        fields = tf.cast(inputs["fields"], self.compute_dtype)
        mask = inputs.get("mask")
        return target, fields, None if mask is None else tf.cast(mask, tf.bool)

    def attention_weights(self, inputs):
        """``alpha`` as float32 [B, num_heads, N] (zero for masked fields)."""
        if not self.built:
            self(inputs)
        return self._weights(*self._split(inputs))

    def call(self, inputs, training=None):
        target, fields, mask = self._split(inputs)
        if fields.shape[1] == 0:  # no fields at all (e.g. a model without profile features)
            return tf.zeros_like(target)
        weights = tf.cast(self._weights(target, fields, mask), self.compute_dtype)
        if self.dropout_layer is not None:
            weights = self.dropout_layer(weights, training=training)
        batch, count = tf.shape(fields)[0], tf.shape(fields)[1]
        value = tf.reshape(self.value_dense(fields),
                           [batch, count, self.num_heads, self.width // self.num_heads])
        mixed = tf.reshape(tf.einsum("bhn,bnhd->bhd", weights, value), [batch, self.width])
        out = self.output_dense(mixed)
        if mask is not None:  # no valid field: zeros, not the output bias
            out *= tf.cast(tf.reduce_any(mask, axis=1), out.dtype)[:, None]
        return out

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "dropout": self.dropout,
                "init_stddev": self.init_stddev}


@keras.utils.register_keras_serializable(package="ppm")
class ItemBehaviourInteraction(keras.layers.Layer):
    """MIAN's Item-Behaviors Interaction Module (IBIM, §3): Pre-LN Transformer + candidate pooling.

    ``h = LN(Trm_L(...Trm_1(history)))`` with Pre-LN blocks whose keys are the real behaviours
    only, then ``v_ibim = ItemFieldInteraction(candidate, h, mask)``. Rows without any real
    behaviour output zeros; padded behaviours cannot change any output.

    Args:
      num_layers: Pre-LN transformer blocks.
      num_heads: attention heads of the blocks and of the pooling; must divide D.
      intermediate_size: width of each block's feed-forward layer (None: 4 * D).
      dropout: attention and output dropout of the blocks, attention dropout of the pooling.
      init_stddev: N(0, s) kernel initialiser.

    Call:
      inputs: dict with ``target`` float [B, D], ``history`` float [B, T, D] and ``mask``
        bool [B, T] (True = real behaviour).

    Returns:
      float [B, D].

    Raises:
      ValueError: bad arguments, missing inputs, mismatched widths or D not divisible by
        ``num_heads``.
    """

    def __init__(self, num_layers: int = 2, num_heads: int = 4, intermediate_size=None,
                 dropout: float = 0.1, init_stddev: float = 0.01, **kwargs):
        super().__init__(**kwargs)
        _check_common(num_heads, dropout, init_stddev)
        if int(num_layers) < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.num_layers, self.num_heads = int(num_layers), int(num_heads)
        self.intermediate_size = _check_intermediate(intermediate_size)
        self.dropout, self.init_stddev = float(dropout), float(init_stddev)
        self.attention = ItemFieldInteraction(self.num_heads, dropout=self.dropout,
                                              init_stddev=self.init_stddev,
                                              name="target_attention")

    def build(self, input_shape):
        for key in ("target", "history", "mask"):
            if key not in input_shape:
                raise ValueError(f"ItemBehaviourInteraction inputs lack {key!r}; expects "
                                 f"target, history and mask")
        width = _width(input_shape["target"], "target", 2)
        if _width(input_shape["history"], "history", 3) != width:
            raise ValueError(f"history width {input_shape['history'][-1]} != target width "
                             f"{width}")
        _check_heads(width, self.num_heads)
        self.blocks = [_pre_ln_block(self, width, f"block_{i}") for i in range(self.num_layers)]
        self.output_norm = keras.layers.LayerNormalization(epsilon=NORM_EPSILON,
                                                           name="output_norm")
        _build(self.output_norm, tf.TensorShape([None, None, width]))
        _build(self.attention, {"target": tf.TensorShape([None, width]),
                              "fields": tf.TensorShape([None, None, width]),
                              "mask": tf.TensorShape([None, None])})
        super().build(input_shape)

    def call(self, inputs, training=None):
        target = tf.cast(inputs["target"], self.compute_dtype)
        history = tf.cast(inputs["history"], self.compute_dtype)
        mask = tf.cast(inputs["mask"], tf.bool)
        if history.shape[1] == 0:
            return tf.zeros_like(target)
        attention_mask = _key_mask(mask, history.dtype)
        for block in self.blocks:
            history = block([history, attention_mask], training=training)
        history = self.output_norm(history)
        return self.attention({"target": target, "fields": history, "mask": mask},
                              training=training)

    def get_config(self):
        return {**super().get_config(), "num_layers": self.num_layers,
                "num_heads": self.num_heads, "intermediate_size": self.intermediate_size,
                "dropout": self.dropout, "init_stddev": self.init_stddev}


@keras.utils.register_keras_serializable(package="ppm")
class GlobalInteraction(keras.layers.Layer):
    """MIAN's Global Interaction Module (GIM, §3): interactions and weights over K representations.

    ``z = LN(Trm(tokens))`` (one Pre-LN block, invalid tokens masked as keys), then
    ``alpha = softmax_k(h^T tanh(W z_k + b))`` over the valid tokens, and the output is
    ``[alpha_1 z_1 | ... | alpha_K z_K]``; invalid tokens have ``alpha = 0`` (zero slots).

    Args:
      num_heads: attention heads of the block; must divide D.
      intermediate_size: width of the block's feed-forward layer (None: 4 * D).
      dropout: attention and output dropout of the block.
      init_stddev: N(0, s) kernel initialiser.

    Call:
      inputs: dict with ``tokens`` float [B, K, D] (K static) and optionally ``valid`` bool
        [B, K] (absent: all valid; each row needs at least one valid token).

    Returns:
      float [B, K * D]. :meth:`global_weights` gives ``alpha`` as float32 [B, K].

    Raises:
      ValueError: bad arguments, missing or unknown-size inputs, D not divisible by
        ``num_heads``.
    """

    def __init__(self, num_heads: int = 4, intermediate_size=None, dropout: float = 0.1,
                 init_stddev: float = 0.01, **kwargs):
        super().__init__(**kwargs)
        _check_common(num_heads, dropout, init_stddev)
        self.num_heads, self.intermediate_size = int(num_heads), _check_intermediate(
            intermediate_size)
        self.dropout, self.init_stddev = float(dropout), float(init_stddev)

    def build(self, input_shape):
        if "tokens" not in input_shape:
            raise ValueError("GlobalInteraction inputs lack 'tokens'; expects tokens and "
                             "optionally valid")
        shape = tf.TensorShape(input_shape["tokens"])
        width = _width(shape, "tokens", 3)
        if shape[1] is None:
            raise ValueError(f"tokens must have a static number of tokens, got {shape}")
        _check_heads(width, self.num_heads)
        self.num_tokens, self.width = int(shape[1]), width
        init = lambda: keras.initializers.RandomNormal(stddev=self.init_stddev)
        self.block = _pre_ln_block(self, width, "block")
        self.output_norm = keras.layers.LayerNormalization(epsilon=NORM_EPSILON,
                                                           name="output_norm")
        _build(self.output_norm, tf.TensorShape([None, None, width]))
        self.score_hidden = keras.layers.Dense(width, activation="tanh",
                                               kernel_initializer=init(), name="score_hidden")
        _build(self.score_hidden, tf.TensorShape([None, width]))
        self.score = keras.layers.Dense(1, use_bias=False, kernel_initializer=init(),
                                        name="score")
        _build(self.score, tf.TensorShape([None, width]))
        super().build(input_shape)

    def _interact(self, inputs, training):
        tokens = tf.cast(inputs["tokens"], self.compute_dtype)
        valid = inputs.get("valid")
        valid = (tf.ones_like(tokens[:, :, 0], tf.bool) if valid is None
                 else tf.cast(valid, tf.bool))
        z = self.block([tokens, _key_mask(valid, tokens.dtype)], training=training)
        z = self.output_norm(z)
        logits = tf.cast(self.score(self.score_hidden(z))[..., 0], tf.float32)
        logits += (1.0 - tf.cast(valid, tf.float32)) * _NEG
        alpha = tf.nn.softmax(logits, axis=-1) * tf.cast(valid, tf.float32)
        return z, alpha

    def global_weights(self, inputs):
        """``alpha`` as float32 [B, K] (zero for invalid tokens), inference mode."""
        if not self.built:
            self(inputs)
        return self._interact(inputs, training=False)[1]

    def call(self, inputs, training=None):
        z, alpha = self._interact(inputs, training)
        weighted = tf.cast(alpha, z.dtype)[..., None] * z
        return tf.reshape(weighted, [-1, self.num_tokens * self.width])

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads,
                "intermediate_size": self.intermediate_size, "dropout": self.dropout,
                "init_stddev": self.init_stddev}


@keras.utils.register_keras_serializable(package="ppm")
class MIANInterest(keras.layers.Layer):
    """MIAN's Multi-Interactive Layer: IBIM, IUIM, ICIM and GIM over embedded features (§3).

    GIM's seven tokens are, in order (:data:`TOKENS`): the candidate, the masked mean of the
    behaviours, the mean of the user fields, the mean of the context fields, and the IBIM, IUIM
    and ICIM outputs. The output, ``7 * dim`` wide, feeds the prediction DNN (MIAN's
    Prediction Layer lives in the model). See the module docstring for which choices are ours.

    Args:
      dim: D, the width of every input embedding (so that :attr:`width` is known up front).
      num_layers: Pre-LN transformer blocks of IBIM.
      num_heads: attention heads of every module (PPM: 4); must divide ``dim``.
      intermediate_size: feed-forward width of the transformer blocks (None: 4 * dim).
      dropout: dropout of the transformer blocks and of the attention weights.
      init_stddev: N(0, s) kernel initialiser (PPM §4.2.3: 0.01).

    Call:
      inputs: dict with ``target`` float [B, D], ``history`` float [B, T, D], ``mask`` bool
        [B, T] (True = real behaviour), and optionally ``user_fields`` float [B, P, D] and
        ``context_fields`` float [B, C, D] (P, C static; absent or 0: no such features).

    Returns:
      float [B, width] with ``width = 7 * dim``.

    Raises:
      ValueError: bad arguments, missing inputs, widths other than ``dim``, unknown P or C.
    """

    def __init__(self, dim: int, num_layers: int = 2, num_heads: int = 4,
                 intermediate_size=None, dropout: float = 0.1, init_stddev: float = 0.01,
                 **kwargs):
        super().__init__(**kwargs)
        _check_common(num_heads, dropout, init_stddev)
        if int(dim) < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        _check_heads(int(dim), int(num_heads))
        if int(num_layers) < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.dim, self.num_layers, self.num_heads = int(dim), int(num_layers), int(num_heads)
        self.intermediate_size = _check_intermediate(intermediate_size)
        self.dropout, self.init_stddev = float(dropout), float(init_stddev)
        common = dict(dropout=self.dropout, init_stddev=self.init_stddev)
        self.ibim = ItemBehaviourInteraction(self.num_layers, self.num_heads,
                                             self.intermediate_size, name="ibim", **common)
        self.iuim = ItemFieldInteraction(self.num_heads, name="iuim", **common)
        self.icim = ItemFieldInteraction(self.num_heads, name="icim", **common)
        self.gim = GlobalInteraction(self.num_heads, self.intermediate_size, name="gim",
                                     **common)

    @property
    def width(self) -> int:
        """Output width: ``len(TOKENS) * dim``."""
        return len(TOKENS) * self.dim

    @property
    def output_dim(self) -> int:
        return self.width

    def build(self, input_shape):
        for key in ("target", "history", "mask"):
            if key not in input_shape:
                raise ValueError(f"MIANInterest inputs lack {key!r}; expects target, history, "
                                 f"mask and optionally user_fields, context_fields")
        shapes = {"target": 2, "history": 3, "user_fields": 3, "context_fields": 3}
        for key, rank in shapes.items():
            if key in input_shape and _width(input_shape[key], key, rank) != self.dim:
                raise ValueError(f"{key} width {input_shape[key][-1]} != dim {self.dim}")
        self.num_fields = {}
        for key in ("user_fields", "context_fields"):
            count = tf.TensorShape(input_shape[key])[1] if key in input_shape else 0
            if count is None:
                raise ValueError(f"{key} must have a static number of fields")
            self.num_fields[key] = int(count)
        d = self.dim
        _build(self.ibim, {"target": tf.TensorShape([None, d]),
                         "history": tf.TensorShape([None, None, d]),
                         "mask": tf.TensorShape([None, None])})
        for key, layer in (("user_fields", self.iuim), ("context_fields", self.icim)):
            if self.num_fields[key]:
                _build(layer, {"target": tf.TensorShape([None, d]),
                             "fields": tf.TensorShape([None, self.num_fields[key], d])})
        _build(self.gim, {"tokens": tf.TensorShape([None, len(TOKENS), d]),
                        "valid": tf.TensorShape([None, len(TOKENS)])})
        super().build(input_shape)

    def _fields(self, inputs, key, layer, target, training):
        """``(mean of the fields, module output, valid [B])``; zeros and False when empty."""
        always = tf.ones_like(target[:, 0], tf.bool)
        if not self.num_fields[key]:
            zeros = tf.zeros_like(target)
            return zeros, zeros, tf.logical_not(always)
        fields = tf.cast(inputs[key], self.compute_dtype)
        out = layer({"target": target, "fields": fields}, training=training)
        return tf.reduce_mean(fields, axis=1), out, always

    def call(self, inputs, training=None):
        target = tf.cast(inputs["target"], self.compute_dtype)
        history = tf.cast(inputs["history"], self.compute_dtype)
        mask = tf.cast(inputs["mask"], tf.bool)
        weights = tf.cast(mask, history.dtype)[..., None]
        history_mean = tf.math.divide_no_nan(tf.reduce_sum(history * weights, axis=1),
                                             tf.reduce_sum(weights, axis=1))
        has_history = tf.reduce_any(mask, axis=1)
        ibim = self.ibim({"target": target, "history": history, "mask": mask},
                         training=training)
        user, iuim, has_user = self._fields(inputs, "user_fields", self.iuim, target, training)
        context, icim, has_context = self._fields(inputs, "context_fields", self.icim, target,
                                                  training)
        tokens = tf.stack([target, history_mean, user, context, ibim, iuim, icim], axis=1)
        valid = tf.stack([tf.ones_like(has_history), has_history, has_user, has_context,
                          has_history, has_user, has_context], axis=1)
        return self.gim({"tokens": tokens, "valid": valid}, training=training)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "num_layers": self.num_layers,
                "num_heads": self.num_heads, "intermediate_size": self.intermediate_size,
                "dropout": self.dropout, "init_stddev": self.init_stddev}
