"""Fixtures of the serving tests: one exported tiny URM and a request for it."""

import os

import pytest

import ppm  # noqa: F401
from ppm import export
from tests.ranking_fixtures import one_batch, serving_names


@pytest.fixture(scope="module")
def exported(tiny_urm_run, tmp_path_factory):
    base = str(tmp_path_factory.mktemp("saved_models"))
    export.export(tiny_urm_run, "urm", base)
    return os.path.join(base, "urm")


@pytest.fixture(scope="module")
def request_features(tiny_examples):
    (feats, _), schema = one_batch(tiny_examples, 16, "test")
    return {k: feats[k].numpy() for k in serving_names(schema)}, feats
