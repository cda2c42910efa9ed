"""ppm selects Keras 2 for ranking code while keras-hub keeps Keras 3 (docs/architecture.md)."""

import os
import subprocess
import sys

import pytest

_CHECK = """
import ppm
import tensorflow_recommenders as tfrs
import tensorflow as tf
import tf_keras
assert os.environ["TF_USE_LEGACY_KERAS"] == "1"
assert tf.keras.layers.Dense is tf_keras.layers.Dense, tf.keras.layers.Dense
assert issubclass(tfrs.Model, tf_keras.Model)
import keras
import keras_hub
assert keras.__version__.startswith("3."), keras.__version__
assert issubclass(keras_hub.models.BertBackbone, keras.Model)
assert not issubclass(keras_hub.models.BertBackbone, tf_keras.Model)
print("OK")
"""


def _run(code, env_extra=None):
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-c", "import os\n" + code], env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("env", [{}, {"TF_USE_LEGACY_KERAS": "1"}])
def test_ppm_then_tfrs_uses_keras2_and_keras_hub_keeps_keras3(env):
    proc = _run(_CHECK, env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("OK")


def test_explicitly_disabled_legacy_keras_is_a_clear_error():
    proc = _run("import ppm", {"TF_USE_LEGACY_KERAS": "0"})
    assert proc.returncode != 0
    assert "ranking models of ppm need Keras 2" in proc.stderr


def test_importing_tensorflow_first_is_fine_but_resolved_keras3_warns():
    quiet = _run("import tensorflow as tf\nimport ppm\n"
                 "assert tf.keras.layers.Dense.__module__.startswith('tf_keras')")
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert "already resolved" not in quiet.stderr
    loud = _run("import tensorflow as tf\ntf.keras.layers\nimport ppm")
    assert "tf.keras was already resolved to keras" in loud.stderr
