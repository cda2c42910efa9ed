"""Wide&Deep (Cheng et al., "Wide & Deep Learning for Recommender Systems", DLRS 2016,
arXiv:1606.07792), a PPM Table 2 baseline.

``logit_k = w_k^T [x, phi(x)] + head_k(deep)`` (Cheng et al. Eq. 3, one wide weight vector per
task): the *wide* part is a hashed linear model over the raw ids (target item, history items,
profile, position) and their cross products (``model.wide_deep.crosses``, e.g. the target's
category with each history item's category: Cheng et al.'s "AND(user_installed_app,
impression_app)"); the *deep* part is the model's head over the embedded fields (target
fields, the mean of the history items' fields, the context, and the profile D that
:class:`~ppm.models.ranker.Ranker` adds). Both are trained jointly, as in the paper.

Choices that are ours: the wide part is trained with the model's optimizer (the paper uses
FTRL with L1 for it, AdaGrad for the deep part; one optimizer keeps the zoo comparable); the
history enters the deep part as a masked mean (Cheng et al. have no behaviour sequence).
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf
import tf_keras as keras

from ppm.features import ID_FIELDS
from ppm.layers.wide import HashedLinear, cross_strings
from ppm.models import registry
from ppm.models.fields import flat, masked_mean, raw_inputs
from ppm.models.ranker import Ranker


def wide_features(profile_features: Sequence[str]) -> list[str]:
    """The raw features of a wide (or first-order) part: ids of target and history items,
    the profile features and the position."""
    return ([*ID_FIELDS, *(f"hist_{f}" for f in ID_FIELDS), *profile_features, "position"])


def parse_crosses(crosses: Sequence[str]) -> list[tuple[str, str]]:
    """``["a:b", ...] -> [("a", "b"), ...]``.

    Raises:
      ValueError: a cross that is not two names joined by ``:``.
    """
    out = []
    for c in crosses:
        parts = str(c).split(":")
        if len(parts) != 2 or not all(parts):
            raise ValueError(f"model.wide_deep.crosses: {c!r} is not 'feature_a:feature_b'")
        out.append((parts[0], parts[1]))
    return out


@keras.utils.register_keras_serializable(package="ppm")
class WideDeepBackbone(keras.layers.Layer):
    """The deep input and the wide logits of Wide&Deep.

    Args:
      num_tasks: K, wide logits per example (one per task).
      features: raw features of the wide part (:func:`wide_features`).
      crosses: ``"a:b"`` crosses of two raw features (a target and a history feature give one
        cross per history item).
      hash_bins: hash buckets of each wide feature's weight table.
      max_history: history items read (0: all), as the fields.
      init_stddev: N(0, s) initialiser of the wide weights.

    Call: the fields dict of :class:`~ppm.models.fields.FieldEmbedding` ->
      ``{"vector": [B, (4 + 4 + 1) * D], "logits": [B, K]}``.
    """

    def __init__(self, num_tasks: int, features: Sequence[str], crosses: Sequence[str] = (),
                 hash_bins: int = 100_000, max_history: int = 0, init_stddev: float = 0.01,
                 **kwargs):
        super().__init__(**kwargs)
        if num_tasks < 1:
            raise ValueError(f"num_tasks must be >= 1, got {num_tasks}")
        self.num_tasks, self.features = int(num_tasks), [str(f) for f in features]
        self.crosses = [str(c) for c in crosses]
        self._pairs = parse_crosses(self.crosses)
        self.hash_bins, self.max_history = int(hash_bins), int(max_history)
        self.init_stddev = float(init_stddev)
        names = self.features + [f"{a}_x_{b}" for a, b in self._pairs]
        self.wide = HashedLinear(names, self.hash_bins, units=self.num_tasks,
                                 init_stddev=init_stddev, name="wide")

    def call(self, fields, training=None):
        raw = raw_inputs(fields["raw"], self.features + [x for p in self._pairs for x in p],
                         fields["hist_len"], self.max_history)
        wide_in = {name: raw[name] for name in self.features}
        for a, b in self._pairs:
            wide_in[f"{a}_x_{b}"] = cross_strings(raw[a], raw[b])
        deep = tf.concat([flat(fields["target"]),
                          masked_mean(flat(fields["history"]), fields["mask"]),
                          flat(fields["context"])], axis=-1)
        return {"vector": deep, "logits": self.wide(wide_in)}

    def get_config(self):
        return {**super().get_config(), "num_tasks": self.num_tasks, "features": self.features,
                "crosses": self.crosses, "hash_bins": self.hash_bins,
                "max_history": self.max_history, "init_stddev": self.init_stddev}


@registry.register("wide_deep")
def build(config, inputs, parts) -> Ranker:
    m = config.model
    backbone = WideDeepBackbone(
        len(parts.task_weights), wide_features(inputs.schema.profile_features),
        crosses=m.wide_deep.crosses, hash_bins=m.wide_deep.hash_bins,
        max_history=config.data.max_history, init_stddev=m.init_stddev, name="wide_deep")
    return Ranker(parts.fields(), backbone, parts.head(), **parts.ranker_kwargs(), name="wide_deep")
