import itertools

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import ppm  # noqa: F401
from ppm.layers.fm import FactorizationMachine
from tests.layers.helpers import assert_round_trip

B, F, D = 4, 5, 3


def _random(seed=0):
    rng = np.random.default_rng(seed)
    fields = rng.normal(size=(B, F, D)).astype(np.float32)
    mask = rng.random((B, F)) < 0.6
    mask[0] = True  # one row unmasked, one row with at most one field
    mask[1] = [True] + [False] * (F - 1)
    return fields, mask


def _brute_force(fields, weights):
    """sum_{i<j} (w_i v_i) * (w_j v_j) by a double loop: [B, D]."""
    out = np.zeros((fields.shape[0], fields.shape[2]), np.float64)
    for b in range(fields.shape[0]):
        for i, j in itertools.combinations(range(fields.shape[1]), 2):
            out[b] += (weights[b, i] * fields[b, i].astype(np.float64)
                       * weights[b, j] * fields[b, j].astype(np.float64))
    return out


def test_hand_computed_two_fields():
    fields = tf.constant([[[1.0, 2.0], [3.0, 4.0]]])
    # <(1, 2), (3, 4)> = 3 + 8 = 11; the Bi-Interaction vector is (1 * 3, 2 * 4).
    np.testing.assert_allclose(FactorizationMachine()(fields).numpy(), [11.0])
    np.testing.assert_allclose(FactorizationMachine("vector")(fields).numpy(), [[3.0, 8.0]])
    # A third field (1, -1): pairs 11 + (1 - 2) + (3 - 4) = 9.
    three = tf.constant([[[1.0, 2.0], [3.0, 4.0], [1.0, -1.0]]])
    np.testing.assert_allclose(FactorizationMachine()(three).numpy(), [9.0])
    # Masking the third field gives back 11; one field alone has no pair.
    np.testing.assert_allclose(
        FactorizationMachine()(three, mask=tf.constant([[True, True, False]])).numpy(), [11.0])
    np.testing.assert_allclose(
        FactorizationMachine()(three, mask=tf.constant([[False, True, False]])).numpy(), [0.0])


@pytest.mark.parametrize("mask_kind", ["none", "bool", "float"])
def test_matches_pairwise_double_loop(mask_kind):
    fields, mask = _random(1)
    if mask_kind == "none":
        weights, mask_arg = np.ones((B, F)), None
    elif mask_kind == "bool":
        weights, mask_arg = mask.astype(np.float64), tf.constant(mask)
    else:  # a float mask scales each field
        weights = mask * np.linspace(0.5, 2.0, F)[None, :]
        mask_arg = tf.constant(weights, tf.float32)
    expected = _brute_force(fields, weights)
    vector = FactorizationMachine(output="vector")(tf.constant(fields), mask=mask_arg)
    scalar = FactorizationMachine()(tf.constant(fields), mask=mask_arg)
    assert vector.shape == (B, D) and scalar.shape == (B,)
    np.testing.assert_allclose(vector.numpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(scalar.numpy(), expected.sum(axis=1), rtol=1e-5, atol=1e-5)
    if mask_kind != "none":  # the mask changed the answer
        assert np.abs(expected - _brute_force(fields, np.ones((B, F)))).max() > 1e-2


def test_masked_fields_do_not_matter():
    fields, mask = _random(2)
    layer = FactorizationMachine(output="vector")
    base = layer(tf.constant(fields), mask=tf.constant(mask)).numpy()
    changed = np.where(mask[:, :, None], fields, 1e3).astype(np.float32)
    np.testing.assert_array_equal(layer(tf.constant(changed), mask=tf.constant(mask)).numpy(),
                                  base)
    poisoned = np.where(mask[:, :, None], fields, np.nan).astype(np.float32)
    np.testing.assert_array_equal(layer(tf.constant(poisoned), mask=tf.constant(mask)).numpy(),
                                  base)
    assert np.abs(layer(tf.constant(changed)).numpy() - base).max() > 1.0


def test_uses_keras_mask():
    """Embedding(mask_zero=True) masks id 0 (padding) without an explicit mask argument."""
    ids = tf.constant([[1, 2, 0], [3, 0, 0]])
    emb = keras.layers.Embedding(5, 2, mask_zero=True,
                                 embeddings_initializer=keras.initializers.Constant(
                                     np.arange(10.0).reshape(5, 2)))
    out = FactorizationMachine()(emb(ids)).numpy()
    # Row 0: <(2, 3), (4, 5)> = 23 (the padded (0, 1) is out); row 1: one field -> 0.
    np.testing.assert_allclose(out, [23.0, 0.0])


def test_gradient_is_sum_of_other_fields():
    """d y / d v_i = sum_{j != i} v_j; the layer has no trainable weights."""
    fields, mask = _random(3)
    x = tf.Variable(fields)
    layer = FactorizationMachine()
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(layer(x, mask=tf.constant(mask)))
    grad = tape.gradient(y, x).numpy()
    assert layer.trainable_weights == []
    m = mask[:, :, None].astype(np.float64)
    expected = m * ((fields * m).sum(axis=1, keepdims=True) - fields * m)
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-5)
    assert np.abs(grad).max() > 0


def test_mixed_precision():
    fields, mask = _random(4)
    policy = keras.mixed_precision.Policy("mixed_float16")
    scalar = FactorizationMachine(dtype=policy)(tf.constant(fields), mask=tf.constant(mask))
    vector = FactorizationMachine("vector", dtype=policy)(tf.constant(fields, tf.float16))
    assert scalar.dtype == tf.float32 and vector.dtype == tf.float16
    np.testing.assert_allclose(scalar.numpy(), _brute_force(fields, mask).sum(1), rtol=1e-2,
                               atol=1e-2)


@pytest.mark.parametrize("output", ["scalar", "vector"])
def test_round_trip(tmp_path, output):
    fields, mask = _random(5)
    assert_round_trip(FactorizationMachine(output), tf.constant(fields), tmp_path)
    assert_round_trip(FactorizationMachine(output),
                      {"fields": tf.constant(fields), "mask": tf.constant(mask)}, tmp_path,
                      call=lambda layer, x: layer(x["fields"], mask=x["mask"]))
    assert FactorizationMachine(output).get_config()["output"] == output


def test_bad_arguments():
    with pytest.raises(ValueError, match="output"):
        FactorizationMachine("matrix")
    with pytest.raises(ValueError, match=r"\[B, F, D\]"):
        FactorizationMachine()(tf.zeros([2, 3]))
    with pytest.raises(ValueError, match="mask"):
        FactorizationMachine()(tf.zeros([2, 3, 4]), mask=tf.ones([2, 3, 1]))
