"""`make demo` end to end on a tiny world, and the stage CLIs it strings together."""

import json
import os

from ppm import demo
from ppm.data.synthetic import __main__ as synthetic_cli


def test_demo_runs_every_stage_and_reuses_outputs(tmp_path, capsys):
    run_dir = str(tmp_path / "run")
    args = ["--run_dir", run_dir, "--scale", "tiny", "--seed", "3", "--text_steps", "2",
            "--image_steps", "3", "--tiny_text", "--preset", "tiny",
            "--saved_models", str(tmp_path / "saved_models")]
    exports = tmp_path / "saved_models" / "urm"
    assert demo.main(args + ["--beam_workers", "2"]) == 0
    out = capsys.readouterr().out
    assert "Dataset synthetic-tiny" in out and "train_large" in out
    assert "Test events on cold items" in out and "item_freq<5" in out
    with open(os.path.join(run_dir, "examples", "stats.json")) as f:
        stats = json.load(f)
    line = next(x for x in out.splitlines() if x.strip().startswith("test "))
    assert f"{stats['windows']['test']['examples']:,}" in line
    assert "Encoders (held-out query -> item retrieval" in out and "Embedding cache" in out
    # Stages 6-7: PPM pre-trained, URM trained with it and evaluated on the test day.
    assert "urm (finetune) on test" in out and "oracle AUC" in out
    with open(os.path.join(run_dir, "train", "tiny_urm", "config.yaml")) as f:
        assert os.path.join(run_dir, "train", "tiny_ppm_pretrain") in f.read()
    with open(os.path.join(run_dir, "train", "tiny_urm", "metrics.json")) as f:
        assert json.load(f)["examples"] == stats["windows"]["test"]["examples"]
    # Stage 8: exported, served by the local gRPC server, one ranking request answered.
    assert "Ranking request through gRPC" in out and "model urm version 1" in out
    table = out[out.index("Ranking request through gRPC"):].splitlines()
    assert table[1].split() == ["rank", "item_id", "p_cart", "p_click", "p_order"]
    clicks = [float(line.split()[3]) for line in table[2:12]]
    assert len(clicks) == 10 and clicks == sorted(clicks, reverse=True)
    stamps = {p: os.path.getmtime(os.path.join(run_dir, p)) for p in (
        "examples/stats.json", "encoders/text/saved_model.pb",
        "encoders/image/saved_model.pb", "embeddings/manifest.json",
        "train/tiny_ppm_pretrain/checkpoints/ckpt-4.index",
        "train/tiny_urm/checkpoints/ckpt-4.index")}
    assert demo.main(args) == 0  # everything is reused
    assert {p: os.path.getmtime(os.path.join(run_dir, p)) for p in stamps} == stamps
    assert sorted(os.listdir(exports)) == ["1"]  # the same checkpoint is not exported twice
    # Another seed is another world: nothing stale is reused.
    assert demo.main(args[:5] + ["4"] + args[6:]) == 0
    assert os.path.getmtime(os.path.join(run_dir, "examples/stats.json")) != stamps[
        "examples/stats.json"]
    # ...and the runs trained on the old world were replaced, not resumed.
    assert os.path.getmtime(os.path.join(run_dir, "train/tiny_urm/checkpoints/ckpt-4.index")) \
        != stamps["train/tiny_urm/checkpoints/ckpt-4.index"]
    with open(os.path.join(run_dir, "dataset", "dataset.json")) as f:
        assert json.load(f)["extra"]["seed"] == 4
    assert sorted(os.listdir(exports)) == ["1", "2"]  # the new model is a new version


def test_synthetic_cli(tmp_path, capsys):
    assert synthetic_cli.main(["--out", str(tmp_path), "--scale", "tiny", "--seed", "1",
                               "--quiet", "--no_queries"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts["items"] == 400 and counts["events"] > 5000
    assert not os.path.exists(tmp_path / "queries.parquet")
