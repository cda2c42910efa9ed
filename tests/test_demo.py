"""`make demo` end to end on a tiny world, and the stage CLIs it strings together."""

import json
import os

from ppm import demo
from ppm.data.synthetic import __main__ as synthetic_cli


def test_demo_runs_every_stage_and_reuses_outputs(tmp_path, capsys):
    run_dir = str(tmp_path / "run")
    assert demo.main(["--run_dir", run_dir, "--scale", "tiny", "--seed", "3",
                      "--beam_workers", "2"]) == 0
    out = capsys.readouterr().out
    assert "Dataset synthetic-tiny" in out and "train_large" in out
    assert "Test events on cold items" in out and "item_freq<5" in out
    with open(os.path.join(run_dir, "examples", "stats.json")) as f:
        stats = json.load(f)
    line = next(x for x in out.splitlines() if x.strip().startswith("test "))
    assert f"{stats['windows']['test']['examples']:,}" in line
    stamp = os.path.getmtime(os.path.join(run_dir, "examples", "stats.json"))
    assert demo.main(["--run_dir", run_dir, "--scale", "tiny", "--seed", "3"]) == 0
    assert os.path.getmtime(os.path.join(run_dir, "examples", "stats.json")) == stamp


def test_synthetic_cli(tmp_path, capsys):
    assert synthetic_cli.main(["--out", str(tmp_path), "--scale", "tiny", "--seed", "1",
                               "--quiet", "--no_queries"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts["items"] == 400 and counts["events"] > 5000
    assert not os.path.exists(tmp_path / "queries.parquet")
