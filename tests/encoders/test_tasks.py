"""Pre-training tasks and the training CLI, on 2 logical CPU replicas (tests/conftest.py)."""

import numpy as np
import pytest

from ppm.encoders import contract, train


def _args(tiny_world, tmp_path, *extra):
    return train.parse_args(["--dataset", tiny_world, "--out", str(tmp_path / "enc"),
                             "--verbose", "0", *extra])


def test_scl_with_moco_on_two_replicas(tiny_world, tmp_path):
    """The queue advances by the global batch each step: keys are all-gathered."""
    args = _args(tiny_world, tmp_path, "--modality", "text", "--task", "scl", "--tiny_text",
                 "--steps", "3", "--batch_size", "8", "--queue_size", "20")
    assert train.strategy().num_replicas_in_sync == 2
    items = train.data.read_items(tiny_world)
    pairs, _ = train.data.query_pairs(tiny_world, "text", items)
    with train.strategy().scope():
        encoder, pre, _, _ = train.build_encoder(args, items)
        task, ds = train.build_task(args, encoder, pre, items, pairs)
        before = [w.numpy().copy() for w in task.key_encoder.weights]
        np.testing.assert_array_equal(before[0], encoder.weights[0].numpy())
        task.compile(optimizer=train.keras.optimizers.Adam(1e-3))
        task.fit(ds, steps_per_epoch=3, epochs=1, verbose=0)
    assert int(task.queue.pointer.numpy()) == (3 * 8) % 20
    # The key encoder moved towards the online encoder, but is not equal to it.
    moved = [not np.allclose(b, k.numpy()) for b, k in zip(before, task.key_encoder.weights)]
    assert any(moved)
    assert not all(np.allclose(k.numpy(), o.numpy())
                   for k, o in zip(task.key_encoder.weights, encoder.weights))


def test_query_matching_learns(tiny_world, tmp_path):
    info = train.run(_args(tiny_world, tmp_path, "--modality", "text", "--task", "qm",
                           "--tiny_text", "--steps", "40", "--batch_size", "32",
                           "--projection_init", "random"))
    assert info["eval_after"]["acc@5"] > info["eval_before"]["acc@5"]
    exported = contract.read_info(info["path"])
    assert exported["task"] == "qm" and exported["steps"] == 40
    assert exported["eval_after"] == info["eval_after"]


def test_steps_zero_exports_the_pretrained_encoder(tiny_world, tmp_path):
    info = train.run(_args(tiny_world, tmp_path, "--modality", "image", "--task", "ep",
                           "--steps", "0", "--image_size", "32"))
    assert info["eval_before"] == info["eval_after"] and info["final_losses"] == {}
    fn, meta = contract.load(info["path"])
    assert meta["image_size"] == 32 and meta["projection_init"] == "pca"


@pytest.mark.parametrize("argv, message", [
    (["--modality", "image", "--task", "qm"], "works with --modality text"),
    (["--modality", "text", "--task", "scl", "--steps", "-1"], "--steps must be >= 0"),
])
def test_cli_rejects_bad_combinations(argv, message, capsys):
    with pytest.raises(SystemExit):
        train.parse_args(["--dataset", "d", "--out", "o", *argv])
    assert message in capsys.readouterr().err
