"""DSIN session layers: splitting, extractor, interactor, activation (DSIN §4.1-4.4)."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from ppm.layers.session_interest import (
    SessionActivation,
    SessionInterestExtractor,
    SessionInterestInteractor,
    SessionSplit,
    split_sessions,
)
from tests.layers.helpers import assert_round_trip

T = 7


def _history():
    """Two users, T = 7, D = 2; item (b, t) is [100 b + t + 1, -(100 b + t + 1)]."""
    v = np.arange(T, dtype=np.float32)[None, :] + 1 + 100 * np.arange(2)[:, None]
    items = np.stack([v, -v], axis=-1).astype(np.float32)  # [2, T, 2]
    items[0, 5:] = np.nan  # padding of user 0 (hist_len 5): garbage that must not leak
    session = np.array([[0, 0, 0, 1, 2, 0, 1],   # the padded ids 0, 1 would fill free slots
                        [0, 1, 1, 1, 0, 0, 0]])  # user 1 (hist_len 4): session 1 has 3 items
    return items, session, np.array([5, 4])


def _value(b, t):
    x = 100 * b + t + 1
    return [x, -x]


def test_split_sessions_hand_made():
    items, session, hist_len = _history()
    sessions, mask = split_sessions(items, session, hist_len, max_sessions=2, session_length=2)
    assert sessions.shape == (2, 2, 2, 2) and mask.dtype == tf.bool
    # User 0: session 0 keeps its 2 most recent items (t 0, 1; t 2 cut), session 1 is t 3,
    # session 2 (t 4) is past max_sessions; padded t 5, 6 are ignored.
    # User 1: session 0 is t 0 only (t 4.. are padding), session 1 keeps t 1, 2 (t 3 cut).
    expected = np.array([[[_value(0, 0), _value(0, 1)], [_value(0, 3), [0, 0]]],
                         [[_value(1, 0), [0, 0]], [_value(1, 1), _value(1, 2)]]])
    np.testing.assert_array_equal(sessions.numpy(), expected)
    np.testing.assert_array_equal(mask.numpy(), [[[True, True], [True, False]],
                                                 [[True, False], [True, True]]])
    # More room: every real item is placed, in order, and ids need not be consecutive.
    sessions, mask = split_sessions(items, [[2, 2, 0, 2, 0, 0, 0], session[1]], hist_len,
                                    max_sessions=3, session_length=3)
    np.testing.assert_array_equal(sessions.numpy()[0, :, :, 0],
                                  [[3, 5, 0], [0, 0, 0], [1, 2, 4]])
    np.testing.assert_array_equal(mask.numpy()[1].sum(axis=-1), [1, 3, 0])


def test_split_sessions_in_graph_mode_with_dynamic_shapes_and_xla():
    items, session, hist_len = _history()
    spec = [tf.TensorSpec([None, None, 2], tf.float32), tf.TensorSpec([None, None], tf.int64),
            tf.TensorSpec([None], tf.int64)]
    eager = split_sessions(items, session, hist_len, 2, 2)
    for jit in (False, True):
        fn = tf.function(lambda x, s, n: split_sessions(x, s, n, 2, 2), input_signature=spec,
                         jit_compile=jit)
        got = fn(tf.constant(items), tf.constant(session), tf.constant(hist_len))
        np.testing.assert_array_equal(got[0].numpy(), eager[0].numpy())
        np.testing.assert_array_equal(got[1].numpy(), eager[1].numpy())
        # A longer batch through the same graph (B and T dynamic).
        big = fn(tf.zeros([3, 9, 2]), tf.zeros([3, 9], tf.int64), tf.constant([9, 0, 1],
                                                                               tf.int64))
        np.testing.assert_array_equal(big[1].numpy().sum(axis=(1, 2)), [2, 0, 1])
        assert fn.get_concrete_function().structured_outputs[0].shape.as_list() == [
            None, 2, 2, 2]


def test_session_split_layer_round_trip(tmp_path):
    items, session, hist_len = _history()
    items = np.nan_to_num(items)
    layer = SessionSplit(max_sessions=2, session_length=2)
    got = layer([items, session, hist_len])
    np.testing.assert_array_equal(got[0].numpy(), split_sessions(items, session, hist_len,
                                                                 2, 2)[0].numpy())
    assert_round_trip(layer, [tf.constant(items), tf.constant(session),
                              tf.constant(hist_len)], tmp_path)


# --- extractor -------------------------------------------------------------------------------

B, S, L, D = 2, 3, 4, 4
MASK = np.array([[[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]],
                 [[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]]], dtype=bool)


def _sessions(seed=0):
    x = np.random.default_rng(seed).normal(size=(B, S, L, D)).astype(np.float32)
    return np.where(MASK[..., None], x, 0.0).astype(np.float32)


def _extractor(**kw):
    return SessionInterestExtractor(num_heads=2, intermediate_size=8, init_stddev=0.3, **kw)


def _garbage(x, mask, seed=1):
    noise = np.random.default_rng(seed).normal(scale=100.0, size=x.shape).astype(x.dtype)
    return np.where(mask[..., None], x, noise)


def test_extractor_masks_padding_and_empty_sessions():
    layer = _extractor()
    x = _sessions()
    interests, session_mask = layer([x, MASK])
    assert interests.shape == (B, S, D)
    np.testing.assert_array_equal(session_mask.numpy(), MASK.any(axis=-1))
    np.testing.assert_array_equal(interests.numpy()[0, 2], np.zeros(D))  # empty session
    noisy, _ = layer([_garbage(x, MASK), MASK])
    np.testing.assert_allclose(noisy.numpy(), interests.numpy(), atol=1e-6)
    nan = np.where(MASK[..., None], x, np.nan).astype(np.float32)
    np.testing.assert_allclose(layer([nan, MASK])[0].numpy(), interests.numpy(), atol=1e-6)
    # Attention stays inside a session: changing session 0 changes only its interest.
    moved = x.copy()
    moved[1, 0, 0] += 1.0
    got = layer([moved, MASK])[0].numpy()
    assert np.abs(got[1, 0] - interests.numpy()[1, 0]).max() > 1e-4
    np.testing.assert_allclose(np.delete(got.reshape(B * S, D), 3, axis=0),
                               np.delete(interests.numpy().reshape(B * S, D), 3, axis=0),
                               atol=1e-6)


def test_extractor_bias_encoding_is_eq_2():
    """BE[k, t, c] = w^K_k + w^T_t + w^C_c added to the sessions, checked against a copy with
    zero biases fed the hand-added encoding."""
    layer = _extractor()
    x = _sessions()
    layer([x, MASK])
    rng = np.random.default_rng(3)
    w_k, w_t, w_c = rng.normal(size=S), rng.normal(size=L), rng.normal(size=D)
    layer.session_bias.assign(w_k)
    layer.position_bias.assign(w_t)
    layer.unit_bias.assign(w_c)
    plain = _extractor()
    plain([x, MASK])
    plain.set_weights([np.zeros(S), np.zeros(L), np.zeros(D)] + layer.get_weights()[3:])
    be = w_k[:, None, None] + w_t[None, :, None] + w_c[None, None, :]
    np.testing.assert_allclose(layer([x, MASK])[0].numpy(),
                               plain([(x + be).astype(np.float32), MASK])[0].numpy(),
                               atol=1e-5)


def test_extractor_average_is_over_real_items_only():
    """Three identical items (no position bias) give the interest of that item alone."""
    layer = _extractor()
    x = _sessions()
    layer([x, MASK])
    layer.position_bias.assign(np.zeros(L))
    same = x.copy()
    same[0, 0, :3] = x[0, 0, 0]
    alone = MASK.copy()
    alone[0, 0, 1:] = False
    np.testing.assert_allclose(layer([same, MASK])[0].numpy()[0, 0],
                               layer([same, alone])[0].numpy()[0, 0], atol=1e-5)


def test_extractor_round_trip(tmp_path):
    assert_round_trip(_extractor(), [tf.constant(_sessions()), tf.constant(MASK)], tmp_path)


# --- interactor ------------------------------------------------------------------------------

SESSION_MASK = np.array([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]], dtype=bool)


def _interests(seed=0):
    return np.random.default_rng(seed).normal(size=(3, 4, 3)).astype(np.float32)


def test_interactor_masks_and_equals_the_truncated_sequence():
    layer = SessionInterestInteractor(units=5)
    x = _interests()
    h = layer([x, SESSION_MASK]).numpy()
    assert h.shape == (3, 4, 10)
    np.testing.assert_array_equal(h[~SESSION_MASK], 0.0)
    np.testing.assert_array_equal(h[2], 0.0)  # no session at all
    noisy = np.where(SESSION_MASK[..., None], x, np.nan).astype(np.float32)
    np.testing.assert_allclose(layer([noisy, SESSION_MASK]).numpy(), h, atol=1e-6)
    noisy = _garbage(x, SESSION_MASK)
    np.testing.assert_allclose(layer([noisy, SESSION_MASK]).numpy(), h, atol=1e-6)
    # Masking is truncation: the backward direction starts at the last real session.
    np.testing.assert_allclose(layer.bi_lstm(x[:1, :3]).numpy()[0], h[0, :3], atol=1e-6)
    ave = SessionInterestInteractor(units=5, merge_mode="ave")
    assert ave([x, SESSION_MASK]).shape == (3, 4, 5)


def test_interactor_round_trip(tmp_path):
    assert_round_trip(SessionInterestInteractor(units=2),
                      [tf.constant(_interests()), tf.constant(SESSION_MASK)], tmp_path)


# --- activation ------------------------------------------------------------------------------

def _activation_inputs():
    sessions = np.array([[[1.0, 0.0], [0.0, 2.0], [9.0, 9.0]],
                         [[1.0, 1.0], [2.0, 0.0], [0.0, 0.0]]], dtype=np.float32)
    mask = np.array([[True, True, False], [False, False, False]])
    candidate = np.array([[1.0, 1.0, 0.0], [3.0, 0.0, 1.0]], dtype=np.float32)
    return sessions, mask, candidate


def test_activation_hand_computed():
    sessions, mask, candidate = _activation_inputs()
    layer = SessionActivation()
    layer([sessions, mask, candidate])
    w = np.array([[1.0, 0.0, 0.0], [0.0, 0.5, 0.0]], dtype=np.float32)  # [D, D']
    layer.kernel.assign(w)
    # User 0: W X = [1, 0.5]; I_0 W X = 1, I_1 W X = 1 -> equal weights over the two real
    # sessions; the masked third gets none whatever it holds.
    a = layer.session_weights([sessions, mask, candidate]).numpy()
    np.testing.assert_allclose(a[0], [0.5, 0.5, 0.0], atol=1e-7)
    np.testing.assert_array_equal(a[1], [0.0, 0.0, 0.0])  # no session
    out = layer([sessions, mask, candidate]).numpy()
    np.testing.assert_allclose(out, [[0.5, 1.0], [0.0, 0.0]], atol=1e-6)
    # Scores 2 and 1: softmax [e / (e + 1), 1 / (e + 1)].
    shifted = sessions.copy()
    shifted[0, 0] = [2.0, 0.0]
    a = layer.session_weights([shifted, mask, candidate]).numpy()[0]
    e = np.e
    np.testing.assert_allclose(a, [e / (e + 1), 1 / (e + 1), 0.0], rtol=1e-6)
    assert a.sum() == pytest.approx(1.0)


def test_activation_masks_garbage_and_never_nans():
    sessions, mask, candidate = _activation_inputs()
    layer = SessionActivation(init_stddev=0.5)
    out = layer([sessions, mask, candidate]).numpy()
    bad = np.where(mask[..., None], sessions, np.nan).astype(np.float32)
    got = layer([bad, mask, candidate]).numpy()
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, out, atol=1e-7)
    np.testing.assert_array_equal(got[1], [0.0, 0.0])
    a = layer.session_weights([_garbage(sessions, mask), mask, candidate]).numpy()
    np.testing.assert_allclose(a.sum(axis=-1), [1.0, 0.0], atol=1e-6)


def test_activation_round_trip(tmp_path):
    sessions, mask, candidate = _activation_inputs()
    assert_round_trip(SessionActivation(init_stddev=0.5),
                      [tf.constant(sessions), tf.constant(mask), tf.constant(candidate)],
                      tmp_path)


# --- together --------------------------------------------------------------------------------

def test_the_chain_under_mixed_precision():
    items, session, hist_len = _history()
    items = np.nan_to_num(np.concatenate([items, items], axis=-1))  # D = 4
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        split = SessionSplit(max_sessions=2, session_length=3)
        extractor = _extractor()
        interactor = SessionInterestInteractor(units=2)
        activation = SessionActivation(init_stddev=0.3)
        sessions, mask = split([items, session, hist_len])
        interests, session_mask = extractor([sessions, mask])
        states = interactor([interests, session_mask])
        candidate = tf.constant(np.ones([2, 4], np.float32))
        u_i = activation([interests, session_mask, candidate])
        assert interests.dtype == tf.float16 and states.dtype == tf.float16
        assert u_i.shape == (2, 4) and np.isfinite(u_i.numpy()).all()
        a = activation.session_weights([interests, session_mask, candidate])
        assert a.dtype == tf.float32
        np.testing.assert_allclose(a.numpy().sum(axis=-1), [1.0, 1.0], rtol=1e-3)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_bad_arguments():
    with pytest.raises(ValueError, match="max_sessions"):
        SessionSplit(max_sessions=0)
    with pytest.raises(ValueError, match="session_length"):
        split_sessions(tf.zeros([1, 2, 3]), tf.zeros([1, 2]), [2], session_length=0)
    with pytest.raises(ValueError, match="rank 3"):
        split_sessions(tf.zeros([1, 2]), tf.zeros([1, 2]), [2])
    with pytest.raises(ValueError, match="num_heads"):
        SessionInterestExtractor(num_heads=0)
    with pytest.raises(ValueError, match="divisible"):
        SessionInterestExtractor(num_heads=3)([tf.zeros([1, 2, 2, 4]), tf.ones([1, 2, 2], bool)])
    with pytest.raises(ValueError, match="rank 4"):
        SessionInterestExtractor(num_heads=2)([tf.zeros([1, 2, 4]), tf.ones([1, 2], bool)])
    with pytest.raises(ValueError, match="dropout"):
        SessionInterestExtractor(num_heads=2, dropout=1.0)
    with pytest.raises(ValueError, match="init_stddev"):
        SessionInterestExtractor(num_heads=2, init_stddev=0.0)
    with pytest.raises(ValueError, match="units"):
        SessionInterestInteractor(units=0)
    with pytest.raises(ValueError, match="merge_mode"):
        SessionInterestInteractor(units=2, merge_mode="max")
    with pytest.raises(ValueError, match="candidate"):
        SessionActivation()([tf.zeros([1, 2, 3]), tf.ones([1, 2], bool), tf.zeros([1, 2, 3])])
    with pytest.raises(ValueError, match="init_stddev"):
        SessionActivation(init_stddev=-1.0)
