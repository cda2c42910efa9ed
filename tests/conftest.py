"""Shared fixtures: 2 logical CPU devices for MirroredStrategy, a tiny world and its examples.

The logical devices must be configured before TensorFlow initialises its runtime, so this
happens at import time, before any test module touches TensorFlow.
"""

import os

import pytest
import tensorflow as tf

import ppm  # noqa: F401  (selects Keras 2 before TensorFlow loads)

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)

TINY_SEED = 7


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """A `tiny` synthetic dataset (read-only: copy it before corrupting it)."""
    from ppm.data import synthetic

    path = str(tmp_path_factory.mktemp("tiny_world"))
    synthetic.generate(path, "tiny", TINY_SEED)
    return path


@pytest.fixture(scope="session")
def tiny_examples(tiny_world, tmp_path_factory):
    """Examples built by the Beam job from :func:`tiny_world`; returns (out_dir, stats)."""
    from beam_jobs import build_examples

    out = str(tmp_path_factory.mktemp("tiny_examples"))
    stats = build_examples.run(["--dataset", tiny_world, "--out", out, "--num_shards", "3",
                                "--max_history", "12"])
    return out, stats


def copy_dataset(src: str, dst: str) -> str:
    """Copies a dataset folder so that a test can corrupt it."""
    import shutil

    shutil.copytree(src, dst, dirs_exist_ok=True)
    return os.fspath(dst)
