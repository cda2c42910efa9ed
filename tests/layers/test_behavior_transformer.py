import numpy as np
import pytest
import tensorflow as tf

import ppm  # noqa: F401
from ppm.features import NUM_RECENCY_BUCKETS
from ppm.layers import BehaviorTransformer
from tests.layers.helpers import assert_round_trip

B, L, H = 3, 5, 8


def _inputs(seed=0, hist_len=(5, 2, 0)):
    rng = np.random.default_rng(seed)
    return {
        "history": tf.constant(rng.normal(size=(B, L, H)), tf.float32),
        "target": tf.constant(rng.normal(size=(B, H)), tf.float32),
        "hist_position": tf.constant(rng.integers(0, 10, size=(B, L)), tf.int64),
        "hist_recency": tf.constant(rng.integers(0, NUM_RECENCY_BUCKETS, size=(B, L)),
                                    tf.int64),
        "hist_len": tf.constant(hist_len, tf.int64),
        "position": tf.constant([0, 3, 7], tf.int64),
    }


def _layer(**kw):
    return BehaviorTransformer(num_layers=2, num_heads=2, intermediate_size=16, dropout=0.0,
                               num_positions=8, init_stddev=0.5, **kw)


def test_shapes_and_empty_history_gives_zero_user():
    layer = _layer()
    user, item = layer(_inputs())
    assert user.shape == (B, H) and item.shape == (B, H)
    np.testing.assert_array_equal(user.numpy()[2], np.zeros(H))  # hist_len 0
    assert np.abs(user.numpy()[:2]).sum() > 0


def test_padding_is_masked_and_real_history_is_not():
    layer = _layer()
    x = _inputs()
    user, item = layer(x)
    # Change only the padded tokens of example 1 (hist_len 2) and all of example 2 (0).
    noisy = dict(x)
    h = x["history"].numpy().copy()
    h[1, 2:] += 100.0
    h[2] += 100.0
    noisy["history"] = tf.constant(h)
    rec = x["hist_recency"].numpy().copy()
    rec[1, 2:] = 0
    noisy["hist_recency"] = tf.constant(rec)
    u2, i2 = layer(noisy)
    np.testing.assert_allclose(u2.numpy()[1:], user.numpy()[1:], atol=1e-5)
    np.testing.assert_allclose(i2.numpy()[1:], item.numpy()[1:], atol=1e-5)
    # A real history token does matter.
    h = x["history"].numpy().copy()
    h[1, 0] += 1.0
    u3, i3 = layer({**x, "history": tf.constant(h)})
    assert np.abs(u3.numpy()[1] - user.numpy()[1]).max() > 1e-4
    assert np.abs(i3.numpy()[1] - item.numpy()[1]).max() > 1e-4


def test_position_and_recency_embeddings_enter():
    layer = _layer()
    x = _inputs()
    _, item = layer(x)
    _, moved = layer({**x, "position": tf.constant([1, 3, 7], tf.int64)})
    assert np.abs(moved.numpy()[0] - item.numpy()[0]).max() > 1e-4
    np.testing.assert_allclose(moved.numpy()[1:], item.numpy()[1:], atol=1e-6)
    # Positions past the table are clipped, not an error.
    _, clipped = layer({**x, "position": tf.constant([0, 3, 1000], tf.int64)})
    assert np.isfinite(clipped.numpy()).all()
    user, _ = layer(x)
    rec = x["hist_recency"].numpy().copy()
    rec[0, 0] = (rec[0, 0] + 1) % NUM_RECENCY_BUCKETS
    user2, _ = layer({**x, "hist_recency": tf.constant(rec)})
    assert np.abs(user2.numpy()[0] - user.numpy()[0]).max() > 1e-4


def test_round_trip(tmp_path):
    assert_round_trip(_layer(), _inputs(), tmp_path)


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_heads"):
        BehaviorTransformer(num_heads=3)(_inputs())
    with pytest.raises(ValueError, match="num_layers"):
        BehaviorTransformer(num_layers=0)
    with pytest.raises(ValueError, match="lack"):
        _layer()({"history": tf.zeros([1, 2, 4])})


# --- history-only mode (the user side once per request) ---------------------------------------

def _repeat_users(x, rows):
    """``x`` with its rows taken in the order ``rows`` (users repeated), each with a target and
    a position of its own."""
    rng = np.random.default_rng(7)
    out = {k: tf.gather(v, rows) for k, v in x.items()}
    out["target"] = tf.constant(rng.normal(size=(len(rows), H)), tf.float32)
    out["position"] = tf.constant(rng.integers(0, 8, size=len(rows)), tf.int64)
    return out


def test_history_mode_user_side_ignores_the_target_and_is_computed_once_per_user():
    layer = _layer(target_mode="history")
    x = _inputs()
    rows = [0, 1, 0, 0, 2, 1, 0]  # three users, mixed as TF Serving's batching may mix them
    batch = _repeat_users(x, rows)
    user, item = layer(batch)
    # Computed alone, row by row (training=True takes the path without the dedupe; no dropout)
    for i, r in enumerate(rows):
        single = {k: v[i:i + 1] for k, v in batch.items()}
        u_alone, _ = layer(single, training=True)
        np.testing.assert_allclose(user.numpy()[i], u_alone.numpy()[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(user.numpy()[i], user.numpy()[rows.index(r)], atol=0)
    np.testing.assert_array_equal(user.numpy()[4], np.zeros(H))  # user 2: empty history
    # The target is its Eq. 3 input: embedding + position + the reserved "now" recency bucket.
    pos = np.clip(batch["position"].numpy(), 0, 7)
    expected = (batch["target"].numpy() + layer.position_embedding.embeddings.numpy()[pos]
                + layer.recency_embedding.embeddings.numpy()[NUM_RECENCY_BUCKETS])
    np.testing.assert_allclose(item.numpy(), expected, rtol=1e-6)
    # In token mode the same weights give a user side that depends on the target.
    token = _layer()
    token(x)
    token.set_weights(layer.get_weights())
    u_tok, _ = token(batch)
    assert np.abs(u_tok.numpy()[0] - u_tok.numpy()[2]).max() > 1e-4


def test_distinct_rows_groups_bitwise_equal_rows():
    from ppm.layers.behavior_transformer import distinct_rows

    a = tf.constant([[1.0, 2.0], [1.0, 2.0], [1.0, 2.5], [1.0, 2.0]])
    b = tf.constant([3, 3, 3, 4], tf.int64)
    first, index = distinct_rows((a, b))
    np.testing.assert_array_equal(index.numpy(), [0, 0, 1, 2])  # row 3 differs in b
    np.testing.assert_array_equal(first.numpy(), [0, 2, 3])
    first, index = distinct_rows((tf.zeros([0, 2]), tf.zeros([0], tf.int64)))
    assert first.shape[0] == 0 and index.shape[0] == 0


def test_history_mode_round_trip_and_bad_mode(tmp_path):
    assert_round_trip(_layer(target_mode="history"), _inputs(), tmp_path)
    with pytest.raises(ValueError, match="target_mode"):
        _layer(target_mode="both")
