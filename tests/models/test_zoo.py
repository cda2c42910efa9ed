"""The baseline zoo (PPM Table 2): every model builds from the registry, with and without the
PPM plug-in, and reads what it claims to read."""

import numpy as np
import pytest
import tensorflow as tf

import ppm  # noqa: F401
from ppm import configs, export, features
from ppm.layers import CachedItemEmbedding
from ppm.models import build_model, load_inputs, registry
from ppm.models.ranker import Ranker
from tests.conftest import CACHE_DIM
from tests.ranking_fixtures import one_batch, tiny_config


@pytest.fixture(scope="module")
def inputs(tiny_world, tiny_examples, tiny_cache):
    return load_inputs(tiny_config("urm", tiny_world, tiny_examples, tiny_cache))


WIDE_INIT = 0.3


def _layers(model, kind):
    return [m for m in model._flatten_modules() if isinstance(m, kind)]  # noqa: SLF001


def test_every_model_type_is_registered_and_has_experiments():
    assert registry.registered() == sorted(["ppm", "make", "urm", *configs.ZOO,
                                            *configs.PRE_RANKING])
    for model in configs.ZOO:
        assert configs.get_config(model).model.type == model
        assert configs.get_config(f"{model}_ppm").model.plugin.kind == "ppm"
    with pytest.raises(ValueError, match="registered: "):
        registry.builder("nope")


@pytest.mark.parametrize("plugin", ["", "ppm"], ids=["wo_ppm", "w_ppm"])
@pytest.mark.parametrize("model_type", configs.ZOO)
def test_outputs_representation_and_plugin(model_type, plugin, inputs, tiny_world,
                                           tiny_examples, tiny_cache):
    experiment = f"{model_type}_ppm" if plugin else model_type
    # Wide initial weights, so that inputs move the logits well above float32 noise.
    c = tiny_config(experiment, tiny_world, tiny_examples, tiny_cache,
                    model={"init_stddev": WIDE_INIT})
    model = build_model(c, inputs)
    assert isinstance(model, Ranker)
    (feats, _), _ = one_batch(tiny_examples)
    probs, logits = model.probabilities(feats), model(feats)
    assert list(probs) == ["click", "order", "cart"]
    for task, p in probs.items():
        assert p.shape == (32,) and logits[task].dtype == tf.float32
        np.testing.assert_allclose(p.numpy(), tf.sigmoid(logits[task]).numpy(), rtol=1e-6)
    assert not np.allclose(logits["click"].numpy(), logits["order"].numpy())  # own towers
    x = model.representation(feats)
    caches = _layers(model, CachedItemEmbedding)
    if plugin:
        # [.. | U_MO | I_MO]: the plug-in's two vectors, 2 * cache width each, are the tail.
        assert model.plugin_module is not None and len(caches) == 1
        user, item = model.plugin(feats)
        np.testing.assert_allclose(x[:, -4 * CACHE_DIM:].numpy(),
                                   tf.concat([user, item], -1).numpy(), rtol=1e-6)
    else:
        assert model.plugin_module is None and not caches
    # The history is read: changing only the history items changes the scores.
    changed = dict(feats)
    for key in ("hist_item_id", "hist_shop_id", "hist_brand_id", "hist_category_id"):
        changed[key] = tf.reverse(feats[key], axis=[0])
    before, after = model(feats)["click"].numpy(), model(changed)["click"].numpy()
    assert np.abs(after - before).max() > 1e-3 * np.abs(before).max() > 0


@pytest.mark.parametrize("model_type", configs.ZOO)
def test_padded_history_is_ignored(model_type, inputs, tiny_world, tiny_examples, tiny_cache):
    c = tiny_config(model_type, tiny_world, tiny_examples, tiny_cache,
                    model={"init_stddev": WIDE_INIT})
    assert_padding_is_ignored(build_model(c, inputs), inputs, tiny_examples)


def assert_padding_is_ignored(model, inputs, tiny_examples):
    """Real ids and random values in the padded history slots leave the scores unchanged."""
    (feats, _), schema = one_batch(tiny_examples)
    rng = np.random.default_rng(0)
    # Shorter histories: the slots past hist_len are padding, whatever they hold.
    feats = dict(feats)
    feats["hist_len"] = tf.constant(rng.integers(0, schema.max_history, size=32), tf.int64)
    noisy = dict(feats)
    mask = np.arange(schema.max_history)[None] >= feats["hist_len"].numpy()[:, None]
    vocab = np.asarray(inputs.vocabularies["item_id"])
    for key in ("hist_item_id", "hist_shop_id", "hist_brand_id", "hist_category_id"):
        values = feats[key].numpy().astype(str)
        values[mask] = rng.choice(vocab, size=int(mask.sum()))  # real ids in padded slots
        noisy[key] = tf.constant(values)
    for key in ("hist_position", "hist_recency", features.HIST_SESSION):
        values = feats[key].numpy()
        values[mask] = rng.integers(0, 3, size=int(mask.sum()))
        noisy[key] = tf.constant(values)
    assert mask.any()
    logits = model(feats)["click"].numpy()
    assert np.abs(logits).max() > 1e-2  # the scores are not all ~0 (a check that can fail)
    np.testing.assert_allclose(model(noisy)["click"].numpy(), logits, rtol=1e-4, atol=1e-6)


def test_one_cache_layer_is_shared_by_every_module_that_reads_it(inputs, tiny_world,
                                                                tiny_examples, tiny_cache):
    # Table 3's base (modal items in IDSM) with the PPM plug-in: two readers, one table.
    c = tiny_config("base", tiny_world, tiny_examples, tiny_cache,
                    model={"plugin": {"kind": "ppm", "init": "random"}})
    model = build_model(c, inputs)
    (feats, _), _ = one_batch(tiny_examples)
    model(feats)
    caches = _layers(model, CachedItemEmbedding)
    assert len(caches) == 1 and model.idsm.embedders[1].cache is model.ppm.embedders[0].cache
    tables = [w for w in model.weights if w.name.endswith("cache/table:0")]
    assert len(tables) == 1


def test_only_dsin_asks_for_sessions_at_serving(inputs, tiny_world, tiny_examples,
                                                 tiny_cache):
    assert inputs.schema.sessions  # today's examples carry hist_session
    for model_type, expected in (("din", False), ("dsin", True)):
        model = build_model(tiny_config(model_type, tiny_world, tiny_examples, tiny_cache),
                            inputs)
        names = export.input_signature(export.serving_schema(model, inputs.schema))
        assert (features.HIST_SESSION in names) == expected


def test_dsin_refuses_examples_without_sessions(inputs, tiny_world, tiny_examples,
                                                tiny_cache):
    import dataclasses

    old = dataclasses.replace(inputs, schema=dataclasses.replace(inputs.schema,
                                                                 sessions=False))
    with pytest.raises(ValueError, match="rebuild them"):
        build_model(tiny_config("dsin", tiny_world, tiny_examples, tiny_cache), old)


def test_the_head_is_a_setting(inputs, tiny_world, tiny_examples, tiny_cache):
    from ppm.layers import PLE, MMoE, SharedBottom

    (feats, _), _ = one_batch(tiny_examples)
    for head, cls in (("mmoe", MMoE), ("mlp", SharedBottom), ("ple", PLE)):
        c = tiny_config("din", tiny_world, tiny_examples, tiny_cache,
                        model={"head": {"type": head}})
        model = build_model(c, inputs)
        assert isinstance(model.head, cls)
        assert sorted(model(feats)) == ["cart", "click", "order"]
