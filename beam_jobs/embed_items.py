"""Beam job: cache the title and image embeddings of every item (PPM §3.1.1, §3.2.3 Eq. 8).

    python -m beam_jobs.embed_items --dataset DIR [--text_model PATH] [--image_model PATH] \\
        --out DIR [--parent DIR] [--batch_size N] [--num_shards N] [--overwrite] [Beam flags]

Reads ``items.parquet`` (``item_id``, ``title``, ``image``) and runs the exported encoders
(:mod:`ppm.encoders.contract`) with Beam's ``RunInference``, then writes the embedding cache
read by :mod:`ppm.data.cache`: TFRecord shards ``part-*.tfrecord`` of ``item_id``,
``title_emb``, ``image_emb``, ``has_title``, ``has_image``, then ``manifest.json``.

Give both encoders, or one: ``--text_model`` alone writes a text-only cache (manifest
``modalities: ["text"]``, records without ``image_emb``/``has_image``; for a dataset without
images such as MIND), ``--image_model`` alone an image-only one. The models read whichever
modalities the cache holds.

How inference is wired: :class:`EncoderModelHandler` subclasses Beam's
``TFModelHandlerTensor``; its ``load_model`` loads the plain SavedModel with
:func:`ppm.encoders.contract.load` (the stock loader calls ``tf.keras.models.load_model``, which
does not read a non-Keras SavedModel), and its ``inference_fn`` (:func:`encoder_inference_fn`)
turns one batch of raw strings into a single ``tf.string [n]`` tensor and calls the
``serving_default`` signature once. A ``KeyedModelHandler`` carries the item ids through, and
``BatchElements`` forms batches of ``--min_batch_size`` to ``--batch_size`` items (equal by
default: fixed batches, which suit an offline job with a fixed per-call cost).

Nothing crashes and nothing vanishes: an empty title skips the text model and an item with a
null image, or bytes that PIL cannot fully decode as JPEG/PNG (the encoder contract), skips the
image model; checking on the Beam side means one bad image cannot fail a whole batch inside the
SavedModel. Those items get a zero vector with the flag at 0, and are counted (Beam Metrics)
in the returned summary and the manifest. After the run the job checks that it wrote exactly one
record per row of ``items.parquet``; duplicate item ids make it fail (the dataset is invalid,
``python -m ppm.data.validate`` names them) without writing a manifest.

``--parent OLD`` writes a new *version* of the cache ``OLD`` (Taobao §5: new items get their
vectors without re-embedding the catalogue): only items that ``OLD`` lacks or whose title or
image changed are embedded, every other record is copied (:mod:`beam_jobs.incremental`).

Before running it refuses, with a clear error, a path that is not an exported encoder, an
encoder of the other modality, two encoders of different dimensions, and an ``--out`` that
already holds a cache (unless ``--overwrite``, which deletes it first: a failed rerun then
leaves no manifest, so no half-written cache can be loaded).

It runs locally on Beam's ``FnApiRunner`` unless ``--runner`` is given (no Prism download:
:mod:`beam_jobs.options`). On Dataflow add the standard flags (``--runner DataflowRunner
--project P --region R --temp_location gs://... --setup_file ./setup.py``); paths may then be
``gs://``.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import io
import json
import logging
import os
import time

# isort: off
# Before Beam's TensorFlow inference module: it imports tensorflow_hub, which reads
# tf.keras.version at import and so would resolve tf.keras to Keras 3 before ppm selects Keras 2.
import ppm  # noqa: F401
# isort: on
import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics, MetricsFilter
from apache_beam.ml.inference.base import KeyedModelHandler, PredictionResult, RunInference
from apache_beam.ml.inference.tensorflow_inference import TFModelHandlerTensor

from beam_jobs import incremental, parquet_rows
from beam_jobs.options import pipeline_options
from ppm.data import cache, canonical
from ppm.encoders import contract

NAMESPACE = "embed_items"
MODALITIES = {"text": "title", "image": "image"}  # encoder modality -> item column
# What the encoders are promised (contract: "encoded JPEG/PNG bytes"); other formats that PIL
# reads (TIFF, ...) might crash tf.io.decode_image inside the SavedModel.
IMAGE_FORMATS = ("JPEG", "PNG")
DEFAULT_BATCH_SIZE = 64


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m beam_jobs.embed_items",
        description="Embed every item's title and image with the exported encoders (Beam "
        "RunInference) and write the embedding cache (TFRecords + manifest.json). Runs on "
        "Beam's FnApiRunner unless --runner is given. Unknown "
        "flags are passed to Beam (e.g. --runner DataflowRunner --project P --region R "
        "--temp_location gs://... --setup_file ./setup.py).")
    parser.add_argument("--dataset", required=True, help="Canonical dataset folder.")
    parser.add_argument("--text_model", default=None,
                        help="Exported text encoder (python -m ppm.encoders.train --modality "
                        "text). Omit it for an image-only cache.")
    parser.add_argument("--image_model", default=None,
                        help="Exported image encoder. Omit it for a text-only cache (a "
                        "dataset without images).")
    parser.add_argument("--out", required=True, help="Output folder of the cache.")
    parser.add_argument("--parent", default=None,
                        help="An existing cache to extend: write a new version of it into "
                        "--out that embeds only the items it lacks or whose title or image "
                        "changed, and copies the rest (same encoders required).")
    parser.add_argument("--batch_size", type=int, default=DEFAULT_BATCH_SIZE,
                        help="Largest inference batch (default %(default)s).")
    parser.add_argument("--min_batch_size", type=int, default=None,
                        help="Smallest inference batch; below --batch_size lets Beam adapt the "
                        "size to the measured cost (default: --batch_size, fixed batches).")
    parser.add_argument("--num_shards", type=int, default=0,
                        help="TFRecord shards; 0 lets the runner decide.")
    parser.add_argument("--overwrite", action="store_true",
                        help="Delete an existing cache in --out first (otherwise the job "
                        "refuses to write over it).")
    args, beam_args = parser.parse_known_args(argv)
    if args.text_model is None and args.image_model is None:
        parser.error("give --text_model, --image_model or both: the cache holds the "
                     "modalities whose encoders are given")
    if args.batch_size < 1:
        parser.error("--batch_size must be at least 1")
    if args.min_batch_size is None:
        args.min_batch_size = args.batch_size
    if not 1 <= args.min_batch_size <= args.batch_size:
        parser.error("--min_batch_size must be between 1 and --batch_size")
    return args, beam_args


# --- the encoders -----------------------------------------------------------------------------

def encoder_inference_fn(model, batch, inference_args, model_id=None, *, dim: int):
    """Embeds one batch with one call of the encoder's ``serving_default`` signature.

    Args:
      model: ``fn(tf.string [n]) -> float32 [n, dim]`` from :func:`ppm.encoders.contract.load`.
      batch: the raw inputs (title strings or image bytes), a sequence of n.
      inference_args: unused (the signature takes no extra arguments).
      model_id: the model path, recorded in each result.
      dim: the dimension the encoder declared; anything else fails the job.

    Returns:
      ``PredictionResult(input, float32 [dim] numpy row, model_id)`` per input.
    """
    del inference_args
    # One tensor from the Python strings: cheaper than stacking n scalar tensors.
    embeddings = np.asarray(model(list(batch)))
    if embeddings.shape != (len(batch), dim):
        raise ValueError(f"encoder {model_id} returned shape {embeddings.shape} for a batch of "
                         f"{len(batch)}; its encoder.json declares dim {dim}")
    return [PredictionResult(x, row, model_id) for x, row in zip(batch, embeddings)]


class EncoderModelHandler(TFModelHandlerTensor):
    """``TFModelHandlerTensor`` for an exported ppm encoder (a plain SavedModel, not Keras).

    Elements are raw Python strings/bytes; the whole batch becomes one ``tf.string [n]``
    tensor in :func:`encoder_inference_fn`.
    """

    def __init__(self, model_uri: str, dim: int, min_batch_size: int, max_batch_size: int):
        super().__init__(model_uri,
                         inference_fn=functools.partial(encoder_inference_fn, dim=dim),
                         min_batch_size=min_batch_size, max_batch_size=max_batch_size)

    def load_model(self):
        fn, _ = contract.load(self._model_uri)
        return fn


# --- the Beam side ----------------------------------------------------------------------------

def image_problem(data: bytes) -> str | None:
    """Why PIL cannot decode ``data`` as a JPEG/PNG image, or None if it can.

    The image is fully decoded (``load``), so truncated or corrupt pixel data is caught, not
    only a bad header. JPEGs decode at reduced scale (``draft``): the whole stream is still read.
    """
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format not in IMAGE_FORMATS:
                return f"format {image.format} is not one of {'/'.join(IMAGE_FORMATS)}"
            if image.format == "JPEG":
                image.draft("RGB", (64, 64))
            image.load()
    except Exception as e:  # PIL raises many kinds on garbage
        return f"{type(e).__name__}: {e}"
    return None


class SplitModalities(beam.DoFn):
    """Per item: ``(id, content fingerprint)`` on the ``fingerprints`` output; if it is to be
    embedded, the same on the main output and its title and image to the encoders if usable.

    Only the ``modalities`` being embedded are looked at (an image-less cache decodes no image).
    Side input ``parent`` (``--parent``): ``{item_id: fingerprint}`` of the parent cache; an
    item whose fingerprint is there unchanged is not embedded (its record is copied).
    """

    TITLES = "titles"
    IMAGES = "images"
    FINGERPRINTS = "fingerprints"

    def __init__(self, modalities=tuple(MODALITIES)):
        self._modalities = tuple(modalities)
        self._items = Metrics.counter(NAMESPACE, "items")
        self._new = Metrics.counter(NAMESPACE, "new")
        self._changed = Metrics.counter(NAMESPACE, "changed")
        self._no_title = Metrics.counter(NAMESPACE, "missing_title")
        self._no_image = Metrics.counter(NAMESPACE, "missing_image")
        self._bad_image = Metrics.counter(NAMESPACE, "undecodable_image")

    def process(self, row, parent=None):
        item_id = row["item_id"]
        self._items.inc()
        fingerprint = cache.content_fingerprint(row.get("title"), row.get("image"),
                                                self._modalities)
        yield beam.pvalue.TaggedOutput(self.FINGERPRINTS, (item_id, fingerprint))
        if parent is not None:
            old = parent.get(item_id)
            if old is not None and old == fingerprint:
                return  # copied from the parent
            (self._new if old is None else self._changed).inc()
        title = row.get("title") or ""
        if "text" not in self._modalities:
            pass
        elif title.strip():
            yield beam.pvalue.TaggedOutput(self.TITLES, (item_id, title))
        else:
            self._no_title.inc()
        image = row.get("image")
        if "image" not in self._modalities:
            pass
        elif image is None:
            self._no_image.inc()
        else:
            problem = image_problem(image)
            if problem is None:
                yield beam.pvalue.TaggedOutput(self.IMAGES, (item_id, image))
            else:
                self._bad_image.inc()
                logging.warning("item %s: undecodable image (%d bytes): %s", item_id,
                                len(image), problem)
        yield item_id, fingerprint


def _embedding(keyed_result):
    # Raw float32 bytes cross the shuffle with Beam's bytes coder; a NumPy array would be
    # pickled, several times slower and larger.
    item_id, result = keyed_result
    return item_id, np.asarray(result.inference, np.float32).tobytes()


class BuildRecord(beam.DoFn):
    """Joins an item's embeddings into one serialized cache record (zeros where missing)."""

    def __init__(self, dim: int, modalities=tuple(MODALITIES)):
        self._dim = dim
        self._modalities = tuple(modalities)
        self._written = Metrics.counter(NAMESPACE, "records")
        self._titled = Metrics.counter(NAMESPACE, "with_title")
        self._imaged = Metrics.counter(NAMESPACE, "with_image")

    def process(self, keyed):
        item_id, groups = keyed
        rows, titles, images = (list(groups.get(k, ())) for k in ("item", "title", "image"))
        zeros = np.zeros(self._dim, np.float32)
        self._written.inc()
        self._titled.inc(bool(titles))
        self._imaged.inc(bool(images))
        yield cache.make_example(
            item_id, np.frombuffer(titles[0], np.float32) if titles else zeros,
            np.frombuffer(images[0], np.float32) if images else zeros, bool(titles),
            bool(images), modalities=self._modalities, fingerprint=rows[0]).SerializeToString()


