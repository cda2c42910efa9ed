"""The embedding cache: title and image embeddings of every item, computed once by the encoders.

PPM's modality features are fixed after pre-training (PPM §3.1.1, §3.2.3): the ranking model
never runs BERT or ResNet, it looks up cached vectors by item id. ``beam_jobs.embed_items``
writes the cache, this module reads it (plain TensorFlow and NumPy, no Keras)::

    <cache dir>/
      part-SSSSS-of-NNNNN.tfrecord   tf.train.Example per item (see below)
      manifest.json                  encoders (paths, fingerprints, encoder.json), dim, counts

Each record holds ``item_id`` (bytes), ``title_emb`` and ``image_emb`` (float [dim]),
``has_title`` and ``has_image`` (int64 0/1). An item with an empty title or a missing or
undecodable image has a zero vector there and its flag at 0. Every item of the dataset's
``items.parquet`` has exactly one record.

The manifest is written last, after every shard: a folder without one is an unfinished or
failed job and :func:`load_cache` refuses it. A model records :func:`identity` of the cache it
was trained on and passes it back as ``expected_manifest``, so a cache built by other encoders
(different fingerprints) or of another dimension cannot be plugged in silently.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import tensorflow as tf

FORMAT = "ppm-embedding-cache"
FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
SHARD_PREFIX = "part"
SHARD_SUFFIX = ".tfrecord"
SHARD_PATTERN = f"{SHARD_PREFIX}-*-of-*{SHARD_SUFFIX}"
ENCODERS = ("text_encoder", "image_encoder")
_READ_BATCH = 8192


class CacheMismatchError(ValueError):
    """The cache is not the one the caller expects, or is internally inconsistent."""


def feature_spec(dim: int) -> dict:
    """The ``tf.io.parse_example`` spec of a cache record."""
    return {
        "item_id": tf.io.FixedLenFeature([], tf.string),
        "title_emb": tf.io.FixedLenFeature([dim], tf.float32),
        "image_emb": tf.io.FixedLenFeature([dim], tf.float32),
        "has_title": tf.io.FixedLenFeature([], tf.int64),
        "has_image": tf.io.FixedLenFeature([], tf.int64),
    }


def make_example(item_id: str, title_emb, image_emb, has_title: bool,
                 has_image: bool) -> tf.train.Example:
    """One cache record (the writer's side of :func:`feature_spec`)."""
    floats = lambda v: tf.train.Feature(float_list=tf.train.FloatList(
        value=np.asarray(v, np.float32).tolist()))
    ints = lambda v: tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v)]))
    return tf.train.Example(features=tf.train.Features(feature={
        "item_id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[item_id.encode()])),
        "title_emb": floats(title_emb),
        "image_emb": floats(image_emb),
        "has_title": ints(has_title),
        "has_image": ints(has_image),
    }))


def read_manifest(path: str) -> dict:
    """Reads ``manifest.json`` of a cache folder (local or any TF filesystem).

    Raises:
      FileNotFoundError: no manifest (not a cache, or the job that wrote it did not finish).
      CacheMismatchError: the manifest is not a ppm embedding cache manifest.
    """
    manifest_path = os.path.join(path, MANIFEST_FILE)
    if not tf.io.gfile.exists(manifest_path):
        raise FileNotFoundError(
            f"{manifest_path} is missing: {path} is not an embedding cache, or the job that "
            "wrote it did not finish (build one with `python -m beam_jobs.embed_items`)")
    with tf.io.gfile.GFile(manifest_path) as f:
        try:
            manifest = json.load(f)
        except json.JSONDecodeError as e:
            raise CacheMismatchError(f"{manifest_path}: not valid JSON: {e}") from e
    if manifest.get("format") != FORMAT:
        raise CacheMismatchError(f"{manifest_path}: format is {manifest.get('format')!r}, "
                                 f"expected {FORMAT!r}")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise CacheMismatchError(
            f"{manifest_path}: format_version is {manifest.get('format_version')!r}; this "
            f"code reads version {FORMAT_VERSION}: rebuild the cache")
    return manifest


def identity(manifest: dict) -> dict:
    """What makes two caches interchangeable: the dimension and both encoders' fingerprints.

    A model stores this with its weights and passes it as ``expected_manifest`` to
    :func:`load_cache` (the creation time, paths and counts may differ).
    """
    return {"dim": manifest.get("dim"),
            **{name: {"fingerprint": (manifest.get(name) or {}).get("fingerprint")}
               for name in ENCODERS}}


