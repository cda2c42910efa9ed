"""Benchmark: scale-out on one machine, through real TF_CONFIG clusters on loopback.

Two measurements, each cluster task its own process (``python -m ppm.distribute`` for workers
and parameter servers, as on separate machines):

- **memory**: an embedding table of N rows x ``--dim`` floats and its two Adam slots, created
  (a) by a ParameterServerStrategy chief with two parameter servers and the repository's
  row partitioner (each server holds half of each), and (b) by one process without a strategy
  (what every replica of a mirrored strategy holds). Reported: the resident memory each
  parameter server gains (``/proc/PID/status`` VmRSS, read while the chief holds the table)
  against the replicated process's gain, and their ratio.
- **throughput**: ``urm_wo_ppm`` trained ``--steps`` steps on ``--run_root``'s examples
  (``--preset``) by (1) one process (``mirrored``, one replica), (2) ``multi_worker_mirrored``
  with two workers, (3) ``parameter_server`` with two workers and two parameter servers (its
  steps run asynchronously, one worker's batch each). Reported: examples/s of the last loop of
  ``--steps // 2`` steps (the first includes tracing) and the ratios to (1). On a 2-core machine
  every process shares the same cores: the ratios say what the distribution costs here, not
  what several machines gain.

Run (after ``make demo``)::

    .venv/bin/python benchmarks/scale_out.py --run_root runs/demo

Writes ``benchmarks/results/scale_out.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _start(cluster: dict, job: str, index: int, log_dir: str) -> subprocess.Popen:
    from ppm import distribute

    log = open(os.path.join(log_dir, f"{job}{index}.log"), "w")
    return subprocess.Popen([sys.executable, "-m", "ppm.distribute"], cwd=ROOT,
                            env=distribute.task_env(cluster, job, index), stdout=log,
                            stderr=subprocess.STDOUT)


def _stop(procs) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait()


def table_holder(rows: int, dim: int) -> None:
    """Creates the table and its Adam slots (under ParameterServerStrategy when TF_CONFIG
    names this process the chief), prints ``ready`` and waits for stdin to close."""
    import tensorflow as tf
    import tf_keras as keras

    from ppm import distribute

    scope = (distribute.parameter_server_strategy(shard_min_rows=1).scope()
             if "TF_CONFIG" in os.environ else tf.name_scope("replicated"))
    with scope:
        table = keras.layers.Embedding(rows, dim, name="table")
        table.build(None)
        optimizer = keras.optimizers.Adam()
        optimizer.build(table.trainable_variables)
    print("ready", flush=True)
    sys.stdin.read()


def _rss_while_held(rows: int, dim: int, env: dict, pids=()) -> list[float]:
    """Starts a :func:`table_holder` with ``env`` and returns, while it holds the table, the
    resident MB of the processes ``pids`` (default: the holder itself)."""
    p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--_hold_table",
                          str(rows), "--dim", str(dim)], cwd=ROOT, env=env,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()  # "" only once the holder has exited
        if line.strip() != "ready":
            raise RuntimeError(f"the table holder did not start: {line!r}")
        return [common.rss_mb(pid) for pid in (pids or [p.pid])]
    finally:
        p.stdin.close()  # the holder exits at the end of its stdin
        p.wait()


def memory(rows: int, dim: int, log_dir: str) -> dict:
    from ppm import distribute

    cluster = distribute.local_cluster(chief=1, worker=1, ps=2)
    servers = [_start(cluster, "ps", i, log_dir) for i in range(2)]
    servers.append(_start(cluster, "worker", 0, log_dir))
    try:
        time.sleep(5)  # the servers import TensorFlow and listen
        before = [common.rss_mb(p.pid) for p in servers[:2]]
        after = _rss_while_held(rows, dim, distribute.task_env(cluster, "chief", 0),
                                [p.pid for p in servers[:2]])
    finally:
        _stop(servers)
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    # the replicated table, against the same process holding a one-row table
    replicated = (_rss_while_held(rows, dim, env)[0] - _rss_while_held(1, dim, env)[0])
    per_server = [round(a - b, 1) for a, b in zip(after, before)]
    table_mb = rows * dim * 4 * 3 / 2**20  # the table and two Adam slots, float32
    return {"rows": rows, "dim": dim, "table_and_slots_mb": round(table_mb, 1),
            "per_parameter_server_mb": per_server,
            "replicated_process_mb": round(replicated, 1),
            "ratio_per_server_over_replicated": round(max(per_server) / replicated, 3)}


def throughput(run_root: str, preset: str, steps: int, work: str) -> dict:
    from ppm import distribute

    base = [sys.executable, "-m", "ppm.train", "--experiment", "urm_wo_ppm", "--preset",
            preset, "--run_root", run_root, "--no_eval", "--verbose", "0", "--params_override",
            f"trainer.train_steps={steps},trainer.checkpoint_interval={steps // 2},"
            "trainer.train_passes=0"]

    def speed(run: str) -> float:
        with open(os.path.join(run, "train_summary.json")) as f:
            return float(json.load(f)["train_examples_per_second"][-1])

    out = {}
    run = os.path.join(work, "one")
    subprocess.run(base + ["--model_dir", run], cwd=ROOT, check=True,
                   env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))
    out["one_process"] = speed(run)

    cluster = distribute.local_cluster(worker=2)
    run = os.path.join(work, "mwms")
    procs = [subprocess.Popen(base + ["--model_dir", run, "--strategy", "multi_worker_mirrored"],
                              cwd=ROOT, env=distribute.task_env(cluster, "worker", i))
             for i in range(2)]
    codes = [p.wait() for p in procs]
    if codes != [0, 0]:
        raise RuntimeError(f"multi_worker_mirrored workers exited with {codes}")
    out["multi_worker_mirrored_2_workers"] = speed(run)

    cluster = distribute.local_cluster(chief=1, worker=2, ps=2)
    servers = [_start(cluster, job, i, work) for job in ("ps", "worker") for i in range(2)]
    run = os.path.join(work, "ps")
    try:
        subprocess.run(base + ["--model_dir", run, "--strategy", "parameter_server"], cwd=ROOT,
                       check=True, env=distribute.task_env(cluster, "chief", 0))
    finally:
        _stop(servers)
    out["parameter_server_2_workers_2_ps"] = speed(run)
    out = {k: round(v, 1) for k, v in out.items()}
    out["ratios_to_one_process"] = {k: round(v / out["one_process"], 3)
                                    for k, v in out.items() if k != "one_process"}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run_root", default="runs/demo")
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--rows", default="1000000,4000000",
                        help="Table sizes of the memory measurement ('' to skip).")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--steps", type=int, default=40,
                        help="Training steps per strategy (0 to skip the throughput).")
    parser.add_argument("--out", default=None)
    parser.add_argument("--_hold_table", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._hold_table is not None:
        table_holder(args._hold_table, args.dim)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    result = {"machine": common.machine()}
    with tempfile.TemporaryDirectory() as work:
        result["memory"] = [memory(int(n), args.dim, work)
                            for n in args.rows.split(",") if n]
        if args.steps:
            result["throughput"] = throughput(os.path.abspath(args.run_root), args.preset,
                                              args.steps, work)
    common.write_result(args.out or common.result_path("scale_out"), result)
    common.print_result(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
