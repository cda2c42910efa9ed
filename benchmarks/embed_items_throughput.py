"""Benchmark: items/s of the Beam embedding job against the same encoders called directly.

Claim measured (issue 3, "Speed"): ``beam_jobs.embed_items`` (Beam ``RunInference`` on the
DirectRunner) embeds a catalogue at most 1.5x slower than calling the same encoder SavedModels
directly in batches on the same items: ``ratio = beam seconds / direct seconds``.

In one run, on the items of ``--dataset``:

- direct: both encoders loaded with :func:`ppm.encoders.contract.load` and warmed up (one batch
  each, untimed), then every non-empty title through the text encoder and every decodable image
  through the image encoder, in batches of ``--batch_size``. Its time is the encoders' work
  alone; the PIL check of the images (:func:`beam_jobs.embed_items.image_problem`), which the
  job does and a direct caller might skip, is timed separately and reported too.
- beam: the whole job, ``embed_items.run`` (reading the parquet file, checks, model loading,
  RunInference, the join by item id, writing TFRecords) into a temporary folder, wall clock.

Both are repeated ``--rounds`` times, alternating their order, and the fastest of each is
reported. Also reported: titles/s and images/s of each encoder alone (direct), and the time
Beam spent inside the encoder calls (RunInference's own latency metric), which separates the
pipeline's overhead from the model's work.

With cheap encoders (such as the tests' fake ones, which hash strings and take 2x2 thumbnails)
the ratio shows Beam's fixed and per-item costs; with real BERT/ResNet encoders the encoder
time dominates and the ratio approaches 1. Try it with the fake encoders::

    .venv/bin/python -m ppm.data.synthetic --out /tmp/demo_world --scale demo --quiet
    .venv/bin/python -c "import ppm; from tests.beam_jobs.test_embed_items import \\
        write_fake_encoder as w; w('/tmp/fake_text', 'text'); w('/tmp/fake_image', 'image')"
    .venv/bin/python benchmarks/embed_items_throughput.py --dataset /tmp/demo_world \\
        --text_model /tmp/fake_text --image_model /tmp/fake_image

Unknown flags go to the Beam job (e.g. ``--direct_num_workers 2 --direct_running_mode
multi_processing``). The result is written to ``benchmarks/results/embed_items_throughput.json``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

# isort: off
import ppm  # noqa: F401  (selects Keras 2; must be imported before TensorFlow)
import tensorflow as tf
# isort: on

import apache_beam as beam
import common
import pandas as pd

from beam_jobs import embed_items
from ppm.data import canonical
from ppm.encoders import contract

NAME = "embed_items_throughput"
TARGET_RATIO = 1.5


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Measure items/s of beam_jobs.embed_items against calling the same encoder "
        "SavedModels directly in batches, in one run, and titles/s and images/s of each "
        "encoder. Unknown flags are passed to the Beam job.")
    parser.add_argument("--dataset", required=True, help="Canonical dataset folder.")
    parser.add_argument("--text_model", required=True, help="Exported text encoder.")
    parser.add_argument("--image_model", required=True, help="Exported image encoder.")
    parser.add_argument("--batch_size", type=int, default=embed_items.DEFAULT_BATCH_SIZE,
                        help="Batch size of both the direct calls and the job (default "
                        "%(default)s).")
    parser.add_argument("--rounds", type=int, default=2,
                        help="Measurements of each side, alternating their order; the fastest "
                        "of each is reported (default %(default)s).")
    parser.add_argument("--out", default=common.result_path(NAME),
                        help=f"Result JSON path (default: benchmarks/results/{NAME}.json).")
    args, beam_args = parser.parse_known_args(argv)
    if args.batch_size < 1 or args.rounds < 1:
        parser.error("--batch_size and --rounds must be >= 1")
    return args, beam_args


def _batches(values: list, size: int):
    for start in range(0, len(values), size):
        yield values[start:start + size]


def time_encoder(fn, inputs: list, batch_size: int) -> float:
    """Seconds to embed ``inputs`` in batches (after one untimed warm-up batch)."""
    if not inputs:
        return 0.0
    fn(inputs[:batch_size]).numpy()
    start = time.perf_counter()
    for batch in _batches(inputs, batch_size):
        fn(batch).numpy()
    return time.perf_counter() - start


def measure_direct(items: pd.DataFrame, text, image, batch_size: int) -> dict:
    titles = [t for t in items.title if t and t.strip()]
    start = time.perf_counter()
    images = [b for b in items.image if b is not None and embed_items.image_problem(b) is None]
    check_seconds = time.perf_counter() - start
    text_seconds = time_encoder(text, titles, batch_size)
    image_seconds = time_encoder(image, images, batch_size)
    seconds = text_seconds + image_seconds
    return {"titles": len(titles), "images": len(images),
            "text_seconds": text_seconds, "image_seconds": image_seconds,
            "titles_per_s": len(titles) / text_seconds if text_seconds else None,
            "images_per_s": len(images) / image_seconds if image_seconds else None,
            "image_check_seconds": check_seconds, "seconds": seconds,
            "items_per_s": len(items) / seconds,
            "items_per_s_with_image_check": len(items) / (seconds + check_seconds)}


def measure_beam(args, beam_args: list, n_items: int) -> dict:
    out = tempfile.mkdtemp(prefix="ppm_bench_embed_")
    try:
        start = time.perf_counter()
        manifest = embed_items.run(
            ["--dataset", args.dataset, "--text_model", args.text_model, "--image_model",
             args.image_model, "--out", out, "--batch_size", str(args.batch_size),
             "--overwrite"] + beam_args)
        seconds = time.perf_counter() - start
    finally:
        shutil.rmtree(out, ignore_errors=True)
    inference = manifest["inference"]
    in_encoders = sum(inference[m]["inference_seconds"] for m in inference)
    return {"seconds": seconds, "items_per_s": n_items / seconds,
            "inference_seconds": in_encoders, "outside_inference_seconds": seconds - in_encoders,
            "load_model_seconds": sum(inference[m]["load_model_seconds"] for m in inference),
            "batches": {m: inference[m]["batches"] for m in inference},
            "mean_batch_size": {m: inference[m]["mean_batch_size"] for m in inference},
            "counts": manifest["counts"]}


def main(argv=None) -> int:
    args, beam_args = parse_args(argv)
    items = pd.read_parquet(os.path.join(args.dataset, canonical.ITEMS_FILE),
                            columns=["item_id", "title", "image"])
    items["image"] = items.image.astype(object).where(items.image.notna(), None)
    text, text_info = contract.load(args.text_model)
    image, image_info = contract.load(args.image_model)
    print(f"Embedding throughput: {len(items)} items of {args.dataset}, batch "
          f"{args.batch_size}, encoders dim {text_info.get('dim')}", flush=True)

    runs = {"direct": [], "beam": []}
    for r in range(args.rounds):
        # Alternate the order: the first measurement in a process tends to be slower.
        for side in (("direct", "beam") if r % 2 == 0 else ("beam", "direct")):
            if side == "direct":
                m = measure_direct(items, text, image, args.batch_size)
            else:
                m = measure_beam(args, beam_args, len(items))
            runs[side].append(m)
            print(f"  round {r} {side:>6}: {m['items_per_s']:>9,.0f} items/s "
                  f"({m['seconds']:.2f} s)", flush=True)
    direct = dict(min(runs["direct"], key=lambda m: m["seconds"]))
    beam_run = dict(min(runs["beam"], key=lambda m: m["seconds"]))
    direct["all_seconds"] = [m["seconds"] for m in runs["direct"]]
    beam_run["all_seconds"] = [m["seconds"] for m in runs["beam"]]
    ratio = beam_run["seconds"] / direct["seconds"]

    mach = common.machine(tensorflow=tf.__version__, apache_beam=beam.__version__,
                          gpus=[d.name for d in tf.config.list_physical_devices("GPU")])
    result = {
        "benchmark": NAME,
        "claim": f"Beam RunInference job time is at most {TARGET_RATIO}x the time of calling "
                 "the same encoders directly in batches on the same items",
        "dataset": args.dataset, "items": len(items), "batch_size": args.batch_size,
        "text_model": args.text_model, "image_model": args.image_model,
        "text_encoder_info": text_info, "image_encoder_info": image_info,
        "beam_args": beam_args, "rounds": args.rounds, "machine": mach,
        "direct": direct, "beam": beam_run,
        "ratio": ratio,
        "ratio_with_image_check": beam_run["seconds"] / (direct["seconds"]
                                                         + direct["image_check_seconds"]),
        "target_ratio": TARGET_RATIO, "meets_target": ratio <= TARGET_RATIO,
        "titles_per_s": direct["titles_per_s"], "images_per_s": direct["images_per_s"],
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    common.write_result(args.out, result)
    print(f"Machine: {mach['cpu_count']} CPUs ({mach['usable_cpus']} usable), TensorFlow "
          f"{mach['tensorflow']}, Beam {mach['apache_beam']}")
    print(f"Text encoder: {direct['titles_per_s'] or 0:,.0f} titles/s; image encoder: "
          f"{direct['images_per_s'] or 0:,.0f} images/s (direct, batch {args.batch_size})")
    print(f"Direct: {direct['items_per_s']:,.0f} items/s ({direct['seconds']:.2f} s; PIL check "
          f"of the images {direct['image_check_seconds']:.2f} s more)")
    print(f"Beam:   {beam_run['items_per_s']:,.0f} items/s ({beam_run['seconds']:.2f} s, of "
          f"which {beam_run['inference_seconds']:.2f} s inside the encoders)")
    print(f"Beam / direct time: {ratio:.2f}x (target <= {TARGET_RATIO}x: "
          f"{'met' if result['meets_target'] else 'NOT met'})")
    print(f"Result written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
