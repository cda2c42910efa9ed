"""A newer version of a run's embedding cache serves new items' vectors without retraining
(Taobao multimodal paper, arXiv:2407.19467, §5): the same checkpoint, re-exported with the new
table, scores the items the run knew exactly as before and the new items with their vectors."""

import os

import numpy as np
import pytest
import tensorflow as tf

import ppm  # noqa: F401
from ppm import evaluate, export, train
from ppm.data import cache as cache_lib
from ppm.data import canonical
from tests.conftest import write_fake_cache
from tests.ranking_fixtures import one_batch, tiny_config

LATE = 40  # items that reach the catalogue after training


def _write(path, c, keep, version, parent=None):
    os.makedirs(path, exist_ok=True)
    with tf.io.TFRecordWriter(os.path.join(path, "part-00000-of-00001.tfrecord")) as w:
        for k in np.flatnonzero(keep):
            w.write(cache_lib.make_example(str(c.ids[k]), c.title[k], c.image[k],
                                           c.has_title[k], c.has_image[k]).SerializeToString())
    manifest = {**c.manifest, "counts": {"items": int(keep.sum())}, "version": version,
                "parent": parent}
    canonical.write_json(os.path.join(path, cache_lib.MANIFEST_FILE), manifest)
    return str(path)


@pytest.fixture(scope="module")
def versions(tiny_cache, tmp_path_factory):
    """v1: the tiny cache without its last LATE items; v2: all of them, same vectors."""
    c = cache_lib.load_cache(tiny_cache)
    root = tmp_path_factory.mktemp("versions")
    keep = np.arange(len(c.ids)) < len(c.ids) - LATE
    v1 = _write(root / "v1", c, keep, 1)
    v2 = _write(root / "v2", c, np.ones_like(keep), 2, {"path": v1, "version": 1})
    return v1, v2, set(c.ids[~keep].tolist())


@pytest.fixture(scope="module")
def run(versions, tiny_world, tiny_examples, tmp_path_factory):
    """din_vector trained 2 steps on cache v1."""
    c = tiny_config("din_vector", tiny_world, tiny_examples, versions[0],
                    trainer={"train_steps": 2, "checkpoint_interval": 2},
                    # wide initial weights: inputs move the scores well above float noise
                    model={"init_stddev": 0.3},
                    # the late items are not in the catalogue of the training days
                    data={"max_missing_cache_fraction": 0.2})
    path = str(tmp_path_factory.mktemp("run"))
    train.train(c, path, verbose=0)
    return path


def test_a_new_cache_version_serves_new_items_without_retraining(
        versions, run, tiny_examples, tmp_path):
    _, v2, late = versions
    before, _, _ = evaluate.load_model(run)
    after, inputs, config = evaluate.load_model(run, embeddings=v2)
    assert config.data.embeddings == v2 and len(inputs.cache) == len(before_ids(before)) + LATE
    (feats, _), _ = one_batch(tiny_examples, 256, "test")
    ids = feats["hist_item_id"].numpy().astype(str)
    real = np.arange(ids.shape[1])[None] < feats["hist_len"].numpy()[:, None]
    touches = np.array([t.decode() in late or bool(set(h[m]) & late) for t, h, m in zip(
        feats["item_id"].numpy(), ids, real)])
    assert touches.any() and (~touches).any()
    p_before, p_after = (m.probabilities(feats)["click"].numpy() for m in (before, after))
    # The items the run knew: the same vectors, the same weights, the same scores.
    np.testing.assert_allclose(p_after[~touches], p_before[~touches], rtol=1e-6, atol=1e-7)
    # New items: their real vectors instead of the unknown row.
    assert np.abs(p_after[touches] - p_before[touches]).max() > 1e-3
    # Exported and loaded as TF Serving would: the new table is inside the SavedModel.
    version = export.export(run, "din_vector", str(tmp_path / "saved"), embeddings=v2)
    served = tf.saved_model.load(version).signatures["serving_default"]
    wanted = export.input_signature(export.serving_schema(after, inputs.schema))
    got = served(**{k: feats[k] for k in wanted})["p_click"].numpy()
    np.testing.assert_allclose(got, p_after, rtol=1e-5, atol=1e-6)
    info = export.read_info(version)
    assert info["cache_version"] == 2 and info["embeddings"] == v2


def before_ids(model):
    from ppm.layers import CachedItemEmbedding

    (layer,) = [m for m in model._flatten_modules() if isinstance(m, CachedItemEmbedding)]  # noqa: SLF001
    return layer.item_ids


def test_a_cache_of_other_encoders_is_refused(versions, tiny_world, tiny_examples, tmp_path):
    v1, _, _ = versions
    c = tiny_config("din_vector", tiny_world, tiny_examples, v1,
                    trainer={"train_steps": 2, "checkpoint_interval": 2},
                    # the late items are not in the catalogue of the training days
                    data={"max_missing_cache_fraction": 0.2})
    run = str(tmp_path / "run")
    train.train(c, run, verbose=0)
    other = write_fake_cache(tiny_world, str(tmp_path / "other"), seed=1)
    with pytest.raises(cache_lib.CacheMismatchError, match="fingerprint"):
        evaluate.load_model(run, embeddings=other)