class CountDuplicates(beam.DoFn):
    """Counts the item ids that ``items.parquet`` holds more than once."""

    def __init__(self):
        self._duplicates = Metrics.counter(NAMESPACE, "duplicate_item_ids")

    def process(self, keyed_count):
        if keyed_count[1] > 1:
            self._duplicates.inc()


def build_pipeline(p: beam.Pipeline, dataset: str, out: str, encoders: dict, dim: int,
                   min_batch_size: int, max_batch_size: int, num_shards: int = 0,
                   parent: str | None = None) -> None:
    """Adds the job's steps to ``p``; ``encoders`` maps modality -> manifest entry (the
    modalities to embed: one or both); ``parent``: the cache this version extends."""
    modalities = cache.check_modalities(list(encoders))
    parent_records = parent_fingerprints = None
    if parent:
        parent_records = incremental.read_parent(p, parent)
        parent_fingerprints = beam.pvalue.AsDict(
            parent_records | "ParentFingerprints" >> beam.Map(lambda r: (r[0], r[1])))
    split = (
        p
        | "ReadItems" >> beam.io.ReadFromParquet(
            os.path.join(dataset, canonical.ITEMS_FILE),
            columns=["item_id"] + [MODALITIES[m] for m in modalities])
        | "SplitModalities" >> beam.ParDo(
            SplitModalities(modalities), parent=parent_fingerprints).with_outputs(
            SplitModalities.TITLES, SplitModalities.IMAGES, SplitModalities.FINGERPRINTS,
            main="items"))
    _ = (split[SplitModalities.FINGERPRINTS]
         | "CountPerId" >> beam.combiners.Count.PerKey()
         | "CountDuplicates" >> beam.ParDo(CountDuplicates()))
    embedded = {}
    for modality, tag in (("text", SplitModalities.TITLES), ("image", SplitModalities.IMAGES)):
        if modality not in modalities:
            continue
        handler = KeyedModelHandler(EncoderModelHandler(
            encoders[modality]["path"], dim, min_batch_size, max_batch_size))
        name = MODALITIES[modality].capitalize()
        embedded[MODALITIES[modality]] = (
            split[tag]
            | f"Embed{name}s" >> RunInference(handler,
                                              metrics_namespace=f"{NAMESPACE}_{modality}")
            | f"{name}Embeddings" >> beam.Map(_embedding))
    records = (
        {"item": split.items, **embedded}
        | "JoinByItem" >> beam.CoGroupByKey()
        | "BuildRecords" >> beam.ParDo(BuildRecord(dim, modalities)))
    if parent:
        copied = parent_records | "KeepParentRecords" >> beam.ParDo(
            incremental.KeepParentRecord(),
            catalogue=beam.pvalue.AsDict(split[SplitModalities.FINGERPRINTS]))
        records = (records, copied) | "WithParentRecords" >> beam.Flatten()
    _ = (
        records
        | "WriteCache" >> beam.io.WriteToTFRecord(
            os.path.join(out, cache.SHARD_PREFIX), file_name_suffix=cache.SHARD_SUFFIX,
            num_shards=num_shards))


