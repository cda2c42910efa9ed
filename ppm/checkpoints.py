"""Checkpoint helpers: latest checkpoint of a run, loading the PPM module, warm starts.

A run folder keeps ``checkpoints/ckpt-<step>`` written by a ``tf.train.CheckpointManager``
over ``tf.train.Checkpoint(model=..., optimizer=...)``.
"""

from __future__ import annotations

import logging
import os

import tensorflow as tf

from ppm.layers import CachedItemEmbedding, IdEmbedding

CHECKPOINT_DIR = "checkpoints"
logger = logging.getLogger(__name__)


def latest(path: str) -> str:
    """The latest checkpoint of a run folder, a checkpoint folder, or a checkpoint prefix.

    Raises:
      FileNotFoundError: nothing to restore there.
    """
    for folder in (os.path.join(path, CHECKPOINT_DIR), path):
        if tf.io.gfile.isdir(folder):
            found = tf.train.latest_checkpoint(folder)
            if found:
                return found
    if tf.io.gfile.exists(path + ".index"):
        return path
    raise FileNotFoundError(f"no checkpoint in {path} (expected a run folder with "
                            f"{CHECKPOINT_DIR}/ or a checkpoint prefix)")


def load_ppm_module(model, path: str) -> str:
    """Restores ``model.ppm`` from a ``ppm_pretrain`` run (PPM §3.2.2: the plug-in).

    Every variable of the PPM module must be found in the checkpoint; the PPM model's CTR head
    and optimizer slots are ignored.

    Returns:
      The checkpoint read.

    Raises:
      FileNotFoundError: no checkpoint.
      AssertionError: the checkpoint lacks variables of the module (not a PPM run, or another
        architecture).
    """
    ckpt = latest(path)
    if model.ppm is None:
        raise ValueError("the model has no PPM module to load")
    status = tf.train.Checkpoint(model=tf.train.Checkpoint(ppm=model.ppm)).restore(ckpt)
    status.expect_partial().assert_existing_objects_matched()
    logger.info("Loaded the PPM module from %s", ckpt)
    return ckpt


def warm_start(model, template, path: str) -> dict:
    """Initialises ``model`` from another run's checkpoint (PPM Fig. 3 daily updates).

    ``template`` is the same architecture built with the *old* run's vocabularies; it is
    restored from ``path``, then copied into ``model`` variable by variable: ID embedding rows
    are remapped by id (ids new today keep their fresh initialisation), embedding-cache tables
    keep today's cache, everything else is copied as is. Optimizer state is not carried over.

    Args:
      model: the new model, built.
      template: the old architecture (the old run's vocabularies), built.
      path: run folder or checkpoint.

    Returns:
      Counts: ``copied`` variables, ``remapped`` tables, ``ids_kept`` / ``ids_new`` rows.
    """
    ckpt = latest(path)
    tf.train.Checkpoint(model=template).restore(ckpt).expect_partial()
    counts = {"copied": 0, "remapped": 0, "ids_kept": 0, "ids_new": 0}
    old_layers = {id(v): layer for layer in _layers(template, IdEmbedding)
                  for v in layer.weights}
    cache_vars = {id(v) for layer in _layers(template, CachedItemEmbedding)
                  for v in layer.weights}
    new_layers = {id(v): layer for layer in _layers(model, IdEmbedding) for v in layer.weights}
    if len(model.weights) != len(template.weights):
        raise ValueError(f"{ckpt}: another architecture ({len(template.weights)} variables, "
                         f"this model has {len(model.weights)})")
    for new, old in zip(model.weights, template.weights):
        if id(old) in cache_vars:
            continue
        if id(old) in old_layers:
            old_vocab = old_layers[id(old)].vocabulary
            layer = new_layers[id(new)]
            value = new.numpy()
            old_value = old.numpy()
            row = {v: i + layer.num_oov_indices for i, v in enumerate(old_vocab)}
            value[:layer.num_oov_indices] = old_value[:layer.num_oov_indices]
            kept = 0
            for i, v in enumerate(layer.vocabulary):
                if v in row:
                    value[i + layer.num_oov_indices] = old_value[row[v]]
                    kept += 1
            new.assign(value)
            counts["remapped"] += 1
            counts["ids_kept"] += kept
            counts["ids_new"] += len(layer.vocabulary) - kept
            continue
        if new.shape != old.shape:
            raise ValueError(f"{ckpt}: {new.name} has shape {old.shape} there, "
                             f"{new.shape} here")
        new.assign(old)
        counts["copied"] += 1
    logger.info("Warm-started from %s: %s", ckpt, counts)
    return counts


def _layers(model, kind) -> list:
    return [m for m in model._flatten_modules() if isinstance(m, kind)]  # noqa: SLF001



def cache_rows_in(path: str) -> int | None:
    """Rows of the embedding-cache table stored in a checkpoint (None: no cache there)."""
    shapes = tf.train.load_checkpoint(latest(path)).get_variable_to_shape_map()
    rows = {v[0] for k, v in shapes.items()
            if k.endswith("cache/table/.ATTRIBUTES/VARIABLE_VALUE")}
    return rows.pop() if rows else None
