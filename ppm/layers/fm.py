"""The second-order factorization-machine term (Rendle, ICDM 2010, Eq. 1 and Lemma 3.1).

DeepFM (Guo et al., IJCAI 2017, §2.1, Eq. 2) adds the FM term over the field embeddings
``v_1 .. v_F`` to the deep logit, and NFM (He & Chua, SIGIR 2017, §3.1, Eq. 4) feeds the same
interaction, kept as a vector, to an MLP ("Bi-Interaction pooling")::

    y_FM = sum_{i<j} <v_i, v_j> = 0.5 * sum_d ((sum_f v_fd)^2 - sum_f v_fd^2)      (Lemma 3.1)
    f_BI = sum_{i<j} v_i * v_j  = 0.5 * ((sum_f v_f)^2 - sum_f v_f^2)                (NFM Eq. 4)

The O(F D) right-hand side is what is computed; it equals the O(F^2 D) pairwise sum exactly.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

OUTPUTS = ("scalar", "vector")


@keras.utils.register_keras_serializable(package="ppm")
class FactorizationMachine(keras.layers.Layer):
    """The pairwise-interaction term of an FM over F field embeddings of width D.

    Only the order-2 term: the linear term and the bias belong to the wide/linear part of the
    model (``ppm.layers.wide.HashedLinear``), as in DeepFM's "FM component" (Eq. 2), whose
    first-order term is a separate sum. The layer has no weights.

    Choices where the papers are silent:

    - ``mask`` (not in the papers): masked fields are set to zero before the sums, so they take
      part in no pair; this is how padded slots of a multi-valued (sequence) field stay out.
      A float mask multiplies each field (0 = masked); a bool mask keeps or drops it. A masked
      field contributes exactly nothing even if its padded value is inf or NaN.
    - A Keras mask attached to ``fields`` (e.g. by ``Embedding(mask_zero=True)``) is used as
      ``mask`` when none is given; the output carries no mask.
    - The sums are computed in float32 whatever the compute dtype, because the square of the
      sum minus the sum of squares cancels badly in float16. ``"scalar"`` returns float32
      (it is a logit term, as ``MMoE`` returns float32 logits); ``"vector"`` returns
      ``self.compute_dtype`` (it feeds an MLP).
    - Output shapes: ``[B]`` and ``[B, D]``; DeepCTR's ``FM`` and ``BiInteractionPooling``
      return ``[B, 1]`` and ``[B, 1, D]`` (DeepCTR's ``deepctr/layers/interaction.py``).
    - Fewer than two (unmasked) fields give 0.

    Args:
      output: ``"scalar"`` (the FM term, ``[B]``) or ``"vector"`` (NFM's Bi-Interaction
        vector before summing over d, ``[B, D]``).

    Call:
      fields: float ``[B, F, D]``.
      mask: optional bool or float ``[B, F]``; False / 0 drops a field.

    Returns:
      float32 ``[B]`` for ``"scalar"``, ``[B, D]`` in the compute dtype for ``"vector"``.

    Raises:
      ValueError: an unknown ``output``, ``fields`` not of rank 3, or a mask not ``[B, F]``.
    """

    def __init__(self, output: str = "scalar", **kwargs):
        super().__init__(**kwargs)
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        self.output_mode = output  # ``Layer.output`` is a read-only Keras property
        self.supports_masking = True

    def build(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"FactorizationMachine expects fields [B, F, D], got shape "
                             f"{input_shape}")
        super().build(input_shape)

    def call(self, fields, mask=None):
        fields = tf.cast(fields, tf.float32)
        if fields.shape.rank != 3:
            raise ValueError(f"FactorizationMachine expects fields [B, F, D], got shape "
                             f"{fields.shape}")
        if mask is not None:
            mask = tf.convert_to_tensor(mask)
            if mask.shape.rank != 2:
                raise ValueError(f"mask must be [B, F], got shape {mask.shape}")
            mask = tf.cast(mask, tf.float32)[:, :, None]  # [B, F, 1]
            fields = tf.where(mask != 0.0, fields * mask, tf.zeros_like(fields))
        square_of_sum = tf.square(tf.reduce_sum(fields, axis=1))  # [B, D]
        sum_of_squares = tf.reduce_sum(tf.square(fields), axis=1)  # [B, D]
        vector = 0.5 * (square_of_sum - sum_of_squares)  # NFM Eq. 4
        if self.output_mode == "vector":
            return tf.cast(vector, self.compute_dtype)
        return tf.reduce_sum(vector, axis=-1)  # Rendle Lemma 3.1

    def compute_mask(self, inputs, mask=None):
        return None

    def get_config(self):
        return {**super().get_config(), "output": self.output_mode}
