"""Taobao's integration methods (Vector, SimScore, SimTier, MAKE; arXiv:2407.19467 §4, §6.1.3):
what each model reads from the cache, by hand where the paper gives a formula."""

import numpy as np
import pytest
import tensorflow as tf

import ppm  # noqa: F401
from ppm import configs
from ppm.data import cache as cache_lib
from ppm.layers import CachedItemEmbedding
from ppm.models import build_model, load_inputs
from ppm.models.make import MAKE, MAKEModule
from ppm.models.multimodal import ModalVectors, MultimodalSide
from tests.conftest import CACHE_DIM, write_fake_cache
from tests.models.test_zoo import assert_padding_is_ignored
from tests.ranking_fixtures import one_batch, tiny_config

WIDE_INIT = 0.3
SIDE = ["vector", "simscore", "simtier"]


@pytest.fixture(scope="module")
def inputs(tiny_world, tiny_examples, tiny_cache):
    return load_inputs(tiny_config("din_simtier", tiny_world, tiny_examples, tiny_cache))


@pytest.fixture(scope="module")
def vectors_by_id(tiny_cache):
    c = cache_lib.load_cache(tiny_cache)
    return {"text": dict(zip(c.ids, c.title)), "image": dict(zip(c.ids, c.image))}


def _lookup(table, ids):
    ids = np.asarray(ids).astype(str)
    return np.stack([table.get(i, np.zeros(CACHE_DIM, np.float32)) for i in ids.ravel()]
                    ).reshape(*ids.shape, CACHE_DIM)


def _model(experiment, inputs, tiny_world, tiny_examples, tiny_cache, **model):
    c = tiny_config(experiment, tiny_world, tiny_examples, tiny_cache,
                    model={"init_stddev": WIDE_INIT, **model})
    return build_model(c, inputs)


def test_taobao_experiments_are_din_with_a_setting():
    assert "make" not in configs.ZOO
    for name, side, plugin in (("din_vector", ["vector"], ""), ("din_simscore", ["simscore"], ""),
                               ("din_simtier", ["simtier"], ""), ("din_make", [], "make"),
                               ("din_simtier_make", ["simtier"], "make")):
        m = configs.get_config(name).model
        assert (m.type, list(m.multimodal.side), m.plugin.kind) == ("din", side, plugin)
        assert m.multimodal.modality == "image"  # the paper's §6 case study
    assert configs.get_config("make_pretrain").model.type == "make"


@pytest.mark.parametrize("modality", ["image", "text", "both"])
def test_modal_vectors_read_the_chosen_modality(modality, inputs, vectors_by_id,
                                                tiny_examples):
    layer = ModalVectors(CachedItemEmbedding.from_cache(inputs.cache),
                         configs.MODALITIES[modality])
    (feats, _), _ = one_batch(tiny_examples, 8)
    got = layer(feats["hist_item_id"]).numpy()
    names = configs.MODALITIES[modality]
    assert got.shape == (*feats["hist_item_id"].shape, len(names), CACHE_DIM)
    for k, name in enumerate(names):
        np.testing.assert_allclose(got[..., k, :],
                                   _lookup(vectors_by_id[name], feats["hist_item_id"].numpy()),
                                   rtol=1e-6)
    assert not got.any(axis=-1).all()  # the fake cache has items without an image or title


def test_a_modality_the_cache_lacks_is_refused(tiny_world, tmp_path):
    text_only = cache_lib.load_cache(
        write_fake_cache(tiny_world, str(tmp_path / "c"), modalities=("text",)))
    with pytest.raises(ValueError, match=r"holds \['text'\].*modality=text"):
        ModalVectors(CachedItemEmbedding.from_cache(text_only), ("image",))


@pytest.mark.parametrize("experiment", ["din_vector", "din_simscore", "din_simtier"])
def test_each_side_method_reads_the_cache_and_plain_din_does_not(experiment, inputs,
                                                                  tiny_world, tiny_examples,
                                                                  tiny_cache):
    model = _model(experiment, inputs, tiny_world, tiny_examples, tiny_cache)
    (feats, _), _ = one_batch(tiny_examples)
    before = model(feats)["click"].numpy()
    caches = [m for m in model._flatten_modules() if isinstance(m, CachedItemEmbedding)]  # noqa: SLF001
    assert len(caches) == 1
    table = caches[0].table
    rng = np.random.default_rng(0)
    table.assign(tf.random.shuffle(table, seed=1) * rng.uniform(0.5, 2.0))  # other vectors
    after = model(feats)["click"].numpy()
    assert np.abs(after - before).max() > 1e-4
    din = _model("din", inputs, tiny_world, tiny_examples, tiny_cache)
    assert not [m for m in din._flatten_modules() if isinstance(m, CachedItemEmbedding)]  # noqa: SLF001


