"""The PLE head (Tang et al., RecSys 2020; GRACE §2.2): two CGC levels by hand."""

import numpy as np
import pytest
import tensorflow as tf

import ppm  # noqa: F401
from ppm.layers.ple import PLE
from tests.layers.helpers import assert_round_trip


def _set(dense, kernel, bias):
    dense.set_weights([np.asarray(kernel, np.float32), np.asarray(bias, np.float32)])


def test_hand_computed_two_levels():
    """Level 0: experts a = x, b = 2x, shared = 3x; task a's gate (.5, .5) over (a, shared),
    task b's (.25, .75) over (b, shared), the shared gate (1/3 each) over (a, b, shared).
    Level 1: identity experts and even gates; logits are the sums of the mixtures."""
    layer = PLE(["a", "b"], num_levels=2, specific_experts=1, shared_experts=1,
                expert_units=[2], tower_units=[])
    x = tf.constant([[1.0, 2.0]])
    layer(x)
    eye = np.eye(2)
    for scale, expert in ((1, layer.specific[0][0][0]), (2, layer.specific[0][1][0]),
                          (3, layer.shared[0][0])):
        _set(expert.dense_layers[0], scale * eye, np.zeros(2))
    _set(layer.task_gates[0][0], np.zeros((2, 2)), [0.0, 0.0])
    _set(layer.task_gates[0][1], np.zeros((2, 2)), [0.0, np.log(3.0)])
    _set(layer.shared_gates[0], np.zeros((2, 3)), np.zeros(3))
    for expert in (layer.specific[1][0][0], layer.specific[1][1][0], layer.shared[1][0]):
        _set(expert.dense_layers[0], eye, np.zeros(2))
    for gate in layer.task_gates[1]:
        _set(gate, np.zeros((2, 2)), np.zeros(2))
    for unit in layer.outputs:
        _set(unit, np.ones((2, 1)), np.zeros(1))
    xs = np.array([1.0, 2.0])
    a0, b0, s0 = 0.5 * xs + 0.5 * 3 * xs, 0.25 * 2 * xs + 0.75 * 3 * xs, (1 + 2 + 3) / 3 * xs
    a1, b1 = 0.5 * a0 + 0.5 * s0, 0.5 * b0 + 0.5 * s0
    logits = layer(x)
    np.testing.assert_allclose(logits["a"].numpy(), [a1.sum()], rtol=1e-6)
    np.testing.assert_allclose(logits["b"].numpy(), [b1.sum()], rtol=1e-6)
    gates = layer.gates(x)
    assert len(gates) == 2 and set(gates[0]) == {"a", "b", "shared"} and "shared" not in gates[1]
    np.testing.assert_allclose(gates[0]["b"].numpy(), [[0.25, 0.75]], rtol=1e-6)
    np.testing.assert_allclose(gates[0]["shared"].numpy(), [[1 / 3] * 3], rtol=1e-6)


def test_the_shared_gate_spans_every_expert_and_tasks_read_their_own():
    layer = PLE(["click", "order", "cart"], num_levels=3, specific_experts=2,
                shared_experts=3, expert_units=[4], tower_units=[3], init_stddev=0.5)
    x = tf.random.normal([5, 6], seed=1)
    logits = layer(x)
    assert set(logits) == {"click", "order", "cart"} and logits["click"].shape == (5,)
    gates = layer.gates(x)
    for level, g in enumerate(gates):
        for t in ("click", "order", "cart"):
            assert g[t].shape == (5, 2 + 3)
            np.testing.assert_allclose(g[t].numpy().sum(1), np.ones(5), rtol=1e-5)
        if level < 2:
            assert g["shared"].shape == (5, 3 * 2 + 3)
    # A task's output does not read another task's specific experts (last level): zeroing
    # order's experts there changes order only.
    before = {t: v.numpy() for t, v in logits.items()}
    for expert in layer.specific[2][1]:
        expert.dense_layers[0].kernel.assign(tf.zeros_like(expert.dense_layers[0].kernel))
    after = {t: v.numpy() for t, v in layer(x).items()}
    np.testing.assert_allclose(after["click"], before["click"], rtol=1e-6)
    assert np.abs(after["order"] - before["order"]).max() > 1e-4


def test_round_trip_and_bad_arguments(tmp_path):
    assert_round_trip(PLE(["click", "order"], num_levels=2, specific_experts=2,
                          shared_experts=1, expert_units=[4], tower_units=[3],
                          init_stddev=0.5), tf.random.normal([2, 5], seed=2), tmp_path)
    with pytest.raises(ValueError, match="unique"):
        PLE(["a", "a"])
    with pytest.raises(ValueError, match="num_levels"):
        PLE(["a"], num_levels=0)
