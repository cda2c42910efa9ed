"""Every zoo model with the PPM plug-in trains under MirroredStrategy (2 logical CPUs), loads
its plug-in from a ppm_pretrain run, exports a SavedModel, and the local gRPC server answers
with the in-process model's scores (PPM Table 2's w. PPM models, end to end)."""

import os

import numpy as np
import pytest

import ppm  # noqa: F401
from ppm import configs, evaluate, export, train
from ppm.serving import client, servables, server
from tests.ranking_fixtures import one_batch, tiny_config


@pytest.fixture(scope="module")
def ppm_dir(tiny_ppm_run):
    return tiny_ppm_run[0]


def _train_and_export(experiment, ppm_dir, tiny_world, tiny_examples, tiny_cache, root):
    # Two steps (one checkpoint loop): enough to move every weight, and the test's cost is
    # tracing, not steps.
    c = tiny_config(experiment, tiny_world, tiny_examples, tiny_cache,
                    model={"plugin": {"checkpoint": ppm_dir}},
                    trainer={"train_steps": 2, "checkpoint_interval": 2})
    run = os.path.join(root, experiment)
    summary = train.train(c, run, verbose=0)
    assert summary["replicas"] == 2 and summary["steps"] == 2
    assert summary["experiment"]["plugin"] == c.model.plugin.describe()
    assert np.isfinite(summary["final"]["loss"])
    return run, export.export(run, experiment, os.path.join(root, "saved_models"))


@pytest.fixture(scope="module")
def zoo_exports(ppm_dir, tiny_world, tiny_examples, tiny_cache, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("zoo"))
    return {m: _train_and_export(f"{m}_ppm", ppm_dir, tiny_world, tiny_examples, tiny_cache,
                                 root) for m in configs.ZOO}


def _check_served(runs, tiny_examples, models=None):
    (feats, _), schema = one_batch(tiny_examples, 8, "test")
    protos = [servables.model_config(name, os.path.dirname(version))
              for name, (_, version) in runs.items()]
    models = models or {name: evaluate.load_model(run)[:2] for name, (run, _) in runs.items()}
    with server.Server(protos, port=0, host="127.0.0.1", poll_seconds=0) as srv:
        for name in runs:
            model, inputs = models[name]
            expected = model.probabilities(feats)
            wanted = export.input_signature(export.serving_schema(model, inputs.schema))
            with client.Client(srv.target, name, timeout=60) as c:
                got = c.predict({k: feats[k].numpy() for k in wanted})
            assert sorted(got) == ["p_cart", "p_click", "p_order"], name
            for task in ("click", "order", "cart"):
                np.testing.assert_allclose(got[f"p_{task}"], expected[task].numpy(),
                                           rtol=1e-5, atol=1e-6, err_msg=f"{name} {task}")


def test_every_zoo_model_with_ppm_trains_exports_and_is_served(zoo_exports, ppm_dir,
                                                               tiny_examples):
    pretrained, _, _ = evaluate.load_model(ppm_dir)
    before = {w.name.split("/", 1)[1]: w.numpy() for w in pretrained.ppm.trainable_weights}
    models = {}
    for name, (run, _) in zoo_exports.items():
        models[name] = evaluate.load_model(run)[:2]
        # Fine-tuned from the pre-trained module: it moved away from the loaded weights.
        after = {w.name.split("/", 1)[1]: w.numpy()
                 for w in models[name][0].plugin.trainable_weights}
        assert sorted(before) == sorted(after), name
        assert any(not np.array_equal(before[k], after[k]) for k in before), name
    _check_served(zoo_exports, tiny_examples, models)


# The same path without the plug-in: what the w. PPM test runs minus the plug-in.
@pytest.mark.slow
def test_every_zoo_model_without_ppm_trains_exports_and_is_served(
        ppm_dir, tiny_world, tiny_examples, tiny_cache, tmp_path):
    runs = {m: _train_and_export(m, ppm_dir, tiny_world, tiny_examples, tiny_cache,
                                 str(tmp_path)) for m in configs.ZOO}
    _check_served(runs, tiny_examples)
