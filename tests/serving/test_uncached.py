"""ppm.serving.uncached: encoders in the request path give the cached model's scores."""

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

import ppm  # noqa: F401
from ppm import evaluate, export, train
from ppm.data import cache, canonical
from ppm.encoders import contract
from ppm.layers.embedding_cache import CachedItemEmbedding
from ppm.serving import uncached
from tests.ranking_fixtures import one_batch, serving_names, tiny_config

DIM, BUCKETS = 4, 101


class HashEncoder(tf.Module):
    """A stand-in encoder that follows the export contract: string -> a row of a random table
    chosen by the string's hash (deterministic, so the cache and the request path agree)."""

    def __init__(self, seed):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.table = tf.Variable(rng.normal(size=(BUCKETS, DIM)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=contract.INPUT_KEY)])
    def serve(self, inputs):
        rows = tf.strings.to_hash_bucket_fast(inputs, BUCKETS)
        return {contract.OUTPUT_KEY: tf.gather(self.table, rows)}


def _write_encoder(path, modality, seed):
    encoder = HashEncoder(seed)
    tf.saved_model.save(encoder, path, signatures={contract.SIGNATURE: encoder.serve})
    os.makedirs(os.path.join(path, "assets.extra"), exist_ok=True)
    with open(os.path.join(path, contract.INFO_FILE), "w") as f:
        json.dump({"modality": modality, "dim": DIM}, f)
    return encoder


@pytest.fixture(scope="module")
def world(tiny_world, tiny_examples, tmp_path_factory):
    """Items with some titles and images missing, a cache written by the stand-in encoders
    (as beam_jobs.embed_items would), and a URM trained on that cache."""
    root = tmp_path_factory.mktemp("uncached")
    items = canonical.read_parquet(os.path.join(tiny_world, "items.parquet")).to_pandas()
    items.loc[items.index % 7 == 0, "title"] = ""
    items.loc[items.index % 11 == 0, "image"] = None
    items_path = str(root / "items.parquet")
    pq.write_table(pa.Table.from_pandas(items, preserve_index=False), items_path)
    text = _write_encoder(str(root / "text"), "text", 1)
    image = _write_encoder(str(root / "image"), "image", 2)
    cache_dir = str(root / "cache")
    os.makedirs(cache_dir)
    with tf.io.TFRecordWriter(os.path.join(cache_dir, "part-00000-of-00001.tfrecord")) as w:
        for _, item in items.iterrows():
            has_title, has_image = bool(item["title"]), item["image"] is not None
            t = text.serve(tf.constant([item["title"]]))["embedding"][0].numpy() * has_title
            i = (image.serve(tf.constant([item["image"] or b""]))["embedding"][0].numpy()
                 * has_image)
            w.write(cache.make_example(item["item_id"], t, i, has_title,
                                       has_image).SerializeToString())
    canonical.write_json(os.path.join(cache_dir, cache.MANIFEST_FILE), {
        "format": cache.FORMAT, "format_version": cache.FORMAT_VERSION, "dim": DIM,
        "counts": {"items": len(items)}, "text_encoder": {"fingerprint": "hash-text"},
        "image_encoder": {"fingerprint": "hash-image"}})
    run = str(root / "urm")
    train.train(tiny_config("urm_ppm_random", tiny_world, tiny_examples, cache_dir), run,
                verbose=0)
    return run, str(root / "text"), str(root / "image"), items_path, str(root / "models")


def test_uncached_scores_equal_the_cached_model(world, tiny_examples):
    run, text, image, items_path, base = world
    cached = tf.saved_model.load(export.export(run, "urm", base)).signatures["serving_default"]
    path = uncached.export_uncached(run, "urm_uncached", base, text, image, items_path)
    in_path = tf.saved_model.load(path).signatures["serving_default"]
    (feats, _), schema = one_batch(tiny_examples, 32, "test")
    inputs = {k: feats[k] for k in serving_names(schema)}
    inputs["item_id"] = tf.concat([inputs["item_id"][:-1], ["never-seen-item"]], 0)
    a, c = cached(**inputs), in_path(**inputs)
    for k in ("p_click", "p_order", "p_cart"):
        np.testing.assert_allclose(c[k].numpy(), a[k].numpy(), rtol=1e-5, atol=1e-6)
    # Row by row: the request path computes the cache's rows (history ids, padding included);
    # with another text encoder its title half differs and its image half does not.
    model, _, _ = evaluate.load_model(run)
    layer = next(m for m in model.submodules if isinstance(m, CachedItemEmbedding))
    ids = inputs["hist_item_id"]
    cached_rows = layer(ids)
    module = uncached.UncachedServingModule(model, schema, text, image, items_path)
    rows = module._rows(layer, ids)
    np.testing.assert_allclose(rows["embedding"], cached_rows["embedding"], atol=1e-6)
    np.testing.assert_array_equal(rows["flags"], cached_rows["flags"])
    assert cached_rows["flags"].numpy().min() == 0 and cached_rows["flags"].numpy().max() == 1
    other = str(os.path.dirname(path) + "_other_text")
    _write_encoder(other, "text", 99)
    rows = uncached.UncachedServingModule(model, schema, other, image, items_path)._rows(
        layer, ids)["embedding"].numpy()
    assert np.abs(rows[..., :DIM] - cached_rows["embedding"][..., :DIM]).max() > 0.1
    np.testing.assert_allclose(rows[..., DIM:], cached_rows["embedding"][..., DIM:], atol=1e-6)


def test_refuses_a_model_without_cache_or_other_dims(world, tiny_world, tiny_examples,
                                                     tiny_cache, tmp_path):
    run, text, image, items_path, _ = world
    wo = str(tmp_path / "wo")
    train.train(tiny_config("urm_wo_ppm", tiny_world, tiny_examples, tiny_cache), wo,
                verbose=0)
    model, inputs, _ = evaluate.load_model(wo)
    with pytest.raises(ValueError, match="no cached item embedding"):
        uncached.UncachedServingModule(model, inputs.schema, text, image, items_path)
    model, inputs, _ = evaluate.load_model(run)
    with open(os.path.join(text, contract.INFO_FILE), "w") as f:
        json.dump({"modality": "text", "dim": DIM + 1}, f)
    try:
        with pytest.raises(ValueError, match="differ from the model's cache dim"):
            uncached.UncachedServingModule(model, inputs.schema, text, image, items_path)
    finally:
        with open(os.path.join(text, contract.INFO_FILE), "w") as f:
            json.dump({"modality": "text", "dim": DIM}, f)
