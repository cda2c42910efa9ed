"""Checkpoint helpers: latest checkpoint of a run, loading the PPM module, warm starts.

A run folder keeps ``checkpoints/ckpt-<step>`` written by a ``tf.train.CheckpointManager``
over ``tf.train.Checkpoint(model=..., optimizer=...)``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import re
import time

import numpy as np
import tensorflow as tf

from ppm import distribute
from ppm.layers import CachedItemEmbedding, IdEmbedding

CHECKPOINT_DIR = "checkpoints"
logger = logging.getLogger(__name__)


class DamagedCheckpointError(RuntimeError):
    """A checkpoint folder holds checkpoint files, none of which can be read."""


@dataclasses.dataclass(frozen=True)
class Scan:
    """What a checkpoint folder holds.

    Attributes:
      readable: checkpoint prefixes, oldest first; the newest was read completely (index and
        every tensor), older ones are not read.
      damaged: ``(prefix or file, reason)`` of checkpoints that cannot be read, newest first.
      state_file_error: why the ``checkpoint`` state file could not be used (None: fine or absent).
    """

    readable: list
    damaged: list
    state_file_error: str | None

    @property
    def newest(self) -> str | None:
        return self.readable[-1] if self.readable else None

    @property
    def holds_checkpoints(self) -> bool:
        return bool(self.readable or self.damaged or self.state_file_error)


_FILE = re.compile(r"^(?P<prefix>.+-(?P<step>\d+))\.(index|data-\d+-of-\d+)$")
STATE_FILE = "checkpoint"


def check_readable(prefix: str) -> str | None:
    """Why the checkpoint ``prefix`` cannot be restored, or None when it can.

    Reads the index and every tensor (the bundle reader verifies each tensor's checksum), so a
    truncated or overwritten data shard is found here rather than half-way through a restore.
    The answer is remembered while the checkpoint's files keep their sizes and times.
    """
    if not tf.io.gfile.exists(prefix + ".index"):
        return f"{prefix}.index is missing"
    files = tuple((f, s.length, s.mtime_nsec) for f in sorted(tf.io.gfile.glob(prefix + ".*"))
                  for s in [tf.io.gfile.stat(f)])
    return _check_files(prefix, files)


@functools.lru_cache(maxsize=64)
def _check_files(prefix: str, files: tuple) -> str | None:
    try:
        reader = tf.train.load_checkpoint(prefix)
        for key in reader.get_variable_to_shape_map():
            reader.get_tensor(key)
    except (tf.errors.OpError, IndexError, ValueError, RuntimeError) as e:
        shards = sorted(tf.io.gfile.glob(prefix + ".*"))
        return (f"cannot read {', '.join(shards) or prefix}: "
                f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}")
    return None


def scan(folder: str) -> Scan:
    """Finds every checkpoint in ``folder`` from its files (not only the state file).

    The ``checkpoint`` state file names the latest checkpoint, but it can be stale, garbage or
    point at a checkpoint whose files were lost; the files themselves are the truth.
    """
    if not tf.io.gfile.isdir(folder):
        return Scan([], [], None)
    prefixes = {}
    for name in tf.io.gfile.listdir(folder):
        match = _FILE.match(name)
        if match:
            prefixes[os.path.join(folder, match["prefix"])] = int(match["step"])
    state_error = None
    state_path = os.path.join(folder, STATE_FILE)
    if tf.io.gfile.exists(state_path):
        state = None
        try:
            state = tf.train.get_checkpoint_state(folder)
        except Exception as e:  # noqa: BLE001 - any parse failure means an unusable file
            state_error = f"{state_path} cannot be parsed ({e})"
        if state is None and state_error is None:
            state_error = f"{state_path} cannot be parsed"
        for path in (state.all_model_checkpoint_paths if state else []):
            path = path if os.path.isabs(path) else os.path.join(folder, path)
            match = re.search(r"-(\d+)$", path)
            if match:
                prefixes.setdefault(path, int(match[1]))
    readable, damaged = [], []
    for prefix in sorted(prefixes, key=prefixes.get, reverse=True):
        # Newest first, until one reads: older ones are only needed if that one is lost.
        reason = None if readable else check_readable(prefix)
        if reason:
            damaged.append((prefix, reason))
        else:
            readable.insert(0, prefix)
    return Scan(readable, damaged, state_error)


def latest(path: str) -> str:
    """The newest readable checkpoint of a run folder, a checkpoint folder, or a prefix.

    Damaged checkpoints newer than the one returned are skipped with a warning naming them.

    Raises:
      FileNotFoundError: nothing to restore there.
      DamagedCheckpointError: there are checkpoints, but none can be read.
    """
    for folder in (os.path.join(path, CHECKPOINT_DIR), path):
        found = scan(folder)
        _warn_damaged(found)
        if found.newest:
            return found.newest
        if found.holds_checkpoints:
            raise DamagedCheckpointError(_none_readable(folder, found))
    if tf.io.gfile.exists(path + ".index"):
        reason = check_readable(path)
        if reason:
            raise DamagedCheckpointError(reason)
        return path
    raise FileNotFoundError(f"no checkpoint in {path} (expected a run folder with "
                            f"{CHECKPOINT_DIR}/ or a checkpoint prefix)")


def _warn_damaged(found: Scan) -> None:
    if found.state_file_error:
        logger.warning("Ignoring the checkpoint state file: %s", found.state_file_error)
    for prefix, reason in found.damaged:
        logger.warning("Skipping damaged checkpoint %s: %s", prefix, reason)


def _none_readable(folder: str, found: Scan) -> str:
    reasons = [r for _, r in found.damaged] + ([found.state_file_error]
                                                if found.state_file_error else [])
    return (f"{folder} holds checkpoints but none can be read: " + "; ".join(reasons) +
            ". Restore them from a backup, or move the folder away to start over.")


def _write_state_file(folder: str, latest_prefix: str, prefixes: list) -> None:
    """Writes the ``checkpoint`` state file (a CheckpointState text proto), atomically."""
    def quoted(prefix):
        return '"' + os.path.basename(prefix).replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = [f"model_checkpoint_path: {quoted(latest_prefix)}"]
    lines += [f"all_model_checkpoint_paths: {quoted(p)}" for p in prefixes]
    tmp = os.path.join(folder, f".{STATE_FILE}.tmp")
    with tf.io.gfile.GFile(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    tf.io.gfile.rename(tmp, os.path.join(folder, STATE_FILE), overwrite=True)


def newest_readable(folder: str) -> tuple[str | None, list]:
    """What :func:`prepare_resume` would resume from, without touching the folder (for a
    worker that resumes from the chief's checkpoints while the chief prepares them).

    Raises:
      DamagedCheckpointError: as :func:`prepare_resume`.
    """
    found = scan(folder)
    if found.holds_checkpoints and not found.newest:
        raise DamagedCheckpointError(_none_readable(folder, found))
    return found.newest, list(found.damaged)


def prepare_resume(folder: str) -> tuple[str | None, list]:
    """Makes a run's checkpoint folder safe to resume from; returns (checkpoint, damaged).

    The newest readable checkpoint is the one to resume from. Damaged checkpoints are moved
    into ``<folder>/damaged-<time>/`` (kept for inspection, and never overwritten by the
    resumed run's saves at the same steps), and the state file is rewritten to list the
    readable ones, so that ``tf.train.CheckpointManager`` keeps rotating them.

    Returns:
      ``(None, [])`` for a folder without checkpoints (a new run), else the checkpoint prefix
      to restore and the ``(prefix, reason)`` of every damaged checkpoint set aside.

    Raises:
      DamagedCheckpointError: the folder holds checkpoints and none can be read: starting over
        would silently lose the run, so nothing is touched.
    """
    found = scan(folder)
    if not found.holds_checkpoints:
        return None, []
    _warn_damaged(found)
    if not found.newest:
        raise DamagedCheckpointError(_none_readable(folder, found))
    if found.damaged:
        aside = os.path.join(folder, time.strftime("damaged-%Y%m%d-%H%M%S"))
        tf.io.gfile.makedirs(aside)
        for prefix, _ in found.damaged:
            for f in tf.io.gfile.glob(prefix + ".*"):
                tf.io.gfile.rename(f, os.path.join(aside, os.path.basename(f)))
        logger.warning("Moved %d damaged checkpoint(s) to %s", len(found.damaged), aside)
    if found.damaged or found.state_file_error:
        _write_state_file(folder, found.newest, found.readable)
    return found.newest, found.damaged


def load_module(module, path: str, attribute: str = "ppm") -> str:
    """Restores a plug-in module from the run that pre-trained it (PPM §3.2.2: a
    ``ppm_pretrain`` run; Taobao §4.3: a ``make_pretrain`` run).

    ``module`` is the plug-in module of any ranking model (built); it is matched to the run's
    ``model/<attribute>`` object. Every variable of the module must be found in the
    checkpoint; the pre-training model's other parts (PPM's CTR head) and optimizer slots are
    ignored.

    Returns:
      The checkpoint read.

    Raises:
      FileNotFoundError: no checkpoint.
      AssertionError: the checkpoint lacks variables of the module (not a PPM run, or another
        architecture).
    """
    ckpt = latest(path)
    if module is None:
        raise ValueError(f"the model has no {attribute} module to load")
    status = tf.train.Checkpoint(model=tf.train.Checkpoint(**{attribute: module})).restore(ckpt)
    status.expect_partial().assert_existing_objects_matched()
    logger.info("Loaded the %s module from %s", attribute, ckpt)
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
    new_weights, old_weights = _whole(model.weights), _whole(template.weights)
    if len(new_weights) != len(old_weights):
        raise ValueError(f"{ckpt}: another architecture ({len(old_weights)} variables, "
                         f"this model has {len(new_weights)})")
    for new, old in zip(new_weights, old_weights):
        if id(old.parts[0]) in cache_vars:
            continue
        if id(old.parts[0]) in old_layers:
            old_vocab = old_layers[id(old.parts[0])].vocabulary
            layer = new_layers[id(new.parts[0])]
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


class _Whole:
    """A variable, or the shards of one split by rows across parameter servers
    (:func:`ppm.distribute.whole_variables`), read and assigned as one array."""

    def __init__(self, parts):
        self.parts, self.name = parts, parts[0].name

    @property
    def shape(self):
        if len(self.parts) == 1:
            return self.parts[0].shape
        rows = sum(int(p.shape[0]) for p in self.parts)
        return tf.TensorShape([rows] + self.parts[0].shape.as_list()[1:])

    def numpy(self):
        if len(self.parts) == 1:
            return self.parts[0].numpy()
        return np.concatenate([p.numpy() for p in self.parts])

    def assign(self, value):
        value = value.numpy() if isinstance(value, _Whole) else value
        if len(self.parts) == 1:
            self.parts[0].assign(value)
            return
        start = 0
        for p in self.parts:
            p.assign(value[start:start + int(p.shape[0])])
            start += int(p.shape[0])


def _whole(weights) -> list:
    return [_Whole(parts) for parts in distribute.whole_variables(weights)]


def _layers(model, kind) -> list:
    return [m for m in model._flatten_modules() if isinstance(m, kind)]  # noqa: SLF001



def cache_rows_in(path: str) -> int | None:
    """Rows of the embedding-cache table stored in a checkpoint (None: no cache there)."""
    shapes = tf.train.load_checkpoint(latest(path)).get_variable_to_shape_map()
    rows = {v[0] for k, v in shapes.items()
            if k.endswith("cache/table/.ATTRIBUTES/VARIABLE_VALUE")}
    return rows.pop() if rows else None
