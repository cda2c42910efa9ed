"""SimTier (Taobao multimodal §4.2, Algorithm 1): tiers by hand, the edges, masking."""

import numpy as np
import pytest
import tensorflow as tf

import ppm  # noqa: F401
from ppm.layers.simtier import SimTier, cosine_similarities, tier_indices
from tests.layers.helpers import assert_round_trip


def _unit(angle):
    return [np.cos(angle), np.sin(angle)]


def test_hand_computed_counts_with_padding_and_missing_vectors():
    # Target along x; history cosines 1, 0.6, 0, -0.6, -1, a zero vector, a padded slot.
    target = np.array([[2.0, 0.0]], np.float32)  # not normalised: the cosine is used
    history = np.array([[[3.0, 0.0], [0.6, 0.8], [0.0, 5.0], [-0.6, 0.8], [-1.0, 0.0],
                         [0.0, 0.0], [1.0, 0.0]]], np.float32)
    mask = np.array([[True] * 6 + [False]])
    inputs = {"target": tf.constant(target), "history": tf.constant(history),
              "mask": tf.constant(mask)}
    # N = 4 tiers over [-1, 1]: [-1, -.5), [-.5, 0), [0, .5), [.5, 1].
    # 1 -> 3, .6 -> 3, 0 -> 2 (an inner edge goes up), -.6 -> 0, -1 -> 0; the zero vector
    # and the padded slot (whatever it holds) are in no tier.
    np.testing.assert_array_equal(SimTier(4)(inputs).numpy(), [[2, 0, 1, 2]])
    scores, valid = cosine_similarities(target, history, mask)
    np.testing.assert_allclose(scores.numpy()[0], [1, 0.6, 0, -0.6, -1, 0, 0], atol=1e-6)
    np.testing.assert_array_equal(valid.numpy()[0], [1, 1, 1, 1, 1, 0, 0])


def test_edges_of_the_range():
    """s = -1 is tier 0 and s = 1 tier N-1 (Algorithm 1's ceil puts it in tier N, never
    counted); every inner edge belongs to the tier above; scores past +-1 are clipped."""
    n = 8  # edges at multiples of 0.25: exact in float32
    edges = np.array([-1.0, -0.75, -0.25, 0.0, 0.5, 0.75, 1.0, 1.0000001, -1.0000001],
                     np.float32)
    np.testing.assert_array_equal(tier_indices(tf.constant(edges), n).numpy(),
                                  [0, 1, 3, 4, 6, 7, 7, 7, 0])
    assert tier_indices(tf.constant([0.4999]), n).numpy()[0] == 5
    # One tier: every real, non-zero item counts.
    inputs = {"target": tf.constant([[1.0, 0.0]]),
              "history": tf.constant([[[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]]])}
    np.testing.assert_array_equal(SimTier(1)(inputs).numpy(), [[3]])


def test_a_target_without_vector_counts_nothing_and_an_empty_history_gives_zeros():
    history = tf.constant(np.random.default_rng(0).normal(size=(2, 3, 4)), tf.float32)
    inputs = {"target": tf.constant([[0.0] * 4, [1.0, 0, 0, 0]]), "history": history,
              "mask": tf.constant([[True] * 3, [False] * 3])}
    np.testing.assert_array_equal(SimTier(3)(inputs).numpy(), np.zeros((2, 3)))


def test_modalities_get_their_own_tiers():
    # [B=1, M=2, D=2]: text along x, image along y; one history item.
    target = tf.constant([[[1.0, 0.0], [0.0, 1.0]]])
    history = tf.constant([[[[1.0, 0.0], [0.0, -1.0]]]])  # text cos 1, image cos -1
    np.testing.assert_array_equal(SimTier(2)({"target": target, "history": history}).numpy(),
                                  [[0, 1, 1, 0]])


def test_counts_equal_a_numpy_histogram():
    rng = np.random.default_rng(3)
    b, length, d, n = 6, 9, 5, 7
    target, history = rng.normal(size=(b, d)), rng.normal(size=(b, length, d))
    lengths = rng.integers(0, length + 1, size=b)
    mask = np.arange(length)[None] < lengths[:, None]
    got = SimTier(n)({"target": tf.constant(target, tf.float32),
                      "history": tf.constant(history, tf.float32),
                      "mask": tf.constant(mask)}).numpy()
    for i in range(b):
        cos = history[i] @ target[i] / np.linalg.norm(history[i], axis=1) / np.linalg.norm(
            target[i])
        expected, _ = np.histogram(cos[mask[i]], bins=n, range=(-1, 1))
        np.testing.assert_array_equal(got[i], expected)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_tiers"):
        SimTier(0)
    with pytest.raises(ValueError, match="one rank more"):
        SimTier(3)({"target": tf.zeros([2, 4]), "history": tf.zeros([2, 4])})


def test_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    inputs = {"target": tf.constant(rng.normal(size=(3, 2, 4)), tf.float32),
              "history": tf.constant(rng.normal(size=(3, 5, 2, 4)), tf.float32),
              "mask": tf.sequence_mask([5, 2, 0], 5)}
    layer = SimTier(6)
    assert layer(inputs).shape == (3, 12)
    assert_round_trip(layer, inputs, tmp_path)
