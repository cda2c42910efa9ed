"""Helpers for ranking-model tests: tiny configs over the session's tiny world."""

import os

from ppm import configs, features
from ppm.data import pipeline


def tiny_config(experiment, tiny_world, tiny_examples, tiny_cache, **override):
    examples, _ = tiny_examples
    c = configs.resolve(experiment, "tiny", validate=False)
    c.override({"data": {"dataset": tiny_world, "examples": examples,
                         "embeddings": tiny_cache}})
    if override:
        c.override(override)
    return c


def one_batch(tiny_examples, size=32, window="train_large"):
    examples, _ = tiny_examples
    schema = features.FeatureSchema.load(os.path.join(examples, features.SCHEMA_FILE))
    ds = pipeline.make_dataset(os.path.join(examples, window), schema, size, training=False,
                               deterministic=True)
    return next(iter(ds)), schema


def serving_names(schema):
    """The serving inputs of a model that reads no optional input (URM): what its signature
    asks for (``hist_session`` is DSIN's alone)."""
    return features.model_input_names(schema, exclude=features.OPTIONAL_INPUTS)


def write_start_run(model, inputs, config, folder):
    """``model``'s weights as a run folder that ``--init_checkpoint`` warm-starts from (its
    vocabularies and one checkpoint), so that a cluster starts from the same weights."""
    import tensorflow as tf

    from ppm.models import factory

    factory.record_inputs(inputs, config, folder)
    tf.train.Checkpoint(model=model).write(os.path.join(folder, "checkpoints", "ckpt-0"))