# --- driver -----------------------------------------------------------------------------------

def _metrics(result) -> tuple[dict, dict]:
    """Counters of this job, and RunInference's distributions per modality."""
    metrics = result.metrics().query(MetricsFilter())
    counters, inference = {}, {m: {} for m in MODALITIES}
    for c in metrics["counters"]:
        if c.key.metric.namespace == NAMESPACE:
            counters[c.key.metric.name] = counters.get(c.key.metric.name, 0) + c.committed
    for d in metrics["distributions"]:
        ns = d.key.metric.namespace
        if ns.startswith(NAMESPACE + "_") and ns[len(NAMESPACE) + 1:] in MODALITIES and (
                d.committed is not None):
            acc = inference[ns[len(NAMESPACE) + 1:]].setdefault(d.key.metric.name, [0, 0])
            acc[0] += d.committed.count
            acc[1] += d.committed.sum
    return counters, inference


def _inference_summary(dists: dict) -> dict:
    count, total = dists.get("inference_request_batch_size", [0, 0])
    _, latency_us = dists.get("inference_batch_latency_micro_secs", [0, 0])
    _, load_ms = dists.get("load_model_latency_milli_secs", [0, 0])
    return {"embedded": total, "batches": count,
            "mean_batch_size": total / count if count else None,
            "inference_seconds": latency_us / 1e6, "load_model_seconds": load_ms / 1e3}


