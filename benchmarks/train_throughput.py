"""Benchmark: URM training examples/s at paper dimensions, against the input pipeline.

In one run, on the same examples: (1) tf.data examples/s of
:func:`ppm.data.pipeline.make_dataset` at the given global batch; (2) URM training examples/s
with the ``paper`` preset's model (64-d ids, 2 layers, 4 heads, 50-item history) under the
MirroredStrategy, without and with XLA (``trainer.jit_compile``: the dense blocks compiled, the
string lookups not). Reported: the pipeline / train-step ratio (the pipeline must not be the
bottleneck: >= 3x) and the XLA gain. Each training figure is the second loop of ``--steps``
steps (the first includes tracing and compilation).

On a CPU the paper's global batch 20000 takes minutes per step, so ``--batch_size`` defaults to
2048; on a GPU pass ``--batch_size 20000`` (and ``--mixed_precision`` to add that row).

Run (after ``make demo``)::

    .venv/bin/python benchmarks/train_throughput.py --run_root runs/demo

Writes ``benchmarks/results/train_throughput.json``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ppm  # noqa: E402,F401
from benchmarks import common  # noqa: E402


def pipeline_speed(examples: str, window: str, batch: int, batches: int) -> float:
    from ppm import features
    from ppm.data import pipeline

    schema = features.FeatureSchema.load(os.path.join(examples, features.SCHEMA_FILE))
    ds = iter(pipeline.make_dataset(os.path.join(examples, window), schema, batch,
                                    training=True, repeat=True))
    for _ in range(3):
        next(ds)
    start = time.perf_counter()
    for _ in range(batches):
        next(ds)
    return batches * batch / (time.perf_counter() - start)


def train_speed(root: str, batch: int, steps: int, **trainer) -> float:
    from ppm import configs, train

    c = configs.resolve("urm_ppm_random", "paper", validate=False)
    c.override({"data": {**configs.data_paths(root),
                         "global_batch_size": batch, "shuffle_buffer": 20_000},
                "trainer": {"train_steps": 2 * steps, "checkpoint_interval": steps,
                            **trainer}})
    with tempfile.TemporaryDirectory() as tmp:
        summary = train.train(c, tmp, verbose=0)
    return summary["train_examples_per_second"][-1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run_root", default="runs/demo")
    parser.add_argument("--batch_size", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=5, help="Steps per timed loop.")
    parser.add_argument("--mixed_precision", action="store_true",
                        help="Also measure mixed_float16 (GPU).")
    parser.add_argument("--out", default=common.result_path("train_throughput"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import tensorflow as tf

    examples = os.path.join(args.run_root, "examples")
    result = {"batch_size": args.batch_size, "steps_per_loop": args.steps,
              "model": "URM (PPM random init), paper dimensions",
              "pipeline_examples_per_second": pipeline_speed(
                  examples, "train_large", args.batch_size, 4 * args.steps),
              "train_examples_per_second": {}}
    variants = {"float32": {}, "float32 + XLA": {"jit_compile": True}}
    if args.mixed_precision:
        variants["mixed_float16"] = {"mixed_precision": True}
        variants["mixed_float16 + XLA"] = {"mixed_precision": True, "jit_compile": True}
    for name, trainer in variants.items():
        try:
            result["train_examples_per_second"][name] = train_speed(
                args.run_root, args.batch_size, args.steps, **trainer)
        except Exception as e:  # noqa: BLE001 - report, keep measuring the others
            result["train_examples_per_second"][name] = f"failed: {type(e).__name__}: {e}"
    speeds = result["train_examples_per_second"]
    base = speeds["float32"]
    result["pipeline_over_train"] = result["pipeline_examples_per_second"] / base
    if isinstance(speeds["float32 + XLA"], float):
        result["xla_gain"] = speeds["float32 + XLA"] / base
    result["machine"] = common.machine(tensorflow=tf.__version__,
                                       gpus=len(tf.config.list_physical_devices("GPU")))
    common.write_result(args.out, result)
    common.print_result(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
