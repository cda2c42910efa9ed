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


def test_topk_labels_at_the_boundaries():
    """GRACE Eq. 6 with 0-based ranks: rank k - 1 is in the top k, rank k is not; unknown
    ranks (negative) never are."""
    rank = tf.constant([0, 9, 10, 29, 30, 99, 100, -1, -5], tf.int64)
    got = losses.topk_labels(rank, (10, 30, 100)).numpy()
    np.testing.assert_array_equal(got, [[1, 1, 1], [1, 1, 1], [0, 1, 1], [0, 1, 1],
                                        [0, 0, 1], [0, 0, 1], [0, 0, 0], [0, 0, 0],
                                        [0, 0, 0]])
    with pytest.raises(ValueError, match="positive"):
        losses.topk_labels(rank, (0,))


def test_alignment_info_nce_by_hand():
    """GRACE Eq. 10 on 3 items, the last without a pre-trained embedding (not in P)."""
    phi = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    psi = np.array([[1.0, 1.0], [0.0, 1.0], [9.0, 9.0]])  # row 2: garbage, not in P
    in_p = np.array([True, True, False])
    tau = 0.5
    n_phi = phi / np.linalg.norm(phi, axis=1, keepdims=True)
    n_psi = psi / np.linalg.norm(psi, axis=1, keepdims=True)
    got = losses.alignment_info_nce(phi, psi, in_p, temperature=tau).numpy()
    expected = []
    for i in range(2):  # InfoNCE over the pre-trained embeddings of P
        logits = n_phi[i] @ n_psi[:2].T / tau
        expected.append(-logits[i] + np.log(np.exp(logits).sum()))
    np.testing.assert_allclose(got, expected + [0.0], rtol=1e-5)
    assert (got[:2] > 0).all()
    # As printed: the denominator over phi(x_j) of the whole batch.
    got = losses.alignment_info_nce(phi, psi, in_p, temperature=tau, negatives="items").numpy()
    expected = [-(n_phi[i] @ n_psi[i]) / tau + np.log(np.exp(n_phi[i] @ n_phi.T / tau).sum())
                for i in range(2)]
    np.testing.assert_allclose(got, expected + [0.0], rtol=1e-5)
    # Only the items of P pull: moving psi of the item outside P changes nothing.
    moved = losses.alignment_info_nce(phi, psi * [[1], [1], [-3]], in_p, temperature=tau)
    np.testing.assert_allclose(moved.numpy(), losses.alignment_info_nce(
        phi, psi, in_p, temperature=tau).numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="negatives"):
        losses.alignment_info_nce(phi, psi, in_p, negatives="nope")
