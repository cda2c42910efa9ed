import numpy as np
import pytest
import tensorflow as tf

import ppm  # noqa: F401
from ppm import checkpoints
from ppm.layers import CachedItemEmbedding, IdEmbedding
from ppm.models import PPM, URM, build_model, load_inputs
from ppm.models.modules import ModalItemEmbedding
from tests.conftest import CACHE_DIM
from tests.ranking_fixtures import one_batch, tiny_config


@pytest.fixture(scope="module")
def inputs(tiny_world, tiny_examples, tiny_cache):
    c = tiny_config("urm", tiny_world, tiny_examples, tiny_cache)
    return load_inputs(c)


def _layers(model, kind):
    return [m for m in model._flatten_modules() if isinstance(m, kind)]


@pytest.mark.parametrize("experiment", ["ppm_pretrain", "urm", "urm_wo_ppm", "base"])
def test_outputs_and_structure(experiment, inputs, tiny_world, tiny_examples, tiny_cache):
    c = tiny_config(experiment, tiny_world, tiny_examples, tiny_cache)
    model = build_model(c, inputs)
    (feats, labels), _ = one_batch(tiny_examples)
    probs = model.probabilities(feats)
    assert list(probs) == list(c.model.tasks)
    for p in probs.values():
        assert p.shape == (32,) and np.all((p.numpy() > 0) & (p.numpy() < 1))
    ids, caches = _layers(model, IdEmbedding), _layers(model, CachedItemEmbedding)
    if experiment == "ppm_pretrain":
        assert isinstance(model, PPM) and not ids and len(caches) == 1  # ID-free
    elif experiment == "urm":
        assert model.ppm is not None and len(ids) == 4 and len(caches) == 1
        x = model.representation(feats)
        t = c.model.transformer
        # [U_ID | I_ID | U_MO | I_MO | D]
        assert x.shape[-1] == 2 * 4 * c.model.id_dim + 2 * 2 * CACHE_DIM + len(
            inputs.schema.profile_features) * c.model.profile_dim
        assert model.idsm.transformer.num_heads == t.num_heads == 2  # built from the config
    elif experiment == "urm_wo_ppm":
        assert isinstance(model, URM) and model.ppm is None and not caches
    else:  # base: one shared transformer over [IDs | modal]
        assert model.ppm is None and len(caches) == 1
        assert model.idsm.width == 4 * c.model.id_dim + 2 * CACHE_DIM


def test_ppm_ignores_ids_other_than_the_item_id(inputs, tiny_world, tiny_examples,
                                                 tiny_cache):
    c = tiny_config("ppm_pretrain", tiny_world, tiny_examples, tiny_cache)
    model = build_model(c, inputs)
    (feats, _), _ = one_batch(tiny_examples)
    before = model(feats)["click"].numpy()
    changed = dict(feats)
    for key in ("shop_id", "brand_id", "category_id", "hist_shop_id", "user_id"):
        changed[key] = tf.fill(tf.shape(feats[key]), "changed")
    np.testing.assert_allclose(model(changed)["click"].numpy(), before, rtol=1e-6)
    # ...while the cached modal vectors drive it: unknown items use the reserved row.
    changed["item_id"] = tf.fill(tf.shape(feats["item_id"]), "not-cached")
    assert np.abs(model(changed)["click"].numpy() - before).max() > 0


def test_flags_give_missing_modalities_their_own_vector(inputs):
    cache = CachedItemEmbedding(["a", "b"], 2, embeddings=np.zeros((2, 4)),
                                flags=[[1, 1], [0, 1]])
    modal = ModalItemEmbedding(cache, init_stddev=1.0)
    out = modal({"item_id": tf.constant(["a", "b", "zzz"])}).numpy()
    assert np.abs(out[0] - out[1]).max() > 0 and np.abs(out[1] - out[2]).max() > 0


def test_loss_is_global_mean_cross_entropy(inputs, tiny_world, tiny_examples, tiny_cache):
    c = tiny_config("urm_wo_ppm", tiny_world, tiny_examples, tiny_cache,
                    model={"task_weights": [1.0, 2.0, 0.5]},
                    data={"global_batch_size": 32})
    model = build_model(c, inputs)
    (feats, labels), _ = one_batch(tiny_examples)
    logits = model(feats)
    expected = 0.0
    for task, w in zip(("click", "order", "cart"), (1.0, 2.0, 0.5)):
        p = tf.sigmoid(logits[task]).numpy().astype(float)
        y = labels[task].numpy()
        expected += w * -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    loss = model.compute_loss((feats, labels)).numpy()
    np.testing.assert_allclose(loss, expected, rtol=1e-4)


def test_mismatched_checkpoint_is_refused(inputs, tiny_world, tiny_examples, tiny_cache,
                                          tmp_path):
    c = tiny_config("urm_wo_ppm", tiny_world, tiny_examples, tiny_cache)
    other = build_model(c, inputs)
    (feats, _), _ = one_batch(tiny_examples)
    other(feats)
    tf.train.Checkpoint(model=other).save(str(tmp_path / "ckpt"))
    urm = build_model(tiny_config("urm", tiny_world, tiny_examples, tiny_cache), inputs)
    urm(feats)
    with pytest.raises(AssertionError):
        checkpoints.load_module(urm, str(tmp_path), "ppm")
    with pytest.raises(FileNotFoundError):
        checkpoints.load_module(urm, str(tmp_path / "nothing"), "ppm")


@pytest.mark.parametrize("experiment", ["ppm_pretrain", "urm", "urm_wo_ppm", "base"])
def test_config_round_trip_and_no_unserializable_warning(experiment, inputs, tiny_world,
                                                         tiny_examples, tiny_cache, caplog):
    """from_config(get_config()) rebuilds the same model (same outputs with the same weights),
    and Keras no longer falls back to an empty config with its "non-serializable" warning
    (logged at every SavedModel export before the models had a get_config)."""
    import logging

    import tf_keras as keras

    c = tiny_config(experiment, tiny_world, tiny_examples, tiny_cache)
    model = build_model(c, inputs)
    (feats, _), _ = one_batch(tiny_examples)
    expected = model(feats)
    with caplog.at_level(logging.WARNING):
        config = model.get_config()
    assert not [r for r in caplog.records if "non-serializable" in r.getMessage()]
    assert config["name"] == model.name and config["global_batch_size"] == (
        c.data.global_batch_size)
    cls = keras.utils.get_registered_object(keras.utils.get_registered_name(type(model)))
    assert cls is type(model)
    revived = cls.from_config(config)
    assert revived.task_names == model.task_names
    revived(feats)
    revived.set_weights(model.get_weights())
    got = revived(feats)
    for task in model.task_names:
        np.testing.assert_allclose(got[task].numpy(), expected[task].numpy(), rtol=1e-5)
    assert revived.get_config() == config
