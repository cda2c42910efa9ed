"""The ID side's cold-start settings and the plug-in's training settings (model.id_dropout,
model.frequency_gate, model.plugin.learning_rate_multiplier / frozen_steps / l2_sp)."""

import numpy as np
import pytest
import tensorflow as tf

import ppm  # noqa: F401
from ppm import configs, evaluate, export, train
from ppm.layers.cold_start import DROPPED_ID, FrequencyGate, IdDropout
from ppm.models import load_inputs
from tests.ranking_fixtures import one_batch, tiny_config


def test_id_dropout_replaces_ids_at_its_rate_in_training_only():
    ids = tf.constant([[f"i{k}" for k in range(100)] + [""] * 20] * 100)
    layer = IdDropout(0.3, seed=1)
    out = layer({"item_id": ids[:, 0], "hist_item_id": ids, "user_id": ids[:, 1]},
                training=True)
    dropped = (out["hist_item_id"] == DROPPED_ID).numpy()
    assert 0.27 < dropped[:, :100].mean() < 0.33
    assert not dropped[:, 100:].any()  # padding is never an id to drop
    assert (out["user_id"] == ids[:, 1]).numpy().all()  # other features untouched
    assert 0.2 < (out["item_id"] == DROPPED_ID).numpy().mean() < 0.4
    kept = out["hist_item_id"].numpy()[~dropped]
    np.testing.assert_array_equal(kept, ids.numpy()[~dropped])
    for training in (False, None):
        same = layer({"item_id": ids[:, 0], "hist_item_id": ids}, training=training)
        assert (same["hist_item_id"] == ids).numpy().all()
    with pytest.raises(ValueError, match="rate"):
        IdDropout(1.0)


def test_frequency_gate_looks_up_counts_and_gates_by_bucket():
    gate = FrequencyGate(["a", "b", "c"], [1, 6, 1000], num_buckets=4, code_dim=3)
    ids = tf.constant(["a", "b", "c", "new", DROPPED_ID])
    np.testing.assert_array_equal(gate.frequency(ids).numpy(), [1, 6, 1000, 0, 0])
    # floor(log2(1 + n)), capped: 1 -> 1, 6 -> 2, 1000 -> 9 -> 3; unknown -> 0.
    np.testing.assert_array_equal(gate.bucket(ids).numpy(), [1, 2, 3, 0, 0])
    vector = tf.ones([5, 2])
    gated, code = gate((vector, ids))
    assert code.shape == (5, 3)
    np.testing.assert_allclose(gated.numpy(), 1 / (1 + np.exp(-3.0)), rtol=1e-6)
    gate.gate_logits.assign([[-50.0, -50.0], [0.0, 0.0], [50.0, 50.0], [50.0, 50.0]])
    gated, _ = gate((vector, ids))
    np.testing.assert_allclose(gated.numpy()[:, 0], [0.5, 1, 1, 0, 0], atol=1e-6)
    again = FrequencyGate.from_config(gate.get_config())
    np.testing.assert_array_equal(again.bucket(ids).numpy(), gate.bucket(ids).numpy())


def _config(experiment, tiny_world, tiny_examples, tiny_cache, ppm_dir, **model):
    model = {"plugin": {"checkpoint": ppm_dir, **model.pop("plugin", {})}, **model}
    return tiny_config(experiment, tiny_world, tiny_examples, tiny_cache, model=model)


def _sgd(rate=0.5):
    return {"trainer": {"optimizer": {"optimizer": {"type": "sgd"}, "learning_rate": {
        "type": "constant", "constant": {"learning_rate": rate}}}}}


def _sgd_urm(ppm_dir, tiny_world, tiny_examples, tiny_cache, plugin, rate=0.5):
    """URM trained by SGD at ``rate`` with ``plugin`` settings, from the same initial weights
    (seed 0) every time; the plug-in at the model's rate unless ``plugin`` says otherwise
    (the ``urm`` experiment's is 0.1x), so each setting is seen alone."""
    plugin = {"learning_rate_multiplier": 1.0, **plugin}
    c = _config("urm", tiny_world, tiny_examples, tiny_cache, ppm_dir, plugin=plugin)
    c.override(_sgd(rate))
    tf.keras.utils.set_random_seed(0)
    return train.build(c, load_inputs(c))[0]


