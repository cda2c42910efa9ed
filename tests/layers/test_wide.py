import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import ppm  # noqa: F401
from ppm.layers.wide import SEPARATOR, HashedLinear, cross_strings
from tests.layers.helpers import assert_round_trip

# FarmHash64 buckets with 10 bins (pinned: the hash must stay stable across runs and versions).
BUCKETS = {"a": 9, "b": 2, "x": 0, "y": 5, "": 3}


def _s(values):
    return tf.constant(values, tf.string)


def test_hash_buckets_are_stable():
    keys = list(BUCKETS)
    got = tf.strings.to_hash_bucket_fast(_s(keys), 10).numpy()
    assert dict(zip(keys, got.tolist())) == BUCKETS


def test_cross_strings_broadcasts_and_propagates_padding():
    cate = _s(["a", "b", ""])
    hist = _s([["x", "y", ""], ["", "", ""], ["x", "x", "y"]])
    s = SEPARATOR
    expected = [[f"a{s}x", f"a{s}y", ""], ["", "", ""], ["", "", ""]]
    assert cross_strings(cate, hist).numpy().astype(str).tolist() == expected
    flipped = [[f"x{s}a", f"y{s}a", ""], ["", "", ""], ["", "", ""]]
    assert cross_strings(hist, cate).numpy().astype(str).tolist() == flipped
    assert cross_strings(cate, _s(["u", "", "v"])).numpy().astype(str).tolist() == [
        f"a{s}u", "", ""]
    assert cross_strings(_s("k"), cate, separator="|").numpy().astype(str).tolist() == [
        "k|a", "k|b", ""]
    # Three-way cross by chaining; padding still propagates.
    three = cross_strings(cross_strings(cate, _s(["u", "v", "w"])), _s(["p", "", "q"]))
    assert three.numpy().astype(str).tolist() == [f"a{s}u{s}p", "", ""]


def test_cross_strings_in_graph_with_unknown_shapes():
    fn = tf.function(cross_strings, input_signature=[tf.TensorSpec([None], tf.string),
                                                     tf.TensorSpec([None, None], tf.string)])
    out = fn(_s(["a", ""]), _s([["x", ""], ["y", "z"]]))
    assert out.numpy().astype(str).tolist() == [[f"a{SEPARATOR}x", ""], ["", ""]]


def test_cross_strings_rejects_non_strings():
    with pytest.raises(ValueError, match="string"):
        cross_strings(tf.constant([1, 2]), _s(["a", "b"]))


def _set_tables(layer, values, bias):
    layer.set_weights([np.asarray(v, np.float32) for v in values] + [np.asarray(bias)])


def test_hand_computed_sum_with_padding():
    """Tables with known rows; "" has a non-zero row, so only masking keeps it out."""
    layer = HashedLinear(["cate", "hist"], num_bins=10)
    inputs = {"cate": _s(["a", "b", ""]),
              "hist": _s([["x", "y", ""], ["", "", ""], ["x", "x", "y"]])}
    layer(inputs)
    cate_table = np.arange(1.0, 11.0)[:, None]  # row k = k + 1: a -> 10, b -> 3, "" -> 4
    hist_table = 100.0 * cate_table  # x -> 100, y -> 600, "" -> 400
    _set_tables(layer, [cate_table, hist_table], [0.5])
    assert [w.name.split("/")[-1] for w in layer.weights] == [
        "cate_table:0", "hist_table:0", "bias:0"]
    out = layer(inputs).numpy()
    # Row 0: a + x + y + b = 10 + 100 + 600 + 0.5; row 1: b only; row 2: x + x + y.
    np.testing.assert_allclose(out, [[710.5], [3.5], [800.5]])
    # More padding changes nothing; one more real value does.
    padded = {"cate": inputs["cate"], "hist": tf.concat([inputs["hist"], _s([[""]] * 3)], 1)}
    np.testing.assert_array_equal(layer(padded).numpy(), out)
    extra = {"cate": inputs["cate"], "hist": tf.concat([inputs["hist"], _s([["y"]] * 3)], 1)}
    np.testing.assert_allclose(layer(extra).numpy(), out + 600.0)


