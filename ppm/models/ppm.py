"""PPM: the ID-free pre-trained CTR model (PPM §3.1).

History and target items are cached ``[E_title | E_image]`` vectors (Eq. 8); the
Behavior-Transformer encodes them (Eq. 3-5); ``[user | target]`` goes through the CTR
prediction layer, fully connected layers and a sigmoid unit (§3.1.3), trained with
cross-entropy on click (Eq. 6). No ID embedding anywhere: the model transfers to items it
never saw, and its ``ppm`` module is what URM plugs in (§3.2.2).
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf
import tf_keras as keras

from ppm.layers import MLP
from ppm.models import registry
from ppm.models.modules import SequenceModule
from ppm.models.ranking import RankingModel


@keras.utils.register_keras_serializable(package="ppm")
class PPM(RankingModel):
    """The pre-trained CTR model.

    Args:
      ppm: the PPM sequence module (a :class:`SequenceModule` over ``ModalItemEmbedding``),
        or its serialized config.
      head_units: hidden layers of the CTR prediction layer (then one logit unit).
      dropout: head dropout.
      init_stddev: N(0, s) initialiser of the head.
      global_batch_size: see :class:`RankingModel`.
    """

    def __init__(self, ppm: SequenceModule, head_units: Sequence[int] = (256, 128),
                 dropout: float = 0.0, init_stddev: float = 0.01,
                 global_batch_size: int = 20000, **kwargs):
        super().__init__({"click": 1.0}, global_batch_size, **kwargs)
        self.ppm = keras.layers.deserialize(ppm) if isinstance(ppm, dict) else ppm
        self.head_units = [int(u) for u in head_units]
        self.dropout, self.init_stddev = float(dropout), float(init_stddev)
        self.head = MLP(head_units, dropout=dropout, init_stddev=init_stddev, name="ctr_head")
        self.logit = keras.layers.Dense(
            1, kernel_initializer=keras.initializers.RandomNormal(stddev=init_stddev),
            name="ctr_logit")

    def get_config(self):
        config = super().get_config()
        del config["task_weights"], config["task_losses"]  # always click, BCE
        return {**config, "ppm": keras.layers.serialize(self.ppm),
                "head_units": self.head_units, "dropout": self.dropout,
                "init_stddev": self.init_stddev}

    def call(self, features, training=None):
        user, item = self.ppm(features, training=training)
        x = self.head(tf.concat([user, item], axis=-1), training=training)
        return {"click": tf.squeeze(tf.cast(self.logit(x), tf.float32), axis=-1)}


@registry.register("ppm", reads_cache=True)
def build(config, inputs, parts) -> PPM:
    """PPM from ``model.ppm`` (its CTR head) and the shared Behavior-Transformer settings."""
    m = config.model
    return PPM(parts.ppm_module(), head_units=m.ppm.head_units, dropout=m.dropout,
               init_stddev=m.init_stddev, global_batch_size=parts.global_batch_size,
               name="ppm_model")
