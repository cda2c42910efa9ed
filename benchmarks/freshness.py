"""Benchmark: how long new items wait for their multimodal vectors in a served model.

Taobao's system (arXiv:2407.19467, §5, Fig. 4) gives a new item its vector within seconds,
without retraining. Here the same path is files and a hot-loaded SavedModel version:

1. (set-up, not timed) yesterday's catalogue is today's without its ``--new_items`` newest
   items; a cache of it (``embed_items``), a model trained on it (``--experiment``, one pass,
   reading the vectors), exported and served by the local gRPC server;
2. **t0: the new items land** in ``items.parquet``;
3. ``beam_jobs.embed_items --parent`` writes a cache version that embeds only them;
4. ``ppm.export --embeddings`` re-exports the same checkpoint with that version;
5. the server finds the new SavedModel version and loads it;
6. **t1: the first answer** that scores a new item with its real vector.

It reports the seconds of each stage, checks that the requests about items the model knew
score the same before and after (max absolute difference), and that the requests about new
items now score as the model does in process with the new cache. Run::

    .venv/bin/python benchmarks/freshness.py --run_root W --image_model W/encoders/image_scl

(``W`` holds ``dataset/`` and ``examples/``; runs go to ``W/freshness/``.) Writes
``benchmarks/results/freshness.json``.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

import ppm  # noqa: E402,F401
from benchmarks import common  # noqa: E402


def split_catalogue(dataset: str, yesterday: str, new_items: int) -> list[str]:
    """Copies ``dataset`` to ``yesterday`` without its ``new_items`` newest items; returns
    their ids."""
    import pyarrow.parquet as pq

    from ppm.data import canonical

    shutil.copytree(dataset, yesterday, dirs_exist_ok=True)
    table = pq.read_table(os.path.join(dataset, canonical.ITEMS_FILE))
    created = np.asarray(table.column("created_at").to_pylist())
    newest = np.argsort(-created, kind="stable")[:new_items]
    keep = np.setdiff1d(np.arange(table.num_rows), newest)
    pq.write_table(table.take(keep), os.path.join(yesterday, canonical.ITEMS_FILE))
    ids = table.column("item_id").to_pylist()
    return [ids[i] for i in newest]


def test_requests(examples: str, new: set, n: int = 512):
    """``(features, touches)``: ``n`` test examples and whether each reads a new item (as
    target or in its history)."""
    from ppm import features
    from ppm.data import pipeline

    schema = features.FeatureSchema.load(os.path.join(examples, features.SCHEMA_FILE))
    ds = pipeline.make_dataset(pipeline.list_files(os.path.join(examples, "test")), schema,
                               4096, training=False, deterministic=True)
    feats, _ = next(iter(ds))
    feats = {k: v.numpy() for k, v in feats.items()}
    hist = feats["hist_item_id"].astype(str)
    real = np.arange(hist.shape[1])[None] < feats["hist_len"][:, None]
    touches = np.array([t.decode() in new or bool(set(h[m]) & new)
                        for t, h, m in zip(feats["item_id"], hist, real)])
    # keep a mix: every example with a new target first, then the others
    target_new = np.array([t.decode() in new for t in feats["item_id"]])
    order = np.concatenate([np.flatnonzero(target_new), np.flatnonzero(~target_new)])[:n]
    return {k: v[order] for k, v in feats.items()}, touches[order], target_new[order]


def run(args) -> dict:
    from beam_jobs import embed_items
    from ppm import configs, evaluate, export, train
    from ppm.serving import client, servables, server

    root = os.path.join(args.run_root, "freshness")
    if os.path.exists(root):
        shutil.rmtree(root)
    os.makedirs(root)
    dataset = os.path.join(root, "dataset")  # today's catalogue appears here at t0
    new_ids = split_catalogue(os.path.join(args.run_root, "dataset"), dataset, args.new_items)
    v1, v2 = os.path.join(root, "embeddings-v1"), os.path.join(root, "embeddings-v2")
    encoder = ["--image_model", args.image_model] if args.image_model else [
        "--text_model", args.text_model]
    embed_items.run(["--dataset", dataset, *encoder, "--out", v1])
    c = configs.resolve(args.experiment, args.preset, validate=False)
    c.override({"data": {"dataset": dataset, "examples": os.path.join(args.run_root, "examples"),
                         "embeddings": v1, "max_missing_cache_fraction": 0.2},
                "model": {"multimodal": {"modality": "image" if args.image_model else "text"}}})
    c.validate()
    run_dir = os.path.join(root, "run")
    train.train(c, run_dir, verbose=0)
    base = os.path.join(root, "saved_models")
    export.export(run_dir, args.experiment, base)
    feats, touches, target_new = test_requests(c.data.examples, set(new_ids))
    model, inputs, _ = evaluate.load_model(run_dir)
    wanted = export.input_signature(export.serving_schema(model, inputs.schema))
    request = {k: feats[k] for k in wanted}
    proto = servables.model_config(args.experiment, os.path.join(base, args.experiment))
    timings = {}
    with server.Server([proto], port=0, host="127.0.0.1", poll_seconds=args.poll_seconds) as srv, \
            client.Client(srv.target, args.experiment, timeout=120) as cl:
        before = cl.predict(request)["p_click"]
        # t0: the new items land in the catalogue
        shutil.copy(os.path.join(args.run_root, "dataset", "items.parquet"),
                    os.path.join(dataset, "items.parquet"))
        t0 = time.perf_counter()
        manifest = embed_items.run(["--dataset", dataset, *encoder, "--parent", v1,
                                    "--out", v2])
        t_embed = time.perf_counter()
        export.export(run_dir, args.experiment, base, embeddings=v2)
        t_export = time.perf_counter()
        while cl.status().get(2) != "AVAILABLE":
            time.sleep(0.05)
            if time.perf_counter() - t_export > 300:
                raise TimeoutError("the server did not load version 2 in 300 s")
        after = cl.predict(request)["p_click"]
        t1 = time.perf_counter()
        timings = {"embed_new_items_s": t_embed - t0, "export_s": t_export - t_embed,
                   "server_load_and_first_answer_s": t1 - t_export, "total_s": t1 - t0}
    fresh, _, _ = evaluate.load_model(run_dir, embeddings=v2)
    expected = fresh.probabilities({k: feats[k] for k in wanted})["click"].numpy()
    return {"new_items": len(new_ids), "experiment": args.experiment,
            "cache_counts": manifest["counts"], "timings": timings,
            "requests": {"examples": int(len(touches)), "reading_new_items": int(touches.sum()),
                         "new_targets": int(target_new.sum())},
            "known_items_max_abs_change": float(np.abs(after - before)[~touches].max()),
            "new_items_mean_abs_change": float(np.abs(after - before)[touches].mean()),
            "served_vs_in_process_max_abs_diff": float(np.abs(after - expected).max())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run_root", required=True,
                        help="A folder with dataset/ and examples/.")
    parser.add_argument("--image_model", default="", help="The exported image encoder.")
    parser.add_argument("--text_model", default="", help="Or a text encoder.")
    parser.add_argument("--experiment", default="din_simtier",
                        help="A model that reads the vectors (default %(default)s).")
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--new_items", type=int, default=100)
    parser.add_argument("--poll_seconds", type=float, default=1.0,
                        help="The server's base path polling period (TF Serving's "
                        "--file_system_poll_wait_seconds; its default is 1).")
    parser.add_argument("--out", default=common.result_path("freshness"))
    args = parser.parse_args(argv)
    if not (args.image_model or args.text_model):
        parser.error("give --image_model or --text_model")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    result = run(args)
    result["machine"] = common.machine()
    common.write_result(args.out, result)
    common.print_result(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
