"""Distribution strategies: one per process, shared by every training in it.

``mirrored`` replicates over all local GPUs, or over the logical CPU devices when there is no
GPU (tests configure 2); ``multi_worker_mirrored`` spans machines described by the
``TF_CONFIG`` environment variable (``{"cluster": {"worker": ["host1:port", ...]},
"task": {"type": "worker", "index": i}}``), the same program running on every worker.

Under ``multi_worker_mirrored`` the chief (worker 0, or the task of type ``chief``) writes the
run folder; the other workers take part in every save (a checkpoint is a collective operation)
but write into :func:`write_dir`, a temporary folder they delete (:func:`remove_write_dir`).
"""

from __future__ import annotations

import functools
import os

import tensorflow as tf


@functools.cache
def strategy(name: str = "mirrored", devices: tuple[str, ...] | None = None):
    """The process's strategy of this kind (created once and reused).

    Separate MirroredStrategy objects in one process can reuse collective instance keys and
    then fail with shape mismatches between their all-reduces, hence the cache; on CPUs the
    replicas reduce through one device rather than with collective ops for the same reason.

    Args:
      name: ``mirrored`` or ``multi_worker_mirrored``.
      devices: explicit devices for ``mirrored`` (e.g. ``("/cpu:0",)`` for one replica).

    Raises:
      ValueError: unknown name.
    """
    if name == "multi_worker_mirrored":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name != "mirrored":
        raise ValueError(f"unknown strategy {name!r}: mirrored or multi_worker_mirrored")
    if tf.config.list_logical_devices("GPU"):
        return tf.distribute.MirroredStrategy(devices=list(devices) if devices else None)
    return tf.distribute.MirroredStrategy(
        devices=list(devices) if devices else None,
        cross_device_ops=tf.distribute.ReductionToOneDevice())


def is_chief(strategy) -> bool:
    """Whether this process writes the run folder (always, except a non-chief worker)."""
    return bool(strategy.extended.should_checkpoint)


def write_dir(path: str, strategy) -> str:
    """Where this process writes what belongs in ``path``: ``path`` on the chief, else
    ``path/workertemp_<task id>`` (the folder Keras' TensorBoard callback uses too)."""
    if is_chief(strategy):
        return path
    return os.path.join(path, f"workertemp_{strategy.cluster_resolver.task_id}")


def remove_write_dir(path: str, strategy) -> None:
    """Deletes a non-chief's :func:`write_dir` of ``path`` (nothing on the chief)."""
    folder = write_dir(path, strategy)
    if folder != path and tf.io.gfile.exists(folder):
        tf.io.gfile.rmtree(folder)
