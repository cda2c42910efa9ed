"""The tf.data pipeline: shapes, order, remainders, MirroredStrategy on 2 logical CPUs."""

import os

import numpy as np
import pytest
import tensorflow as tf

from ppm import features
from ppm.data import pipeline


@pytest.fixture(scope="module")
def schema_and_dir(tiny_examples):
    out, stats = tiny_examples
    schema = features.FeatureSchema.load(os.path.join(out, features.SCHEMA_FILE))
    return schema, os.path.join(out, "train_large"), stats["windows"]["train_large"]["examples"]


def _request_ids(ds):
    return np.concatenate([f["request_id"].numpy() for f, _ in ds])


def test_batches_have_schema_shapes(schema_and_dir):
    schema, path, _ = schema_and_dir
    feats, labels = next(iter(pipeline.make_dataset(path, schema, 64, training=True, seed=1)))
    assert feats["hist_item_id"].shape == (64, schema.max_history)
    assert feats["hist_recency"].dtype == tf.int64 and feats["item_id"].shape == (64,)
    assert set(labels) == {"click", "order", "cart"} and labels["click"].dtype == tf.float32
    assert set(feats) == set(schema.names) - set(features.LABELS)
    lens = feats["hist_len"].numpy()
    pad = (feats["hist_item_id"].numpy() == b"").sum(axis=1)
    np.testing.assert_array_equal(pad, schema.max_history - lens)


def test_eval_keeps_every_example_once_training_drops_remainder(schema_and_dir):
    schema, path, n = schema_and_dir
    batch = 1000
    assert n % batch, "the test needs a remainder"
    ids = _request_ids(pipeline.make_dataset(path, schema, batch, training=False))
    assert len(ids) == n
    train = list(pipeline.make_dataset(path, schema, batch, training=True, seed=0))
    assert len(train) == n // batch
    assert all(f["item_id"].shape[0] == batch for f, _ in train)


def test_deterministic_order_for_a_seed(schema_and_dir):
    schema, path, _ = schema_and_dir

    def order(seed):
        return _request_ids(pipeline.make_dataset(path, schema, 500, training=True, seed=seed,
                                                  deterministic=True))

    a, b, c = order(3), order(3), order(4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_paper_batch_size_20000_with_repeat(schema_and_dir):
    schema, path, n = schema_and_dir
    assert n < 20000
    feats, labels = next(iter(pipeline.make_dataset(path, schema, 20000, training=True,
                                                    repeat=True, shuffle_buffer=1000)))
    assert feats["item_id"].shape == (20000,) and labels["cart"].shape == (20000,)


def test_mirrored_strategy_two_replicas(schema_and_dir):
    schema, path, n = schema_and_dir
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2

    # Training: each replica gets half of every global batch.
    dist = strategy.distribute_datasets_from_function(
        lambda ctx: pipeline.make_dataset(path, schema, 512, training=True, seed=0,
                                          input_context=ctx))
    feats, _ = next(iter(dist))
    sizes = [t.shape[0] for t in strategy.experimental_local_results(feats["item_id"])]
    assert sizes == [256, 256]

    # Evaluation: the partial last batch is spread over replicas; nothing is lost.
    eval_ds = strategy.experimental_distribute_dataset(
        pipeline.make_dataset(path, schema, 1000, training=False))
    total = 0
    for feats, _ in eval_ds:
        total += sum(t.shape[0] for t in strategy.experimental_local_results(feats["ts"]))
    assert total == n

    with pytest.raises(ValueError, match="not divisible"):
        next(iter(strategy.distribute_datasets_from_function(
            lambda ctx: pipeline.make_dataset(path, schema, 511, training=True,
                                              input_context=ctx))))


def test_missing_files_are_a_clear_error(tmp_path, schema_and_dir):
    schema, _, _ = schema_and_dir
    with pytest.raises(FileNotFoundError, match="No TFRecord files"):
        pipeline.make_dataset(str(tmp_path), schema, 8, training=False)
    with pytest.raises(ValueError, match="batch_size"):
        pipeline.make_dataset(str(tmp_path), schema, 0, training=False)
