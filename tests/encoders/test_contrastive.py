"""Tests of ppm.encoders.contrastive: losses, temperature, MoCo queue and momentum update."""

import math

import numpy as np
import pytest
import tensorflow as tf

import ppm.encoders.backend  # noqa: F401  (selects the TensorFlow backend before keras loads)

# isort: split
import keras

from ppm.encoders import contrastive
from ppm.encoders.contrastive import (
    LearnableTemperature,
    MomentumQueue,
    info_nce_loss,
    momentum_update,
    triplet_loss,
)

Q = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
K = np.array([[0.6, 0.8], [0.8, 0.6]], np.float32)


def _mirrored():
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


def _copies(variable):
    """Per-replica copies of a (Keras) variable as numpy arrays."""
    return [v.numpy() for v in variable.value.values]


# --- info_nce_loss -----------------------------------------------------------------------------

def test_info_nce_in_batch_matches_hand_computation():
    # logits = Q K^T / 0.5 = [[1.2, 1.6], [1.6, 1.2]]; positives on the diagonal (1.2 both rows),
    # so each row's loss is log((e^1.2 + e^1.6) / e^1.2) = log(1 + e^0.4).
    expected = math.log(1.0 + math.exp(0.4))
    assert float(info_nce_loss(Q, K, 0.5)) == pytest.approx(expected, rel=1e-6)


def test_info_nce_with_queue_matches_hand_computation():
    queue = np.array([[-1.0, 0.0]], np.float32)
    # Extra logits q_i . queue / 0.5: row 0 -> -2, row 1 -> 0.
    row0 = math.log((math.exp(1.2) + math.exp(1.6) + math.exp(-2.0)) / math.exp(1.2))
    row1 = math.log((math.exp(1.2) + math.exp(1.6) + math.exp(0.0)) / math.exp(1.2))
    loss = float(info_nce_loss(Q, K, 0.5, queue=queue))
    assert loss == pytest.approx((row0 + row1) / 2, rel=1e-6)
    assert loss > float(info_nce_loss(Q, K, 0.5))  # negatives can only add loss


def test_info_nce_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        info_nce_loss(Q, K[:1], 0.5)
    with pytest.raises(ValueError, match="queue"):
        info_nce_loss(Q, K, 0.5, queue=np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match="positive"):
        info_nce_loss(Q, K, 0.0)


# --- triplet_loss ------------------------------------------------------------------------------

def test_triplet_loss_is_cosine_hinge():
    anchor = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], np.float32)
    positive = np.array([[0.6, 0.8], [0.0, 3.0], [1.0, 0.0]], np.float32)
    negative = np.array([[0.8, 0.6], [1.2, 1.6], [0.0, 1.0]], np.float32)
    # cos(a, p), cos(a, n) per row: (0.6, 0.8), (1.0, 0.8), (1.0, 0.0); with margin 0.3:
    # max(0, 0.3 - 0.6 + 0.8) = 0.5, max(0, 0.3 - 1.0 + 0.8) = 0.1, max(0, 0.3 - 1.0) = 0.
    # (Raw dot products would give 0 for row 1: 0.3 - 3.0 + 1.6 < 0.)
    assert float(triplet_loss(anchor, positive, negative, 0.3)) == pytest.approx(0.2, rel=1e-6)
    with pytest.raises(ValueError, match="margin"):
        triplet_loss(anchor, positive, negative, -0.1)
    with pytest.raises(ValueError, match="same shape"):
        triplet_loss(anchor, positive[:1], negative, 0.3)


# --- LearnableTemperature ----------------------------------------------------------------------

def test_temperature_initial_value_and_clamping():
    layer = LearnableTemperature(initial_value=0.07, min_value=0.05, max_value=0.5)
    assert float(layer()) == pytest.approx(0.07, rel=1e-6)
    layer.log_temperature.assign(math.log(10.0))
    assert float(layer()) == pytest.approx(0.5)
    layer.log_temperature.assign(math.log(1e-4))
    assert float(layer()) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="min_value <= initial_value"):
        LearnableTemperature(initial_value=0.01, min_value=0.05)


