"""A run folder with damaged checkpoints resumes from the newest readable one, or refuses.

Each case trains a tiny run to completion, damages its checkpoints the way a full disk, a
killed copy or an operator does, and reruns the same training: it must never start over.
"""

import glob
import os
import subprocess
import sys

import pytest
import tensorflow as tf

from ppm import checkpoints, train
from tests.ranking_fixtures import tiny_config


@pytest.fixture(scope="module")
def finished_run(tiny_world, tiny_examples, tiny_cache, tmp_path_factory):
    """A finished 6-step run with checkpoints at steps 2, 4 and 6 (the folder is copied)."""
    c = tiny_config("urm_wo_ppm", tiny_world, tiny_examples, tiny_cache,
                    trainer={"train_steps": 6, "checkpoint_interval": 2})
    run = str(tmp_path_factory.mktemp("finished") / "run")
    train.train(c, run, verbose=0)
    return c, run


def _copy(run, tmp_path):
    import shutil

    dst = str(tmp_path / "run")
    shutil.copytree(run, dst)
    return dst


def _ckpt(run, name=""):
    return os.path.join(run, checkpoints.CHECKPOINT_DIR, name)


def _files(run):
    return {os.path.basename(f): open(f, "rb").read()
            for f in glob.glob(_ckpt(run, "ckpt-*"))}


def _damage_index(run):
    os.remove(_ckpt(run, "ckpt-6.index"))


def _damage_data(run):
    (data,) = glob.glob(_ckpt(run, "ckpt-6.data-*"))
    with open(data, "r+b") as f:
        f.truncate(16)


def _damage_index_bytes(run):
    with open(_ckpt(run, "ckpt-6.index"), "wb") as f:
        f.write(b"\x00" * 8)


# A garbage index fails the same readability check as a deleted one: slow (make test-all).
@pytest.mark.parametrize("damage", [_damage_index, _damage_data,
                                    pytest.param(_damage_index_bytes, marks=pytest.mark.slow)],
                         ids=["index-deleted", "data-truncated", "index-garbage"])
def test_resumes_from_the_newest_readable_checkpoint(damage, finished_run, tmp_path, caplog):
    config, src = finished_run
    run = _copy(src, tmp_path)
    damage(run)
    older = {k: v for k, v in _files(run).items() if not k.startswith("ckpt-6")}
    summary = train.train(config, run, verbose=0)
    # Resumed from step 4 (not from 0), and trained the one remaining loop to step 6.
    assert summary["resumed_from_step"] == 4 and summary["steps"] == 6
    assert len(summary["train_examples_per_second"]) == 1
    assert [d["checkpoint"] for d in summary["damaged_checkpoints_skipped"]] == [
        _ckpt(run, "ckpt-6")]
    assert "ckpt-6" in caplog.text and "damaged" in caplog.text.lower()
    # The damaged files are kept aside, the readable older checkpoints were not rewritten.
    (aside,) = glob.glob(_ckpt(run, "damaged-*"))
    assert any(f.startswith("ckpt-6") for f in os.listdir(aside))
    now = _files(run)
    assert all(now.get(k) == v for k, v in older.items() if k.startswith("ckpt-4"))
    assert tf.train.latest_checkpoint(_ckpt(run)).endswith("ckpt-6")


def test_a_garbage_state_file_does_not_restart_the_run(finished_run, tmp_path):
    config, src = finished_run
    run = _copy(src, tmp_path)
    with open(_ckpt(run, "checkpoint"), "w") as f:
        f.write("garbage {{ \x00")
    before = _files(run)
    summary = train.train(config, run, verbose=0)
    assert summary["resumed_from_step"] == 6 and summary["steps"] == 6
    assert _files(run) == before  # nothing retrained, nothing overwritten
    assert tf.train.latest_checkpoint(_ckpt(run)).endswith("ckpt-6")  # state file repaired


def test_refuses_when_no_checkpoint_is_readable(finished_run, tmp_path):
    config, src = finished_run
    run = _copy(src, tmp_path)
    for data in glob.glob(_ckpt(run, "ckpt-*.data-*")):
        with open(data, "wb") as f:
            f.write(b"not a tensor bundle")
    before = _files(run)
    with pytest.raises(checkpoints.DamagedCheckpointError, match="none can be read") as e:
        train.train(config, run, verbose=0)
    assert "ckpt-6.data-00000-of-00001" in str(e.value)  # the damaged file is named
    assert _files(run) == before  # nothing overwritten, nothing moved
    # The CLI exits non-zero with the reason and no traceback.
    examples, embeddings = config.data.examples, config.data.embeddings
    proc = subprocess.run(
        [sys.executable, "-m", "ppm.train", "--experiment", "urm_wo_ppm", "--preset", "tiny",
         "--model_dir", run, "--no_eval", "--verbose", "0", "--params_override",
         f"data.examples={examples},data.embeddings={embeddings},"
         f"data.dataset={config.data.dataset},trainer.train_steps=6,"
         "trainer.checkpoint_interval=2"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "none can be read" in proc.stderr and "Traceback" not in proc.stderr
    assert _files(run) == before


def test_evaluation_skips_a_damaged_newest_checkpoint(finished_run, tmp_path, caplog):
    _, src = finished_run
    run = _copy(src, tmp_path)
    _damage_data(run)
    assert checkpoints.latest(run).endswith("ckpt-4")
    assert "ckpt-6" in caplog.text