def test_hand_computed_crosses_with_one_bin():
    """num_bins=1: every real string hits row 0, so y = (#real strings) * w + b."""
    cate = _s(["a", "b", ""])
    hist = _s([["x", "y", ""], ["", "", ""], ["x", "x", "y"]])
    layer = HashedLinear(["cate", "cate_x_hist"], num_bins=1, units=2)
    inputs = {"cate": cate, "cate_x_hist": cross_strings(cate, hist)}
    layer(inputs)
    _set_tables(layer, [[[1.0, 0.0]], [[10.0, -2.0]]], [0.25, 0.0])
    # Crosses: row 0 has 2 real (a|x, a|y), rows 1 and 2 none (padding / missing cate).
    np.testing.assert_allclose(layer(inputs).numpy(),
                               [[1 + 20 + 0.25, -4.0], [1.25, 0.0], [0.25, 0.0]])


def test_trains_and_padding_gets_no_gradient():
    layer = HashedLinear(["cate", "hist"], num_bins=10, init_stddev=0.5)
    inputs = {"cate": _s(["a", "b"]), "hist": _s([["x", ""], ["", ""]])}
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(inputs))
    grads = tape.gradient(loss, layer.trainable_weights)
    assert len(grads) == 3
    tables = [w.numpy() for w in layer.trainable_weights[:2]]
    assert np.abs(tables[0] - tables[1]).max() > 1e-3  # tables are initialised independently
    assert 0.2 < np.std(np.concatenate(tables)) < 1.0  # N(0, init_stddev = 0.5)
    for w, g in zip(layer.trainable_weights, grads):
        assert g is not None and np.abs(tf.convert_to_tensor(g).numpy()).max() > 0, w.name
    hist_grad = tf.convert_to_tensor(grads[1]).numpy()[:, 0]
    assert hist_grad[BUCKETS["x"]] == 1.0 and hist_grad[BUCKETS[""]] == 0.0


def test_mixed_precision():
    layer = HashedLinear(["cate"], num_bins=10, dtype=keras.mixed_precision.Policy(
        "mixed_float16"))
    inputs = {"cate": _s(["a", ""])}
    layer(inputs)
    _set_tables(layer, [np.arange(1.0, 11.0)[:, None]], [0.5])
    out = layer(inputs)
    assert out.dtype == tf.float32
    np.testing.assert_allclose(out.numpy(), [[10.5], [0.5]])


def test_round_trip(tmp_path):
    cate = _s(["a", "b", ""])
    hist = _s([["x", "y", ""], ["", "", ""], ["x", "x", "y"]])
    layer = HashedLinear(["cate", "hist", "cate_x_hist"], num_bins=7, units=3, init_stddev=0.5)
    inputs = {"hist": hist, "cate": cate, "cate_x_hist": cross_strings(cate, hist)}
    assert_round_trip(layer, inputs, tmp_path)
    assert layer(inputs).shape == (3, 3)
    config = layer.get_config()
    assert config["feature_names"] == ["cate", "hist", "cate_x_hist"]
    assert (config["num_bins"], config["units"], config["init_stddev"]) == (7, 3, 0.5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unique"):
        HashedLinear(["a", "a"], num_bins=4)
    with pytest.raises(ValueError, match="unique"):
        HashedLinear([], num_bins=4)
    with pytest.raises(ValueError, match="sequence"):
        HashedLinear("cate", num_bins=4)
    with pytest.raises(ValueError, match="must match"):
        HashedLinear(["bad name"], num_bins=4)
    with pytest.raises(ValueError, match="num_bins"):
        HashedLinear(["a"], num_bins=0)
    with pytest.raises(ValueError, match="num_bins and units"):
        HashedLinear(["a"], num_bins=4, units=0)
    layer = HashedLinear(["a", "b"], num_bins=4)
    with pytest.raises(ValueError, match=r"missing \['b'\], unexpected \['c'\]"):
        layer({"a": _s(["x"]), "c": _s(["y"])})
    with pytest.raises(ValueError, match="dict"):
        HashedLinear(["a"], num_bins=4)([_s(["x"])])
    layer({"a": _s(["x"]), "b": _s(["y"])})  # built
    with pytest.raises(ValueError, match="missing"):
        layer({"a": _s(["x"])})
    with pytest.raises(ValueError, match="string"):
        layer({"a": tf.constant([1]), "b": _s(["y"])})
    with pytest.raises(ValueError, match=r"\[B\] or \[B, T\]"):
        layer({"a": _s([[["x"]]]), "b": _s(["y"])})