def _plugin_names(model):
    return {w.name for w in model.plugin_module.trainable_weights}


def test_plugin_learning_rate_multiplier_scales_only_the_plugins_step(
        tiny_ppm_run, tiny_world, tiny_examples, tiny_cache):
    batch = one_batch(tiny_examples, 16)[0]
    steps = {}
    for m in (1.0, 0.1):
        model = _sgd_urm(tiny_ppm_run[0], tiny_world, tiny_examples, tiny_cache,
                         {"learning_rate_multiplier": m})
        before = {w.name: w.numpy() for w in model.trainable_weights}
        model.train_step(batch)
        steps[m] = {w.name: w.numpy() - before[w.name] for w in model.trainable_weights}
        assert (model._plugin_training is not None) == (m != 1.0)
    plugin = _plugin_names(model)
    assert len(plugin) > 5
    moved = 0
    for name, full in steps[1.0].items():
        if not np.abs(full).max():
            continue
        moved += 1
        # SGD: the step is rate * gradient; same weights and batch give the same gradient.
        want = full * (0.1 if name in plugin else 1.0)
        np.testing.assert_allclose(steps[0.1][name], want, rtol=1e-3, atol=1e-7, err_msg=name)
    assert moved > len(plugin)


def test_plugin_frozen_steps_hold_it_then_it_trains(tiny_ppm_run, tiny_world, tiny_examples,
                                                    tiny_cache):
    c = _config("urm", tiny_world, tiny_examples, tiny_cache, tiny_ppm_run[0],
                plugin={"frozen_steps": 1})
    tf.keras.utils.set_random_seed(0)
    model, _ = train.build(c, load_inputs(c))
    plugin = _plugin_names(model)
    batch = one_batch(tiny_examples, 16)[0]
    weights = [{w.name: w.numpy() for w in model.trainable_weights}]
    for _ in range(2):
        model.train_step(batch)
        weights.append({w.name: w.numpy() for w in model.trainable_weights})

    def moved(a, b, names):
        return sum(not np.array_equal(a[n], b[n]) for n in names)

    others = set(weights[0]) - plugin
    assert moved(weights[0], weights[1], plugin) == 0  # step 1: frozen
    assert moved(weights[0], weights[1], others) > len(others) // 2  # the rest trains
    assert moved(weights[1], weights[2], plugin) > len(plugin) // 2  # step 2: it trains


def test_l2_sp_pulls_the_plugin_back_to_its_pretrained_weights(
        tiny_ppm_run, tiny_world, tiny_examples, tiny_cache):
    batch = one_batch(tiny_examples, 16)[0]
    moved = {}
    for strength in (0.0, 1.0):
        model = _sgd_urm(tiny_ppm_run[0], tiny_world, tiny_examples, tiny_cache,
                         {"l2_sp": strength}, rate=0.2)
        if strength:
            # Move the plug-in away from its pre-trained weights: the penalty's gradient
            # (strength * (w - w0)) points back.
            for v in model.plugin_module.trainable_variables:
                v.assign_add(tf.ones_like(v) * 0.1)
            assert float(model._plugin_training.penalty()) == pytest.approx(
                0.5 * 0.01 * sum(np.prod(v.shape) for v in
                                 model.plugin_module.trainable_variables), rel=1e-4)
        start = [v.numpy() for v in model.plugin_module.trainable_variables]
        model.train_step(batch)
        moved[strength] = np.mean([np.mean(v.numpy() - s) for v, s in zip(
            model.plugin_module.trainable_variables, start)])
    # SGD with rate 0.2 and strength 1 takes 0.2 * 0.1 = 0.02 back on every weight.
    assert moved[1.0] - moved[0.0] == pytest.approx(-0.02, abs=0.004)


@pytest.mark.parametrize("bad, match", [
    ({"plugin": {"init": "frozen", "l2_sp": 0.1}}, "l2_sp"),
    ({"plugin": {"init": "random", "frozen_steps": 3}}, "frozen_steps"),
    ({"plugin": {"learning_rate_multiplier": 0.0}}, "learning_rate_multiplier"),
    ({"id_dropout": 1.0}, "id_dropout")])
