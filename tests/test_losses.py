"""ppm.losses: hand-computed values, and no Keras import."""

import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from ppm import losses


def test_binary_cross_entropy_by_hand():
    labels, logits = np.array([1.0, 0.0, 1.0]), np.array([0.0, 2.0, -1.0])
    p = 1 / (1 + np.exp(-logits))
    expected = -(labels * np.log(p) + (1 - labels) * np.log(1 - p))
    np.testing.assert_allclose(losses.binary_cross_entropy(labels, logits).numpy(), expected,
                               rtol=1e-6)
    got = losses.binary_cross_entropy(labels, tf.constant(logits, tf.float16), [1.0, 2.0, 0.0])
    assert got.dtype == tf.float32
    np.testing.assert_allclose(got.numpy(), expected * [1, 2, 0], rtol=1e-3)
    np.testing.assert_allclose(
        losses.summed_binary_cross_entropy(labels, logits, global_batch_size=6).numpy(),
        expected.sum() / 6, rtol=1e-6)


def test_info_nce_by_hand():
    q = np.array([[1.0, 0.0], [0.0, 1.0]])
    k = np.array([[1.0, 0.0], [1.0, 1.0]])
    sims = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (
        k / np.linalg.norm(k, axis=1, keepdims=True)).T / 0.5
    expected = -np.log(np.exp(np.diag(sims)) / np.exp(sims).sum(axis=1))
    np.testing.assert_allclose(losses.info_nce(q, k, temperature=0.5).numpy(), expected,
                               rtol=1e-6)
    with pytest.raises(ValueError, match="temperature"):
        losses.info_nce(q, k, temperature=0.0)
    with pytest.raises(ValueError, match="unknown loss"):
        losses.get("hinge")


def test_the_losses_depend_on_tensorflow_only_and_serve_keras_3_code():
    import ast

    tree = ast.parse(open(losses.__file__).read())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported == {"__future__", "tensorflow"}
    # The encoders' world: Keras 3 tensors in, no ranking (Keras 2) module pulled in.
    code = ("import sys, keras; from ppm import losses; "
            "x = keras.ops.convert_to_tensor([[1.0, 0.0], [0.0, 1.0]]); "
            "v = float(losses.info_nce(x, x, temperature=1.0)[0]); "
            "bad = [m for m in sys.modules if m.startswith('ppm.models')]; "
            "sys.exit(1 if bad or not 0 < v < 1 else 0)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr[-2000:]
