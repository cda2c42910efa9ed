"""Builds any registered ranking model from an experiment config, and reads its inputs.

A run folder is self-contained: training copies the vocabularies it used into
``<model_dir>/vocab/`` and records the embedding cache's identity (dimension, encoder
fingerprints) in ``<model_dir>/cache.json``, so evaluation, export and warm starts rebuild
exactly the model that was trained, and refuse a cache built by other encoders.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os

import numpy as np
import tensorflow as tf

from ppm import features
from ppm.data import cache as cache_lib
from ppm.models import plugins, registry
from ppm.models.parts import Parts
from ppm.models.ranking import RankingModel

logger = logging.getLogger(__name__)
VOCAB_DIR = "vocab"
CACHE_FILE = "cache.json"


@dataclasses.dataclass(frozen=True, eq=False)
class ModelInputs:
    """What a model is built from besides its config.

    Attributes:
      schema: the examples' feature schema (profile features, max_history).
      vocabularies: ``{id field: ids}`` (most frequent first).
      cache: the embedding cache, or None for models without modal features.
      coverage: the cache's coverage of the catalogue (:func:`cache_coverage`), or None.
      item_counts: the training count of each id of ``vocabularies["item_id"]`` (its
        ``vocab/item_id.tsv`` counts), for ``model.frequency_gate``; None when not read.
    """

    schema: features.FeatureSchema
    vocabularies: dict
    cache: cache_lib.EmbeddingCache | None
    coverage: dict | None = None
    item_counts: list | None = None


def uses_cache(config) -> bool:
    """Whether the model, its plug-in or its multimodal side information reads the embedding
    cache."""
    plugin = plugins.get(config.model.plugin.kind)
    return (registry.reads_cache(config.model) or bool(plugin and plugin.reads_cache)
            or bool(config.model.multimodal.side))


def read_vocabulary(path: str) -> list[str]:
    """Ids of a ``vocab/<field>.tsv`` file (``id<TAB>count`` lines)."""
    return [i for i, _ in read_vocabulary_counts(path)]


def read_vocabulary_counts(path: str) -> list[tuple[str, int]]:
    """``(id, count)`` of each line of a ``vocab/<field>.tsv`` file.

    Raises:
      ValueError: an empty id, or a count that is not a whole number (file and line named).
    """
    out = []
    with tf.io.gfile.GFile(path) as f:
        for k, line in enumerate(f.read().splitlines(), 1):
            if not line:
                continue
            key, _, count = line.partition("\t")
            if not key:
                raise ValueError(f"{path} line {k} holds an empty id")
            try:
                out.append((key, int(count) if count else 0))
            except ValueError:
                raise ValueError(f"{path} line {k}: count {count!r} is not a whole number"
                                 ) from None
    return out


def read_item_counts(folder: str) -> list[int]:
    """The training count of each id of ``folder/item_id.tsv`` (vocabulary order)."""
    return [c for _, c in read_vocabulary_counts(os.path.join(folder, "item_id.tsv"))]


def read_vocabularies(folder: str) -> dict:
    out = {}
    for field in features.ID_FIELDS:
        path = os.path.join(folder, f"{field}.tsv")
        if not tf.io.gfile.exists(path):
            raise FileNotFoundError(f"{path} is missing (written by beam_jobs.build_examples)")
        out[field] = read_vocabulary(path)
    return out


def load_inputs(config, run_dir: str | None = None, cache_version: bool = False) -> ModelInputs:
    """Reads schema, vocabularies and cache for ``config``.

    Vocabularies come from ``run_dir/vocab`` when the run has them (a trained model), else from
    the examples folder; the cache must match the run's recorded identity (its encoders), and,
    unless ``cache_version``, hold as many items as the run's checkpoint (``cache_version``:
    another version of that cache, ``embed_items --parent``, read by
    :func:`ppm.evaluate.load_model`'s ``embeddings``).

    Raises:
      FileNotFoundError: missing inputs.
      ppm.data.cache.CacheMismatchError: the cache is not the one the run was trained with.
    """
    examples = config.data.examples
    if not examples:
        raise ValueError("data.examples is not set: give the folder written by "
                         "beam_jobs.build_examples (--params_override data.examples=DIR)")
    if uses_cache(config) and not config.data.embeddings:
        raise ValueError(f"model {config.model.type!r} (plug-in "
                         f"{config.model.plugin.kind or 'none'}) reads the embedding cache but "
                         "data.embeddings is not set: give the folder written by "
                         "beam_jobs.embed_items")
    schema = features.FeatureSchema.load(os.path.join(examples, features.SCHEMA_FILE))
    vocab_dir = os.path.join(examples, VOCAB_DIR)
    expected = None
    if run_dir and tf.io.gfile.exists(os.path.join(run_dir, VOCAB_DIR)):
        vocab_dir = os.path.join(run_dir, VOCAB_DIR)
    if run_dir and tf.io.gfile.exists(os.path.join(run_dir, CACHE_FILE)):
        with tf.io.gfile.GFile(os.path.join(run_dir, CACHE_FILE)) as f:
            expected = json.load(f)
    cache = (cache_lib.load_cache(config.data.embeddings, expected_manifest=expected)
             if uses_cache(config) else None)
    vocabularies = read_vocabularies(vocab_dir)
    item_counts = read_item_counts(vocab_dir) if config.model.frequency_gate else None
    coverage = None
    if cache is not None:
        if not cache_version:
            _check_trained_rows(cache, config.data.embeddings, run_dir)
        coverage = cache_coverage(cache, config, vocabularies)
    return ModelInputs(schema, vocabularies, cache, coverage, item_counts)


class CacheCoverageError(ValueError):
    """Too many catalogue items are missing from the embedding cache."""


def cache_coverage(cache: cache_lib.EmbeddingCache, config, vocabularies: dict) -> dict:
    """Counts the catalogue items that the embedding cache lacks, and refuses too many.

    A missing item is looked up as the cache's unknown row: its title and image are lost
    without a word, which is what PPM exists to avoid (cold items, PPM §4.5). The catalogue is
    the dataset's ``items.parquet`` when ``data.dataset`` has one, else the item vocabulary.

    Returns:
      ``{"catalogue", "items", "missing", "fraction", "examples"}`` (``examples``: a few
      missing ids).

    Raises:
      CacheCoverageError: the missing fraction exceeds ``data.max_missing_cache_fraction``.
    """
    from ppm.data import canonical

    items_path = os.path.join(config.data.dataset, canonical.ITEMS_FILE)
    if config.data.dataset and canonical.file_exists(items_path):
        source = items_path
        ids = np.asarray(canonical.read_parquet(items_path, columns=["item_id"])["item_id"]
                         .to_pylist(), dtype=str)
    else:
        source = "the item vocabulary (no data.dataset items.parquet)"
        ids = np.asarray(vocabularies["item_id"], dtype=str)
    missing = ids[~np.isin(ids, cache.ids)]
    report = {"catalogue": source, "items": int(len(ids)), "missing": int(len(missing)),
              "fraction": float(len(missing) / max(len(ids), 1)),
              "examples": missing[:5].tolist()}
    if not len(missing):
        return report
    limit = config.data.max_missing_cache_fraction
    text = (f"{len(missing):,} of {len(ids):,} catalogue items ({report['fraction']:.2%}; "
            f"{source}) are missing from the embedding cache {config.data.embeddings}, e.g. "
            f"{report['examples']}: they are scored with the cache's unknown row")
    if report["fraction"] > limit:
        raise CacheCoverageError(
            f"{text}. That is more than data.max_missing_cache_fraction = {limit:g}: rebuild "
            "the cache for this catalogue (python -m beam_jobs.embed_items), or raise the limit")
    logger.warning("%s (data.max_missing_cache_fraction = %g)", text, limit)
    return report


def _check_trained_rows(cache: cache_lib.EmbeddingCache, path: str, run_dir: str | None):
    """A trained run's checkpoint holds its cache table: the cache must have as many items."""
    from ppm import checkpoints

    if not run_dir:
        return
    try:
        rows = checkpoints.cache_rows_in(run_dir)
    except FileNotFoundError:
        return  # not trained yet
    if rows is not None and rows != len(cache) + 1:
        raise cache_lib.CacheMismatchError(
            f"the run {run_dir} was trained with an embedding cache of {rows - 1:,} items, but "
            f"{path} holds {len(cache):,}: use the cache it was trained with (its manifest is "
            f"recorded in {os.path.join(run_dir, CACHE_FILE)}), or train a new run")


