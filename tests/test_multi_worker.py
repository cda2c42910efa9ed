"""Multi-worker training over ``TF_CONFIG``: two ``python -m ppm.train`` worker processes on
127.0.0.1 (MultiWorkerMirroredStrategy over gRPC, as on two machines) train like one process
on the same global batches, only the chief writes the run folder, evaluation and export work
from it alone, and a cluster killed mid-run resumes from the chief's last checkpoint."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from official.modeling import hyperparams

import ppm  # noqa: F401
from ppm import checkpoints, configs, distribute, evaluate, export, train
from ppm.data import pipeline
from ppm.models import factory
from tests.ranking_fixtures import write_start_run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENT = "urm_wo_ppm"


def _config(tiny_world, tiny_examples):
    c = configs.resolve(EXPERIMENT, "tiny", validate=False)
    c.override({"data": {"dataset": tiny_world, "examples": tiny_examples[0]},
                "trainer": {"checkpoint_interval": 2, "deterministic_input": True}})
    return c


class Cluster:
    """Two workers, each ``python -m ppm.train`` with its own ``TF_CONFIG``, one run folder."""

    def __init__(self, config_file, model_dir, steps, log_dir, init_checkpoint=None):
        cluster = distribute.local_cluster(worker=2)
        self.procs, self.logs = [], []
        for index in range(2):
            env = distribute.task_env(cluster, "worker", index)
            log = open(os.path.join(log_dir, f"worker{index}-{time.time_ns()}.log"), "w")
            self.logs.append(log)
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "ppm.train", "--experiment", EXPERIMENT,
                 "--preset", "tiny", "--config_file", config_file, "--model_dir", model_dir,
                 "--strategy", "multi_worker_mirrored", "--no_eval", "--verbose", "0",
                 "--params_override", f"trainer.train_steps={steps}"]
                + (["--init_checkpoint", init_checkpoint] if init_checkpoint else []),
                env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT))

    def wait(self, timeout=300):
        try:
            codes = [p.wait(timeout=timeout) for p in self.procs]
        finally:
            self.kill()
        for log in self.logs:
            log.close()
        if codes != [0, 0]:
            tails = [open(log.name).read()[-3000:] for log in self.logs]
            pytest.fail(f"workers exited with {codes}:\n" + "\n----\n".join(tails))

    def kill(self, index=None):
        for i, p in enumerate(self.procs):
            if (index is None or i == index) and p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait()


def _files(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder)
                  for d, _, files in os.walk(folder) for f in files)


@pytest.fixture(scope="module")
def config_file(tiny_world, tiny_examples, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("mw_config") / "config.yaml")
    hyperparams.save_params_dict_to_yaml(_config(tiny_world, tiny_examples), path)
    return path


def _reference(config, init_dir):
    """One process, no strategy: a fresh model, saved into ``init_dir`` as a run the cluster
    warm-starts from (so both start from the same weights), and a dataset of the two workers'
    shards concatenated each step (the global batch the cluster computes its gradient on)."""
    train.resolve_train_steps(config)
    inputs = factory.load_inputs(config)
    d = config.data
    model, optimizer = train.build(config, inputs)
    write_start_run(model, inputs, config, init_dir)
    files = train.train_files(config)
    tf.random.set_seed(d.seed)  # the shuffles' global seed, as ppm.train sets it

    def shard(k):
        return pipeline.make_dataset(
            files, inputs.schema, d.global_batch_size, training=True, repeat=True, seed=d.seed,
            shuffle_buffer=d.shuffle_buffer, deterministic=True,
            input_context=tf.distribute.InputContext(
                num_input_pipelines=2, input_pipeline_id=k, num_replicas_in_sync=2))

    both = tf.data.Dataset.zip((shard(0), shard(1))).map(
        lambda a, b: tf.nest.map_structure(lambda x, y: tf.concat([x, y], 0), a, b))
    return model, both


def test_two_workers_train_like_one_process_and_only_the_chief_writes(
        config_file, tiny_world, tiny_examples, tmp_path):
    config = _config(tiny_world, tiny_examples)
    init = str(tmp_path / "init")
    reference, both = _reference(config, init)
    run = str(tmp_path / "run")
    Cluster(config_file, run, 4, str(tmp_path), init_checkpoint=init).wait()

    files = _files(run)
    assert not [f for f in files if "workertemp" in f]  # the worker's saves were removed
    assert "config.yaml" in files and "train_summary.json" in files
    assert {"checkpoints/ckpt-2.index", "checkpoints/ckpt-4.index"} <= set(files)
    with open(os.path.join(run, "train_summary.json")) as f:
        summary = json.load(f)
    assert summary["steps"] == 4 and summary["replicas"] == 2 and summary["chief"]

    interval = config.trainer.checkpoint_interval
    loss = reference.fit(both, epochs=4 // interval, steps_per_epoch=interval,
                         verbose=0).history["loss"][-1]
    trained = evaluate.load_model(run)[0]
    assert checkpoints.latest(run).endswith("ckpt-4")
    got = {v.name: v.numpy() for v in trained.trainable_variables}
    want = {v.name: v.numpy() for v in reference.trainable_variables}
    assert sorted(got) == sorted(want)
    for name, value in want.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-4, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(summary["final"]["loss"], loss, rtol=1e-4)

    # The chief's run folder alone evaluates and exports (one table, no cluster).
    result = evaluate.evaluate_run(run, progress=False)
    assert 0.0 < result["tasks"]["click"]["auc"] < 1.0
    exported = export.export(run, "mw", str(tmp_path / "sm"))
    assert tf.saved_model.load(exported).signatures[export.SIGNATURE] is not None


def test_a_killed_cluster_resumes_from_the_chiefs_last_checkpoint(config_file, tmp_path):
    run = str(tmp_path / "run")
    cluster = Cluster(config_file, run, 100000, str(tmp_path))
    ckpt_dir = os.path.join(run, "checkpoints")
    deadline = time.time() + 300
    while not checkpoints.scan(ckpt_dir).readable and time.time() < deadline:
        time.sleep(0.2)
    cluster.kill(1)  # a worker dies: the chief's next all-reduce fails, and it exits
    try:
        code = cluster.procs[0].wait(timeout=120)
    finally:
        cluster.kill()
    cluster.logs[0].close()
    assert code == 3, open(cluster.logs[0].name).read()[-3000:]
    assert "Restart every worker with the same command" in open(cluster.logs[0].name).read()
    last = checkpoints.scan(ckpt_dir).newest
    assert last is not None
    step = int(last.rsplit("-", 1)[1])

    Cluster(config_file, run, step + 2, str(tmp_path)).wait()
    with open(os.path.join(run, "train_summary.json")) as f:
        summary = json.load(f)
    assert summary["resumed_from_step"] == step  # the job's manager restarted both workers
    assert summary["steps"] == step + 2
    assert not [f for f in _files(run) if "workertemp" in f]
