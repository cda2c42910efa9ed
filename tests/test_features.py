"""The feature schema: serialisation, examples, parsing."""

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
