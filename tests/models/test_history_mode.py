"""The Behavior-Transformer's history-only mode in PPM and URM (the user side once per request):
pre-training, the plug-in's mode checked against its pre-training, and the exported model's
in-graph dedupe giving the scores of the model without it, for a batch mixing users."""

import os

import numpy as np
import pytest
import tensorflow as tf

import ppm  # noqa: F401
from ppm import evaluate, export, train
from ppm.layers.behavior_transformer import distinct_rows
from tests.ranking_fixtures import one_batch, tiny_config

HISTORY = {"model": {"ppm": {"target_mode": "history"},
                     "transformer": {"target_mode": "history"}}}


@pytest.fixture(scope="module")
def history_runs(tiny_world, tiny_examples, tiny_cache, tmp_path_factory):
    root = tmp_path_factory.mktemp("history")
    pre = str(root / "ppm")
    train.train(tiny_config("ppm_pretrain", tiny_world, tiny_examples, tiny_cache, **HISTORY),
                pre, verbose=0)
    urm = str(root / "urm")
    c = tiny_config("urm", tiny_world, tiny_examples, tiny_cache, **HISTORY,
                    trainer={"train_steps": 2, "checkpoint_interval": 2})
    c.override({"model": {"plugin": {"checkpoint": pre}}})
    summary = train.train(c, urm, verbose=0)
    assert summary["replicas"] == 2 and np.isfinite(summary["final"]["loss"])
    return pre, urm


def test_both_modules_run_in_history_mode(history_runs):
    model = evaluate.load_model(history_runs[1])[0]
    assert model.idsm.transformer.target_mode == "history"
    assert model.ppm.transformer.target_mode == "history"


def test_a_plugin_pretrained_in_another_mode_is_refused(history_runs, tiny_world,
                                                        tiny_examples, tiny_cache, tmp_path):
    c = tiny_config("urm", tiny_world, tiny_examples, tiny_cache)  # token mode
    c.override({"model": {"plugin": {"checkpoint": history_runs[0]}}})
    with pytest.raises(ValueError, match="pre-trained with model.ppm.target_mode='history'"):
        train.train(c, str(tmp_path / "run"), verbose=0)


def _mixed_users(tiny_examples):
    """A batch of 24 candidates for 3 users, interleaved, as batching may merge requests."""
    (feats, _), _ = one_batch(tiny_examples, 256, "test")
    users, seen = [], set()
    for i, (u, n) in enumerate(zip(feats["user_id"].numpy(), feats["hist_len"].numpy())):
        if n > 0 and u not in seen:
            users.append(i)
            seen.add(u)
    users = users[:3]
    assert len(users) == 3
    rows = [users[k % 3] for k in range(24)]
    out = {k: tf.gather(v, rows) for k, v in feats.items()}
    # every candidate its own item (rows of the batch, whoever they were shown to)
    for name in ("item_id", "shop_id", "brand_id", "category_id"):
        out[name] = feats[name][:24]
    return out, rows


def test_the_exported_model_dedupes_users_exactly(history_runs, tiny_examples, tmp_path):
    run = history_runs[1]
    model, inputs, _ = evaluate.load_model(run)
    feats, rows = _mixed_users(tiny_examples)
    first, _ = distinct_rows((feats["hist_item_id"], feats["hist_len"]))
    assert len(first) == 3  # three users' histories among the 24 rows
    deduped = model.probabilities(feats)  # inference: the user side once per distinct user
    # Row by row, with no other row to share with: the same scores.
    alone = [model.probabilities({k: v[i:i + 1] for k, v in feats.items()})
             for i in range(len(rows))]
    for t in deduped:
        np.testing.assert_allclose(deduped[t].numpy(), np.concatenate(
            [a[t].numpy() for a in alone]), rtol=1e-5, atol=1e-6, err_msg=t)
    version = export.export(run, "urm_history", str(tmp_path / "saved"))
    served = tf.saved_model.load(version).signatures["serving_default"]
    wanted = export.input_signature(export.serving_schema(model, inputs.schema))
    got = served(**{k: feats[k] for k in wanted})
    np.testing.assert_allclose(got["p_click"].numpy(), deduped["click"].numpy(), rtol=1e-5,
                               atol=1e-6)
    assert os.path.isdir(version)
