"""DIN's local activation unit (TargetAttention) and the Dice activation (DIN, Eq. 3 and Dice)."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import ppm  # noqa: F401
from ppm.layers.dice import Dice
from ppm.layers.target_attention import TargetAttention
from tests.layers.helpers import assert_round_trip


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _inputs(batch=3, length=4, width=3, lengths=(4, 2, 0), seed=0):
    rng = np.random.default_rng(seed)
    return {"query": tf.constant(rng.normal(size=(batch, width)), tf.float32),
            "keys": tf.constant(rng.normal(size=(batch, length, width)), tf.float32),
            "mask": tf.sequence_mask(lengths, length)}


def _with_garbage(inputs, seed=1, extra=0):
    """The same inputs with large random values, NaN and inf in every padded key, and
    ``extra`` more padded slots."""
    rng = np.random.default_rng(seed)
    keys, mask = inputs["keys"].numpy(), inputs["mask"].numpy()
    keys = np.concatenate([keys, np.zeros([keys.shape[0], extra, keys.shape[2]])], axis=1)
    mask = np.concatenate([mask, np.zeros([mask.shape[0], extra], bool)], axis=1)
    garbage = 1e4 * rng.normal(size=keys.shape)
    garbage.flat[::5], garbage.flat[1::7] = np.nan, np.inf
    return {**inputs, "keys": tf.constant(np.where(mask[..., None], keys, garbage), tf.float32),
            "mask": tf.constant(mask)}


# --- TargetAttention --------------------------------------------------------------------------

def test_hand_computed_sigmoid_unit():
    """a_j = v . sigmoid(W [h_j, t, h_j - t, h_j * t] + b) + c and sum_j a_j h_j, by numpy."""
    layer = TargetAttention(hidden_units=(2,), activation="sigmoid")
    t = np.array([[1.0, 1.0], [1.0, -1.0]], np.float32)
    h = np.array([[[1.0, 0.0], [0.0, 2.0]], [[2.0, 1.0], [5.0, 5.0]]], np.float32)
    mask = np.array([[True, True], [True, False]])  # row 1: a 1-item history, 1 padded slot
    inputs = {"query": tf.constant(t), "keys": tf.constant(h), "mask": tf.constant(mask)}
    layer(inputs)
    w1 = (np.arange(16, dtype=np.float32).reshape(8, 2) - 8.0) / 10.0
    b1, v, c = np.array([0.1, -0.2]), np.array([[1.5], [-0.5]]), np.array([0.25])
    layer.dense_layers[0].set_weights([w1, b1])
    layer.score_layer.set_weights([v, c])

    tt = np.broadcast_to(t[:, None, :], h.shape)
    features = np.concatenate([h, tt, h - tt, h * tt], axis=-1)  # [2, 2, 8]
    scores = (_sigmoid(features @ w1 + b1) @ v + c)[..., 0]
    weights = np.where(mask, scores, 0.0)
    expected = np.einsum("bt,btd->bd", weights, h)
    np.testing.assert_allclose(layer.attention_weights(inputs).numpy(), weights, rtol=1e-5)
    np.testing.assert_allclose(layer(inputs).numpy(), expected, rtol=1e-5, atol=1e-6)

    # normalize=True: a softmax over the real items of the same scores.
    normalized = TargetAttention(hidden_units=(2,), activation="sigmoid", normalize=True)
    normalized(inputs)
    normalized.set_weights(layer.get_weights())
    soft = np.exp(scores[0]) / np.exp(scores[0]).sum()
    np.testing.assert_allclose(normalized.attention_weights(inputs).numpy(),
                               [soft, [1.0, 0.0]], rtol=1e-5)
    np.testing.assert_allclose(normalized(inputs).numpy(), [soft @ h[0], h[1, 0]], rtol=1e-5)


def test_empty_hidden_units_is_a_linear_score():
    layer = TargetAttention(hidden_units=(), activation="prelu")
    inputs = _inputs(batch=2, length=3, width=2, lengths=(3, 1))
    layer(inputs)
    assert [w.shape for w in layer.trainable_weights] == [(8, 1), (1,)]
    kernel = np.arange(8, dtype=np.float32)[:, None] / 8.0
    layer.score_layer.set_weights([kernel, np.array([0.5])])
    h, t, mask = inputs["keys"].numpy(), inputs["query"].numpy(), inputs["mask"].numpy()
    tt = np.broadcast_to(t[:, None, :], h.shape)
    scores = np.concatenate([h, tt, h - tt, h * tt], axis=-1) @ kernel[:, 0] + 0.5
    np.testing.assert_allclose(layer.attention_weights(inputs).numpy(),
                               np.where(mask, scores, 0.0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("activation", ["dice", "sigmoid"])
def test_normalized_weights_sum_to_one_over_real_items(activation):
    layer = TargetAttention((4,), activation, normalize=True, init_stddev=1.0)
    inputs = _inputs(batch=4, length=5, lengths=(5, 3, 1, 0))
    for training in (True, False):
        weights = layer.attention_weights(inputs, training=training).numpy()
        np.testing.assert_allclose(weights.sum(axis=1), [1.0, 1.0, 1.0, 0.0], rtol=1e-5)
        assert (weights[~inputs["mask"].numpy()] == 0.0).all() and (weights[0] > 0).all()
    assert np.ptp(weights[0]) > 1e-4  # the weights depend on the item


@pytest.mark.parametrize("activation,normalize",
                         [("dice", False), ("dice", True), ("prelu", False), ("sigmoid", True)])
def test_padded_keys_cannot_change_outputs_or_gradients(activation, normalize):
    clean = _inputs()
    # More padding too: Dice's batch statistics must not count the padded slots.
    dirty = _with_garbage(clean, extra=3)
    assert not np.isfinite(dirty["keys"].numpy()).all()
    keras.utils.set_random_seed(0)
    layer = TargetAttention((4, 3), activation, normalize=normalize, init_stddev=0.5)
    layer(clean)
    if activation == "prelu":
        # A non-zero slope in every layer, so that both sides of PReLU are used (and a row's
        # scores cannot all be exactly 0, as when every unit of a zero-slope layer is negative).
        for act, width in zip(layer.activation_layers, (4, 3)):
            act.set_weights([np.full([width], 0.3, np.float32)])
    for training in (True, False):
        results = []
        for inputs in (clean, dirty):
            with tf.GradientTape() as tape:
                out = layer(inputs, training=training)
                loss = tf.reduce_sum(out * tf.constant([1.0, -2.0, 0.5]))
            results.append((out.numpy(), tape.gradient(loss, layer.trainable_weights)))
        (out_clean, grads_clean), (out_dirty, grads_dirty) = results
        np.testing.assert_allclose(out_dirty, out_clean, rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(out_clean[2], np.zeros(3))  # the empty history
        assert np.abs(out_clean[:2]).min() > 0
        for a, b in zip(grads_clean, grads_dirty):
            assert np.isfinite(b.numpy()).all()
            np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-5, atol=1e-7)


def test_all_masked_batch_gives_zeros():
    inputs = _with_garbage(_inputs(batch=2, lengths=(0, 0)))
    for normalize in (False, True):
        layer = TargetAttention((4,), "dice", normalize=normalize)
        for training in (True, False):
            out = layer(inputs, training=training).numpy()
            np.testing.assert_array_equal(out, np.zeros((2, 3)))
        dice = layer.activation_layers[0]  # nothing real was seen: the statistics are unchanged
        np.testing.assert_array_equal(dice.moving_mean.numpy(), np.zeros(4))
        np.testing.assert_array_equal(dice.moving_variance.numpy(), np.ones(4))


def test_missing_mask_means_all_real():
    layer = TargetAttention((4,), "sigmoid", init_stddev=0.5)
    inputs = _inputs(lengths=(4, 4, 4))
    without = {k: v for k, v in inputs.items() if k != "mask"}
    np.testing.assert_allclose(layer(without).numpy(), layer(inputs).numpy(), rtol=1e-6)


def test_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match=r"one of \('dice', 'prelu', 'sigmoid'\)"):
        TargetAttention(activation="relu")
    with pytest.raises(ValueError, match="hidden_units"):
        TargetAttention(hidden_units=(8, 0))
    with pytest.raises(ValueError, match="init_stddev"):
        TargetAttention(init_stddev=0.0)
    inputs = _inputs()
    with pytest.raises(ValueError, match="lack"):
        TargetAttention()({"query": inputs["query"]})
    with pytest.raises(ValueError, match="width"):
        TargetAttention()({**inputs, "query": tf.zeros([3, 2])})
    with pytest.raises(ValueError, match="query must be"):
        TargetAttention()({**inputs, "query": inputs["keys"]})


# --- Dice -------------------------------------------------------------------------------------

S = np.array([[1.0, -2.0], [3.0, 0.5], [-1.0, 4.0], [0.0, 1.5]], np.float32)


def _dice(s, mean, var, alpha, eps=1e-8):
    p = _sigmoid((s - mean) / np.sqrt(var + eps))
    return p * s + (1.0 - p) * alpha * s


def test_dice_training_uses_batch_statistics_and_updates_moving_averages():
    layer = Dice(momentum=0.9)
    out = layer(tf.constant(S), training=True).numpy()
    # alpha is 0 at initialisation: the output is p(s) * s.
    np.testing.assert_array_equal(layer.alpha.numpy(), [0.0, 0.0])
    mean, var = S.mean(axis=0), S.var(axis=0)  # the biased (population) variance, as Keras BN
    p = _sigmoid((S - mean) / np.sqrt(var + 1e-8))
    np.testing.assert_allclose(out, p * S, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.moving_mean.numpy(), 0.1 * mean, rtol=1e-5)
    np.testing.assert_allclose(layer.moving_variance.numpy(), 0.9 + 0.1 * var, rtol=1e-5)

    alpha = np.array([0.25, -1.0], np.float32)
    layer.alpha.assign(alpha)
    np.testing.assert_allclose(layer(tf.constant(S), training=True).numpy(),
                               _dice(S, mean, var, alpha), rtol=1e-5, atol=1e-6)


def test_dice_inference_uses_moving_averages():
    layer = Dice(epsilon=1e-3)
    layer.build(S.shape)
    mean, var, alpha = np.array([0.5, -1.0]), np.array([2.0, 0.25]), np.array([0.1, 0.7])
    layer.set_weights([alpha, mean, var])  # alpha, moving_mean, moving_variance
    expected = _dice(S, mean, var, alpha, eps=1e-3)
    for training in (None, False):
        np.testing.assert_allclose(layer(tf.constant(S), training=training).numpy(), expected,
                                   rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.moving_mean.numpy(), mean)  # inference does not update


def test_dice_mask_leaves_padded_rows_out_of_the_statistics():
    x = np.stack([S, 100.0 + 50.0 * S])  # [2, 4, 2]; the second sequence is padding
    mask = np.array([[True] * 4, [False] * 4])
    layer = Dice(momentum=0.0)
    out = layer(tf.constant(x), mask=tf.constant(mask), training=True).numpy()
    mean, var = S.mean(axis=0), S.var(axis=0)
    np.testing.assert_allclose(out[0], _dice(S, mean, var, 0.0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.moving_mean.numpy(), mean, rtol=1e-5)
    np.testing.assert_allclose(layer.moving_variance.numpy(), var, rtol=1e-5)


def test_dice_replicas_use_their_own_batch_and_average_the_moving_statistics():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    halves = [S[:2], S[2:]]
    with strategy.scope():
        layer = Dice(momentum=0.5)
        layer.build([None, 2])
    dataset = tf.data.Dataset.from_tensor_slices(S).batch(4)
    batch = next(iter(strategy.experimental_distribute_dataset(dataset)))
    out = strategy.run(lambda x: layer(x, training=True), args=(batch,))
    for part, half in zip(strategy.experimental_local_results(out), halves):
        np.testing.assert_allclose(part.numpy(), _dice(half, half.mean(0), half.var(0), 0.0),
                                   rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.moving_mean.numpy(),
                               np.mean([0.5 * h.mean(0) for h in halves], axis=0), rtol=1e-5)
    np.testing.assert_allclose(layer.moving_variance.numpy(),
                               np.mean([0.5 + 0.5 * h.var(0) for h in halves], axis=0),
                               rtol=1e-5)


def test_dice_bad_arguments():
    with pytest.raises(ValueError, match="epsilon"):
        Dice(epsilon=0.0)
    with pytest.raises(ValueError, match="momentum"):
        Dice(momentum=1.0)
    with pytest.raises(ValueError, match="rank"):
        Dice()(tf.zeros([3]))
    with pytest.raises(ValueError, match="out of range"):
        Dice(axis=2)(tf.zeros([3, 2]))


# --- Serialization and mixed precision --------------------------------------------------------

@pytest.mark.parametrize("activation,normalize", [("dice", False), ("prelu", True)])
def test_round_trip(tmp_path, activation, normalize):
    layer = TargetAttention((4, 3), activation, normalize=normalize, init_stddev=0.5)
    inputs = _inputs()
    layer(inputs, training=True)  # moves Dice's statistics away from their initial values
    assert_round_trip(layer, inputs, tmp_path)


def test_dice_round_trip(tmp_path):
    layer = Dice(epsilon=1e-6, momentum=0.5)
    layer(tf.constant(S), training=True)
    layer.alpha.assign([0.3, -0.2])
    assert_round_trip(layer, tf.constant(S), tmp_path)


def test_mixed_float16_outputs_float16_and_computes_in_float32():
    inputs = _inputs()
    reference = TargetAttention((4, 3), "dice", init_stddev=0.5)
    reference(inputs, training=True)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        layer = TargetAttention((4, 3), "dice", init_stddev=0.5)
        layer(inputs)
        layer.set_weights(reference.get_weights())
        out = layer(inputs)
        weights = layer.attention_weights(inputs)
        dice = Dice()
        dice_out = dice(tf.constant(S), training=True)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    # The output is in the compute dtype (float16); the weights and Dice's variables float32.
    assert out.dtype == tf.float16 and dice_out.dtype == tf.float16
    assert weights.dtype == tf.float32
    assert all(w.dtype == tf.float32 for w in layer.weights + dice.weights)
    assert np.isfinite(out.numpy()).all()
    np.testing.assert_allclose(out.numpy().astype(np.float32), reference(inputs).numpy(),
                               rtol=1e-2, atol=1e-3)
    np.testing.assert_allclose(dice_out.numpy(), _dice(S, S.mean(0), S.var(0), 0.0),
                               rtol=1e-2, atol=1e-3)
