import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import ppm  # noqa: F401
from ppm.layers.mian import (
    TOKENS,
    GlobalInteraction,
    ItemBehaviourInteraction,
    ItemFieldInteraction,
    MIANInterest,
)
from tests.layers.helpers import assert_round_trip

B, T, D, P, C = 3, 4, 8, 2, 3
MASK = [[True, True, True, False], [True, False, False, False], [False] * 4]


def _inputs(seed=0, num_user=P, num_context=C, batch=B):
    rng = np.random.default_rng(seed)
    f = lambda *s: tf.constant(rng.normal(size=s), tf.float32)
    mask = (MASK * batch)[:batch]
    return {"target": f(batch, D), "history": f(batch, T, D), "mask": tf.constant(mask),
            "user_fields": f(batch, num_user, D), "context_fields": f(batch, num_context, D)}


def _mian(**kw):
    return MIANInterest(D, **{"num_layers": 2, "num_heads": 2, "intermediate_size": 16,
                              "dropout": 0.0, "init_stddev": 0.5, **kw})


def _identity_attention(layer, width):
    """Sets q, k, v and output projections of an ItemFieldInteraction to identity, no bias."""
    eye, zero = np.eye(width), np.zeros(width)
    layer.query_dense.set_weights([eye, zero])
    layer.key_dense.set_weights([eye])
    layer.value_dense.set_weights([eye, zero])
    layer.output_dense.set_weights([eye, zero])


def _zero(layer):
    """All-zero weights turn a Pre-LN block into the identity (LN -> 0, sub-layers -> 0)."""
    for w in layer.weights:
        w.assign(tf.zeros_like(w))


def _ln(x, eps=1e-6):
    x = np.asarray(x, np.float64)
    return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps)


def _softmax(a):
    e = np.exp(a - np.max(a))
    return e / e.sum()


def test_field_attention_hand_computed():
    """Identity projections: alpha = softmax(e_c . e_n / sqrt(d)), out = sum alpha e_n."""
    fields = tf.constant([[[1.0, 0.0], [0.0, 1.0]]])
    one = ItemFieldInteraction(num_heads=1, dropout=0.0)
    # scores (sqrt(2) ln3 / sqrt(2), 0) = (ln 3, 0) -> alpha = (3/4, 1/4).
    x = {"target": tf.constant([[np.sqrt(2.0) * np.log(3.0), 0.0]]), "fields": fields}
    one(x)
    _identity_attention(one, 2)
    np.testing.assert_allclose(one.attention_weights(x).numpy(), [[[0.75, 0.25]]], rtol=1e-6)
    np.testing.assert_allclose(one(x).numpy(), [[0.75, 0.25]], rtol=1e-6)
    # Two heads of width 1: head 0 sees coordinate 0, head 1 coordinate 1.
    # head 0: scores (ln3, 0) -> (3/4, 1/4) -> 3/4 * 1; head 1: (0, ln3) -> 3/4 * 1.
    two = ItemFieldInteraction(num_heads=2, dropout=0.0)
    x = {"target": tf.constant([[np.log(3.0), np.log(3.0)]]), "fields": fields}
    two(x)
    _identity_attention(two, 2)
    np.testing.assert_allclose(two.attention_weights(x).numpy(),
                               [[[0.75, 0.25], [0.25, 0.75]]], rtol=1e-6)
    np.testing.assert_allclose(two(x).numpy(), [[0.75, 0.75]], rtol=1e-6)
    # A masked third field, however large, changes nothing.
    masked = {"target": x["target"], "fields": tf.constant([[[1.0, 0.0], [0.0, 1.0], [9, 9]]]),
              "mask": tf.constant([[True, True, False]])}
    np.testing.assert_allclose(two(masked).numpy(), [[0.75, 0.75]], rtol=1e-6)


def test_field_attention_empty_and_all_masked_rows_are_zero():
    layer = ItemFieldInteraction(num_heads=2, init_stddev=0.5)
    target = tf.random.normal([2, 4], seed=1)
    fields = tf.random.normal([2, 3, 4], seed=2)
    mask = tf.constant([[True, False, True], [False, False, False]])
    x = {"target": target, "fields": fields, "mask": mask}
    layer(x)
    kernel, _ = layer.output_dense.get_weights()
    layer.output_dense.set_weights([kernel, np.ones(4)])  # a trained, non-zero output bias
    out = layer(x).numpy()
    assert np.abs(out[0]).max() > 1e-4
    np.testing.assert_array_equal(out[1], np.zeros(4))
    empty = layer({"target": target, "fields": tf.zeros([2, 0, 4])})
    np.testing.assert_array_equal(empty.numpy(), np.zeros((2, 4)))


