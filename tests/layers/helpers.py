"""Round-trip checks shared by the layer tests (cf. keras_hub's ``run_layer_test``)."""

import numpy as np
import tensorflow as tf
import tf_keras as keras


def _flat(x):
    return [np.asarray(v) for v in tf.nest.flatten(x)]


def assert_round_trip(layer, inputs, tmp_path, call=None):
    """``from_config(get_config())`` with the same weights, and a SavedModel, match the layer."""
    call = call or (lambda lyr, x: lyr(x))
    expected = call(layer, inputs)
    clone = layer.__class__.from_config(layer.get_config())
    call(clone, inputs)  # build
    clone.set_weights(layer.get_weights())
    for a, b in zip(_flat(expected), _flat(call(clone, inputs))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

    module = tf.Module()
    module.layer = layer
    spec = tf.nest.map_structure(lambda t: tf.TensorSpec(t.shape, t.dtype),
                                 tf.nest.map_structure(tf.convert_to_tensor, inputs))
    module.serve = tf.function(lambda x: call(layer, x), input_signature=[spec])
    path = str(tmp_path / "saved")
    tf.saved_model.save(module, path)
    loaded = tf.saved_model.load(path)
    for a, b in zip(_flat(expected), _flat(loaded.serve(inputs))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert keras.utils.get_registered_name(layer.__class__).startswith("ppm>")
