"""Taobao's models end to end: MAKE pre-trains, its module is loaded into DIN (frozen or
fine-tuned), and every integration method trains under MirroredStrategy (2 logical CPUs),
exports and is served over gRPC with the in-process scores (arXiv:2407.19467 §4, §6)."""

import os

import numpy as np
import pytest

import ppm  # noqa: F401
from ppm import configs, evaluate, train
from ppm.models import load_inputs
from tests.models.test_zoo_training import _check_served, _train_and_export
from tests.ranking_fixtures import tiny_config


@pytest.fixture(scope="module")
def make_run(tiny_world, tiny_examples, tiny_cache, tmp_path_factory):
    run = str(tmp_path_factory.mktemp("make"))
    summary = train.train(tiny_config("make_pretrain", tiny_world, tiny_examples, tiny_cache),
                          run, verbose=0)
    assert summary["replicas"] == 2 and summary["steps"] == 4
    return run


def _weights(module):
    """The module's weights (the cache's table aside), keyed by their order and the end of
    their name: the same builder makes them in the same order, under other name scopes."""
    weights = [w for w in module.weights if "cache/" not in w.name]
    return {f"{k}:{'/'.join(w.name.split('/')[-2:])}": w.numpy() for k, w in enumerate(weights)}


@pytest.fixture(scope="module")
def pretrained(make_run):
    return _weights(evaluate.load_model(make_run)[0].make)


@pytest.fixture(scope="module")
def taobao_exports(make_run, tiny_world, tiny_examples, tiny_cache, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("taobao"))
    return {name: _train_and_export(name, make_run, tiny_world, tiny_examples, tiny_cache,
                                    root) for name in configs.TAOBAO}


def test_the_make_plugin_is_loaded_from_its_pretraining_run(make_run, pretrained, tiny_world,
                                                            tiny_examples, tiny_cache):
    c = tiny_config("din_make", tiny_world, tiny_examples, tiny_cache,
                    model={"plugin": {"checkpoint": make_run}})
    model, _ = train.build(c, load_inputs(c))
    loaded = _weights(model.plugin)
    assert sorted(loaded) == sorted(pretrained) and len(loaded) > 4
    for k in pretrained:
        np.testing.assert_array_equal(loaded[k], pretrained[k], err_msg=k)
    # random (MAKE epochs = 0): trained jointly from a fresh initialisation
    c.override({"model": {"plugin": {"init": "random"}}})
    fresh = _weights(train.build(c, load_inputs(c))[0].plugin)
    assert any(not np.array_equal(fresh[k], pretrained[k]) for k in pretrained)


def test_a_frozen_make_plugin_does_not_move(make_run, pretrained, tiny_world, tiny_examples,
                                            tiny_cache, tmp_path):
    c = tiny_config("din_simtier_make", tiny_world, tiny_examples, tiny_cache,
                    model={"plugin": {"checkpoint": make_run, "init": "frozen"}},
                    trainer={"train_steps": 2, "checkpoint_interval": 2})
    train.train(c, str(tmp_path), verbose=0)
    model = evaluate.load_model(str(tmp_path))[0]
    after = _weights(model.plugin)
    for k in pretrained:
        np.testing.assert_array_equal(after[k], pretrained[k], err_msg=k)
    head = model.head.trainable_weights[0].numpy()
    fresh = tiny_config("din_simtier_make", tiny_world, tiny_examples, tiny_cache,
                        model={"plugin": {"checkpoint": make_run, "init": "frozen"}})
    assert not np.array_equal(head, train.build(fresh, load_inputs(fresh))[0]
                              .head.trainable_weights[0].numpy())  # the rest did train


def test_every_taobao_model_trains_exports_and_is_served(taobao_exports, pretrained,
                                                         tiny_examples):
    models = {}
    for name, (run, _) in taobao_exports.items():
        models[name] = evaluate.load_model(run)[:2]
        model = models[name][0]
        if configs.get_config(name).model.plugin.kind == "make":  # fine-tuned: it moved
            after = _weights(model.plugin)
            assert sorted(after) == sorted(pretrained), name
            assert any(not np.array_equal(after[k], pretrained[k]) for k in pretrained), name
        assert os.path.isdir(os.path.join(run, "checkpoints"))
    _check_served(taobao_exports, tiny_examples, models)
