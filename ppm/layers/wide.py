"""The wide (linear) part of Wide & Deep (Cheng et al., DLRS 2016, §3.1, Eq. 1 and 3).

The wide component is a generalized linear model ``y = w^T x + b`` over sparse binary features
``x`` and their cross-product transformations ``phi_k(x) = prod_i x_i^{c_ki}`` (Eq. 1). With
one-hot / multi-hot string features, ``w^T x`` is a sum of one weight per active string, so the
model is a set of weight tables looked up by hashed strings, and a cross-product feature is the
string of its parts joined (:func:`cross_strings`) and hashed like any other feature. The wide
logit is added to the deep logit before the sigmoid (Eq. 3).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import tensorflow as tf
import tf_keras as keras

SEPARATOR = "\x1f"  # ASCII unit separator: cannot collide with printable feature values
_NAME = re.compile(r"^[A-Za-z0-9.][A-Za-z0-9_.\-]*$")  # valid as a TF variable name


def _string_tensor(x, what):
    x = tf.convert_to_tensor(x)
    if x.dtype != tf.string:
        raise ValueError(f"{what} must be a string tensor, got {x.dtype.name}; convert ids "
                         f"with tf.strings.as_string")
    if x.shape.rank is None:
        raise ValueError(f"{what} must have a known rank")
    return x


def cross_strings(a, b, separator: str = SEPARATOR):
    """Cross two string features: ``a + separator + b``, "" wherever either side is "".

    The cross-product transformation of Wide & Deep (Eq. 1) for string features: the crossed
    string is active exactly when both parts are, and :class:`HashedLinear` hashes it into its
    own table. Chaining (``cross_strings(cross_strings(a, b), c)``) crosses three features.

    Broadcasting aligns the *leading* axes (batch first): the lower-rank side gets trailing
    axes of size 1, so a ``[B]`` feature crossed with a ``[B, T]`` history gives ``[B, T]``
    (each history slot crossed with its row's value). Then the usual broadcasting rules apply.

    Choices: the separator defaults to ``"\\x1f"`` (tf.feature_column's ``crossed_column``
    instead hashes the parts' fingerprints together; joining keeps the cross readable and
    lets one hash function serve plain and crossed features). "" is padding / missing and
    propagates, so padded history slots stay padding.

    Args:
      a: string tensor, e.g. ``[B]`` or ``[B, T]``.
      b: string tensor, e.g. ``[B]`` or ``[B, T]``.
      separator: joined between the two values.

    Returns:
      string tensor of the broadcast shape.

    Raises:
      ValueError: a non-string input or an unknown rank.
    """
    a, b = _string_tensor(a, "a"), _string_tensor(b, "b")
    rank = max(a.shape.rank, b.shape.rank)
    a = tf.reshape(a, tf.concat([tf.shape(a), tf.ones([rank - a.shape.rank], tf.int32)], 0))
    b = tf.reshape(b, tf.concat([tf.shape(b), tf.ones([rank - b.shape.rank], tf.int32)], 0))
    shape = tf.broadcast_dynamic_shape(tf.shape(a), tf.shape(b))
    a, b = tf.broadcast_to(a, shape), tf.broadcast_to(b, shape)
    joined = tf.strings.join([a, b], separator=separator)
    return tf.where(tf.logical_or(tf.equal(a, ""), tf.equal(b, "")), tf.zeros_like(joined),
                    joined)


@keras.utils.register_keras_serializable(package="ppm")
class HashedLinear(keras.layers.Layer):
    """A linear model over hashed string features: one weight table per feature and a bias.

    For every feature f with table ``W_f [num_bins, units]``::

        y = b + sum_f sum_t [x_ft != ""] * W_f[hash(x_ft) mod num_bins]       (Wide & Deep Eq. 1)

    where ``hash`` is FarmHash64 (``tf.strings.to_hash_bucket_fast``, the same bucket as
    ``keras.layers.Hashing`` without salt; stable across runs and machines).

    Choices where the paper is silent:

    - Hashing instead of vocabularies; collisions within a table are possible by design, and
      each feature (crosses included) has its own table, so features never collide with each
      other.
    - "" is padding / missing and contributes exactly 0: its bucket's row is multiplied by 0,
      so it neither adds to the output nor gets a gradient from a padded slot.
    - A sequence feature ``[B, T]`` is a multi-hot feature: its weights are summed over T, the
      ``sum`` combiner of tf.feature_column's ``linear_model`` (DeepCTR's varlen features
      default to ``mean``; a sum keeps Eq. 1's ``w^T x`` for a multi-hot ``x``).
    - Tables start at N(0, ``init_stddev``), the bias at 0 (DeepCTR's ``Linear`` also starts
      its bias at zero).
    - The output is float32 whatever the compute dtype: it is a logit, as ``MMoE`` returns
      float32 logits.

    Args:
      feature_names: one name per input feature (crosses included), e.g.
        ``("user_age", "item_cate", "user_age_x_item_cate")``; they name the tables
        (``<name>_table``) and are the keys of the call's dict.
      num_bins: hash buckets (rows) of every table.
      units: output width (1 for a logit).
      init_stddev: N(0, s) initialiser of the tables.

    Call:
      inputs: ``{name: string tensor [B] or [B, T]}`` with exactly the keys ``feature_names``.

    Returns:
      float32 ``[B, units]``.

    Raises:
      ValueError: bad arguments; call keys that differ from ``feature_names``; an input that
        is not a string tensor of rank 1 or 2.
    """

    def __init__(self, feature_names: Sequence[str], num_bins: int, units: int = 1,
                 init_stddev: float = 0.01, **kwargs):
        super().__init__(**kwargs)
        if isinstance(feature_names, str):
            raise ValueError(f"feature_names must be a sequence of names, got the string "
                             f"{feature_names!r}")
        feature_names = [str(n) for n in feature_names]
        if not feature_names or len(set(feature_names)) != len(feature_names):
            raise ValueError(f"feature_names must be non-empty and unique, got {feature_names}")
        bad = [n for n in feature_names if not _NAME.match(n)]
        if bad:
            raise ValueError(f"feature_names must match {_NAME.pattern} (they name weights), "
                             f"got {bad}")
        if int(num_bins) < 1 or int(units) < 1:
            raise ValueError(f"num_bins and units must be >= 1, got {num_bins}, {units}")
        self.feature_names = feature_names
        self.num_bins, self.units, self.init_stddev = int(num_bins), int(units), float(
            init_stddev)

    def _check_keys(self, inputs):
        if not isinstance(inputs, Mapping):
            raise ValueError(f"HashedLinear expects a dict {{name: tensor}} with keys "
                             f"{self.feature_names}, got {type(inputs).__name__}")
        if set(inputs) != set(self.feature_names):
            missing = sorted(set(self.feature_names) - set(inputs))
            extra = sorted(set(inputs) - set(self.feature_names))
            raise ValueError(f"HashedLinear inputs must have exactly the keys "
                             f"{self.feature_names}; missing {missing}, unexpected {extra}")

    def build(self, input_shape):
        self._check_keys(input_shape)
        # A fresh initialiser per table: one unseeded instance would give every table the
        # same initial values.
        init = lambda: keras.initializers.RandomNormal(stddev=self.init_stddev)
        self.tables = {n: self.add_weight(name=f"{n}_table", shape=(self.num_bins, self.units),
                                          initializer=init(), trainable=True)
                       for n in self.feature_names}
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros",
                                    trainable=True)
        super().build(input_shape)

    def call(self, inputs):
        self._check_keys(inputs)
        total = None
        for name in self.feature_names:
            x = _string_tensor(inputs[name], f"input {name!r}")
            if x.shape.rank not in (1, 2):
                raise ValueError(f"input {name!r} must be [B] or [B, T], got shape {x.shape}")
            if x.shape.rank == 1:
                x = x[:, None]
            buckets = tf.strings.to_hash_bucket_fast(x, self.num_bins)  # [B, T]
            weights = tf.cast(tf.gather(self.tables[name], buckets), tf.float32)  # [B, T, U]
            real = tf.cast(tf.not_equal(x, ""), tf.float32)[:, :, None]
            term = tf.reduce_sum(weights * real, axis=1)  # [B, U]
            total = term if total is None else total + term
        return total + tf.cast(self.bias, tf.float32)

    def get_config(self):
        return {**super().get_config(), "feature_names": self.feature_names,
                "num_bins": self.num_bins, "units": self.units,
                "init_stddev": self.init_stddev}
