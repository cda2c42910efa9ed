"""tf.data input pipeline over the TFRecord examples of `beam_jobs.build_examples`.

Every feature is parsed with the single spec of :class:`ppm.features.FeatureSchema`:
histories are padded to ``[batch, max_history]`` (``""`` / ``0``), labels come out as float32.

Order of operations: file list (sharded per input pipeline under a distribution strategy) ->
parallel interleave of TFRecord readers -> shuffle -> repeat -> batch -> vectorised parse of the
whole batch -> prefetch. One `parse_example` call per batch (rather than one per example) keeps
the per-example cost low; on a 2-core machine batch 20000 parsed 75-113k examples/s, batch
2000 0.9-1.3x that (`benchmarks/pipeline_throughput.py`).

Remainders under MirroredStrategy: training drops the last partial batch by default, so every
step splits one full global batch evenly over the replicas (static shapes, equal per-replica
loss scaling); evaluation keeps it, and ``tf.distribute`` feeds the partial batch (some
replicas may then get fewer or zero examples), so no example is skipped in metrics.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from ppm import features

AUTOTUNE = tf.data.AUTOTUNE


def list_files(patterns: str | Sequence[str]) -> list[str]:
    """Sorted files matching ``patterns`` (a glob, a folder, or a list of either).

    Raises:
      FileNotFoundError: nothing matches.
    """
    if isinstance(patterns, str):
        patterns = [patterns]
    files = []
    for pattern in patterns:
        if tf.io.gfile.isdir(pattern):
            pattern = pattern.rstrip("/") + "/*.tfrecord*"
        files += tf.io.gfile.glob(pattern)
    if not files:
        raise FileNotFoundError(f"No TFRecord files match {list(patterns)}")
    return sorted(set(files))


def parse_batch(serialized: tf.Tensor, schema: features.FeatureSchema):
    """Parses a batch of serialized examples into ``(features, labels)``.

    Args:
      serialized: string tensor [batch].
      schema: the feature schema.

    Returns:
      features: dict of tensors, scalars [batch], histories [batch, max_history].
      labels: dict ``click``, ``order``, ``cart`` of float32 [batch].
    """
    parsed = tf.io.parse_example(serialized, schema.parsing_spec())
    feats, labels = {}, {}
    for f in schema.features:
        value = parsed[f.name]
        if f.sequence:
            value = value.to_tensor(default_value=f.default,
                                    shape=[None, schema.max_history])
        if f.role == features.LABEL:
            labels[f.name] = tf.cast(value, tf.float32)
        else:
            feats[f.name] = value
    return feats, labels


def make_dataset(patterns: str | Sequence[str], schema: features.FeatureSchema,
                 batch_size: int, *, training: bool, shuffle_buffer: int = 100_000,
                 seed: int | None = None, deterministic: bool = False, repeat: bool = False,
                 drop_remainder: bool | None = None,
                 input_context: tf.distribute.InputContext | None = None,
                 cycle_length: int = 8) -> tf.data.Dataset:
    """Builds the input pipeline.

    Args:
      patterns: TFRecord files, globs or folders.
      schema: feature schema (usually `FeatureSchema.load(examples/schema.json)`).
      batch_size: the global batch size (e.g. 20000 for the paper preset). With an
        ``input_context`` the dataset yields per-replica batches, as
        ``distribute_datasets_from_function`` expects.
      training: shuffle files and examples, and drop the remainder by default.
      shuffle_buffer: examples in the shuffle buffer.
      seed: seed of the file and example shuffles.
      deterministic: keep a reproducible element order (slower interleave); with
        ``training`` it needs a ``seed`` to be reproducible.
      repeat: repeat indefinitely (for step-based training).
      drop_remainder: defaults to ``training``.
      input_context: from ``strategy.distribute_datasets_from_function``; shards the files
        over input pipelines.
      cycle_length: files read in parallel.

    Returns:
      A dataset of ``(features, labels)`` batches.

    Raises:
      ValueError: bad batch size, or a global batch that replicas cannot split evenly.
      FileNotFoundError: no input files.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if drop_remainder is None:
        drop_remainder = training
    files = list_files(patterns)
    batch = batch_size
    ds = tf.data.Dataset.from_tensor_slices(files)
    if input_context is not None:
        if batch_size % input_context.num_replicas_in_sync:
            raise ValueError(f"Global batch {batch_size} is not divisible by the "
                             f"{input_context.num_replicas_in_sync} replicas")
        # distribute_datasets_from_function expects per-replica batches.
        batch = input_context.get_per_replica_batch_size(batch_size)
        if input_context.num_input_pipelines > 1:
            if len(files) < input_context.num_input_pipelines:
                raise ValueError(f"{len(files)} files cannot be sharded over "
                                 f"{input_context.num_input_pipelines} input pipelines; "
                                 "write more shards (--num_shards)")
            ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    if training:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(cycle_length, len(files)),
                       num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    if training:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch, drop_remainder=drop_remainder)
    ds = ds.map(lambda s: parse_batch(s, schema), num_parallel_calls=AUTOTUNE,
                deterministic=deterministic)
    options = tf.data.Options()
    options.deterministic = deterministic
    return ds.with_options(options).prefetch(AUTOTUNE)