def test_bad_cold_start_settings_are_named(bad, match):
    c = configs.resolve("urm", "tiny", validate=False)
    c.override({"model": {"plugin": {"checkpoint": "x"}}})
    c.override({"model": bad})
    with pytest.raises(ValueError, match=match):
        c.validate()


def test_id_dropout_reaches_the_id_side_only(tiny_ppm_run, tiny_world, tiny_examples,
                                             tiny_cache):
    # A frozen plug-in runs in inference mode inside a training step: its outputs must be
    # what it gives for the items themselves, whatever the ID side drops.
    c = _config("urm", tiny_world, tiny_examples, tiny_cache, tiny_ppm_run[0],
                id_dropout=0.5, plugin={"init": "frozen"})
    model, _ = train.build(c, load_inputs(c))
    feats = one_batch(tiny_examples, 32)[0][0]
    ids = model.id_side(feats, training=True)
    assert 0.2 < (ids["item_id"] == DROPPED_ID).numpy().mean() < 0.8
    same = model.id_side(feats, training=False)
    assert all((same[k] == feats[k]).numpy().all() for k in ("item_id", "hist_item_id"))
    x = model.representation(feats, training=True).numpy()
    width = sum(int(p.shape[-1]) for p in model.idsm(feats))
    plugin = np.concatenate([p.numpy() for p in model.ppm(feats, training=False)], axis=-1)
    np.testing.assert_allclose(x[:, width:width + plugin.shape[1]], plugin, rtol=1e-5)


# The zoo's Ranker gates its backbone vector the same way: slow (a second training + export).
@pytest.mark.parametrize("experiment", ["urm", pytest.param("din_ppm", marks=pytest.mark.slow)])
def test_frequency_gate_is_exported_and_used_by_the_served_model(
        experiment, tiny_ppm_run, tiny_world, tiny_examples, tiny_cache, tmp_path):
    c = _config(experiment, tiny_world, tiny_examples, tiny_cache, tiny_ppm_run[0],
                frequency_gate=True, id_dropout=0.2, init_stddev=0.3)
    c.override({"trainer": {"train_steps": 2, "checkpoint_interval": 2}})
    run = str(tmp_path / "run")
    train.train(c, run, verbose=0)
    (feats, _), _ = one_batch(tiny_examples, 64, "test")
    model, inputs, _ = evaluate.load_model(run)
    gate = model.frequency_gate
    freq = gate.frequency(feats["item_id"]).numpy()
    version = export.export(run, "gated", base_dir=str(tmp_path / "saved"))
    served = tf.saved_model.load(version).signatures["serving_default"]
    names = list(export.input_signature(export.serving_schema(model, inputs.schema)))
    got = served(**{k: feats[k] for k in names})["p_click"].numpy()
    np.testing.assert_allclose(got, model.probabilities(feats)["click"].numpy(), atol=1e-5)
    # The served scores depend on the table's counts: with the gates of seen items closed,
    # an example's served score changes exactly when its item is in the table.
    buckets = np.unique(gate.bucket(feats["item_id"]).numpy())
    logits = gate.gate_logits.numpy()
    logits[buckets[buckets > 0]] = -30.0
    gate.gate_logits.assign(logits)
    schema = export.serving_schema(model, inputs.schema)
    module = export.ServingModule(model, schema)
    closed_dir = str(tmp_path / "closed")
    tf.saved_model.save(module, closed_dir, signatures={export.SIGNATURE: module.serve})
    closed = tf.saved_model.load(closed_dir).signatures["serving_default"]
    now = closed(**{k: feats[k] for k in names})["p_click"].numpy()
    # (Weights from N(0, 0.3), so the ID side moves float32 probabilities visibly; the same
    # graph gives the same bits where nothing changed.)
    # float32 probabilities saturate at 0 and 1, where a changed logit does not show.
    live = (freq > 0) & (got > 1e-4) & (got < 1 - 1e-4)
    diff = np.abs(now - got)
    assert (freq == 0).any() and live.sum() >= 8, (freq, got)
    assert (diff[live] > 1e-6).all() and (diff[freq == 0] == 0).all(), (diff, freq, got)
