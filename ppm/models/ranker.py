"""The composition of the zoo's ranking models: fields -> backbone -> plug-in -> head -> tasks.

PPM Table 2's baselines differ only in their *backbone*, the layer that turns the embedded
fields into a user/item representation (and, for Wide&Deep and DeepFM, adds logits of its own).
:class:`Ranker` holds the rest, the same for every one of them:

- ``fields``: the :class:`~ppm.models.fields.FieldEmbedding` of the example's features;
- ``side``: the multimodal side information (``model.multimodal.side``;
  :mod:`ppm.models.multimodal`, Taobao §4.2, §6.1.3): Vector and SimScore add item fields
  before the backbone, SimTier adds its counts to the head's input;
- ``backbone``: ``fields dict -> {"vector": [B, d], "logits": [B, K] (optional)}``;
- ``plugin``: the plug-in module (``model.plugin``; :mod:`ppm.models.plugins`), whose outputs
  (PPM: ``[U_MO | I_MO]``, §3.2.2) join the representation, as in Table 2's w. PPM columns;
- ``head``: the multi-task head (``model.head``: MMoE, PPM §3.2.3, or shared-bottom MLP) over
  ``x = [vector | D | SimTier | plug-in]``, D the flattened profile fields (Eq. 10's D);
- the tasks and their losses (:class:`~ppm.models.ranking.RankingModel`).

The backbone's own logits (the wide part, FM) have one column per task, added to that task's
head logit.
"""

from __future__ import annotations

from collections.abc import Mapping

import tensorflow as tf
import tf_keras as keras

from ppm.models.fields import flat
from ppm.models.ranking import RankingModel


@keras.utils.register_keras_serializable(package="ppm")
class Ranker(RankingModel):
    """A zoo model.

    Args:
      fields: the :class:`~ppm.models.fields.FieldEmbedding` (or its config).
      backbone: the model's backbone layer (or its config).
      head: the multi-task head (or its config); its ``task_names`` must match
        ``task_weights``.
      task_weights: ``{task: loss weight}``.
      plugin: the plug-in module (or its config), or None.
      side: the :class:`~ppm.models.multimodal.MultimodalSide` (or its config), or None.
      global_batch_size: see :class:`RankingModel`.
    """

    def __init__(self, fields, backbone, head, task_weights: Mapping[str, float],
                 plugin=None, side=None, global_batch_size: int = 20000, **kwargs):
        super().__init__(task_weights, global_batch_size, **kwargs)
        fields, backbone, head, plugin, side = (
            keras.layers.deserialize(x) if isinstance(x, dict) else x
            for x in (fields, backbone, head, plugin, side))
        if list(head.task_names) != list(self.task_weights):
            raise ValueError(f"head tasks {head.task_names} differ from the model's tasks "
                             f"{list(self.task_weights)}")
        self.fields, self.backbone, self.head, self.plugin = fields, backbone, head, plugin
        self.side = side

    @property
    def plugin_module(self):
        return self.plugin

    @property
    def extra_inputs(self) -> tuple:
        """The optional features the backbone reads (DSIN: ``hist_session``)."""
        return tuple(getattr(self.backbone, "extra_inputs", ()))

    def get_config(self):
        return {**super().get_config(), "fields": keras.layers.serialize(self.fields),
                "backbone": keras.layers.serialize(self.backbone),
                "head": keras.layers.serialize(self.head),
                **{k: None if v is None else keras.layers.serialize(v)
                   for k, v in (("plugin", self.plugin), ("side", self.side))}}

    def _encode(self, features, training):
        ids = self.id_side(features, training=training)
        fields, dense = self.fields(ids), []
        if self.side is not None:  # content is known for every item: the ids before dropout
            fields, dense = self.side(features, fields=fields)
        out = self.backbone(fields, training=training)
        parts = self.gate_id_side(out["vector"], ids) + [flat(fields["profile"]), *dense]
        if self.plugin is not None:
            # A frozen plug-in keeps dropout off as well: it is used as pre-trained.
            parts += list(self.plugin(features, training=training and self.plugin.trainable))
        x = tf.concat([tf.cast(p, self.compute_dtype) for p in parts], axis=-1)
        return x, out.get("logits")

    def representation(self, features, training=None):
        """``x = [backbone vector | D | SimTier | plug-in outputs]``, [B, d]; with
        ``model.frequency_gate`` the vector is gated by the target's training frequency and
        its code follows it."""
        return self._encode(features, training)[0]

    def call(self, features, training=None):
        x, extra = self._encode(features, training)
        logits = self.head(x, training=training)
        if extra is not None:
            extra = tf.cast(extra, tf.float32)
            logits = {t: logits[t] + extra[:, k] for k, t in enumerate(self.task_names)}
        return logits
