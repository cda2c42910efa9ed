"""GRACE's rank-consistency tasks (§2.3, Eq. 6-9) as tasks of any model: ``top<k>`` labels are
derived from the examples' ``rank`` when a batch is read, learnt, evaluated and served."""

import os

import numpy as np
import pytest
import tensorflow as tf

import ppm  # noqa: F401
from ppm import evaluate, export, features, train
from ppm.data import pipeline
from tests.ranking_fixtures import one_batch, tiny_config


def test_derived_labels_come_from_rank_and_keep_real_labels():
    feats = {"rank": tf.constant([0, 2, 3, -1, 1], tf.int64)}  # 0-based, -1 unknown
    labels = {"click": tf.constant([1.0, 0.0, 1.0, 0.0, 1.0])}
    out = features.derived_labels(["click", "top3", "top1"], feats, labels)
    np.testing.assert_array_equal(out["top3"].numpy(), [1, 1, 0, 0, 1])
    np.testing.assert_array_equal(out["top1"].numpy(), [1, 0, 0, 0, 0])
    assert out["click"] is labels["click"]
    assert features.derived_labels(["click"], feats, labels) is labels
    assert (features.top_k("top10"), features.top_k("top0"), features.top_k("click")) == (
        10, None, None)


def test_a_top_k_task_trains_evaluates_and_is_served(tiny_world, tiny_examples, tiny_cache,
                                                      tmp_path):
    c = tiny_config("din", tiny_world, tiny_examples, tiny_cache,
                    model={"tasks": ["click", "top3"], "head": {"type": "ple"},
                           "init_stddev": 0.3},
                    trainer={"train_steps": 2, "checkpoint_interval": 2})
    run = str(tmp_path / "run")
    summary = train.train(c, run, verbose=0)
    assert summary["replicas"] == 2 and np.isfinite(summary["final"]["loss"])
    model, inputs, config = evaluate.load_model(run)
    assert model.task_names == ["click", "top3"]
    # The loss is BCE on the derived label (Eq. 8), summed with click's, over the global batch.
    (feats, labels), _ = one_batch(tiny_examples, 64)
    logits = model(feats)
    top3 = tf.cast((feats["rank"] >= 0) & (feats["rank"] < 3), tf.float32)
    expected = sum(tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(y, logits[t]))
                   for t, y in (("click", labels["click"]), ("top3", top3))) / 64.0
    np.testing.assert_allclose(model.compute_loss((feats, labels)).numpy(),
                               expected.numpy(), rtol=1e-5)
    # Evaluated on the test window: the top-3 label counts the examples ranked 0-2 there.
    result = evaluate.evaluate_run(run, "test", progress=False)
    ranks = np.concatenate([f["rank"].numpy() for f, _ in pipeline.make_dataset(
        os.path.join(config.data.examples, "test"), inputs.schema, 256, training=False)])
    assert result["tasks"]["top3"]["positives"] == int(((ranks >= 0) & (ranks < 3)).sum()) > 0
    assert result["oracle"] is not None and "top3" not in result["oracle"]
    # Served: the SavedModel answers p_top3.
    version = export.export(run, "din_top3", str(tmp_path / "saved"))
    served = tf.saved_model.load(version).signatures["serving_default"]
    wanted = export.input_signature(export.serving_schema(model, inputs.schema))
    got = served(**{k: feats[k] for k in wanted})
    np.testing.assert_allclose(got["p_top3"].numpy(), tf.sigmoid(logits["top3"]).numpy(),
                               rtol=1e-5, atol=1e-6)


def test_top_k_tasks_are_refused_on_examples_without_ranks(tiny_world, tiny_examples,
                                                           tiny_cache, tmp_path):
    import json
    import shutil

    examples, stats = tiny_examples
    window = stats["windows"]["train_large"]
    assert window["ranked"] == window["examples"] > 0  # the synthetic world ranks them all
    unranked = str(tmp_path / "examples")
    shutil.copytree(examples, unranked)
    with open(os.path.join(unranked, "stats.json")) as f:
        written = json.load(f)
    written["windows"]["train_large"]["ranked"] = 0
    with open(os.path.join(unranked, "stats.json"), "w") as f:
        json.dump(written, f)
    c = tiny_config("din", tiny_world, tiny_examples, tiny_cache,
                    model={"tasks": ["click", "top3"]})
    c.override({"data": {"examples": unranked}})
    with pytest.raises(ValueError, match=r"\['top3'\].*no example of the train_large window"):
        train.train(c, str(tmp_path / "run"), verbose=0)
    assert not os.path.exists(tmp_path / "run" / "checkpoints")
