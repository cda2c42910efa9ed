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


CACHE_DIM = 4


def write_fake_cache(dataset: str, out: str, dim: int = CACHE_DIM, seed: int = 0) -> str:
    """An embedding cache of every item of ``dataset`` with random vectors (no encoder).

    Items whose index is divisible by 7 have no title, by 11 no image (zero vectors, flag 0),
    as ``beam_jobs.embed_items`` writes them.
    """
    import numpy as np

    from ppm.data import cache, canonical

    items = canonical.read_parquet(os.path.join(dataset, "items.parquet"),
                                   columns=["item_id"])
    ids = items["item_id"].to_pylist()
    rng = np.random.default_rng(seed)
    os.makedirs(out, exist_ok=True)
    with tf.io.TFRecordWriter(os.path.join(out, "part-00000-of-00001.tfrecord")) as w:
        for i, item_id in enumerate(ids):
            has_title, has_image = i % 7 != 0, i % 11 != 0
            title = rng.normal(size=dim) * has_title
            image = rng.normal(size=dim) * has_image
            w.write(cache.make_example(item_id, title, image, has_title,
                                       has_image).SerializeToString())
    manifest = {"format": cache.FORMAT, "format_version": cache.FORMAT_VERSION, "dim": dim,
                "counts": {"items": len(ids)},
                "text_encoder": {"fingerprint": f"fake-text-{seed}"},
                "image_encoder": {"fingerprint": f"fake-image-{seed}"}}
    canonical.write_json(os.path.join(out, cache.MANIFEST_FILE), manifest)
    return out


@pytest.fixture(scope="session")
def tiny_cache(tiny_world, tmp_path_factory):
    """A fake embedding cache (dim 4) of every item of :func:`tiny_world`."""
    return write_fake_cache(tiny_world, str(tmp_path_factory.mktemp("tiny_cache")))


@pytest.fixture(scope="session")
def tiny_urm_run(tiny_world, tiny_examples, tiny_cache, tmp_path_factory):
    """A URM (with a pre-trained PPM) trained a few steps on the tiny world: its run folder."""
    from ppm import train
    from tests.ranking_fixtures import tiny_config

    ppm_dir = str(tmp_path_factory.mktemp("ppm"))
    train.train(tiny_config("ppm_pretrain", tiny_world, tiny_examples, tiny_cache), ppm_dir,
                verbose=0)
    run = str(tmp_path_factory.mktemp("urm"))
    train.train(tiny_config("urm", tiny_world, tiny_examples, tiny_cache,
                            model={"ppm_checkpoint": ppm_dir}), run, verbose=0)
    return run
