"""`make demo` end to end on a tiny world, and the stage CLIs it strings together."""

import json
import logging
import os
import re
import subprocess
import sys

import pytest

from ppm import console, demo
from ppm.data.synthetic import __main__ as synthetic_cli

# What the libraries print when nobody stops them (seen in a fresh-clone `make demo`).
CHATTER = [re.compile(p) for p in (
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] ",  # TensorFlow C++ (tsl logging)
    r"^[IWEF]\d{4} ",  # absl C++ logging
    r"All log messages before absl::InitializeLog",
    r"Failed to import GCSFileSystem", r"apitools not found", r"Skipping full serialization",
    r"PredictCost\(\)", r"Warning: ", r"non-serializable",
    r"^(DEBUG|INFO|WARNING) (tensorflow|root|absl|apache_beam|py\.warnings)\b",
    r"Assets written to", r"^Epoch \d+/\d+",
)]
STAGE = re.compile(r"^\[(\d+)/(\d+)\] ")


def stage_numbers(out: str) -> list[tuple[int, int]]:
    return [(int(m[1]), int(m[2])) for m in map(STAGE.match, out.splitlines()) if m]


def chatter(out: str) -> list[str]:
    return [x for x in out.splitlines() if any(p.search(x) for p in CHATTER)]


def assert_one_counter(out: str, n: int) -> None:
    assert stage_numbers(out) == [(i, n) for i in range(1, n + 1)], out


def test_session_sends_library_output_to_the_log_file(tmp_path, capfd):
    """C-level writes on descriptor 2, child processes, library loggers and their own stream
    handlers go to the log file; stage lines and ppm's warnings stay on the console."""
    log_file = str(tmp_path / "run" / "demo.log")
    lib = logging.getLogger("some_library")
    own_handler = logging.StreamHandler(sys.stderr)  # as TensorFlow's logger has
    lib.addHandler(own_handler)
    try:
        with console.session(log_file), console.plan(["a", "b"]):
            console.stage("a", "first %s", "stage")
            os.write(2, b"2026-12-03 11:48:57.122685: I cuda_stub.cc:31] C++ chatter\n")
            subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write('child\\n')"],
                           check=True)
            lib.warning("library warning")
            logging.getLogger("ppm.something").info("ppm detail")
            logging.getLogger("ppm.something").warning("ppm warning")
            console.stage("b", "second")
    finally:
        lib.removeHandler(own_handler)
    out, err = capfd.readouterr()
    console_text = out + err
    assert_one_counter(console_text, 2)
    assert "WARNING ppm.something: ppm warning" in console_text
    for hidden in ("C++ chatter", "child", "library warning", "ppm detail"):
        assert hidden not in console_text
    with open(log_file) as f:
        log = f.read()
    for shown in ("C++ chatter", "child", "library warning", "ppm detail", "[1/2] first stage"):
        assert shown in log
    # Everything is back as it was.
    os.write(2, b"after the session\n")
    assert "after the session" in capfd.readouterr().err


def test_session_verbose_shows_everything(tmp_path, capfd):
    with console.session(str(tmp_path / "demo.log"), verbose=True):
        logging.getLogger("some_library").info("library detail")
        os.write(2, b"C++ chatter\n")
    out, err = capfd.readouterr()
    assert "INFO some_library: library detail" in out and "C++ chatter" in err
    assert "library detail" in (tmp_path / "demo.log").read_text()


def test_stage_outside_the_plan_has_no_number(caplog):
    with caplog.at_level(logging.INFO), console.plan(["a"]), console.plan(["x", "y"]):
        console.stage("a", "outer plan wins")
        console.stage("z", "not planned")
    assert [r.getMessage() for r in caplog.records] == ["[1/1] outer plan wins", "not planned"]


def test_demo_runs_every_stage_and_reuses_outputs(tmp_path, capfd):
    run_dir = str(tmp_path / "run")
    args = ["--run_dir", run_dir, "--scale", "tiny", "--seed", "3", "--text_steps", "2",
            "--image_steps", "3", "--tiny_text", "--preset", "tiny",
            "--saved_models", str(tmp_path / "saved_models")]
    exports = tmp_path / "saved_models" / "urm"
    assert demo.main(args + ["--beam_workers", "2"]) == 0
    out, err = capfd.readouterr()
    # One numbered line per stage, one counter; the libraries' output is in the log file.
    assert_one_counter(out + err, 11)
    assert not chatter(out + err)
    log_file = os.path.join(run_dir, "demo.log")
    with open(log_file) as f:
        log = f.read()
    assert "Assets written to" in log and "Skipping full serialization" in log
    assert "non-serializable" not in log  # the models have a get_config
    assert f"library output in {log_file}" in out and "python -m ppm.evaluate --run" in out
    assert "Dataset synthetic-tiny" in out and "train_large" in out
    assert "Test events on cold items" in out and "item_freq<5" in out
    with open(os.path.join(run_dir, "examples", "stats.json")) as f:
        stats = json.load(f)
    line = next(x for x in out.splitlines() if x.strip().startswith("test "))
    assert f"{stats['windows']['test']['examples']:,}" in line
    assert "Encoders (held-out query -> item retrieval" in out and "Embedding cache" in out
    # Stages 6-7: PPM pre-trained, URM trained with it and evaluated on the test day.
    assert "urm (plug-in ppm (finetune, lr x0.1)) on test" in out and "oracle AUC" in out
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
    out, err = capfd.readouterr()
    assert_one_counter(out + err, 11)
    assert "Using the existing export" in out and not chatter(out + err)
    assert {p: os.path.getmtime(os.path.join(run_dir, p)) for p in stamps} == stamps
    assert sorted(os.listdir(exports)) == ["1"]  # the same checkpoint is not exported twice


# Runs the whole pipeline twice more (the path above, on another world): make test-all.
@pytest.mark.slow
def test_demo_on_another_world_replaces_what_it_built(tmp_path, capfd):
    run_dir = str(tmp_path / "run")
    args = ["--run_dir", run_dir, "--scale", "tiny", "--seed", "3", "--text_steps", "2",
            "--image_steps", "3", "--tiny_text", "--preset", "tiny",
            "--saved_models", str(tmp_path / "saved_models")]
    exports = tmp_path / "saved_models" / "urm"
    assert demo.main(args) == 0
    capfd.readouterr()
    stamps = {p: os.path.getmtime(os.path.join(run_dir, p)) for p in (
        "examples/stats.json", "train/tiny_urm/checkpoints/ckpt-4.index")}
    # Another seed is another world: nothing stale is reused. --verbose shows the chatter.
    assert demo.main(args[:5] + ["4"] + args[6:] + ["--verbose"]) == 0
    out, err = capfd.readouterr()
    assert_one_counter(out, 11)
    assert "INFO tensorflow: Assets written to" in out and "INFO ppm.train: " in out
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
