"""Benchmark: tf.data input pipeline throughput (examples/s) at the paper's global batch 20000.

Measured: how fast :func:`ppm.data.pipeline.make_dataset` feeds the paper's batch 20000 (it
parses after batching, one vectorised ``tf.io.parse_example`` per batch), and how that compares
per example with a smaller batch (on the 2-core development machine batch 2000 ran 0.9-1.3x
the examples/s of batch 20000: a large batch is not cheaper per example). The script iterates
``make_dataset(<examples>/<window>, schema, batch_size, training=True, repeat=True)``, skips
``--warmup`` batches (file opening, filling the 100k-example shuffle buffer, autotuning), then
times the next ``--batches`` batches and reports examples/s and batches/s, the best of
``--rounds`` measurements (their order alternates, since the first in a process runs slower).

In the same run it measures ``--compare_batch_size`` (default 2000) over the same number of
examples and reports its throughput as a ratio to batch 20000: speed claims are ratios within
one run, since absolute figures depend on the machine (the JSON records it).

With no ``--examples``, a ``demo`` synthetic world is generated and turned into examples by the
Beam job (``beam_jobs.build_examples``, 8 shards) in a temporary folder, deleted afterwards;
that takes a few minutes.

Run (from the repository root)::

    .venv/bin/python benchmarks/pipeline_throughput.py --examples /tmp/ex_demo
    .venv/bin/python benchmarks/pipeline_throughput.py            # builds demo examples first
    .venv/bin/python benchmarks/pipeline_throughput.py --examples DIR --window train_large \\
        --batch_size 20000 --batches 30 --warmup 3

The result is written to ``benchmarks/results/pipeline_throughput.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time

# isort: off
import ppm  # noqa: F401  (selects Keras 2; must be imported before TensorFlow)
import tensorflow as tf
# isort: on

import common

from ppm import features
from ppm.data import pipeline

NAME = "pipeline_throughput"
WINDOWS = ("pretrain", "train_large", "train_small", "test")


def build_demo_examples(root: str, seed: int) -> tuple[str, dict]:
    """Generates a demo world under ``root`` and builds its examples with the Beam job."""
    from beam_jobs import build_examples
    from ppm.data import synthetic

    dataset, examples = os.path.join(root, "dataset"), os.path.join(root, "examples")
    t0 = time.perf_counter()
    synthetic.generate(dataset, scale="demo", seed=seed, progress=False, with_queries=False)
    t1 = time.perf_counter()
    print(f"  generated demo world in {t1 - t0:.1f} s; building examples with Beam...",
          flush=True)
    stats = build_examples.run(["--dataset", dataset, "--out", examples, "--num_shards", "8",
                                "--overwrite"])
    t2 = time.perf_counter()
    print(f"  built examples in {t2 - t1:.1f} s", flush=True)
    return examples, {"generate_seconds": t1 - t0, "build_examples_seconds": t2 - t1,
                      "events": stats.get("events")}


def window_examples(examples: str, window: str) -> int | None:
    """Example count of a window from the Beam job's stats.json, when there is one."""
    path = os.path.join(examples, "stats.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f).get("windows", {}).get(window, {}).get("examples")


def measure(files: str, schema: features.FeatureSchema, batch_size: int, batches: int,
            warmup: int) -> dict:
    """Examples/s and batches/s over ``batches`` batches after ``warmup`` batches."""
    ds = pipeline.make_dataset(files, schema, batch_size, training=True, repeat=True)
    it = iter(ds)
    label = next(f.name for f in schema.features if f.role == features.LABEL)
    t0 = time.perf_counter()
    for _ in range(warmup):
        next(it)
    t1 = time.perf_counter()
    n = 0
    for _ in range(batches):
        _, labels = next(it)
        n += int(labels[label].shape[0])
    t2 = time.perf_counter()
    del it, ds
    seconds = t2 - t1
    return {"batch_size": batch_size, "warmup_batches": warmup, "batches": batches,
            "examples": n, "warmup_seconds": t1 - t0, "seconds": seconds,
            "examples_per_s": n / seconds, "batches_per_s": batches / seconds}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure tf.data examples/s of ppm.data.pipeline.make_dataset at global "
        "batch 20000, and the throughput of a smaller batch as a ratio to it.")
    parser.add_argument("--examples", default=None,
                        help="An existing examples folder (output of beam_jobs.build_examples, "
                        "with schema.json). Default: generate a demo world and build examples "
                        "into a temporary folder (a few minutes).")
    parser.add_argument("--window", default="pretrain", choices=WINDOWS,
                        help="Examples window to read (default: pretrain).")
    parser.add_argument("--batch_size", type=int, default=20000,
                        help="Global batch size to measure (default: 20000).")
    parser.add_argument("--batches", type=int, default=30,
                        help="Timed batches at --batch_size (default: 30).")
    parser.add_argument("--warmup", type=int, default=3,
                        help="Untimed warm-up batches at --batch_size (default: 3).")
    parser.add_argument("--compare_batch_size", type=int, default=2000,
                        help="Smaller batch measured in the same run over the same number of "
                        "examples (warm-up too), reported as a ratio; 0 to skip (default: "
                        "2000).")
    parser.add_argument("--rounds", type=int, default=2,
                        help="Measurements of each batch size, alternating their order; the "
                        "fastest of each is reported (default: 2).")
    parser.add_argument("--seed", type=int, default=0,
                        help="Seed of the demo world built without --examples (default: 0).")
    parser.add_argument("--out", default=common.result_path(NAME),
                        help=f"Result JSON path (default: benchmarks/results/{NAME}.json).")
    args = parser.parse_args(argv)
    for name in ("batch_size", "batches", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    if args.warmup < 0 or args.compare_batch_size < 0:
        parser.error("--warmup and --compare_batch_size must be >= 0")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    tmp = None
    built = None
    try:
        if args.examples:
            examples = args.examples
            if not os.path.exists(os.path.join(examples, features.SCHEMA_FILE)):
                raise SystemExit(f"{examples} has no {features.SCHEMA_FILE}: not an examples "
                                 "folder of beam_jobs.build_examples")
        else:
            tmp = tempfile.mkdtemp(prefix="ppm_bench_pipeline_")
            print(f"No --examples: building demo examples in {tmp}", flush=True)
            examples, built = build_demo_examples(tmp, args.seed)
        schema = features.FeatureSchema.load(os.path.join(examples, features.SCHEMA_FILE))
        files = os.path.join(examples, args.window)
        n_files = len(pipeline.list_files(files))
        in_window = window_examples(examples, args.window)
        print(f"Pipeline throughput: {files} ({n_files} files, "
              f"{in_window if in_window is not None else '?'} examples), "
              f"{len(schema.features)} features, max_history {schema.max_history}", flush=True)

        sizes = [(args.batch_size, args.batches, args.warmup)]
        if args.compare_batch_size:
            factor = args.batch_size / args.compare_batch_size
            sizes.append((args.compare_batch_size, max(1, round(args.batches * factor)),
                          round(args.warmup * factor)))
        runs: dict[int, list[dict]] = {bs: [] for bs, _, _ in sizes}
        for r in range(args.rounds):
            # Alternate the order: the first measurement in a process is often slower (page
            # cache, allocator growth, tf.data autotuning), which would bias the ratio.
            for bs, nb, wu in (sizes if r % 2 == 0 else sizes[::-1]):
                m = measure(files, schema, bs, nb, wu)
                m["round"] = r
                runs[bs].append(m)
                print(f"  round {r} batch {bs:>6}: {m['examples_per_s']:>10,.0f} examples/s, "
                      f"{m['batches_per_s']:6.2f} batches/s ({m['batches']} batches in "
                      f"{m['seconds']:.2f} s; warm-up {m['warmup_seconds']:.2f} s)", flush=True)
        main_run = common.best(runs[args.batch_size], "examples_per_s", True)
        compare = None
        if args.compare_batch_size:
            compare = common.best(runs[args.compare_batch_size], "examples_per_s", True)
            compare["examples_per_s_ratio_to_main"] = (compare["examples_per_s"]
                                                       / main_run["examples_per_s"])
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    mach = common.machine(tensorflow=tf.__version__,
                   gpus=[d.name for d in tf.config.list_physical_devices("GPU")])
    result = {
        "benchmark": NAME,
        "claim": "make_dataset feeds global batch 20000 quickly (parse after batching); "
                 "smaller batches are slower per example",
        "examples_dir": args.examples or "(temporary demo examples)",
        "built_demo_examples": built,
        "window": args.window, "window_examples": in_window, "files": n_files,
        "features": len(schema.features), "max_history": schema.max_history,
        "machine": mach,
        "main": main_run,
        "compare": compare,
        "rounds": args.rounds,
        "examples_per_s": main_run["examples_per_s"],
        "batches_per_s": main_run["batches_per_s"],
        "compare_ratio": compare["examples_per_s_ratio_to_main"] if compare else None,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    common.write_result(args.out, result)
    print(f"Machine: {mach['cpu_count']} CPUs ({mach['usable_cpus']} usable), "
          f"TensorFlow {mach['tensorflow']}, {mach['platform']}")
    print(f"Batch {args.batch_size}: {main_run['examples_per_s']:,.0f} examples/s, "
          f"{main_run['batches_per_s']:.2f} batches/s (best of {args.rounds})")
    if compare:
        print(f"Batch {args.compare_batch_size}: {compare['examples_per_s']:,.0f} examples/s, "
              f"{compare['batches_per_s']:.2f} batches/s (best of {args.rounds})")
        print(f"Batch {args.compare_batch_size} runs at "
              f"{result['compare_ratio']:.2f}x the examples/s of batch {args.batch_size}")
    print(f"Result written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