def test_behaviour_interaction_hand_computed():
    """Zeroed Pre-LN blocks are the identity, so IBIM = attention of e_c over LN(e_t)."""
    layer = ItemBehaviourInteraction(num_layers=2, num_heads=1, dropout=0.0, init_stddev=0.5)
    x = _inputs()
    x = {k: x[k] for k in ("target", "history", "mask")}
    layer(x)
    for block in layer.blocks:
        _zero(block)
    _identity_attention(layer.attention, D)
    out = layer(x).numpy()
    target, history = x["target"].numpy(), x["history"].numpy()
    for b in range(B):
        real = [t for t in range(T) if MASK[b][t]]
        if not real:
            np.testing.assert_array_equal(out[b], np.zeros(D))
            continue
        states = _ln(history[b, real])
        alpha = _softmax(states @ target[b] / np.sqrt(D))
        np.testing.assert_allclose(out[b], alpha @ states, rtol=1e-4, atol=1e-5)


def test_global_interaction_hand_computed():
    """Zeroed block: z = LN(tokens); alpha = softmax over valid of sum(tanh(z_k)) (W = I)."""
    layer = GlobalInteraction(num_heads=2, dropout=0.0, init_stddev=0.5)
    rng = np.random.default_rng(3)
    tokens = rng.normal(size=(2, 4, D))
    valid = np.array([[True, True, False, True], [True, False, False, False]])
    x = {"tokens": tf.constant(tokens, tf.float32), "valid": tf.constant(valid)}
    layer(x)
    _zero(layer.block)
    layer.score_hidden.set_weights([np.eye(D), np.zeros(D)])
    layer.score.set_weights([np.ones((D, 1))])
    out = layer(x).numpy().reshape(2, 4, D)
    weights = layer.global_weights(x).numpy()
    for b in range(2):
        z = _ln(tokens[b])
        alpha = np.zeros(4)
        alpha[valid[b]] = _softmax(np.tanh(z[valid[b]]).sum(-1))
        np.testing.assert_allclose(weights[b], alpha, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(out[b], alpha[:, None] * z, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(weights[1], [1, 0, 0, 0], atol=1e-6)


def test_mian_wiring_hand_computed():
    """Uniform GIM weights (scorer zeroed) and a zeroed block: slot k = LN(token_k) / #valid."""
    layer = _mian()
    x = _inputs()
    layer(x)
    _zero(layer.gim.block)
    _zero(layer.gim.score_hidden)
    out = layer(x).numpy().reshape(B, len(TOKENS), D)
    target, history = x["target"].numpy(), x["history"].numpy()
    mask = np.array(MASK, np.float64)[..., None]
    for b in range(B):
        has_history = mask[b].sum() > 0
        count = 5 + 2 * has_history  # target, user, context, iuim, icim (+ history, ibim)
        hist_mean = (history[b] * mask[b]).sum(0) / max(mask[b].sum(), 1)
        low = [target[b], hist_mean, x["user_fields"].numpy()[b].mean(0),
               x["context_fields"].numpy()[b].mean(0)]
        for k, token in enumerate(low):
            expected = np.zeros(D) if (k == 1 and not has_history) else _ln(token) / count
            np.testing.assert_allclose(out[b, k], expected, rtol=1e-4, atol=1e-5)
        ibim = layer.ibim({k: x[k][b:b + 1] for k in ("target", "history", "mask")}).numpy()[0]
        expected = _ln(ibim) / count if has_history else np.zeros(D)
        np.testing.assert_allclose(out[b, 4], expected, rtol=1e-4, atol=1e-5)
    assert np.abs(out[:, 5:]).max(axis=-1).min() > 1e-4  # IUIM and ICIM slots are filled


def test_padding_is_masked_and_real_inputs_are_not():
    layer = _mian()
    x = _inputs()
    out = layer(x).numpy()
    # Random, large changes of the padded behaviours (a constant shift would prove nothing:
    # every LayerNorm cancels it).
    noise = 10.0 * np.random.default_rng(6).normal(size=(B, T, D))
    history = x["history"].numpy() + noise * (1.0 - np.array(MASK, np.float32))[..., None]
    noisy = layer({**x, "history": tf.constant(history)}).numpy()
    np.testing.assert_allclose(noisy, out, atol=1e-5)
    history = x["history"].numpy().copy()
    # The one real behaviour of row 1 (not a constant shift: every LayerNorm would cancel it).
    history[1, 0] += np.random.default_rng(5).normal(size=D)
    moved = layer({**x, "history": tf.constant(history)}).numpy()
    assert np.abs(moved[1] - out[1]).max() > 1e-4
    np.testing.assert_allclose(moved[[0, 2]], out[[0, 2]], atol=1e-6)
    target = x["target"].numpy().copy()
    target[2] += 1.0
    assert np.abs(layer({**x, "target": tf.constant(target)}).numpy()[2] - out[2]).max() > 1e-4


@pytest.mark.parametrize("num_user,num_context", [(0, C), (P, 0), (0, 0)])
def test_no_profile_or_no_context_features(num_user, num_context):
    layer = _mian()
    x = _inputs(num_user=num_user, num_context=num_context)
    out = layer(x).numpy()
    assert out.shape == (B, layer.width) and layer.width == layer.output_dim == 7 * D
    assert np.isfinite(out).all()
    slots = out.reshape(B, len(TOKENS), D)
    for k, present in ((2, num_user), (5, num_user), (3, num_context), (6, num_context)):
        assert (np.abs(slots[:, k]).max() > 0) == bool(present), TOKENS[k]
    # Leaving the key out is the same as zero fields.
    absent = {k: v for k, v in x.items()
              if not (k == "user_fields" and not num_user)
              and not (k == "context_fields" and not num_context)}
    np.testing.assert_allclose(layer(absent).numpy(), out, atol=1e-6)


def test_gradients_reach_every_weight():
    layer = _mian()
    x = _inputs()
    probe = tf.random.normal([B, layer.width], seed=4)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x, training=True) * probe)
    grads = tape.gradient(loss, layer.trainable_weights)
    assert len(grads) > 40
    for w, g in zip(layer.trainable_weights, grads):
        # Softmax is shift-invariant, so the key bias of a self-attention gets no gradient.
        if "self_attention/key/bias" in w.name:
            continue
        assert g is not None and np.abs(tf.convert_to_tensor(g).numpy()).max() > 0, w.name


