"""MIAN (Zhang et al., "Multi-Interactive Attention Network for Fine-grained Feature Learning
in CTR Prediction", WSDM 2021, arXiv:2012.06968), a PPM Table 2 baseline.

The candidate item and the history items are their four ID fields side by side (``4 * id_dim``,
Eq. 7's layout); the user profile fields and the context (position) field are projected to
that width by one linear map each (ours: MIAN's modules need one width, and our item is four
fields wide), then :class:`~ppm.layers.mian.MIANInterest` runs the item-behaviour,
item-user, item-context and global interaction modules (see its docstring for which operators
are ours). The model's head (the paper's prediction DNN) takes ``[candidate | MIAN output]``
and the profile D.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from ppm.layers.mian import MIANInterest
from ppm.models import registry
from ppm.models.fields import flat
from ppm.models.ranker import Ranker


@keras.utils.register_keras_serializable(package="ppm")
class MIANBackbone(keras.layers.Layer):
    """MIAN's Multi-Interactive Layer over the zoo's fields.

    Args:
      item_dim: width of an item (``4 * id_dim``).
      num_layers, num_heads, intermediate_size, dropout: of :class:`MIANInterest`.
      init_stddev: N(0, s) initialiser.

    Call: the fields dict -> ``{"vector": [B, item_dim + 7 * item_dim]}``.
    """

    def __init__(self, item_dim: int, num_layers: int = 2, num_heads: int = 4,
                 intermediate_size: int | None = None, dropout: float = 0.1,
                 init_stddev: float = 0.01, **kwargs):
        super().__init__(**kwargs)
        self.item_dim, self.num_layers, self.num_heads = int(item_dim), int(num_layers), int(
            num_heads)
        self.intermediate_size = None if intermediate_size is None else int(intermediate_size)
        self.dropout, self.init_stddev = float(dropout), float(init_stddev)
        init = keras.initializers.RandomNormal(stddev=init_stddev)
        self.user_projection = keras.layers.Dense(self.item_dim, kernel_initializer=init,
                                                  name="user_projection")
        self.context_projection = keras.layers.Dense(self.item_dim, kernel_initializer=init,
                                                     name="context_projection")
        self.interest = MIANInterest(self.item_dim, num_layers=self.num_layers,
                                     num_heads=self.num_heads,
                                     intermediate_size=self.intermediate_size,
                                     dropout=self.dropout, init_stddev=init_stddev,
                                     name="interest")

    def call(self, fields, training=None):
        target = flat(fields["target"])
        inputs = {"target": target, "history": flat(fields["history"]), "mask": fields["mask"],
                  "context_fields": self.context_projection(fields["context"])}
        if fields["profile"].shape[1]:
            inputs["user_fields"] = self.user_projection(fields["profile"])
        return {"vector": tf.concat([target, self.interest(inputs, training=training)], -1)}

    def get_config(self):
        return {**super().get_config(), "item_dim": self.item_dim,
                "num_layers": self.num_layers, "num_heads": self.num_heads,
                "intermediate_size": self.intermediate_size, "dropout": self.dropout,
                "init_stddev": self.init_stddev}


@registry.register("mian")
def build(config, inputs, parts) -> Ranker:
    m = config.model
    fields = parts.fields()
    backbone = MIANBackbone(
        parts.item_width, num_layers=m.mian.num_layers, num_heads=m.mian.num_heads,
        intermediate_size=m.mian.intermediate_size, dropout=m.transformer.dropout,
        init_stddev=m.init_stddev, name="mian")
    return Ranker(fields, backbone, parts.head(), **parts.ranker_kwargs(), name="mian")