def test_simtier_counts_enter_the_mlp_input(inputs, vectors_by_id, tiny_world, tiny_examples,
                                            tiny_cache):
    model = _model("din_simtier", inputs, tiny_world, tiny_examples, tiny_cache)
    (feats, _), _ = one_batch(tiny_examples)
    n = configs.get_config("din_simtier", "tiny").model.multimodal.num_tiers
    counts = model.representation(feats).numpy()[:, -n:]  # x = [... | D | SimTier]
    image = vectors_by_id["image"]
    target = _lookup(image, feats["item_id"].numpy())
    history = _lookup(image, feats["hist_item_id"].numpy())
    lengths = feats["hist_len"].numpy()
    for i in range(len(target)):
        h = history[i, :lengths[i]]
        h = h[np.linalg.norm(h, axis=1) > 0]  # items without an image have no similarity
        expected = np.zeros(n)
        if np.linalg.norm(target[i]) > 0 and len(h):
            cos = h @ target[i] / np.linalg.norm(h, axis=1) / np.linalg.norm(target[i])
            # the target itself in the history scores 1 (+ rounding): the last tier
            expected, _ = np.histogram(np.clip(cos, -1, 1), bins=n, range=(-1, 1))
        np.testing.assert_array_equal(counts[i], expected, err_msg=f"row {i}")
    assert counts.sum() > 0


def test_vector_and_simscore_fields_by_hand(inputs, vectors_by_id, tiny_examples):
    vectors = ModalVectors(CachedItemEmbedding.from_cache(inputs.cache), ("image",))
    side = MultimodalSide(vectors, ["vector", "simscore"], field_dim=3)
    (feats, _), _ = one_batch(tiny_examples, 4)
    length = feats["hist_item_id"].shape[1]
    fields = {"target": tf.zeros([4, 4, 3]), "history": tf.zeros([4, length, 4, 3]),
              "mask": tf.sequence_mask(feats["hist_len"], length)}
    out, dense = side(feats, fields=fields)
    assert dense == [] and side.num_fields == 2
    assert out["target"].shape == (4, 6, 3) and out["history"].shape == (4, length, 6, 3)
    p = side.projection.kernel.numpy()  # [dim, 3]
    w = side.score_embedding.kernel.numpy()  # [1, 3]
    t = _lookup(vectors_by_id["image"], feats["item_id"].numpy())
    h = _lookup(vectors_by_id["image"], feats["hist_item_id"].numpy())
    np.testing.assert_allclose(out["target"][:, 4].numpy(), t @ p, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["history"][:, :, 4].numpy(), h @ p, rtol=1e-5, atol=1e-6)
    # SimScore: the target's field is its similarity to itself (1 with an image), each real
    # history item's its cosine to the target (0 without an image or past hist_len).
    has = (np.linalg.norm(t, axis=1) > 0).astype(np.float32)
    np.testing.assert_allclose(out["target"][:, 5].numpy(), has[:, None] * w, rtol=1e-6)
    tn = t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12)
    hn = h / np.maximum(np.linalg.norm(h, axis=2, keepdims=True), 1e-12)
    cos = np.einsum("btd,bd->bt", hn, tn) * fields["mask"].numpy()
    np.testing.assert_allclose(out["history"][:, :, 5].numpy(), cos[..., None] * w,
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model_type", configs.ZOO)
def test_every_zoo_model_takes_the_side_information_and_ignores_padding(
        model_type, inputs, tiny_world, tiny_examples, tiny_cache):
    model = _model(model_type, inputs, tiny_world, tiny_examples, tiny_cache,
                   multimodal={"side": SIDE})
    assert_padding_is_ignored(model, inputs, tiny_examples)


def test_make_module_by_hand(inputs, vectors_by_id, tiny_world, tiny_examples, tiny_cache):
    """v_MAKE = [v_c | DIN interest] (Eq. 3), MLP_MAKE's hidden layers and logit (Eq. 4),
    and the MAKE model's click logit is the module's."""
    model = _model("make_pretrain", inputs, tiny_world, tiny_examples, tiny_cache)
    assert isinstance(model, MAKE) and model.task_names == ["click"]
    module = model.make
    assert isinstance(module, MAKEModule)
    (feats, _), _ = one_batch(tiny_examples, 8)
    out = module(feats)
    v_make, last_hidden, logit = out  # defaults: v_MAKE, the last hidden layer, the logit
    t = _lookup(vectors_by_id["image"], feats["item_id"].numpy())
    h = _lookup(vectors_by_id["image"], feats["hist_item_id"].numpy())
    mask = tf.sequence_mask(feats["hist_len"], h.shape[1])
    interest = module.attention({"query": tf.constant(t), "keys": tf.constant(h),
                                 "mask": mask}).numpy()
    np.testing.assert_allclose(v_make.numpy(), np.concatenate([t, interest], -1), rtol=1e-5,
                               atol=1e-6)
    x = v_make.numpy()
    for layer in module.mlp.dense_layers:
        kernel, bias = layer.get_weights()
        x = np.maximum(x @ kernel + bias, 0.0)
    np.testing.assert_allclose(last_hidden.numpy(), x, rtol=1e-4, atol=1e-6)
    kernel, bias = module.logit_layer.get_weights()
    np.testing.assert_allclose(logit.numpy(), x @ kernel + bias, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(model(feats)["click"].numpy(), logit.numpy()[:, 0], rtol=1e-5)


def test_make_plugin_outputs_are_the_tail_of_the_representation(inputs, tiny_world,
                                                                 tiny_examples, tiny_cache):
    model = _model("din_make", inputs, tiny_world, tiny_examples, tiny_cache,
                   plugin={"init": "random"})
    (feats, _), _ = one_batch(tiny_examples)
    x = model.representation(feats).numpy()
    tail = tf.concat(model.plugin(feats), -1).numpy()
    mk = configs.get_config("din_make", "tiny").model.make
    assert tail.shape[1] == 2 * CACHE_DIM + mk.mlp_units[-1] + 1
    np.testing.assert_allclose(x[:, -tail.shape[1]:], tail, rtol=1e-6)