def _config_round_trip(layer, inputs):
    """``from_config(get_config())`` with the same weights gives the same outputs."""
    expected = layer(inputs).numpy()
    clone = layer.__class__.from_config(layer.get_config())
    clone(inputs)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(clone(inputs).numpy(), expected, rtol=1e-5, atol=1e-6)
    assert clone.get_config() == layer.get_config()


def test_round_trip(tmp_path):
    assert_round_trip(_mian(), _inputs(), tmp_path)  # config, weights and a SavedModel
    x = _inputs()
    _config_round_trip(ItemBehaviourInteraction(1, 2, 16, dropout=0.0, init_stddev=0.5),
                       {k: x[k] for k in ("target", "history", "mask")})
    _config_round_trip(ItemFieldInteraction(2, dropout=0.0, init_stddev=0.5),
                       {"target": x["target"], "fields": x["user_fields"]})
    _config_round_trip(GlobalInteraction(2, 16, dropout=0.0, init_stddev=0.5),
                       {"tokens": x["context_fields"], "valid": tf.constant([[True] * C] * B)})


def test_saved_model_with_unknown_batch(tmp_path):
    layer = _mian()
    x = _inputs()
    layer(x)
    spec = {k: tf.TensorSpec([None, *v.shape[1:]], v.dtype) for k, v in x.items()}
    module = tf.Module()
    module.layer = layer
    module.serve = tf.function(lambda inputs: layer(inputs), input_signature=[spec])
    tf.saved_model.save(module, str(tmp_path / "saved"))
    loaded = tf.saved_model.load(str(tmp_path / "saved"))
    for batch in (1, 5):
        x = _inputs(seed=batch, batch=batch)
        np.testing.assert_allclose(loaded.serve(x).numpy(), layer(x).numpy(), rtol=1e-5,
                                   atol=1e-6)


def test_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        layer = _mian(init_stddev=0.1)
        out = layer(_inputs())
        assert out.dtype == tf.float16 and np.isfinite(out.numpy()).all()
        weights = layer.gim.global_weights({"tokens": tf.zeros([1, 7, D], tf.float16)})
        assert weights.dtype == tf.float32
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_heads"):
        MIANInterest(6, num_heads=4)
    with pytest.raises(ValueError, match="num_layers"):
        MIANInterest(8, num_layers=0)
    with pytest.raises(ValueError, match="dropout"):
        ItemFieldInteraction(dropout=1.0)
    with pytest.raises(ValueError, match="intermediate_size"):
        GlobalInteraction(intermediate_size=0)
    with pytest.raises(ValueError, match="dim"):
        _mian()({**_inputs(), "user_fields": tf.zeros([B, P, D + 2])})
    with pytest.raises(ValueError, match="lack"):
        _mian()({"target": tf.zeros([B, D]), "history": tf.zeros([B, T, D])})
    with pytest.raises(ValueError, match="divisible"):
        ItemFieldInteraction(num_heads=3)({"target": tf.zeros([1, 4]),
                                           "fields": tf.zeros([1, 2, 4])})
