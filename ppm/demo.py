"""The end-to-end demo on the embedded synthetic world (``make demo``).

    python -m ppm.demo [--run_dir runs/demo] [--scale demo] [--seed 0]

Stages, each also a command of its own (see the README):

1. ``python -m ppm.data.synthetic``: generate the synthetic world (skipped if present);
2. ``python -m ppm.data.validate``: validate it;
3. ``python -m beam_jobs.build_examples``: build TFRecord examples with Beam (skipped if
   present, unless ``--rebuild``);
4. print a summary: counts per window, CTR, share of test events on cold items.

Later stages (encoders, embedding cache, PPM pre-training, URM training, export, serving) join
this demo as they land.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from ppm.data import canonical, validate

logger = logging.getLogger(__name__)


def summary(dataset_dir: str, examples_dir: str) -> str:
    """A human-readable summary of a dataset and its examples."""
    meta = canonical.read_meta(dataset_dir)
    with open(os.path.join(examples_dir, "stats.json")) as f:
        stats = json.load(f)
    lines = [f"Dataset {meta.name} ({dataset_dir})",
             "  " + ", ".join(f"{k}: {v:,}" for k, v in meta.counts.items()),
             f"Examples ({examples_dir}); malformed events: {stats['dead_letter']:,}",
             f"  {'window':<12}{'examples':>10}{'CTR':>8}{'orders':>9}{'carts':>8}"]
    for name, w in stats["windows"].items():
        ctr = f"{w['ctr']:.2%}" if w["ctr"] is not None else "-"
        lines.append(f"  {name:<12}{w['examples']:>10,}{ctr:>8}{w['order']:>9,}"
                     f"{w['cart']:>8,}")
    cold = stats["test_cold_share"]
    lines.append("Test events on cold items (item_freq = target appearances in train_large): "
                 + ", ".join(f"{k}: {v:.1%}" for k, v in cold.items() if v is not None))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ppm.demo",
        description="Run the pipeline end to end on the synthetic world: generate, validate, "
        "build examples with Beam (DirectRunner), print a summary.")
    parser.add_argument("--run_dir", default="runs/demo", help="Where everything is written "
                        "(dataset/ and examples/ inside).")
    parser.add_argument("--scale", default="demo", help="Synthetic world scale.")
    parser.add_argument("--seed", type=int, default=0, help="Synthetic world seed.")
    parser.add_argument("--beam_workers", type=int, default=os.cpu_count() or 1,
                        help="DirectRunner worker processes for the Beam job (default: the "
                        "number of CPUs; 1 runs in this process).")
    parser.add_argument("--rebuild", action="store_true",
                        help="Regenerate the world and rebuild the examples even if present.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("apache_beam").setLevel(logging.WARNING)  # keep the stage lines readable
    dataset = os.path.join(args.run_dir, "dataset")
    examples = os.path.join(args.run_dir, "examples")

    from ppm.data import synthetic  # noqa: PLC0415 - heavy, only when needed

    generated = args.rebuild or not os.path.exists(os.path.join(dataset, canonical.DATASET_FILE))
    if generated:
        logger.info("[1/3] Generating the synthetic world (%s) in %s", args.scale, dataset)
        synthetic.generate(dataset, args.scale, args.seed, progress=True)
    else:
        logger.info("[1/3] Using the existing world in %s", dataset)
    logger.info("[2/3] Validating %s", dataset)
    report = validate.check_dataset(dataset)
    for w in report.warnings:
        logger.warning("%s", w)
    if generated or not os.path.exists(os.path.join(examples, "stats.json")):
        logger.info("[3/3] Building examples with Beam into %s", examples)
        from beam_jobs import build_examples  # noqa: PLC0415

        beam_flags = []
        if args.beam_workers > 1:
            beam_flags = ["--direct_num_workers", str(args.beam_workers),
                          "--direct_running_mode", "multi_processing"]
        build_examples.run(["--dataset", dataset, "--out", examples, "--num_shards", "4",
                            "--overwrite"] + beam_flags)
    else:
        logger.info("[3/3] Using the existing examples in %s", examples)
    print(summary(dataset, examples))
    return 0


if __name__ == "__main__":
    sys.exit(main())
