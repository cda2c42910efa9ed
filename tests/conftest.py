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
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The user's working folders: no test may read or write them.
WORKING_FOLDERS = ("runs", "saved_models", "data", "benchmarks/results")
DECOY_TASK = "decoy-label-from-the-working-folder"


def _snapshot(root: str) -> dict:
    """``{path: (size, mtime)}`` of every file under the working folders of ``root``."""
    out = {}
    for folder in WORKING_FOLDERS:
        for dirpath, _, files in os.walk(os.path.join(root, folder)):
            for name in files:
                path = os.path.join(dirpath, name)
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                out[path] = (st.st_size, st.st_mtime_ns)
    return out


def write_decoy_demo(root: str) -> None:
    """A demo-like folder whose every file is wrong for any test: a test that reads it through
    a relative default (``runs/demo/...``, ``saved_models/...``) fails instead of passing on a
    clean clone and failing after ``make demo``."""
    import json

    demo = os.path.join(root, "runs", "demo")
    for sub in ("dataset", "examples", "embeddings", "train"):
        os.makedirs(os.path.join(demo, sub), exist_ok=True)
    with open(os.path.join(demo, "examples", "stats.json"), "w") as f:
        json.dump({"dataset_tasks": [DECOY_TASK], "windows": {}}, f)
    with open(os.path.join(demo, "dataset", "dataset.json"), "w") as f:
        json.dump({"name": "decoy", "tasks": [DECOY_TASK]}, f)
    for path in ("examples/schema.json", "embeddings/manifest.json"):
        with open(os.path.join(demo, path), "w") as f:
            f.write("{not json: this is a decoy working folder")
    version = os.path.join(root, "saved_models", "urm", "1")
    os.makedirs(version, exist_ok=True)
    with open(os.path.join(version, "saved_model.pb"), "wb") as f:
        f.write(b"decoy")


@pytest.fixture(scope="session", autouse=True)
def isolated_from_working_folders(tmp_path_factory):
    """Every test runs in a scratch working directory that holds a decoy demo folder, and the
    repository's own working folders (``runs/``, ``saved_models/``, ...) must be unchanged at
    the end of the session: tests use their own temporary folders only."""
    before = _snapshot(REPO)
    scratch = str(tmp_path_factory.mktemp("working_directory"))
    write_decoy_demo(scratch)
    cwd = os.getcwd()
    os.chdir(scratch)
    try:
        yield scratch
    finally:
        os.chdir(cwd)
    changed = sorted(set(before.items()) ^ set(_snapshot(REPO).items()))
    assert not changed, f"tests changed the repository's working folders: {changed[:10]}"


@pytest.fixture(autouse=True)
def seeded():
    """Python, NumPy and TensorFlow start every test from seed 0: a test's unseeded weights are
    the same on every run and under any xdist split, so a test cannot pass or fail by the
    draw of an initializer (each test still says which seeds its own claims need)."""
    import tf_keras

    tf_keras.utils.set_random_seed(0)


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


def write_fake_cache(dataset: str, out: str, dim: int = CACHE_DIM, seed: int = 0,
                     drop: int = 0, modalities=("text", "image")) -> str:
    """An embedding cache of every item of ``dataset`` with random vectors (no encoder).

    Items whose index is divisible by 7 have no title, by 11 no image (zero vectors, flag 0),
    as ``beam_jobs.embed_items`` writes them. ``drop``: leave out the first ``drop`` items (a
    cache that lacks part of the catalogue, its manifest consistent with what it holds).
    ``modalities``: those the cache holds (``("text",)``: a text-only cache).
    """
    import numpy as np

    from ppm.data import cache, canonical

    items = canonical.read_parquet(os.path.join(dataset, "items.parquet"),
                                   columns=["item_id"])
    ids = items["item_id"].to_pylist()[drop:]
    rng = np.random.default_rng(seed)
    os.makedirs(out, exist_ok=True)
    with tf.io.TFRecordWriter(os.path.join(out, "part-00000-of-00001.tfrecord")) as w:
        for i, item_id in enumerate(ids):
            has_title, has_image = i % 7 != 0, i % 11 != 0
            title = rng.normal(size=dim) * has_title
            image = rng.normal(size=dim) * has_image
            w.write(cache.make_example(item_id, title, image, has_title, has_image,
                                       modalities).SerializeToString())
    manifest = {"format": cache.FORMAT, "format_version": cache.FORMAT_VERSION, "dim": dim,
                "counts": {"items": len(ids)}, "modalities": list(modalities),
                **{f"{m}_encoder": {"fingerprint": f"fake-{m}-{seed}"} for m in modalities}}
    canonical.write_json(os.path.join(out, cache.MANIFEST_FILE), manifest)
    return out


@pytest.fixture(scope="session")
def tiny_cache(tiny_world, tmp_path_factory):
    """A fake embedding cache (dim 4) of every item of :func:`tiny_world`."""
    return write_fake_cache(tiny_world, str(tmp_path_factory.mktemp("tiny_cache")))


@pytest.fixture(scope="session")
def tiny_ppm_run(tiny_world, tiny_examples, tiny_cache, tmp_path_factory):
    """A ``ppm_pretrain`` run of the tiny world (read-only: every plug-in test loads it);
    returns (run folder, training summary)."""
    from ppm import train
    from tests.ranking_fixtures import tiny_config

    run = str(tmp_path_factory.mktemp("ppm"))
    summary = train.train(tiny_config("ppm_pretrain", tiny_world, tiny_examples, tiny_cache),
                          run, verbose=0)
    return run, summary


@pytest.fixture(scope="session")
def tiny_urm_run(tiny_world, tiny_examples, tiny_cache, tiny_ppm_run, tmp_path_factory):
    """A URM (with a pre-trained PPM) trained a few steps on the tiny world: its run folder."""
    from ppm import train
    from tests.ranking_fixtures import tiny_config

    ppm_dir = tiny_ppm_run[0]
    run = str(tmp_path_factory.mktemp("urm"))
    train.train(tiny_config("urm", tiny_world, tiny_examples, tiny_cache,
                            model={"plugin": {"checkpoint": ppm_dir}}), run, verbose=0)
    return run
