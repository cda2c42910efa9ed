"""The feature schema: serialisation, examples, parsing."""

import dataclasses
import json

import numpy as np
import pytest
import tensorflow as tf

from ppm import features
from ppm.data import pipeline

PROFILE = ("user_age", "user_gender")


def _values(hist_len=2):
    return {
        "item_id": "i1", "shop_id": "s1", "brand_id": "b1", "category_id": "c1",
        "position": 3,
        "hist_item_id": ["i9", "i8"][:hist_len], "hist_shop_id": ["s9", "s8"][:hist_len],
        "hist_brand_id": ["b9", "b8"][:hist_len], "hist_category_id": ["c9", "c8"][:hist_len],
        "hist_position": [0, 5][:hist_len], "hist_recency": [1, 4][:hist_len],
        "hist_session": [0, 1][:hist_len],
        "hist_len": hist_len, "click": 1, "order": 0, "cart": 1, "request_id": "r1",
        "user_id": "u1", "ts": 1000, "rank": -1, "item_freq": 7, "user_age": "25-34",
        "user_gender": "F",
    }


def test_schema_json_round_trip(tmp_path):
    schema = features.FeatureSchema(max_history=7, profile_features=PROFILE)
    path = str(tmp_path / "schema.json")
    schema.save(path)
    assert features.FeatureSchema.load(path) == schema
    assert schema["hist_item_id"].sequence and schema["user_age"].role == features.PROFILE


def test_example_round_trip_pads_histories():
    schema = features.FeatureSchema(max_history=4, profile_features=PROFILE)
    serialized = tf.constant([schema.to_example(_values(2)).SerializeToString(),
                              schema.to_example(_values(0)).SerializeToString()])
    feats, labels = pipeline.parse_batch(serialized, schema)
    np.testing.assert_array_equal(feats["hist_item_id"].numpy(),
                                  [[b"i9", b"i8", b"", b""], [b"", b"", b"", b""]])
    np.testing.assert_array_equal(feats["hist_position"].numpy(), [[0, 5, 0, 0], [0] * 4])
    np.testing.assert_array_equal(feats["hist_len"].numpy(), [2, 0])
    assert feats["user_gender"].numpy().tolist() == [b"F", b"F"]
    assert labels["cart"].dtype == tf.float32
    np.testing.assert_array_equal(labels["click"].numpy(), [1.0, 1.0])
    assert set(labels) == set(features.LABELS)
    assert not set(labels) & set(feats)


def test_example_errors_are_clear():
    schema = features.FeatureSchema(max_history=1)
    with pytest.raises(ValueError, match="hist_item_id has 2 values"):
        schema.to_example(_values(2))
    bad = _values(1)
    del bad["rank"]
    with pytest.raises(KeyError, match="rank"):
        features.FeatureSchema(max_history=3).to_example(bad)
    with pytest.raises(ValueError, match="must start with 'user_'"):
        features.FeatureSchema(profile_features=("age",))
    with pytest.raises(ValueError, match="max_history"):
        features.FeatureSchema(max_history=0)


def test_recency_buckets_hand_computed():
    ages = [0, 59, 60, 3599, 3600, 86400, 40 * 86400, 10**9]
    np.testing.assert_array_equal(features.recency_bucket(ages), [0, 0, 1, 2, 3, 5, 9, 10])
    assert features.NUM_RECENCY_BUCKETS == 11


def test_model_inputs_exclude_labels_and_meta():
    names = features.model_input_names(features.FeatureSchema(profile_features=PROFILE))
    assert "item_id" in names and "hist_recency" in names and "user_age" in names
    assert not {"click", "order", "cart", "request_id", "user_id", "item_freq"} & set(names)


def test_session_ids_split_at_gaps_over_30_minutes():
    assert features.SESSION_GAP_S == 1800
    # Most recent first: gaps 1800 (same session), 1801 (new), 0 (same), 5000 (new).
    ts = [10_000, 8_200, 6_399, 6_399, 1_399]
    assert features.session_ids(ts) == [0, 0, 1, 1, 2]
    assert features.session_ids(ts, gap_seconds=0) == [0, 1, 2, 2, 3]
    assert features.session_ids(ts, gap_seconds=5000) == [0, 0, 0, 0, 0]
    assert features.session_ids(np.asarray(ts, np.int64)) == [0, 0, 1, 1, 2]
    assert features.session_ids([]) == [] and features.session_ids([7]) == [0]
    with pytest.raises(ValueError, match="most recent first"):
        features.session_ids([100, 200])
    with pytest.raises(ValueError, match="gap_seconds"):
        features.session_ids([100], gap_seconds=-1)


def test_default_schema_has_hist_session():
    f = features.FeatureSchema()[features.HIST_SESSION]
    assert (f.dtype, f.role, f.sequence) == (features.INT64, features.HISTORY, True)
    assert features.HIST_SESSION in features.model_input_names(features.FeatureSchema())


def _old_schema_json(tmp_path, **kw):
    """schema.json as written before hist_session existed: the same file without it."""
    d = features.FeatureSchema(**kw).to_dict()
    d["features"] = [f for f in d["features"] if f["name"] != features.HIST_SESSION]
    path = str(tmp_path / "schema.json")
    with open(path, "w") as f:
        json.dump(d, f)
    return path, d


def test_schema_json_without_hist_session_still_loads_and_parses(tmp_path):
    path, stored = _old_schema_json(tmp_path, max_history=4, profile_features=PROFILE)
    old = features.FeatureSchema.load(path)
    # The features it was written with: parser, model inputs and serving inputs unchanged.
    assert not old.sessions and features.HIST_SESSION not in old.names
    assert [dataclasses.asdict(f) for f in old.features] == stored["features"]
    assert old == features.FeatureSchema(max_history=4, profile_features=PROFILE,
                                         sessions=False)
    assert old != features.FeatureSchema(max_history=4, profile_features=PROFILE)
    values = _values(2)
    del values["hist_session"]
    serialized = tf.constant([old.to_example(values).SerializeToString()])
    feats, labels = pipeline.parse_batch(serialized, old)
    assert features.HIST_SESSION not in feats
    np.testing.assert_array_equal(feats["hist_recency"].numpy(), [[1, 4, 0, 0]])
    assert labels["click"].numpy().tolist() == [1.0]
    # Read with the new default schema, an old example's sessions are padding (0).
    new = features.FeatureSchema(max_history=4, profile_features=PROFILE)
    feats, _ = pipeline.parse_batch(serialized, new)
    np.testing.assert_array_equal(feats[features.HIST_SESSION].numpy(), [[0, 0, 0, 0]])
    # A dict without a feature list (not written by to_dict) gets the current default.
    assert features.FeatureSchema.from_dict({"max_history": 3}).sessions


def test_schema_json_round_trip_keeps_sessions(tmp_path):
    for sessions in (True, False):
        schema = features.FeatureSchema(max_history=5, sessions=sessions)
        path = str(tmp_path / f"schema_{sessions}.json")
        schema.save(path)
        loaded = features.FeatureSchema.load(path)
        assert loaded == schema and (features.HIST_SESSION in loaded.names) == sessions
