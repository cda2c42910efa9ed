"""MAKE, the Multimodal Knowledge Extractor (Taobao multimodal paper, "Enhancing Taobao
Display Advertising with Multimodal Representations", arXiv:2407.19467, §4.3, Eq. 3-5).

ID models are trained for one pass (more overfits their ID embeddings), but the parameters
that read multimodal vectors need several passes to converge (§4.1, Observation 2; Fig. 3).
MAKE decouples the two:

1. **Multi-epoch pre-training** (the ``make`` model, experiment ``make_pretrain``): a DIN
   module over the cached multimodal vectors of the target and the history gives
   ``v_MAKE = DIN({v_i}, v_c)`` (Eq. 3), a four-layer ``MLP_MAKE`` gives a logit (Eq. 4),
   trained with cross-entropy on click (Eq. 5) for several passes over the training window.
2. **Knowledge utilisation** (the ``make`` plug-in, ``model.plugin.kind=make``): the
   pre-trained module's ``v_MAKE`` and intermediate outputs of ``MLP_MAKE`` join the
   downstream ID model's representation. As every plug-in, it is ``random`` (jointly trained
   from scratch: Fig. 6(c)'s "0 epochs"), ``frozen`` or ``finetune`` from its checkpoint.

Decisions where the paper is silent:

- ``v_MAKE`` is ``[v_c | sum_i a_i v_i]``: the target's vector and DIN's interest (Zhou et
  al. Eq. 3, the :class:`~ppm.layers.target_attention.TargetAttention` of the zoo's DIN, no
  softmax). DIN's own MLP reads the target beside the interest; without it MLP_MAKE would
  see the target only through the attention weights.
- ``MLP_MAKE`` is ``model.make.mlp_units`` hidden ReLU layers and a logit unit: four layers
  with the default three hidden ones.
- What joins the downstream model (``model.make.hidden_outputs``, ``logit_output``):
  ``v_MAKE``, the last hidden layer and the logit by default. The last hidden layer is the
  most task-shaped representation; the logit is MAKE's own click estimate, one number that a
  one-pass ID model can use at once (the paper's Observation 1: simpler inputs are learnt
  better).
- The vectors are the cache's as they are (not normalised); an item the cache does not hold
  reads a zero vector and gets no attention weight from its content alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf
import tf_keras as keras

from ppm.layers import MLP
from ppm.models import registry
from ppm.models.modules import recent_history
from ppm.models.multimodal import flat_modalities
from ppm.models.ranking import RankingModel


@keras.utils.register_keras_serializable(package="ppm")
class MAKEModule(keras.layers.Layer):
    """DIN over multimodal vectors + MLP_MAKE (Eq. 3-4): the pre-trained part of MAKE.

    Args:
      vectors: the :class:`~ppm.models.multimodal.ModalVectors` (or its config).
      attention: the :class:`TargetAttention` over the vectors (or its config).
      mlp_units: hidden layers of MLP_MAKE (then one logit unit).
      hidden_outputs: hidden layers whose outputs :meth:`call` returns (indices).
      logit_output: :meth:`call` returns the logit too.
      max_history: use the ``max_history`` most recent history items (0: all).
      init_stddev: N(0, s) initialiser of MLP_MAKE.

    Call: feature dict -> tuple ``(v_MAKE [B, 2 M d], *hidden outputs, logit [B, 1])`` (what
    joins a downstream model); :meth:`logit` gives the logit ``[B]`` alone (pre-training).
    """

    def __init__(self, vectors, attention, mlp_units: Sequence[int] = (200, 80, 40),
                 hidden_outputs: Sequence[int] = (-1,), logit_output: bool = True,
                 max_history: int = 0, init_stddev: float = 0.01, **kwargs):
        super().__init__(**kwargs)
        vectors, attention = (keras.layers.deserialize(x) if isinstance(x, dict) else x
                              for x in (vectors, attention))
        self.mlp_units = [int(u) for u in mlp_units]
        n = len(self.mlp_units)
        self.hidden_outputs = [int(i) for i in hidden_outputs]
        if any(not -n <= i < n for i in self.hidden_outputs):
            raise ValueError(f"hidden_outputs {self.hidden_outputs} must index the {n} hidden "
                             "layers")
        if max_history < 0:
            raise ValueError(f"max_history must be >= 0, got {max_history}")
        self.vectors, self.attention = vectors, attention
        self.logit_output, self.max_history = bool(logit_output), int(max_history)
        self.init_stddev = float(init_stddev)
        self.mlp = MLP(self.mlp_units, init_stddev=init_stddev, name="mlp_make")
        self.logit_layer = keras.layers.Dense(
            1, kernel_initializer=keras.initializers.RandomNormal(stddev=init_stddev),
            name="make_logit")

    def _forward(self, features, training):
        feats, hist_len = recent_history(features, self.max_history)
        target = flat_modalities(self.vectors(feats["item_id"]))
        history = flat_modalities(self.vectors(feats["hist_item_id"]))
        mask = tf.sequence_mask(hist_len, tf.shape(history)[1])
        interest = self.attention({"query": target, "keys": history, "mask": mask},
                                  training=training)
        v_make = tf.concat([tf.cast(target, self.compute_dtype),
                            tf.cast(interest, self.compute_dtype)], axis=-1)  # Eq. 3
        hidden, x = [], v_make
        for layer in self.mlp.dense_layers:  # Eq. 4
            x = layer(x)
            hidden.append(x)
        return v_make, hidden, self.logit_layer(x)

    def logit(self, features, training=None):
        """MAKE's click logit, float32 ``[B]`` (Eq. 4)."""
        return tf.squeeze(tf.cast(self._forward(features, training)[2], tf.float32), -1)

    def call(self, features, training=None):
        v_make, hidden, logit = self._forward(features, training)
        out = [v_make, *(hidden[i] for i in self.hidden_outputs)]
        if self.logit_output:
            out.append(logit)
        return tuple(out)

    def get_config(self):
        return {**super().get_config(), "vectors": keras.layers.serialize(self.vectors),
                "attention": keras.layers.serialize(self.attention),
                "mlp_units": self.mlp_units, "hidden_outputs": self.hidden_outputs,
                "logit_output": self.logit_output, "max_history": self.max_history,
                "init_stddev": self.init_stddev}


@keras.utils.register_keras_serializable(package="ppm")
class MAKE(RankingModel):
    """MAKE's CTR pre-training model (Eq. 5): the module's logit, click only.

    A plug-in restores the module from this model's checkpoint by its object path
    (``model/make``).

    Args:
      make: the :class:`MAKEModule` (or its config).
      global_batch_size: see :class:`RankingModel`.
    """

    def __init__(self, make, global_batch_size: int = 20000, **kwargs):
        super().__init__({"click": 1.0}, global_batch_size, **kwargs)
        self.make = keras.layers.deserialize(make) if isinstance(make, dict) else make

    def get_config(self):
        config = super().get_config()
        del config["task_weights"], config["task_losses"]  # always click, BCE
        return {**config, "make": keras.layers.serialize(self.make)}

    def call(self, features, training=None):
        return {"click": self.make.logit(features, training=training)}


@registry.register("make", reads_cache=True)
def build(config, inputs, parts) -> MAKE:
    """MAKE from ``model.make`` and ``model.multimodal.modality``."""
    return MAKE(parts.make_module(), global_batch_size=parts.global_batch_size,
                name="make_model")
