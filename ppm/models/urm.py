"""URM: the Unified Ranking Model (PPM §3.2): IDSM + the PPM plug-in + an MMoE head.

``x = [U_ID | I_ID | U_MO | I_MO | D]`` (Eq. 10) feeds an MMoE with one gate and tower per
task (click, order, add-to-cart; Eq. 9-11). ``U_ID, I_ID`` come from IDSM (§3.2.1),
``U_MO, I_MO`` from the plug-in (``model.plugin``: the PPM module, §3.2.2, loaded from a
pre-trained PPM and then frozen or fine-tuned); ``D`` is the user profile.

The same class builds Table 3's ablations: ``urm_wo_ppm`` has no plug-in; ``base``
(``model.urm.modal_in_idsm``) has one sequence module whose items are ID and modal features
concatenated (a shared transformer). The plug-in is stored as ``self.ppm`` and the head as
``self.mmoe``: the object paths URM checkpoints have always had.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import tensorflow as tf
import tf_keras as keras

from ppm.layers import MMoE
from ppm.layers.hash_embedding import HashEmbedding
from ppm.models import registry
from ppm.models.modules import SequenceModule
from ppm.models.ranking import RankingModel


@keras.utils.register_keras_serializable(package="ppm")
class URM(RankingModel):
    """The Unified Ranking Model.

    Args:
      idsm: the ID-based sequence module (or base's shared one), or its serialized config.
      ppm: the plug-in module (or its config), or None (``urm_wo_ppm``, ``base``).
      mmoe: the multi-task head, MMoE or another (or its config); its task names must match
        ``task_weights``.
      task_weights: ``{task: loss weight}``.
      profile_features: names of the user profile features (D).
      profile_hash_bins, profile_dim: their hashed embeddings.
      init_stddev: N(0, s) initialiser.
      global_batch_size: see :class:`RankingModel`.
    """

    def __init__(self, idsm: SequenceModule, ppm: SequenceModule | None, mmoe: MMoE,
                 task_weights: Mapping[str, float], profile_features: Sequence[str] = (),
                 profile_hash_bins: int = 64, profile_dim: int = 8,
                 init_stddev: float = 0.01, global_batch_size: int = 20000, **kwargs):
        super().__init__(task_weights, global_batch_size, **kwargs)
        idsm, ppm, mmoe = (keras.layers.deserialize(x) if isinstance(x, dict) else x
                           for x in (idsm, ppm, mmoe))
        if list(mmoe.task_names) != list(self.task_weights):
            raise ValueError(f"head tasks {mmoe.task_names} differ from the model's tasks "
                             f"{list(self.task_weights)}")
        self.idsm, self.ppm, self.mmoe = idsm, ppm, mmoe
        self.profile_features = list(profile_features)
        self.profile_hash_bins, self.profile_dim = int(profile_hash_bins), int(profile_dim)
        self.init_stddev = float(init_stddev)
        self.profile_embeddings = [
            HashEmbedding(profile_hash_bins, profile_dim, init_stddev=init_stddev,
                          name=f"{name}_embedding") for name in self.profile_features]

    def get_config(self):
        return {**super().get_config(), "idsm": keras.layers.serialize(self.idsm),
                "ppm": None if self.ppm is None else keras.layers.serialize(self.ppm),
                "mmoe": keras.layers.serialize(self.mmoe),
                "profile_features": self.profile_features,
                "profile_hash_bins": self.profile_hash_bins, "profile_dim": self.profile_dim,
                "init_stddev": self.init_stddev}

    @property
    def plugin_module(self):
        """The plug-in module (:mod:`ppm.models.plugins`), or None."""
        return self.ppm

    def representation_parts(self, features, training=None) -> dict:
        """The parts of :meth:`representation`, in order: ``{"id": [U_ID | I_ID] (gated, with
        the frequency code, under ``model.frequency_gate``), "plugin": [U_MO | I_MO] (absent
        without a plug-in), "profile": D (absent without profile features)}``, each [B, d_i]
        in the compute dtype. ``benchmarks/plugin_diagnosis.py`` ablates them one by one."""
        ids = self.id_side(features, training=training)
        id_parts = [tf.cast(p, self.compute_dtype) for p in self.idsm(ids, training=training)]
        if self.frequency_gate is not None:
            id_parts = self.gate_id_side(tf.concat(id_parts, axis=-1), ids)
        out = {"id": id_parts}
        if self.ppm is not None:
            # A frozen module keeps dropout off as well: it is used as pre-trained.
            out["plugin"] = list(self.ppm(features, training=training and self.ppm.trainable))
        if self.profile_features:
            out["profile"] = [emb(features[name]) for name, emb in zip(
                self.profile_features, self.profile_embeddings)]
        return {k: tf.concat([tf.cast(p, self.compute_dtype) for p in v], axis=-1)
                for k, v in out.items()}

    def representation(self, features, training=None):
        """``x = [U_ID | I_ID | U_MO | I_MO | D]`` (Eq. 10), float [B, d].

        With ``model.frequency_gate``, ``[U_ID | I_ID]`` is gated by the target's training
        frequency and the frequency code follows it; with ``model.id_dropout``, IDSM reads the
        features with ids dropped (:meth:`RankingModel.id_side`)."""
        return tf.concat(list(self.representation_parts(features, training).values()), axis=-1)

    def call(self, features, training=None):
        return self.mmoe(self.representation(features, training=training), training=training)


@registry.register("urm", reads_cache=lambda m: m.urm.modal_in_idsm)
def build(config, inputs, parts) -> URM:
    """URM, ``urm_wo_ppm`` (no plug-in) or ``base`` (``model.urm.modal_in_idsm``)."""
    m = config.model
    embedders = [parts.id_items()]
    if m.urm.modal_in_idsm:
        embedders.append(parts.modal_items())
    name = "base" if m.urm.modal_in_idsm else ("urm" if m.plugin.kind else "urm_wo_ppm")
    return URM(parts.sequence_module(embedders, name="idsm"), parts.plugin(),
               parts.head(name="mmoe"), profile_features=inputs.schema.profile_features,
               profile_hash_bins=m.profile_hash_bins, profile_dim=m.profile_dim,
               init_stddev=m.init_stddev, name=name, **parts.ranking_kwargs())
