"""The analogue of Taobao Table 2 on the synthetic world: Acc@1 / Acc@5 of query -> item retrieval.

Rows, for the text tower (all-MiniLM-L6-v2 preset) and the image tower (small ResNet from
scratch: no pre-trained image weights can be downloaded here):

1. pre-trained, no fine-tuning (``--steps 0``; for images that is a random initialisation),
2. fine-tuned with the PPM task (QM for text, EP for images),
3. SCL (InfoNCE with learnable temperature + MoCo queue + triplet loss),
4. SCL without the triplet loss,
5. SCL without the triplet loss and without MoCo (in-batch negatives only).

Every row trains from the same starting point with the same steps, batch and seed, and is
evaluated on the same held-out query pairs (Taobao Eq. 6, retrieving among all held-out
positives). Run::

    .venv/bin/python benchmarks/encoder_ablation.py --dataset runs/demo/dataset

Results: ``benchmarks/results/encoder_ablation.json`` and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import common

ROWS = (
    ("pre-trained, no fine-tuning", None, []),
    ("fine-tuned (QM / EP)", "ppm", []),
    ("SCL", "scl", []),
    ("SCL w/o triplet", "scl", ["--triplet_weight", "0"]),
    ("SCL w/o triplet, w/o MoCo", "scl", ["--triplet_weight", "0", "--no_moco"]),
)
PPM_TASK = {"text": "qm", "image": "ep"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", required=True, help="Canonical dataset with queries.parquet.")
    p.add_argument("--modalities", nargs="+", default=["text", "image"],
                   choices=["text", "image"])
    p.add_argument("--text_steps", type=int, default=150)
    p.add_argument("--image_steps", type=int, default=300)
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--queue_size", type=int, default=1024, help="MoCo queue size K.")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=common.result_path("encoder_ablation"))
    return p.parse_args(argv)


def run_row(modality, task, extra, args, workdir):
    from ppm.encoders import train

    steps = args.text_steps if modality == "text" else args.image_steps
    argv = ["--modality", modality, "--task", PPM_TASK[modality] if task in (None, "ppm")
            else task, "--dataset", args.dataset,
            "--out", os.path.join(workdir, f"{modality}-{len(os.listdir(workdir))}"),
            "--steps", "0" if task is None else str(steps), "--batch_size",
            str(args.batch_size), "--seed", str(args.seed), "--queue_size",
            str(args.queue_size), "--verbose", "0"] + extra
    t0 = time.time()
    info = train.run(train.parse_args(argv))
    return {"acc@1": info["eval_after"]["acc@1"], "acc@5": info["eval_after"]["acc@5"],
            "queries": info["eval_after"]["queries"],
            "candidates": info["eval_after"]["candidates"],
            "steps": info["steps"], "seconds": round(time.time() - t0, 1),
            "final_losses": info["final_losses"]}


def table(results) -> str:
    mods = [m for m in ("text", "image") if m in results]
    head = "| method | " + " | ".join(f"{m} Acc@1 | {m} Acc@5" for m in mods) + " |"
    lines = [head, "|---" * (1 + 2 * len(mods)) + "|"]
    for name, _, _ in ROWS:
        cells = []
        for m in mods:
            r = results[m][name]
            cells += [f"{r['acc@1']:.3f}", f"{r['acc@5']:.3f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory() as workdir:
        for modality in args.modalities:
            results[modality] = {}
            for name, task, extra in ROWS:
                results[modality][name] = run_row(modality, task, extra, args, workdir)
                print(f"{modality:5s} {name:28s} {results[modality][name]}", flush=True)
    first = results[args.modalities[0]][ROWS[0][0]]
    result = {"dataset": args.dataset, "batch_size": args.batch_size,
              "text_steps": args.text_steps, "image_steps": args.image_steps,
              "queue_size": args.queue_size, "seed": args.seed,
              "held_out_queries": first["queries"], "results": results,
              "machine": common.machine()}
    common.write_result(args.out, result)
    print(table(results))
    print(f"Result written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
