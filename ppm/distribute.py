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
import re

import tensorflow as tf


def for_config(config):
    """The strategy ``config.runtime`` asks for (:func:`strategy`)."""
    r = config.runtime
    if r.strategy == "parameter_server":
        return strategy(r.strategy, shard_min_rows=r.shard_min_rows)
    return strategy(r.strategy)


def row_partitioner(num_shards: int, min_rows: int):
    """A ``variable_partitioner`` for ParameterServerStrategy: 2-D variables of at least
    ``min_rows`` rows split by rows into ``num_shards`` (at most one row per shard), every other
    variable whole. (``tf.distribute.experimental.partitioners.MaxSizePartitioner`` splits by
    bytes, dense kernels included; tables are what outgrow one machine.)"""

    def partition(shape, dtype):
        del dtype
        if shape.rank == 2 and shape[0] >= min_rows:
            return [max(1, min(num_shards, shape[0])), 1]
        return [1] * shape.rank

    return partition


def parameter_server_strategy(shard_min_rows: int):
    """ParameterServerStrategy over ``TF_CONFIG`` (this process: the chief, the coordinator).

    Raises:
      ValueError: ``TF_CONFIG`` does not describe a chief with workers and parameter servers.
    """
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    jobs = resolver.cluster_spec().as_dict()
    if resolver.task_type != "chief" or not jobs.get("worker") or not jobs.get("ps"):
        raise ValueError(
            "runtime.strategy=parameter_server needs TF_CONFIG with a 'chief', 'worker' and "
            f"'ps' jobs, run on the chief (task type {resolver.task_type!r}, jobs "
            f"{sorted(jobs)}); the workers and parameter servers run python -m ppm.distribute")
    return tf.distribute.experimental.ParameterServerStrategy(
        resolver, variable_partitioner=row_partitioner(len(jobs["ps"]), shard_min_rows))


@functools.cache
def strategy(name: str = "mirrored", devices: tuple[str, ...] | None = None,
             shard_min_rows: int = 100_000):
    """The process's strategy of this kind (created once and reused).

    Separate MirroredStrategy objects in one process can reuse collective instance keys and
    then fail with shape mismatches between their all-reduces, hence the cache; on CPUs the
    replicas reduce through one device rather than with collective ops for the same reason.

    Args:
      name: ``mirrored``, ``multi_worker_mirrored`` or ``parameter_server``.
      devices: explicit devices for ``mirrored`` (e.g. ``("/cpu:0",)`` for one replica).
      shard_min_rows: ``parameter_server``: the rows from which a table is split
        (:func:`row_partitioner`).

    Raises:
      ValueError: unknown name, or a ``TF_CONFIG`` that does not fit the strategy.
    """
    if name == "multi_worker_mirrored":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "parameter_server":
        return parameter_server_strategy(shard_min_rows)
    if name != "mirrored":
        raise ValueError(f"unknown strategy {name!r}: mirrored, multi_worker_mirrored or "
                         "parameter_server")
    if tf.config.list_logical_devices("GPU"):
        return tf.distribute.MirroredStrategy(devices=list(devices) if devices else None)
    return tf.distribute.MirroredStrategy(
        devices=list(devices) if devices else None,
        cross_device_ops=tf.distribute.ReductionToOneDevice())


def is_chief(strategy) -> bool:
    """Whether this process writes the run folder (always, except a non-chief worker of
    ``multi_worker_mirrored``; under ``parameter_server`` only the chief runs ppm.train)."""
    return is_parameter_server(strategy) or bool(strategy.extended.should_checkpoint)


def is_parameter_server(strategy) -> bool:
    return isinstance(strategy, tf.distribute.experimental.ParameterServerStrategy)


_SHARD = re.compile(r"(.+)/part_(\d+)(:\d+)?")  # a ShardedVariable's shard, as Keras names it


def whole_variables(variables) -> list[list]:
    """``variables`` as Keras lists them, grouped into whole variables, in order: each group
    is one variable, or the shards of one split across parameter servers (Keras lists a
    ``ShardedVariable``'s shards, ``<name>/part_<k>``, as separate weights) in shard order."""
    order, parts = [], {}
    for v in variables:
        match = _SHARD.fullmatch(v.name)
        key, index = (match.group(1), int(match.group(2))) if match else (id(v), 0)
        if key not in parts:
            order.append(key)
            parts[key] = []
        parts[key].append((index, v))
    return [[v for _, v in sorted(parts[k], key=lambda p: p[0])] for k in order]


def sharded_variables(model) -> dict:
    """``{name: [[shape, device], ...]}`` of the model's variables split across parameter
    servers (one entry per shard)."""
    return {match.group(1): [[s.shape.as_list(), s.device] for s in group]
            for group in whole_variables(model.variables)
            if (match := _SHARD.fullmatch(group[0].name))}


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


def local_cluster(**jobs: int) -> dict:
    """A cluster spec on 127.0.0.1 with free ports, e.g. ``local_cluster(chief=1, worker=2,
    ps=2)`` (for tests and benchmarks: real gRPC between processes of one machine)."""
    import socket

    sockets = {job: [socket.socket() for _ in range(n)] for job, n in jobs.items() if n}
    cluster = {}
    for job, socks in sockets.items():
        for s in socks:
            s.bind(("127.0.0.1", 0))
        cluster[job] = [f"127.0.0.1:{s.getsockname()[1]}" for s in socks]
    for socks in sockets.values():
        for s in socks:
            s.close()
    return cluster


def task_env(cluster: dict, job: str, index: int) -> dict:
    """This process's environment for task ``job:index`` of ``cluster``: ``TF_CONFIG`` set,
    no GPU."""
    import json

    return dict(os.environ, CUDA_VISIBLE_DEVICES="",
                TF_CPP_MIN_LOG_LEVEL="2",
                TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": job, "index": index}}))


def serve(argv=None) -> int:
    """``python -m ppm.distribute``: run this machine's worker or parameter-server task of a
    ``parameter_server`` cluster (``TF_CONFIG``) until killed; the chief runs ppm.train."""
    import argparse
    import logging

    parser = argparse.ArgumentParser(
        prog="python -m ppm.distribute",
        description="Serve this task (TF_CONFIG's task: a 'worker' or a 'ps') of a "
        "runtime.strategy=parameter_server cluster until killed. The chief runs "
        "python -m ppm.train --strategy parameter_server with its own TF_CONFIG.")
    parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    if resolver.task_type not in ("worker", "ps"):
        raise SystemExit(f"TF_CONFIG's task type is {resolver.task_type!r}: this command serves "
                         "a 'worker' or a 'ps' task (the chief runs python -m ppm.train)")
    server = tf.distribute.Server(resolver.cluster_spec(), job_name=resolver.task_type,
                                  task_index=resolver.task_id, protocol="grpc", start=True)
    logging.getLogger(__name__).info("Serving %s %d of %s", resolver.task_type,
                                     resolver.task_id, resolver.cluster_spec().as_dict())
    server.join()
    return 0


if __name__ == "__main__":
    raise SystemExit(serve())
