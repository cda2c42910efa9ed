"""The listwise ranking signature (``rank_listwise``): the user once per request, candidates
``[B, N]`` with a mask; the same scores as the pointwise signature, padding that changes
nothing, and bad requests refused with INVALID_ARGUMENT while the server keeps serving."""

import os

import grpc
import numpy as np
import pytest
import tensorflow as tf

import ppm  # noqa: F401
from ppm import export
from ppm.serving import client, requests, servables, server


@pytest.fixture(scope="module")
def serving(exported):
    with server.Server([servables.model_config("urm", exported)], port=0, host="127.0.0.1",
                       poll_seconds=0) as srv:
        yield srv


@pytest.fixture(scope="module")
def ranking(tiny_world, tiny_examples):
    examples, _ = tiny_examples
    return requests.sample_ranking_request(examples, os.path.join(tiny_world, "items.parquet"),
                                           num_candidates=40, history=50)


def _listwise(c, ranking, mask=None):
    """The listwise inputs of ``ranking`` (optionally with another mask)."""
    inputs = c.listwise_features(ranking)
    if mask is not None:
        inputs[export.CANDIDATE_MASK] = mask
    return inputs


def _predict(c, inputs):
    response = c.predict_raw(inputs, signature=export.LISTWISE_SIGNATURE)
    return {k: tf.make_ndarray(v) for k, v in response.outputs.items()}


def test_listwise_and_pointwise_give_the_same_scores(serving, ranking):
    with client.Client(serving.target, "urm", timeout=30) as c:
        assert export.LISTWISE_SIGNATURE in c.metadata_cached().signature_def
        listwise = c.rank(ranking)  # the model has it: rank() uses it
        pointwise = c.rank(ranking, listwise=False)
        for k in ("p_click", "p_order", "p_cart"):
            assert listwise[k].shape == (40,)
            np.testing.assert_allclose(listwise[k], pointwise[k], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(listwise["order"], pointwise["order"])
        # The request is smaller: the history is sent once, not N times.
        sizes = [client.predict_request("urm", x, sig).ByteSize() for x, sig in (
            (_listwise(c, ranking), export.LISTWISE_SIGNATURE),
            (client.ranking_features(ranking, c.signature_inputs()), export.SIGNATURE))]
        assert sizes[0] * 5 < sizes[1]  # 8.6x with the tiny world's 12-item histories
        # N = 1
        one = c.rank({"user": ranking["user"], "candidates": ranking["candidates"][:1]})
        np.testing.assert_allclose(one["p_click"], pointwise["p_click"][:1], rtol=1e-5)


def test_padded_candidates_change_nothing_and_score_zero(serving, ranking):
    with client.Client(serving.target, "urm", timeout=30) as c:
        full = _predict(c, _listwise(c, ranking))
        mask = np.ones([1, 40], np.int64)
        mask[0, 25:] = 0
        padded = _predict(c, _listwise(c, ranking, mask))
        np.testing.assert_allclose(padded["p_click"][0, :25], full["p_click"][0, :25],
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(padded["p_click"][0, 25:], 0.0)
        # Two requests in one batch (as TF Serving's batching pads them): the same scores.
        one = _listwise(c, ranking)
        both = {k: np.concatenate([v, v]) for k, v in one.items()}
        both[export.CANDIDATE_MASK] = np.concatenate([np.ones([1, 40], np.int64), mask])
        two = _predict(c, both)
        np.testing.assert_allclose(two["p_click"][0], full["p_click"][0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(two["p_click"][1], padded["p_click"][0], rtol=1e-5,
                                   atol=1e-6)


def test_a_request_of_1000_candidates(serving, ranking):
    with client.Client(serving.target, "urm", timeout=30) as c:
        one = _predict(c, _listwise(c, ranking))
        many = _listwise(c, ranking)
        for name, value in many.items():  # the 40 candidates 25 times over
            if value.ndim == 2 and not name.startswith("hist_") and name != export.CANDIDATE_MASK:
                many[name] = np.tile(value, [1, 25])
        many[export.CANDIDATE_MASK] = np.ones([1, 1000], np.int64)
        got = _predict(c, many)
        assert got["p_click"].shape == (1, 1000)
        np.testing.assert_allclose(got["p_click"], np.tile(one["p_click"], [1, 25]),
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("change, message", [
    (lambda x: x.__setitem__(export.CANDIDATE_MASK, np.ones([1, 39], np.int64)),
     "different shapes"),
    (lambda x: [x.__setitem__(k, v[:, :0]) for k, v in list(x.items())
                if v.ndim == 2 and k.startswith(("item", "shop", "brand", "category",
                                                 "position", "candidate"))],
     "at least one candidate"),
    (lambda x: x.__setitem__("hist_len", np.array([10_000], np.int64)),
     "hist_len is larger"),
    (lambda x: x.__setitem__(export.CANDIDATE_MASK, np.full([1, 40], 2, np.int64)),
     "0 (padding) or 1"),
])
def test_bad_listwise_requests_are_refused_and_the_server_keeps_serving(serving, ranking,
                                                                        change, message):
    with client.Client(serving.target, "urm", timeout=30) as c:
        inputs = _listwise(c, ranking)
        change(inputs)
        with pytest.raises(grpc.RpcError) as err:
            _predict(c, inputs)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert message in err.value.details()
        assert c.rank(ranking)["p_click"].shape == (40,)  # still serving