def test_temperature_gets_the_gradient_and_the_optimizer_keeps_it_in_range():
    layer = LearnableTemperature(initial_value=0.07, min_value=0.05, max_value=0.5)

    def loss():
        return info_nce_loss(Q, K, layer())

    with tf.GradientTape() as tape:
        value = loss()
    (grad,) = tape.gradient(value, [layer.log_temperature])
    # d loss / d log(tau) checked against a central finite difference in float64.
    def loss_at(log_t):
        logits = Q.astype(np.float64) @ K.T.astype(np.float64) / math.exp(log_t)
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        return -np.mean(np.diag(logp))

    eps, log_t = 1e-4, math.log(0.07)
    numeric = (loss_at(log_t + eps) - loss_at(log_t - eps)) / (2 * eps)
    assert float(value) == pytest.approx(loss_at(log_t), rel=1e-5)
    assert abs(numeric) > 1e-3
    assert float(grad) == pytest.approx(numeric, rel=1e-3)

    keras.optimizers.SGD(learning_rate=1e4).apply([grad], [layer.log_temperature])
    assert math.log(0.05) - 1e-6 <= float(layer.log_temperature) <= math.log(0.5) + 1e-6


# --- MomentumQueue -----------------------------------------------------------------------------

def test_queue_starts_with_unit_rows():
    queue = MomentumQueue(queue_size=16, dim=4, seed=1)
    rows = queue().numpy()
    assert rows.shape == (16, 4)
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, rtol=1e-5)
    assert len(np.unique(rows[:, 0])) == 16  # random, not a constant
    assert int(queue.pointer) == 0
    assert not queue.trainable_weights


def test_queue_wraps_around():
    queue = MomentumQueue(queue_size=5, dim=2, seed=0)
    first = np.arange(6, dtype=np.float32).reshape(3, 2)
    second = 100 + np.arange(6, dtype=np.float32).reshape(3, 2)
    queue.enqueue(first)
    assert int(queue.pointer) == 3
    np.testing.assert_array_equal(queue().numpy()[:3], first)
    queue.enqueue(second)
    assert int(queue.pointer) == 1
    expected = np.stack([second[2], first[1], first[2], second[0], second[1]])
    np.testing.assert_array_equal(queue().numpy(), expected)


def test_queue_keeps_the_last_keys_when_more_than_k_arrive():
    queue = MomentumQueue(queue_size=5, dim=2, seed=0)
    queue.enqueue(np.zeros((2, 2), np.float32))  # pointer 2
    keys = np.arange(14, dtype=np.float32).reshape(7, 2)
    queue.enqueue(keys)
    # Keys 0..6 go to slots 2,3,4,0,1,2,3: keys 2..6 survive, the pointer moves to 4.
    assert int(queue.pointer) == 4
    np.testing.assert_array_equal(queue().numpy(), keys[[3, 4, 5, 6, 2]])
    with pytest.raises(ValueError, match=r"\[n, 2\]"):
        queue.enqueue(np.zeros((2, 3), np.float32))


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "tf_function"])
def test_queue_under_mirrored_strategy_gathers_replicas_in_order(compiled):
    strategy = _mirrored()
    with strategy.scope():
        queue = MomentumQueue(queue_size=8, dim=2, seed=3)
    # The variables whose copies must agree broadcast replica 0's write (see MomentumQueue).
    for variable in (queue.queue, queue.pointer):
        assert variable.value.aggregation == tf.VariableAggregation.ONLY_FIRST_REPLICA
    initial = _copies(queue.queue)
    np.testing.assert_array_equal(initial[0], initial[1])
    per_replica = [np.full((2, 2), 1.0, np.float32), np.full((2, 2), 2.0, np.float32)]
    keys = strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.constant(per_replica[ctx.replica_id_in_sync_group]))

    def step(k):
        queue.enqueue(k)

    strategy.run(tf.function(step) if compiled else step, args=(keys,))
    copies = _copies(queue.queue)
    expected = np.concatenate([per_replica[0], per_replica[1], initial[0][4:]])
    for copy in copies:
        np.testing.assert_array_equal(copy, expected)
    assert [int(p) for p in _copies(queue.pointer)] == [4, 4]