def prepare_output(out: str, overwrite: bool) -> None:
    """Refuses to write over an existing cache unless ``overwrite``, which deletes it."""
    from apache_beam.io.filesystems import FileSystems

    existing = [m.path for m in FileSystems.match(
        [os.path.join(out, cache.SHARD_PATTERN)])[0].metadata_list]
    manifest = os.path.join(out, cache.MANIFEST_FILE)
    if FileSystems.exists(manifest):
        existing.insert(0, manifest)
    if existing and not overwrite:
        raise FileExistsError(f"{out} already holds an embedding cache ({len(existing)} files, "
                              f"e.g. {existing[0]}); pass --overwrite to replace it or choose "
                              "another --out")
    if existing:  # the manifest first: an interrupted delete leaves no loadable cache
        FileSystems.delete(existing)
    if not canonical.is_remote(out):
        os.makedirs(out, exist_ok=True)


def run(argv=None, save_main_session=True, test_pipeline=None) -> dict:
    """Checks the encoders, runs the pipeline and writes ``manifest.json``. Returns it.

    Raises:
      FileNotFoundError: an encoder path is not an exported encoder, or no items.parquet.
      canonical.ParquetReadError: items.parquet is not readable Parquet (empty, truncated).
      ValueError: the encoders' modalities or dimensions are wrong, or items.parquet repeats
        item ids, or its ``item_id`` or ``title`` holds strings that are not UTF-8 (named
        with their rows).
      FileExistsError: ``--out`` holds a cache and ``--overwrite`` is not given.
    """
    args, beam_args = parse_args(argv)
    paths = {"text": args.text_model, "image": args.image_model}
    encoders = {m: contract.describe(path, m, f"--{m}_model")
                for m, path in paths.items() if path is not None}
    modalities = cache.check_modalities(list(encoders))
    dims = {m: e["info"]["dim"] for m, e in encoders.items()}
    if len(set(dims.values())) > 1:
        raise ValueError(f"the text encoder's dim is {dims['text']} but the image encoder's is "
                         f"{dims['image']}; the cache holds both at one dimension "
                         f"({args.text_model}, {args.image_model})")
    dim = dims[modalities[0]]
    meta = canonical.read_meta(args.dataset)
    items_path = os.path.join(args.dataset, canonical.ITEMS_FILE)
    if not canonical.file_exists(items_path):
        raise FileNotFoundError(f"{items_path}: missing")
    # Every item needs a record, so rows with undecodable strings cannot be left out: refuse
    # them here, named, rather than die in Beam's Parquet reader with a bare UnicodeDecodeError.
    parquet_rows.check_utf8(items_path,
                            ["item_id"] + (["title"] if "text" in modalities else []))
    parent = None
    if args.parent:
        parent = incremental.check_parent(args.parent, encoders, dim, modalities)
        if os.path.abspath(args.parent) == os.path.abspath(args.out):
            raise ValueError(f"--parent and --out are both {args.out}: a version is written "
                             "beside its parent, into a new folder")
    prepare_output(args.out, args.overwrite)

    if test_pipeline is not None:
        p = test_pipeline
    else:
        p = beam.Pipeline(options=pipeline_options(beam_args, save_main_session))
    build_pipeline(p, args.dataset, args.out, encoders, dim, args.min_batch_size,
                   args.batch_size, args.num_shards, parent=args.parent)
    start = time.perf_counter()
    result = p.run()
    result.wait_until_finish()
    seconds = time.perf_counter() - start

    counters, inference = _metrics(result)
    items, records = counters.get("items", 0), counters.get("records", 0)
    if counters.get("duplicate_item_ids", 0):
        raise ValueError(
            f"{items_path} repeats {counters['duplicate_item_ids']} item ids ({items} rows); "
            f"no manifest written. `python -m ppm.data.validate "
            f"{args.dataset}` names them")
    copied, kept = counters.get("copied", 0), counters.get("kept_not_in_dataset", 0)
    if records + copied != items:  # a bug, not bad data: every item needs one record
        raise RuntimeError(f"read {items} items but embedded {records} and copied {copied}")
    records += copied + kept
    lineage = None if parent is None else incremental.parent_summary(args.parent, parent)
    now = datetime.datetime.now(datetime.UTC)
    manifest = {
        "format": cache.FORMAT,
        "format_version": cache.FORMAT_VERSION,
        "dataset": meta.name,
        "dataset_path": args.dataset,
        "created_at": now.isoformat(timespec="seconds"),
        "dim": dim,
        "modalities": list(modalities),
        "version": 1 if lineage is None else lineage["version"] + 1,
        "parent": lineage,
        "counts": {
            "items": records,
            "embedded": records - copied - kept,
            **({"new": counters.get("new", 0), "changed": counters.get("changed", 0),
                "copied": copied, "kept_not_in_dataset": kept} if parent is not None else {}),
            **({"with_title": counters.get("with_title", 0),
                "missing_title": counters.get("missing_title", 0)}
               if "text" in modalities else {}),
            **({"with_image": counters.get("with_image", 0),
                "missing_image": counters.get("missing_image", 0),
                "undecodable_image": counters.get("undecodable_image", 0)}
               if "image" in modalities else {}),
        },
        "text_encoder": encoders.get("text"),  # None: the cache holds no text
        "image_encoder": encoders.get("image"),
        "files": cache.SHARD_PATTERN,
        "batch_size": {"min": args.min_batch_size, "max": args.batch_size},
        "job_seconds": seconds,
        "inference": {m: _inference_summary(inference[m]) for m in modalities},
    }
    canonical.write_json(os.path.join(args.out, cache.MANIFEST_FILE), manifest)
    logging.info("Embedding cache written to %s: %s", args.out, json.dumps(manifest["counts"]))
    return manifest


def main(argv=None) -> int:
    logging.getLogger().setLevel(logging.INFO)
    manifest = run(argv)
    print(json.dumps(manifest, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
