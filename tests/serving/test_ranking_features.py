"""client.ranking_features: one request format for every model (pure function, no server)."""

import numpy as np
import pytest
import tensorflow as tf

from ppm.serving import client

SPEC = {"item_id": (tf.string, [-1]), "position": (tf.int64, [-1]),
        "hist_item_id": (tf.string, [-1, -1]), "hist_len": (tf.int64, [-1])}


def test_optional_inputs_the_model_does_not_read_are_ignored_others_refused():
    request = {"user": {"hist_item_id": ["a", "b"], "hist_session": [0, 1]},
               "candidates": [{"item_id": "x"}, {"item_id": "y"}]}
    out = client.ranking_features(request, SPEC)
    assert sorted(out) == sorted(SPEC)  # hist_session is DSIN's: not sent to this model
    np.testing.assert_array_equal(out["hist_len"], [2, 2])
    with_sessions = {**SPEC, "hist_session": (tf.int64, [-1, -1])}
    np.testing.assert_array_equal(client.ranking_features(request, with_sessions)[
        "hist_session"], [[0, 1], [0, 1]])
    request["user"]["hist_typo"] = ["a", "b"]
    with pytest.raises(ValueError, match="hist_typo"):
        client.ranking_features(request, SPEC)
