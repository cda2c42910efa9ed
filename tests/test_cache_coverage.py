"""Catalogue items missing from the embedding cache are counted, reported and refused."""

import logging
import os
import shutil

import pytest

import ppm  # noqa: F401
from ppm import export, train
from ppm.data import cache as cache_lib
from ppm.models import factory
from tests.conftest import write_fake_cache
from tests.ranking_fixtures import tiny_config


def test_full_cache_reports_no_missing_items(tiny_world, tiny_examples, tiny_cache):
    inputs = factory.load_inputs(tiny_config("ppm_pretrain", tiny_world, tiny_examples,
                                             tiny_cache))
    assert inputs.coverage["missing"] == 0
    assert inputs.coverage["items"] == len(inputs.cache) > 0


def test_a_few_missing_items_are_counted_and_warned(tiny_world, tiny_examples, tmp_path,
                                                    caplog):
    partial = write_fake_cache(tiny_world, str(tmp_path / "cache"), drop=2)
    config = tiny_config("ppm_pretrain", tiny_world, tiny_examples, partial)
    with caplog.at_level(logging.WARNING, logger="ppm.models.factory"):
        inputs = factory.load_inputs(config)
    assert inputs.coverage["missing"] == 2
    assert inputs.coverage["fraction"] == pytest.approx(2 / inputs.coverage["items"])
    assert "2 of" in caplog.text and "missing from the embedding cache" in caplog.text


def test_too_many_missing_items_are_refused_before_training(tiny_world, tiny_examples,
                                                            tmp_path):
    partial = write_fake_cache(tiny_world, str(tmp_path / "cache"), drop=20)
    config = tiny_config("ppm_pretrain", tiny_world, tiny_examples, partial)
    run = tmp_path / "run"
    with pytest.raises(factory.CacheCoverageError, match="max_missing_cache_fraction"):
        train.train(config, str(run), verbose=0)
    assert not (run / "checkpoints").exists()
    config.override({"data": {"max_missing_cache_fraction": 0.1}})
    assert factory.load_inputs(config).coverage["missing"] == 20


def test_export_with_a_smaller_cache_names_both_counts(tiny_urm_run, tiny_world, tiny_cache,
                                                       tmp_path):
    # The run's cache rebuilt with the same encoders (a consistent manifest) but one item less.
    run = shutil.copytree(tiny_urm_run, tmp_path / "run")
    partial = write_fake_cache(tiny_world, str(tmp_path / "cache"), drop=1)
    config = run / "config.yaml"
    assert tiny_cache in config.read_text()
    config.write_text(config.read_text().replace(tiny_cache, partial))
    with pytest.raises(cache_lib.CacheMismatchError, match="trained with an embedding cache"):
        export.export(str(run), "urm", str(tmp_path / "saved_models"))
    assert not os.path.exists(tmp_path / "saved_models" / "urm" / "1")
