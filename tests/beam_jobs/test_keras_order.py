"""The Beam jobs import in an order that keeps tf.keras on Keras 2, and ppm's warning is exact.

``apache_beam.ml.inference.tensorflow_inference`` imports ``tensorflow_hub``, which reads
``tf.keras.version`` at import: before ``ppm`` set ``TF_USE_LEGACY_KERAS`` that resolved
``tf.keras`` to Keras 3 and ``import ppm`` warned, rightly, in ``beam_jobs.embed_items``.
"""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WARNING = "tf.keras was already resolved"


def _run(code: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=300, cwd=REPO)


@pytest.mark.parametrize("module", [
    "beam_jobs.embed_items",
    pytest.param("beam_jobs.build_examples", marks=pytest.mark.slow)])  # imports no TF Hub
def test_importing_a_beam_job_gives_no_keras_warning_and_keras2(module):
    proc = _run(f"import {module}\nimport tensorflow as tf\nimport tf_keras\n"
                "assert tf.keras.layers.Dense is tf_keras.layers.Dense, tf.keras\nprint('OK')")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert WARNING not in proc.stderr, proc.stderr[-3000:]


def test_tf_keras_truly_resolved_to_keras3_first_still_warns():
    proc = _run("import tensorflow_hub\nimport ppm")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"{WARNING} to keras._tf_keras.keras" in proc.stderr


@pytest.mark.slow  # a fresh TensorFlow import per case: ~40 s each on CI
def test_unresolved_or_keras2_tf_keras_is_quiet():
    proc = _run("import tensorflow as tf\nimport ppm\ntf.keras.layers\nimport ppm.layers")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert WARNING not in proc.stderr