def check_manifest(manifest: dict, expected_dim: int | None = None,
                   expected_manifest: dict | None = None) -> None:
    """Raises :class:`CacheMismatchError` naming both values where the cache differs.

    Args:
      manifest: the cache's manifest.
      expected_dim: the per-modality dimension the model was built for (None: any).
      expected_manifest: a manifest, or its :func:`identity`; its ``dim`` and encoder
        fingerprints must equal the cache's (None: no check).
    """
    dim = manifest.get("dim")
    if expected_dim is not None and dim != expected_dim:
        raise CacheMismatchError(
            f"embedding cache dimension is {dim} but the model expects {expected_dim}: "
            "rebuild the cache with encoders of that dimension, or configure the model for "
            f"{dim}")
    if expected_manifest is None:
        return
    got, want = identity(manifest), identity(expected_manifest)
    if want["dim"] is not None and got["dim"] != want["dim"]:
        raise CacheMismatchError(f"embedding cache dimension is {got['dim']} but the expected "
                                 f"manifest has {want['dim']}")
    for name in ENCODERS:
        g, w = got[name]["fingerprint"], want[name]["fingerprint"]
        if w is not None and g != w:
            path = (manifest.get(name) or {}).get("path")
            raise CacheMismatchError(
                f"embedding cache {name} fingerprint is {g} (from {path}) but the expected "
                f"manifest has {w}: the cache was built by a different {name.split('_')[0]} "
                "encoder than the model was trained with")


@dataclasses.dataclass(frozen=True, eq=False)
class EmbeddingCache:
    """A loaded embedding cache, rows sorted by item id.

    Attributes:
      ids: item ids, str [N], sorted and unique.
      title: title embeddings, float32 [N, dim] (zero rows where ``has_title`` is False).
      image: image embeddings, float32 [N, dim] (zero rows where ``has_image`` is False).
      has_title: bool [N].
      has_image: bool [N].
      manifest: the cache's ``manifest.json``.
    """

    ids: np.ndarray
    title: np.ndarray
    image: np.ndarray
    has_title: np.ndarray
    has_image: np.ndarray
    manifest: dict

    @property
    def dim(self) -> int:
        """The per-modality dimension."""
        return self.title.shape[1]

    def __len__(self) -> int:
        return len(self.ids)

    def matrix(self) -> np.ndarray:
        """``[E_title | E_image]`` per item, float32 [N, 2 * dim] (PPM §3.2.3, Eq. 8)."""
        return np.concatenate([self.title, self.image], axis=1)

    def index(self) -> dict:
        """Item id -> row."""
        return {item_id: row for row, item_id in enumerate(self.ids.tolist())}


def load_cache(path: str, expected_dim: int | None = None,
               expected_manifest: dict | None = None) -> EmbeddingCache:
    """Loads a cache written by ``beam_jobs.embed_items``.

    Args:
      path: the cache folder (local or any TF filesystem).
      expected_dim: see :func:`check_manifest`.
      expected_manifest: see :func:`check_manifest`.

    Returns:
      An :class:`EmbeddingCache`, rows sorted by item id.

    Raises:
      FileNotFoundError: no manifest.
      CacheMismatchError: the dimension or encoders differ from the expected ones, or the
        records disagree with the manifest (count, vector length) or repeat an item id.
    """
    manifest = read_manifest(path)
    check_manifest(manifest, expected_dim, expected_manifest)
    dim = int(manifest["dim"])
    expected_count = manifest["counts"]["items"]
    files = sorted(tf.io.gfile.glob(os.path.join(path, SHARD_PATTERN)))
    parts = {k: [] for k in feature_spec(dim)}
    if files:
        ds = (tf.data.TFRecordDataset(files)
              .batch(_READ_BATCH)
              .map(lambda s: tf.io.parse_example(s, feature_spec(dim))))
        try:
            for batch in ds:
                for k, v in batch.items():
                    parts[k].append(v.numpy())
        except tf.errors.InvalidArgumentError as e:
            raise CacheMismatchError(
                f"{path}: records do not match the manifest's dim {dim} (a shard from another "
                f"cache?): {e.message.splitlines()[0]}") from e
    n = sum(len(p) for p in parts["item_id"])
    if n != expected_count:
        raise CacheMismatchError(f"{path}: {n} records in {len(files)} shards but the manifest "
                                 f"counts {expected_count} items")
    cols = {k: (np.concatenate(v) if v else np.zeros((0,) + tuple(spec.shape),
                                                      spec.dtype.as_numpy_dtype))
            for (k, v), spec in zip(parts.items(), feature_spec(dim).values())}
    ids = np.array([b.decode() for b in cols["item_id"]], dtype=str)
    order = np.argsort(ids, kind="stable")
    ids = ids[order]
    repeated = np.unique(ids[1:][ids[1:] == ids[:-1]])
    if len(repeated):
        raise CacheMismatchError(f"{path}: {len(repeated)} item ids occur more than once, "
                                 f"e.g. {repeated[:5].tolist()}")
    return EmbeddingCache(
        ids=ids,
        title=cols["title_emb"][order],
        image=cols["image_emb"][order],
        has_title=cols["has_title"][order].astype(bool),
        has_image=cols["has_image"][order].astype(bool),
        manifest=manifest)
