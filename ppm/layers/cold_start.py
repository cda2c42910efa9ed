"""What an ID model needs to do for items its ID tables know nothing of (PPM §1, Fig. 2).

An ID model trained on a window whose vocabulary is that window's items never sees an
unknown target id in training: every training target is in the vocabulary. At serving time
a new item's id falls into the out-of-vocabulary row, a row trained only as history padding
and unknown history items, and the model's output for it is arbitrary (measured below chance
on MovieLens-100K). Two layers let a ranking model learn that case:

- :class:`IdDropout`: in training, replace a share of the item ids (target and history) by
  an unknown id, on the ID side only, so the OOV row and the head learn what to do when the
  ID says nothing and the content (the plug-in) must carry the example;
- :class:`FrequencyGate`: weigh the ID side's representation by the target item's training
  frequency, looked up in a table of the item vocabulary's counts that the model holds (so a
  served model has it without a client sending it); an id that is not in the table (new, or
  dropped by :class:`IdDropout`) counts as seen 0 times.

Both are ours: the paper does not say how its URM treats new items' ids.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf
import tf_keras as keras

# What IdDropout puts in place of a dropped id: never a real id, so every ID table treats it
# as unknown (the OOV row; count 0 in the frequency table).
DROPPED_ID = "\x00<dropped>"


@keras.utils.register_keras_serializable(package="ppm")
class IdDropout(keras.layers.Layer):
    """Replaces item ids by :data:`DROPPED_ID` at ``rate`` in training; the identity otherwise.

    Args:
      rate: the share of (non-padding) ids dropped, each independently.
      fields: the string features whose ids are dropped (target and history item ids).
      seed: the random op's seed (None: random).

    Call: ``(features, training)`` -> a copy of the feature dict with ``fields`` replaced.
    Padding ids (``""``) are never replaced.
    """

    def __init__(self, rate: float, fields: Sequence[str] = ("item_id", "hist_item_id"),
                 seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"rate must be in [0, 1), got {rate}")
        self.rate, self.fields, self.seed = float(rate), [str(f) for f in fields], seed

    def call(self, features, training=None):
        if not training or not self.rate:
            return features
        out = dict(features)
        for name in self.fields:
            if name not in out:
                continue
            ids = out[name]
            drop = tf.random.uniform(tf.shape(ids), seed=self.seed) < self.rate
            out[name] = tf.where(drop & (ids != ""), DROPPED_ID, ids)
        return out

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "fields": self.fields,
                "seed": self.seed}


@keras.utils.register_keras_serializable(package="ppm")
class FrequencyGate(keras.layers.Layer):
    """``(vector [B, d], item_id [B]) -> (vector * gate, code)``, both by training frequency.

    The target item's count ``n`` (from ``vocabulary``/``counts``, 0 for an id not there) falls
    in bucket ``min(floor(log2(1 + n)), num_buckets - 1)``; each bucket has a learnt gate per
    dimension of ``vector`` (``sigmoid``, initialised to ``sigmoid(init_logit)``, about 0.95:
    the ID side starts trusted everywhere) and a learnt ``code_dim`` embedding that the head
    also reads, so its experts and gates know how much the ID side can be trusted.

    Args:
      vocabulary: item ids; counts: their training counts (same order).
      num_buckets: log2 buckets (16: up to 32,767 appearances apart).
      code_dim: width of the bucket embedding returned beside the gated vector.
      init_logit: the gates' initial logit.
      init_stddev: N(0, s) initialiser of the bucket embedding.
    """

    def __init__(self, vocabulary: Sequence[str], counts: Sequence[int], num_buckets: int = 16,
                 code_dim: int = 8, init_logit: float = 3.0, init_stddev: float = 0.01,
                 **kwargs):
        super().__init__(**kwargs)
        vocabulary, counts = [str(v) for v in vocabulary], [int(c) for c in counts]
        if len(vocabulary) != len(counts):
            raise ValueError(f"{len(vocabulary)} ids but {len(counts)} counts")
        if num_buckets < 2 or code_dim < 1:
            raise ValueError(f"num_buckets must be >= 2 and code_dim >= 1, got {num_buckets}, "
                             f"{code_dim}")
        self.vocabulary, self.counts = vocabulary, counts
        self.num_buckets, self.code_dim = int(num_buckets), int(code_dim)
        self.init_logit, self.init_stddev = float(init_logit), float(init_stddev)
        keys = vocabulary or [DROPPED_ID]
        values = counts or [0]
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(keys), tf.constant(values, tf.int64)),
            default_value=0)
        self.code = keras.layers.Embedding(
            self.num_buckets, self.code_dim,
            embeddings_initializer=keras.initializers.RandomNormal(stddev=init_stddev),
            name="code")

    def build(self, input_shape):
        width = int(input_shape[0][-1])
        self.gate_logits = self.add_weight(
            "gate_logits", shape=(self.num_buckets, width),
            initializer=keras.initializers.Constant(self.init_logit))
        super().build(input_shape)

    def frequency(self, item_ids):
        """Training count of each id, int64 (0 for an unknown or dropped id)."""
        return self.table.lookup(tf.convert_to_tensor(item_ids))

    def bucket(self, item_ids):
        n = tf.cast(self.frequency(item_ids), tf.float32)
        b = tf.cast(tf.floor(tf.math.log(1.0 + n) / tf.math.log(2.0)), tf.int32)
        return tf.minimum(b, self.num_buckets - 1)

    def call(self, inputs):
        vector, item_ids = inputs
        b = self.bucket(item_ids)
        gate = tf.sigmoid(tf.gather(self.gate_logits, b))
        return vector * tf.cast(gate, vector.dtype), self.code(b)

    def get_config(self):
        return {**super().get_config(), "vocabulary": self.vocabulary, "counts": self.counts,
                "num_buckets": self.num_buckets, "code_dim": self.code_dim,
                "init_logit": self.init_logit, "init_stddev": self.init_stddev}