def record_inputs(inputs: ModelInputs, config, run_dir: str) -> None:
    """Copies the vocabularies and the cache identity into a new run folder.

    A run that already has them (a resume) keeps them: :func:`load_inputs` built its model from
    them and checked the cache against them, so the examples' current files must not replace
    them.
    """
    dst = os.path.join(run_dir, VOCAB_DIR)
    if not tf.io.gfile.exists(dst):
        src = os.path.join(config.data.examples, VOCAB_DIR)
        tf.io.gfile.makedirs(dst)
        for field in features.ID_FIELDS:
            tf.io.gfile.copy(os.path.join(src, f"{field}.tsv"),
                             os.path.join(dst, f"{field}.tsv"), overwrite=True)
    identity_path = os.path.join(run_dir, CACHE_FILE)
    if inputs.cache is not None and not tf.io.gfile.exists(identity_path):
        with tf.io.gfile.GFile(identity_path, "w") as f:
            json.dump(cache_lib.identity(inputs.cache.manifest), f, indent=2)


def template_inputs(inputs: ModelInputs, init_dir: str) -> ModelInputs:
    """Inputs of another run's architecture (its vocabularies, and a cache of as many rows as
    its checkpoint's table), to restore its checkpoint into a template before copying it
    into a model built from ``inputs`` (:func:`ppm.checkpoints.warm_start`)."""
    from ppm import checkpoints  # noqa: PLC0415 - checkpoints imports the layers

    vocab_dir = os.path.join(init_dir, VOCAB_DIR)
    old = tf.io.gfile.exists(vocab_dir)
    vocabs = read_vocabularies(vocab_dir) if old else inputs.vocabularies
    counts = inputs.item_counts
    if counts is not None and old:
        counts = read_item_counts(vocab_dir)
    cache = inputs.cache
    rows = checkpoints.cache_rows_in(init_dir) if cache is not None else None
    if rows is not None and rows - 1 != len(cache):
        n = rows - 1
        zeros = np.zeros((n, cache.dim), np.float32)
        cache = cache_lib.EmbeddingCache(
            ids=np.array([f"\x00{i}" for i in range(n)]), title=zeros, image=zeros,
            has_title=np.zeros(n, bool), has_image=np.zeros(n, bool), manifest=cache.manifest)
    return dataclasses.replace(inputs, vocabularies=vocabs, cache=cache, item_counts=counts)


def build_model(config, inputs: ModelInputs) -> RankingModel:
    """The model of ``config.model.type`` (not yet built: call it on a batch or build it).

    The registered builder (:mod:`ppm.models.registry`) assembles it from :class:`Parts`.

    Raises:
      ValueError: an unknown model type, or a config that does not fit the inputs (e.g. no
        cache for a model or plug-in that reads it).
    """
    if uses_cache(config) and inputs.cache is None:
        raise ValueError(f"model {config.model.type!r} (plug-in "
                         f"{config.model.plugin.kind or 'none'}) needs the embedding cache")
    return registry.builder(config.model.type)(config, inputs, Parts(config, inputs))


def dummy_features(schema: features.FeatureSchema, batch: int = 2) -> dict:
    """A batch of padding-valued model inputs, to build a model's variables."""
    out = {}
    for f in schema.by_role(features.TARGET, features.HISTORY, features.CONTEXT,
                            features.PROFILE):
        shape = [batch, schema.max_history] if f.sequence else [batch]
        out[f.name] = tf.constant(np.full(shape, f.default), dtype=f.tf_dtype())
    return out
