"""ppm.train: resume, MirroredStrategy equivalence, PPM loading/freezing, warm start, CLI."""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

import ppm  # noqa: F401
from ppm import checkpoints, distribute, evaluate, train
from ppm.models import build_model, load_inputs
from tests.ranking_fixtures import one_batch, tiny_config


@pytest.fixture(scope="module")
def ppm_run(tiny_ppm_run):
    return tiny_ppm_run


def test_ppm_pretraining_writes_a_complete_run(ppm_run):
    run, summary = ppm_run
    assert summary["steps"] == 4 and summary["replicas"] >= 1
    assert "checkpoint" in os.listdir(os.path.join(run, "checkpoints"))
    assert tf.train.latest_checkpoint(os.path.join(run, "checkpoints")).endswith("ckpt-4")
    for name in ("config.yaml", "cache.json", "train_summary.json", "vocab", "logs"):
        assert os.path.exists(os.path.join(run, name)), name
    assert np.isfinite(summary["final"]["loss"])


def test_killed_run_resumes_from_its_last_checkpoint(tiny_world, tiny_examples, tiny_cache,
                                                     tmp_path, monkeypatch):
    c = tiny_config("urm_wo_ppm", tiny_world, tiny_examples, tiny_cache)
    run = str(tmp_path / "run")
    original = train._CheckpointAndSpeed.on_epoch_end

    def killed_after_first_checkpoint(self, epoch, logs=None):
        original(self, epoch, logs)
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(train._CheckpointAndSpeed, "on_epoch_end",
                        killed_after_first_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        train.train(c, run, verbose=0)
    monkeypatch.undo()
    assert tf.train.latest_checkpoint(os.path.join(run, "checkpoints")).endswith("ckpt-2")
    saved = tf.train.load_checkpoint(os.path.join(run, "checkpoints", "ckpt-2"))
    summary = train.train(c, run, verbose=0)
    assert summary["resumed_from_step"] == 2 and summary["steps"] == 4
    assert len(summary["train_examples_per_second"]) == 1  # only the remaining loop ran
    # The Adam step counter continued from the checkpoint, not from 0.
    assert saved.get_tensor("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE") == 2


def test_resume_refuses_another_config(tiny_world, tiny_examples, tiny_cache, tmp_path):
    c = tiny_config("urm_wo_ppm", tiny_world, tiny_examples, tiny_cache)
    run = str(tmp_path / "run")
    train.train(c, run, verbose=0)
    c.override({"model": {"id_dim": 4}})
    with pytest.raises(ValueError, match="model.id_dim"):
        train.train(c, run, verbose=0)


def _step_results(strategy, config, inputs, weights, batch):
    """Loss and summed gradients of one step on ``batch`` under ``strategy``."""
    with strategy.scope():
        model = build_model(config, inputs)
        model(batch[0])
        model.set_weights(weights)
    ds = tf.data.Dataset.from_tensors(batch).unbatch().batch(len(batch[1]["click"]))
    dist = next(iter(strategy.experimental_distribute_dataset(ds)))

    def step(data):
        with tf.GradientTape() as tape:
            loss = model.compute_loss(data, training=True)
        grads = tape.gradient(loss, model.trainable_variables)
        return loss, [tf.convert_to_tensor(g) for g in grads]

    loss, grads = tf.function(lambda d: strategy.run(step, args=(d,)))(dist)
    loss = strategy.reduce("SUM", loss, axis=None).numpy()
    grads = [strategy.reduce("SUM", g, axis=None).numpy() for g in grads]
    return loss, grads


def test_two_replicas_give_the_same_step_as_one(tiny_world, tiny_examples, tiny_cache):
    c = tiny_config("urm_ppm_random", tiny_world, tiny_examples, tiny_cache,
                    data={"global_batch_size": 32})
    inputs = load_inputs(c)
    batch, _ = one_batch(tiny_examples, 32)
    reference = build_model(c, inputs)
    reference(batch[0])
    weights = reference.get_weights()
    one = distribute.strategy("mirrored", ("/cpu:0",))
    two = distribute.strategy("mirrored")
    assert one.num_replicas_in_sync == 1 and two.num_replicas_in_sync == 2
    loss1, grads1 = _step_results(one, c, inputs, weights, batch)
    loss2, grads2 = _step_results(two, c, inputs, weights, batch)
    np.testing.assert_allclose(loss2, loss1, rtol=1e-5)
    assert loss1 > 1.0  # three tasks of ~0.69 each: a per-replica scaling bug would halve it
    for g1, g2 in zip(grads1, grads2):
        np.testing.assert_allclose(g2, g1, rtol=1e-4, atol=1e-7)
    # Keras' logged loss (progress bar, TensorBoard, train_summary.json) is the same global
    # mean, not one per replica summed
    with two.scope():
        model, _ = train.build(c, inputs)
        model.set_weights(weights)
    ds = tf.data.Dataset.from_tensors(batch).repeat()
    logged = model.fit(ds, steps_per_epoch=1, verbose=0).history["loss"][0]
    np.testing.assert_allclose(logged, loss1, rtol=1e-5)


# Every training test runs on the 2 logical CPUs (mirrored); this one only says so: slow.
@pytest.mark.slow
def test_two_replica_training_runs(tiny_world, tiny_examples, tiny_cache, tmp_path):
    c = tiny_config("urm_wo_ppm", tiny_world, tiny_examples, tiny_cache)
    summary = train.train(c, str(tmp_path / "run"), strategy=distribute.strategy("mirrored"),
                          verbose=0)
    assert summary["replicas"] == 2 and summary["steps"] == 4


def _by_name(layer):
    """Weights by name below the model's own scope (``ppm_model/ppm/...`` -> ``ppm/...``)."""
    return {w.name.split("/", 1)[1]: w.numpy() for w in layer.weights}


# Fine-tuning a loaded plug-in is also what tests/models/test_zoo_training.py runs: slow here.
@pytest.mark.parametrize("mode", ["frozen", pytest.param("finetune", marks=pytest.mark.slow)])
def test_ppm_plug_in_is_loaded_then_frozen_or_trained(mode, ppm_run, tiny_world,
                                                       tiny_examples, tiny_cache, tmp_path):
    run, _ = ppm_run
    c = tiny_config("urm", tiny_world, tiny_examples, tiny_cache,
                    model={"plugin": {"init": mode, "checkpoint": run}})
    pretrained, _, _ = evaluate.load_model(run)
    loaded, _ = train.build(c, load_inputs(c))
    before, after = _by_name(pretrained.ppm), _by_name(loaded.ppm)
    assert sorted(before) == sorted(after) and len(before) > 10
    for name, value in before.items():
        np.testing.assert_array_equal(value, after[name], err_msg=name)
    assert bool(loaded.ppm.trainable_weights) == (mode == "finetune")
    out = str(tmp_path / "urm")
    train.train(c, out, verbose=0)
    trained, _, _ = evaluate.load_model(out)
    trainable = {w.name.split("/", 1)[1] for w in pretrained.ppm.trainable_weights}
    now = _by_name(trained.ppm)
    moved = [not np.array_equal(v, now[k]) for k, v in before.items() if k in trainable]
    assert moved
    if mode == "frozen":
        assert not any(moved)
    else:
        assert sum(moved) > len(moved) // 2
    # IDSM trains in both modes.
    fresh = build_model(c, load_inputs(c))
    fresh(one_batch(tiny_examples)[0][0])
    assert any(not np.array_equal(a.numpy(), b.numpy())
               for a, b in zip(fresh.idsm.trainable_weights, trained.idsm.trainable_weights))


def test_random_init_does_not_load(ppm_run, tiny_world, tiny_examples, tiny_cache):
    run, _ = ppm_run
    c = tiny_config("urm_ppm_random", tiny_world, tiny_examples, tiny_cache)
    pretrained, _, _ = evaluate.load_model(run)
    model, _ = train.build(c, load_inputs(c))
    assert any(not np.array_equal(a.numpy(), b.numpy())
               for a, b in zip(pretrained.ppm.trainable_weights, model.ppm.trainable_weights))


def test_warm_start_remaps_ids_of_a_new_vocabulary(tiny_world, tiny_examples, tiny_cache,
                                                   tmp_path):
    c = tiny_config("urm_wo_ppm", tiny_world, tiny_examples, tiny_cache)
    old_run = str(tmp_path / "day1")
    train.train(c, old_run, verbose=0)
    # Day 2: two items left the vocabulary, one is new.
    examples = str(tmp_path / "examples")
    shutil.copytree(tiny_examples[0], examples)
    path = os.path.join(examples, "vocab", "item_id.tsv")
    lines = open(path).read().splitlines()
    kept = lines[2:]
    with open(path, "w") as f:
        f.write("\n".join(["brand-new-item\t5"] + kept) + "\n")
    c2 = tiny_config("urm_wo_ppm", tiny_world, (examples, None), tiny_cache)
    model, _ = train.build(c2, load_inputs(c2), init_checkpoint=old_run)
    old, _, _ = evaluate.load_model(old_run)
    old_emb = old.idsm.embedders[0].embeddings[0]
    new_emb = model.idsm.embedders[0].embeddings[0]
    some = [line.split("\t")[0] for line in kept[:5]]
    old_rows = old_emb.rows(tf.constant(some)).numpy()
    new_rows = new_emb.rows(tf.constant(some)).numpy()
    assert not np.array_equal(old_rows, new_rows)  # the rows moved...
    np.testing.assert_array_equal(  # ...and the vectors followed them
        tf.gather(new_emb.embedding.embeddings, new_rows).numpy(),
        tf.gather(old_emb.embedding.embeddings, old_rows).numpy())
    np.testing.assert_array_equal(model.mmoe.weights[0].numpy(), old.mmoe.weights[0].numpy())


def test_cli_trains_and_evaluates(tiny_world, tiny_examples, tiny_cache, tmp_path, capsys):
    run = str(tmp_path / "cli")
    override = (f"data.examples={tiny_examples[0]},data.embeddings={tiny_cache},"
                f"data.dataset={tiny_world}")
    assert train.main(["--experiment", "urm_wo_ppm", "--preset", "tiny", "--params_override",
                       override, "--model_dir", run, "--verbose", "0"]) == 0
    out = capsys.readouterr().out
    assert "urm (plug-in none)" in out and "oracle AUC" in out and "click" in out
    metrics = json.load(open(os.path.join(run, "metrics.json")))
    assert metrics["split"] == "test" and set(metrics["tasks"]) == {"click", "order", "cart"}
    assert metrics["oracle"]["click"]["auc"] > 0.6
    assert metrics["examples"] == json.load(open(os.path.join(
        tiny_examples[0], "stats.json")))["windows"]["test"]["examples"]


def test_cli_refuses_a_urm_without_pretrained_ppm(tiny_world, tiny_examples, tiny_cache,
                                                   tmp_path):
    override = (f"data.examples={tiny_examples[0]},data.embeddings={tiny_cache},"
                f"data.dataset={tiny_world}")
    with pytest.raises(FileNotFoundError, match="plugin.checkpoint is not set"):
        train.main(["--experiment", "urm", "--preset", "tiny", "--params_override", override,
                    "--model_dir", str(tmp_path / "x"), "--run_root", str(tmp_path / "r")])
    assert not os.path.exists(tmp_path / "x")


def test_latest_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        checkpoints.latest(str(tmp_path))


# XLA compiles the same step function: slow on CPU, run by `make test-all`.
@pytest.mark.parametrize("trainer", [{"mixed_precision": True},
                                     pytest.param({"jit_compile": True}, marks=pytest.mark.slow)],
                         ids=["mixed_float16", "xla"])
def test_mixed_precision_and_xla_train_and_evaluate(trainer, ppm_run, tiny_world,
                                                    tiny_examples, tiny_cache, tmp_path):
    c = tiny_config("urm", tiny_world, tiny_examples, tiny_cache, trainer=trainer,
                    model={"plugin": {"checkpoint": ppm_run[0]}})
    run = str(tmp_path / "run")
    summary = train.train(c, run, verbose=0)
    assert summary["steps"] == 4 and np.isfinite(summary["final"]["loss"])
    from tf_keras import mixed_precision

    expected = "mixed_float16" if trainer.get("mixed_precision") else "float32"
    assert summary["dtype_policy"] == expected
    # A mixed-precision run trains with a loss-scale optimizer, whose scale is checkpointed.
    keys = tf.train.load_checkpoint(summary["checkpoint"]).get_variable_to_shape_map()
    assert any("loss_scale" in k for k in keys) == bool(trainer.get("mixed_precision"))
    assert mixed_precision.global_policy().name == "float32"  # restored after training
    result = evaluate.evaluate_run(run, progress=False)
    stats = tiny_examples[1]["windows"]["test"]
    assert result["examples"] == stats["examples"]
    assert result["tasks"]["click"]["positives"] == stats["click"] > 0


def test_resume_keeps_the_vocabulary_the_model_was_built_from(tiny_world, tiny_examples,
                                                              tiny_cache, tmp_path):
    examples = str(tmp_path / "examples")
    shutil.copytree(tiny_examples[0], examples)
    c = tiny_config("urm_wo_ppm", tiny_world, (examples, None), tiny_cache)
    run = str(tmp_path / "run")
    train.train(c, run, verbose=0)
    recorded = open(os.path.join(run, "vocab", "item_id.tsv")).read()
    # The examples are rebuilt in place with another vocabulary; the run is restarted.
    path = os.path.join(examples, "vocab", "item_id.tsv")
    with open(path, "w") as f:
        f.write("brand-new-item\t5\n")
    train.train(c, run, verbose=0)
    assert open(os.path.join(run, "vocab", "item_id.tsv")).read() == recorded
    model, _, _ = evaluate.load_model(run)  # rebuilt from the recorded vocabulary
    assert model.idsm.embedders[0].embeddings[0].vocabulary[0] != "brand-new-item"


def test_length_in_passes_over_the_window(tiny_world, tiny_examples, tiny_cache, tmp_path):
    examples, stats = tiny_examples
    n = stats["windows"]["train_large"]["examples"]
    c = tiny_config("urm_wo_ppm", tiny_world, tiny_examples, tiny_cache,
                    trainer={"train_passes": 0.25, "checkpoint_interval": 4})
    steps = int(np.ceil(0.25 * n / 64))
    assert steps % 4, "the case must end with a shorter last loop"
    run = str(tmp_path / "run")
    summary = train.train(c, run, verbose=0)
    assert summary["steps"] == steps
    assert summary["passes"] == pytest.approx(steps * 64 / n, abs=1e-3)
    # One checkpoint per whole loop and one at the end of the shorter last loop.
    assert len(summary["train_examples_per_second"]) == -(-steps // 4)
    assert tf.train.latest_checkpoint(os.path.join(run, "checkpoints")).endswith(f"ckpt-{steps}")
    from ppm import configs

    assert configs.read_run_config(run).trainer.train_steps == steps  # recorded, resolved
    # The demo preset is one pass, whatever the dataset.
    assert configs.get_config("urm", "demo").trainer.train_passes == 1.0
    # A step floor raises a short length in passes, and only a short one.
    for floor, expected in ((steps + 7, steps + 7), (steps - 1, steps)):
        c = tiny_config("urm_wo_ppm", tiny_world, tiny_examples, tiny_cache,
                        trainer={"train_passes": 0.25, "min_train_steps": floor})
        train.resolve_train_steps(c)
        assert c.trainer.train_steps == expected


def test_training_does_not_import_the_demo():
    # Training resolves a config and trains; the demo owns staging (no train <-> demo cycle).
    import subprocess
    import sys

    code = ("import sys, ppm.train; bad = [m for m in ('ppm.demo',) if m in sys.modules]; "
            "sys.exit(1 if bad else 0)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0
    import ast

    tree = ast.parse(open(train.__file__).read())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                for a in n.names} | {n.module for n in ast.walk(tree)
                                     if isinstance(n, ast.ImportFrom) and n.module}
    assert "demo" not in imported and "ppm.demo" not in imported


def test_cli_without_data_paths_says_to_build_the_demo(tmp_path):
    with pytest.raises(FileNotFoundError, match="make demo"):
        train.main(["--experiment", "urm_wo_ppm", "--preset", "tiny", "--run_root",
                    str(tmp_path / "nothing"), "--model_dir", str(tmp_path / "run")])
    assert not os.path.exists(tmp_path / "run")
