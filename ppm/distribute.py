"""Distribution strategies: one per process, shared by every training in it.

``mirrored`` replicates over all local GPUs, or over the logical CPU devices when there is no
GPU (tests configure 2); ``multi_worker_mirrored`` spans machines described by the
``TF_CONFIG`` environment variable (``{"cluster": {"worker": ["host1:port", ...]},
"task": {"type": "worker", "index": i}}``), the same program running on every worker.
"""

from __future__ import annotations

import functools

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
