"""DeepFM (Guo et al., "DeepFM: A Factorization-Machine based Neural Network for CTR
Prediction", IJCAI 2017, arXiv:1703.04247), a PPM Table 2 baseline.

``logit_k = y_FM + w_k^T x + head_k(deep)`` (Guo et al. Eq. 1-2): the FM component's
second-order term pairs every two fields' embeddings (target item's sku, shop, brand and
category; the mean of the history items' same fields; the profile fields; the position), its
first-order term is a hashed linear model over the raw ids (one weight vector per task), and
the deep component is the model's head over the *same* embeddings (shared, the paper's point
against Wide&Deep's hand-made crosses), with the profile D that :class:`Ranker` adds.

Choices that are ours: the history enters as one pooled field per ID kind (Guo et al. have no
behaviour sequence; DeepCTR's DeepFM takes pooled sequence features the same way); the
second-order term is shared by every task, the first-order weights are per task.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf
import tf_keras as keras

from ppm.layers.fm import FactorizationMachine
from ppm.layers.wide import HashedLinear
from ppm.models import registry
from ppm.models.fields import flat, masked_mean, raw_inputs
from ppm.models.ranker import Ranker
from ppm.models.wide_deep import wide_features


@keras.utils.register_keras_serializable(package="ppm")
class DeepFMBackbone(keras.layers.Layer):
    """The FM term, the first-order logits and the deep input of DeepFM.

    Args:
      num_tasks: K, first-order logits per example.
      features: raw features of the first-order part (:func:`wide_features`).
      hash_bins: hash buckets of each first-order weight table.
      max_history: history items read (0: all), as the fields.
      init_stddev: N(0, s) initialiser.

    Call: the fields dict of :class:`~ppm.models.fields.FieldEmbedding` ->
      ``{"vector": [B, 9 * D], "logits": [B, K]}`` (first order + FM, per task).
    """

    def __init__(self, num_tasks: int, features: Sequence[str], hash_bins: int = 100_000,
                 max_history: int = 0, init_stddev: float = 0.01, **kwargs):
        super().__init__(**kwargs)
        if num_tasks < 1:
            raise ValueError(f"num_tasks must be >= 1, got {num_tasks}")
        self.num_tasks, self.features = int(num_tasks), [str(f) for f in features]
        self.hash_bins, self.max_history = int(hash_bins), int(max_history)
        self.init_stddev = float(init_stddev)
        self.first_order = HashedLinear(self.features, self.hash_bins, units=self.num_tasks,
                                        init_stddev=init_stddev, name="first_order")
        self.fm = FactorizationMachine(output="scalar", name="fm")

    def call(self, fields, training=None):
        history = masked_mean(fields["history"], fields["mask"])  # [B, 4, D]
        items = tf.concat([fields["target"], history, fields["context"]], axis=1)
        fm = self.fm(tf.concat([items, tf.cast(fields["profile"], items.dtype)], axis=1))
        linear = self.first_order(raw_inputs(fields["raw"], self.features, fields["hist_len"],
                                              self.max_history))
        return {"vector": flat(items),
                "logits": tf.cast(linear, tf.float32) + tf.cast(fm, tf.float32)[:, None]}

    def get_config(self):
        return {**super().get_config(), "num_tasks": self.num_tasks, "features": self.features,
                "hash_bins": self.hash_bins, "max_history": self.max_history,
                "init_stddev": self.init_stddev}


@registry.register("deepfm")
def build(config, inputs, parts) -> Ranker:
    m = config.model
    backbone = DeepFMBackbone(
        len(parts.task_weights), wide_features(inputs.schema.profile_features),
        hash_bins=m.deepfm.hash_bins, max_history=config.data.max_history,
        init_stddev=m.init_stddev, name="deepfm")
    return Ranker(parts.fields(), backbone, parts.head(), **parts.ranker_kwargs(), name="deepfm")
