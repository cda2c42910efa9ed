"""ParameterServerStrategy over ``TF_CONFIG``: a cluster of processes on 127.0.0.1 (two
parameter servers and two workers, ``python -m ppm.distribute``; the chief runs
``python -m ppm.train --strategy parameter_server``) trains a tiny URM whose item table is split
across the two servers, and its checkpoint restores into a one-machine model that exports
one table."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import tensorflow as tf
from official.modeling import hyperparams

import ppm  # noqa: F401
from ppm import configs, distribute, evaluate, export, train
from ppm.models import factory
from tests.ranking_fixtures import one_batch, write_start_run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_parameter_server_cluster_splits_the_item_table_and_exports_one(
        tiny_world, tiny_examples, tmp_path):
    c = configs.resolve("urm_wo_ppm", "tiny", validate=False)
    c.override({"data": {"dataset": tiny_world, "examples": tiny_examples[0]},
                "trainer": {"train_steps": 12, "checkpoint_interval": 4}})
    inputs = factory.load_inputs(c)
    items = len(inputs.vocabularies["item_id"])
    # split the item table (and any other table at least as long), nothing smaller
    c.override({"runtime": {"shard_min_rows": items}})
    config_file = str(tmp_path / "config.yaml")
    hyperparams.save_params_dict_to_yaml(c, config_file)
    # The cluster warm-starts from weights made here, so the loss before and after training
    # is measured on the same fixed examples (the cluster's steps are asynchronous).
    init = str(tmp_path / "init")
    start, _ = train.build(c, inputs)
    write_start_run(start, inputs, c, init)
    fixed = one_batch(tiny_examples, 1024)[0]

    cluster = distribute.local_cluster(chief=1, worker=2, ps=2)

    def env(kind, index):
        return distribute.task_env(cluster, kind, index)

    logs, servers = [], []
    try:
        for kind in ("ps", "worker"):
            for index in range(2):
                log = open(tmp_path / f"{kind}{index}.log", "w")
                logs.append(log)
                servers.append(subprocess.Popen(
                    [sys.executable, "-m", "ppm.distribute"], env=env(kind, index), cwd=ROOT,
                    stdout=log, stderr=subprocess.STDOUT))
        run = str(tmp_path / "run")
        chief = subprocess.run(
            [sys.executable, "-m", "ppm.train", "--experiment", "urm_wo_ppm", "--preset",
             "tiny", "--config_file", config_file, "--model_dir", run, "--strategy",
             "parameter_server", "--no_eval", "--verbose", "0", "--init_checkpoint", init],
            env=env("chief", 0), cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert chief.returncode == 0, chief.stdout[-3000:] + chief.stderr[-5000:]
        assert all(p.poll() is None for p in servers)  # the servers serve until killed
    finally:
        for p in servers:
            p.send_signal(signal.SIGKILL)
            p.wait()
        for log in logs:
            log.close()

    with open(os.path.join(run, "train_summary.json")) as f:
        summary = json.load(f)
    assert summary["steps"] == 12
    # the item table: two shards by rows, one on each parameter server
    tables = {k: v for k, v in summary["sharded_variables"].items() if "item_id" in k}
    assert tables, summary["sharded_variables"]
    for name, shards in tables.items():
        assert len(shards) == 2, name
        assert sorted(d.split("/task:")[1][0] for _, d in shards) == ["0", "1"]
        assert all("/job:ps/" in d for _, d in shards)
        rows = sum(shape[0] for shape, _ in shards)
        assert rows == items + 1, name  # the vocabulary and the OOV row, nothing lost
    assert len(summary["loss_per_loop"]) == 3

    # One machine restores the checkpoint (one table again): it learnt, and it exports.
    model, _, _ = evaluate.load_model(run)
    before, after = (float(m.compute_loss(fixed)) for m in (start, model))
    assert after < before, (before, after)

    table = model.idsm.embedders[0].embeddings[0].embedding.embeddings  # item_id's
    assert table.shape == (items + 1, c.model.id_dim)
    assert np.abs(table.numpy()).max() > 0
    version = export.export(run, "ps", str(tmp_path / "sm"))
    saved = tf.train.load_checkpoint(os.path.join(version, "variables", "variables"))
    shapes = saved.get_variable_to_shape_map().values()
    assert [items + 1, c.model.id_dim] in shapes