# --- momentum_update ---------------------------------------------------------------------------

def test_momentum_update_numeric():
    online = [keras.Variable([1.0, 2.0]), keras.Variable([[4.0]])]
    target = [keras.Variable([3.0, 0.0], trainable=False), keras.Variable([[0.0]])]
    momentum_update(online, target, 0.9)
    np.testing.assert_allclose(target[0].numpy(), [2.8, 0.2], rtol=1e-6)
    np.testing.assert_allclose(target[1].numpy(), [[0.4]], rtol=1e-6)
    np.testing.assert_array_equal(online[0].numpy(), [1.0, 2.0])  # online side untouched


def test_momentum_update_rejects_mismatches():
    a, b = keras.Variable(np.zeros((2, 3))), keras.Variable(np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"variable 0 has shape \(2, 3\)"):
        momentum_update([a], [b], 0.9)
    with pytest.raises(ValueError, match="1 online variables and 2 momentum"):
        momentum_update([a], [a, a], 0.9)
    with pytest.raises(ValueError, match="momentum"):
        momentum_update([a], [a], 1.5)


@pytest.mark.parametrize("aggregation", ["none", "sum"])
def test_momentum_update_under_mirrored_strategy(aggregation):
    strategy = _mirrored()
    with strategy.scope():
        online = keras.Variable([1.0, 2.0])
        target = keras.Variable([3.0, 0.0], trainable=False, aggregation=aggregation)
    strategy.run(lambda: momentum_update([online], [target], 0.5))
    for copy in _copies(target):  # a replica-context write of a SUM variable would double
        np.testing.assert_allclose(copy, [2.0, 1.0])


# --- serialization -----------------------------------------------------------------------------

@keras.saving.register_keras_serializable(package="ppm_test")
class _TinyContrastive(keras.Model):
    """Scores projected inputs against a MoCo queue with a learnable temperature."""

    def __init__(self, queue_size, dim, **kwargs):
        super().__init__(**kwargs)
        self.queue_size, self.dim = queue_size, dim
        self.proj = keras.layers.Dense(dim, name="proj")
        self.temperature = LearnableTemperature(initial_value=0.1, name="temperature")
        self.memory = MomentumQueue(queue_size=queue_size, dim=dim, name="memory")

    def call(self, x):
        q = tf.math.l2_normalize(self.proj(x), axis=-1)
        return tf.matmul(q, self.memory(), transpose_b=True) / self.temperature()

    def get_config(self):
        return {**super().get_config(), "queue_size": self.queue_size, "dim": self.dim}


def test_layers_round_trip_through_config():
    temperature = LearnableTemperature(initial_value=0.2, min_value=0.1, max_value=0.9)
    clone = LearnableTemperature.from_config(temperature.get_config())
    assert clone.get_config() == temperature.get_config()
    assert float(clone()) == pytest.approx(0.2)
    queue = MomentumQueue(queue_size=6, dim=3, seed=11, name="q")
    clone = MomentumQueue.from_config(queue.get_config())
    assert clone.get_config() == queue.get_config()
    np.testing.assert_array_equal(clone().numpy(), queue().numpy())  # same seed, same rows


def test_keras_save_load_round_trip(tmp_path):
    model = _TinyContrastive(queue_size=5, dim=3)
    x = np.random.default_rng(0).normal(size=(2, 4)).astype(np.float32)
    model(x)
    model.temperature.log_temperature.assign(math.log(0.3))
    model.memory.enqueue(np.eye(3, dtype=np.float32))
    path = str(tmp_path / "tiny.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.memory, MomentumQueue)
    assert float(loaded.temperature()) == pytest.approx(0.3)
    assert int(loaded.memory.pointer) == 3
    np.testing.assert_array_equal(loaded.memory().numpy(), model.memory().numpy())
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), rtol=1e-6)


def test_paper_queue_size_is_the_default():
    assert contrastive.PAPER_QUEUE_SIZE == 196_800
    assert MomentumQueue.__init__.__defaults__[0] == 196_800
