"""The item side precomputed at export (``fold_item_tokens``): the PPM module's item tokens
folded into the cached table give exactly the live computation's tokens and scores, and a
cache with another reader is left as it is."""

import os

import numpy as np
import tensorflow as tf
import tf_keras as keras

import ppm  # noqa: F401
from ppm import evaluate, export
from ppm.layers import CachedItemEmbedding
from ppm.models.modules import ModalItemEmbedding, fold_item_tokens
from ppm.models.multimodal import ModalVectors
from tests.ranking_fixtures import one_batch, serving_names


def test_folded_tokens_and_scores_equal_the_live_computation(tiny_urm_run, tiny_examples):
    model, _, _ = evaluate.load_model(tiny_urm_run)
    (feats, _), _ = one_batch(tiny_examples, 16, "test")
    embedder = model.ppm.embedders[0]
    assert isinstance(embedder, ModalItemEmbedding)
    # every flag state (7 | i: no title, 11 | i: no image), an unknown item and padding
    ids = tf.constant(embedder.cache.item_ids[:78] + ["never-seen-item", ""])
    live_tokens = embedder({"item_id": ids}).numpy()
    live_scores = {k: v.numpy() for k, v in model.probabilities(feats).items()}
    raw = embedder.cache.table.numpy().copy()

    assert fold_item_tokens(model) == [embedder.name]
    assert fold_item_tokens(model) == []  # idempotent: folded once
    assert not np.array_equal(embedder.cache.table.numpy(), raw)  # the table changed
    np.testing.assert_array_equal(embedder({"item_id": ids}).numpy(), live_tokens)  # bitwise
    for task, scores in model.probabilities(feats).items():
        np.testing.assert_allclose(scores.numpy(), live_scores[task], rtol=1e-6, atol=1e-7)


def test_a_cache_with_another_reader_is_not_folded():
    cache = CachedItemEmbedding(["a", "b"], 4, embeddings=np.ones([2, 8], np.float32),
                                flags=[[1, 0], [1, 1]])
    tokens, vectors = ModalItemEmbedding(cache), ModalVectors(cache, ("text",))
    inputs = keras.Input([], dtype=tf.string, name="item_id")
    model = keras.Model(inputs, [tokens({"item_id": inputs}), vectors(inputs)])
    before = model(tf.constant(["a", "b", "z"]))
    assert fold_item_tokens(model) == []
    assert not tokens.folded
    for x, y in zip(model(tf.constant(["a", "b", "z"])), before):
        np.testing.assert_array_equal(x.numpy(), y.numpy())


def test_export_folds_by_default_and_both_exports_score_alike(tiny_urm_run, tiny_examples,
                                                              tmp_path):
    base = str(tmp_path / "sm")
    folded = export.export(tiny_urm_run, "urm", base, version=1)
    live = export.export(tiny_urm_run, "urm", base, version=2, fold_items=False)
    assert export.read_info(folded)["folded_item_tokens"] == ["modal_items"]
    assert export.read_info(live)["folded_item_tokens"] == []
    (feats, _), schema = one_batch(tiny_examples, 16, "test")
    args = {k: feats[k] for k in serving_names(schema)}
    out = [tf.saved_model.load(d).signatures[export.SIGNATURE](**args) for d in (folded, live)]
    for task in ("p_click", "p_order", "p_cart"):
        np.testing.assert_allclose(out[0][task].numpy(), out[1][task].numpy(), rtol=1e-6,
                                   atol=1e-7)
    # the one variable the two SavedModels differ in is the cache's table [items + 1, width]
    saved = [tf.train.load_checkpoint(os.path.join(d, "variables", "variables"))
             for d in (folded, live)]
    shapes = saved[0].get_variable_to_shape_map()
    assert shapes == saved[1].get_variable_to_shape_map()
    differ = [k for k in shapes if k.endswith("VARIABLE_VALUE")
              and not np.array_equal(saved[0].get_tensor(k), saved[1].get_tensor(k))]
    cache = evaluate.load_model(tiny_urm_run)[0].ppm.embedders[0].cache
    assert [shapes[k] for k in differ] == [[len(cache.item_ids) + 1, cache.width]]
