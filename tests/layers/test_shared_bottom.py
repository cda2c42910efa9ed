"""SharedBottom: one MLP for every task, a logit unit per task."""

import numpy as np
import pytest
import tensorflow as tf

import ppm  # noqa: F401
from ppm.layers import SharedBottom
from tests.layers.helpers import assert_round_trip


def test_logits_by_hand_and_round_trip(tmp_path):
    layer = SharedBottom(["click", "order"], bottom_units=(2,), tower_units=(), init_stddev=0.5)
    x = tf.constant([[1.0, -2.0, 0.5], [0.0, 1.0, 3.0]])
    out = layer(x)
    (w, b), heads = layer.bottom.weights[:2], layer.outputs
    hidden = np.maximum(x.numpy() @ w.numpy() + b.numpy(), 0.0)  # the bottom's ReLU layer
    for task, unit in zip(["click", "order"], heads):
        k, c = (v.numpy() for v in unit.weights)
        np.testing.assert_allclose(out[task].numpy(), (hidden @ k + c)[:, 0], rtol=1e-5)
    assert not np.allclose(out["click"].numpy(), out["order"].numpy())
    assert_round_trip(SharedBottom(["click"], (4,), (3,)), x, tmp_path)


def test_bad_tasks():
    with pytest.raises(ValueError, match="unique"):
        SharedBottom(["click", "click"])
