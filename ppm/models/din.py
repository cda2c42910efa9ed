"""DIN (Zhou et al., "Deep Interest Network for Click-Through Rate Prediction", KDD 2018,
arXiv:1706.06978), a PPM Table 2 baseline.

The user's interest in the candidate is a weighted sum of the history items
(``v_U = sum_j a(e_j, v_A) e_j``, Zhou et al. Eq. 3), the weights coming from the *local
activation unit* (:class:`~ppm.layers.target_attention.TargetAttention`: an MLP over
``[h, t, h - t, h * t]`` with Dice, not normalised by a softmax, so their sum keeps the
intensity of the interest). Items are their four ID fields side by side (Eq. 7's
``4 * id_dim``). The model's head takes ``[candidate | interest | context]`` and the profile D.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from ppm.layers.target_attention import TargetAttention
from ppm.models import registry
from ppm.models.fields import flat
from ppm.models.ranker import Ranker


@keras.utils.register_keras_serializable(package="ppm")
class DINBackbone(keras.layers.Layer):
    """DIN's interest over the zoo's fields.

    Args:
      attention: the :class:`TargetAttention` (or its config).

    Call: the fields dict -> ``{"vector": [B, 4D + 4D + D]}`` (candidate, interest, context).
    """

    def __init__(self, attention, **kwargs):
        super().__init__(**kwargs)
        self.attention = (keras.layers.deserialize(attention) if isinstance(attention, dict)
                          else attention)

    def call(self, fields, training=None):
        target = flat(fields["target"])
        interest = self.attention({"query": target, "keys": flat(fields["history"]),
                                   "mask": fields["mask"]}, training=training)
        return {"vector": tf.concat([target, tf.cast(interest, target.dtype),
                                     flat(fields["context"])], axis=-1)}

    def get_config(self):
        return {**super().get_config(), "attention": keras.layers.serialize(self.attention)}


@registry.register("din")
def build(config, inputs, parts) -> Ranker:
    m = config.model
    attention = TargetAttention(hidden_units=m.din.attention_units,
                                activation=m.din.attention_activation,
                                normalize=m.din.normalize, init_stddev=m.init_stddev,
                                name="attention")
    return Ranker(parts.fields(), DINBackbone(attention, name="din"), parts.head(),
                  **parts.ranker_kwargs(), name="din")
