import numpy as np
import pytest
import tensorflow as tf

import ppm  # noqa: F401
from ppm.layers import MLP, MMoE
from tests.layers.helpers import assert_round_trip


def test_hand_computed_mixture():
    """Eq. 9-11 with identity-like experts and known gates, computed by hand."""
    layer = MMoE(["click", "order"], num_experts=2, expert_units=[2], tower_units=[])
    x = tf.constant([[1.0, 2.0]])
    layer(x)
    # Experts: relu(x W_i): expert 0 = x, expert 1 = 2x.
    layer.experts[0].dense_layers[0].set_weights([np.eye(2), np.zeros(2)])
    layer.experts[1].dense_layers[0].set_weights([2 * np.eye(2), np.zeros(2)])
    # Gates: click logits (0, 0) -> (.5, .5); order logits (0, log 3) -> (.25, .75).
    layer.gate_layers[0].set_weights([np.zeros((2, 2)), np.zeros(2)])
    layer.gate_layers[1].set_weights([np.zeros((2, 2)), np.array([0.0, np.log(3.0)])])
    # Towers: logit = sum of the mixture.
    for out in layer.outputs:
        out.set_weights([np.ones((2, 1)), np.zeros(1)])
    logits = layer(x)
    # click: .5 * (1, 2) + .5 * (2, 4) = (1.5, 3) -> 4.5; order: .25 * (1, 2) + .75 * (2, 4).
    np.testing.assert_allclose(logits["click"].numpy(), [4.5], rtol=1e-6)
    np.testing.assert_allclose(logits["order"].numpy(), [0.25 * 3 + 0.75 * 6], rtol=1e-6)
    gates = layer.gates(x)
    np.testing.assert_allclose(gates["order"].numpy(), [[0.25, 0.75]], rtol=1e-6)


def test_gates_are_softmax_per_task():
    layer = MMoE(["a", "b", "c"], num_experts=4, init_stddev=1.0)
    x = tf.random.normal([5, 6], seed=1)
    logits = layer(x)
    assert set(logits) == {"a", "b", "c"} and logits["a"].shape == (5,)
    gates = layer.gates(x)
    for g in gates.values():
        np.testing.assert_allclose(g.numpy().sum(axis=1), np.ones(5), rtol=1e-5)
    assert np.abs(gates["a"].numpy() - gates["b"].numpy()).max() > 1e-3


def test_round_trip(tmp_path):
    assert_round_trip(MMoE(["click", "cart"], num_experts=3, expert_units=[4],
                           tower_units=[3], init_stddev=0.5),
                      tf.random.normal([2, 5], seed=2), tmp_path)
    assert_round_trip(MLP([4, 3], init_stddev=0.5), tf.random.normal([2, 5], seed=3), tmp_path)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unique"):
        MMoE(["click", "click"])
    with pytest.raises(ValueError, match="num_experts"):
        MMoE(["click"], num_experts=0)
    with pytest.raises(ValueError, match="units"):
        MLP([])
