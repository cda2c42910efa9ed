"""The embedding cache: title and image embeddings of every item, computed once by the encoders.

PPM's modality features are fixed after pre-training (PPM §3.1.1, §3.2.3): the ranking model
never runs BERT or ResNet, it looks up cached vectors by item id. ``beam_jobs.embed_items``
writes the cache, this module reads it (plain TensorFlow and NumPy, no Keras)::

    <cache dir>/
      part-SSSSS-of-NNNNN.tfrecord   tf.train.Example per item (see below)
      manifest.json                  modalities, encoders (paths, fingerprints, encoder.json),
                                     dim, counts

Each record holds ``item_id`` (bytes), ``title_emb`` and ``image_emb`` (float [dim]),
``has_title`` and ``has_image`` (int64 0/1), and ``content_fingerprint`` (bytes: a hash of the
title and image it was computed from, :func:`content_fingerprint`). An item with an empty
title or a missing or undecodable image has a zero vector there and its flag at 0. Every item
of the dataset's ``items.parquet`` has exactly one record.

A cache may hold one modality only (a dataset without images, such as MIND, or without
titles): the manifest's ``modalities`` lists the ones it holds (``["text"]``, ``["image"]``;
a manifest without the key holds both, as every cache written before the key existed), and the
records carry only their features (``title_emb``/``has_title`` for text, ``image_emb``/
``has_image`` for image). Loaded, an absent modality reads as zero vectors with its flag at 0,
and :meth:`EmbeddingCache.matrix` (what the models look up) holds the present ones only.

**Versions** (Taobao multimodal paper, arXiv:2407.19467, §5): ``embed_items --parent OLD
--out NEW`` embeds only the items that ``OLD`` lacks or whose title or image changed (by
fingerprint) and copies every other record of ``OLD``, so each version is a complete cache
folder on its own (load it like any other); its manifest records ``version`` (the parent's
plus one; 1 without a parent) and ``parent`` (path, version, creation time). Items of the
parent that are no longer in the catalogue are kept: a model trained on them still finds
their vectors.

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
MODALITIES = ("text", "image")  # in the order of their columns in EmbeddingCache.matrix()
ENCODER_OF = {"text": "text_encoder", "image": "image_encoder"}
# modality -> (embedding feature, flag feature) of a record
FEATURES_OF = {"text": ("title_emb", "has_title"), "image": ("image_emb", "has_image")}
# A record's content fingerprint (content_fingerprint): an incremental job re-embeds an item
# only when it differs from the parent cache's. Caches written before it have none.
FINGERPRINT_FEATURE = "content_fingerprint"
_READ_BATCH = 8192


class CacheMismatchError(ValueError):
    """The cache is not the one the caller expects, or is internally inconsistent."""


class CacheReadError(CacheMismatchError):
    """A cache shard cannot be read (truncated or corrupted); the message names the shard."""


def check_modalities(modalities, where: str = "modalities") -> tuple[str, ...]:
    """``modalities`` as a tuple in :data:`MODALITIES` order.

    Raises:
      CacheMismatchError: empty, repeated or unknown modalities (``where`` names the source).
    """
    if isinstance(modalities, str) or not isinstance(modalities, (list, tuple, set, frozenset)):
        raise CacheMismatchError(f"{where}: expected a list of modalities out of "
                                 f"{list(MODALITIES)}, got {modalities!r}")
    mods = list(modalities)
    unknown = [m for m in mods if m not in MODALITIES]
    if unknown or not mods or len(set(mods)) != len(mods):
        raise CacheMismatchError(f"{where}: {mods!r} is not a non-empty list of distinct "
                                 f"modalities out of {list(MODALITIES)}")
    return tuple(m for m in MODALITIES if m in mods)


def modalities_of(manifest: dict) -> tuple[str, ...]:
    """The modalities a cache holds (a manifest without ``modalities`` holds both)."""
    return check_modalities(manifest.get("modalities", MODALITIES), "manifest modalities")


def feature_spec(dim: int, modalities=MODALITIES) -> dict:
    """The ``tf.io.parse_example`` spec of a cache record holding ``modalities``."""
    spec = {"item_id": tf.io.FixedLenFeature([], tf.string)}
    for m in check_modalities(modalities):
        emb, flag = FEATURES_OF[m]
        spec[emb] = tf.io.FixedLenFeature([dim], tf.float32)
        spec[flag] = tf.io.FixedLenFeature([], tf.int64)
    return spec


def content_fingerprint(title: str | None, image: bytes | None, modalities=MODALITIES) -> str:
    """A hash of what an item's record is computed from: its title and image bytes, for the
    modalities the cache holds (a text-only cache ignores image changes). 32 hex digits."""
    import hashlib  # noqa: PLC0415

    h = hashlib.sha256()
    mods = check_modalities(modalities)
    if "text" in mods:
        data = (title or "").encode()
        h.update(b"text:%d:" % len(data) + data)
    if "image" in mods:
        h.update(b"image:" + (b"none" if image is None else b"%d:" % len(image) + image))
    return h.hexdigest()[:32]


def make_example(item_id: str, title_emb, image_emb, has_title: bool,
                 has_image: bool, modalities=MODALITIES,
                 fingerprint: str = "") -> tf.train.Example:
    """One cache record (the writer's side of :func:`feature_spec`).

    Only the features of ``modalities`` are written; the others' arguments are ignored (None
    is fine). ``fingerprint``: the :func:`content_fingerprint` of the item (not written when
    empty).
    """
    floats = lambda v: tf.train.Feature(float_list=tf.train.FloatList(
        value=np.asarray(v, np.float32).tolist()))
    ints = lambda v: tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v)]))
    values = {"text": (title_emb, has_title), "image": (image_emb, has_image)}
    feature = {"item_id": tf.train.Feature(
        bytes_list=tf.train.BytesList(value=[item_id.encode()]))}
    for m in check_modalities(modalities):
        emb, flag = FEATURES_OF[m]
        feature[emb] = floats(values[m][0])
        feature[flag] = ints(values[m][1])
    if fingerprint:
        feature[FINGERPRINT_FEATURE] = tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[fingerprint.encode()]))
    return tf.train.Example(features=tf.train.Features(feature=feature))


def record_fields(record: bytes) -> tuple[str, str, dict]:
    """``(item_id, fingerprint, {flag: 0/1})`` of a serialized cache record: its fingerprint
    ``""`` without one, the flags of the modalities it holds (``has_title``, ``has_image``)."""
    feats = tf.train.Example.FromString(record).features.feature
    fp = feats[FINGERPRINT_FEATURE].bytes_list.value if FINGERPRINT_FEATURE in feats else []
    flags = {flag: int(feats[flag].int64_list.value[0])
             for _, flag in FEATURES_OF.values() if flag in feats}
    return feats["item_id"].bytes_list.value[0].decode(), fp[0].decode() if fp else "", flags


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
    check_modalities(manifest.get("modalities", MODALITIES), f"{manifest_path}: modalities")
    return manifest


def identity(manifest: dict) -> dict:
    """What makes two caches interchangeable: the dimension, the modalities and the encoders'
    fingerprints (None for an absent modality).

    A model stores this with its weights and passes it as ``expected_manifest`` to
    :func:`load_cache` (the creation time, paths and counts may differ).
    """
    return {"dim": manifest.get("dim"), "modalities": list(modalities_of(manifest)),
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
    if got["modalities"] != want["modalities"]:
        raise CacheMismatchError(
            f"embedding cache holds modalities {got['modalities']} but the expected manifest "
            f"has {want['modalities']}: the model was built for a cache of "
            f"{' and '.join(want['modalities'])}; use such a cache, or train a new run")
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
      title: title embeddings, float32 [N, dim] (zero rows where ``has_title`` is False,
        all zeros when the cache holds no text).
      image: image embeddings, float32 [N, dim] (zero rows where ``has_image`` is False,
        all zeros when the cache holds no image).
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

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities the cache holds (``("text", "image")``, ``("text",)``, ...)."""
        return modalities_of(self.manifest)

    @property
    def width(self) -> int:
        """Columns of :meth:`matrix`: ``len(modalities) * dim``."""
        return len(self.modalities) * self.dim

    def matrix(self) -> np.ndarray:
        """``[E_title | E_image]`` per item (PPM §3.2.3, Eq. 8), float32 [N, width]: the
        present modalities only (``E_title`` alone for a text-only cache)."""
        parts = {"text": self.title, "image": self.image}
        return np.concatenate([parts[m] for m in self.modalities], axis=1)

    def index(self) -> dict:
        """Item id -> row."""
        return {item_id: row for row, item_id in enumerate(self.ids.tolist())}


def _failing_shard(files, dim: int, mods, error: tf.errors.OpError):
    """``(shard, its error)``: the first of ``files`` that fails to read alone.

    TensorFlow's message for a truncated or corrupt record (``DataLossError``) does not name
    the file, so each shard is re-read on its own. Falls back to the folder and ``error``.
    """
    for file in files:
        try:
            for _ in (tf.data.TFRecordDataset(file).batch(_READ_BATCH)
                      .map(lambda s: tf.io.parse_example(s, feature_spec(dim, mods)))):
                pass
        except tf.errors.OpError as e:
            return file, e
    return os.path.dirname(files[0]), error


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
        records disagree with the manifest (count, vector length) or repeat an item id (the
        message names the shard where a record is wrong).
      CacheReadError: a shard is truncated or corrupted (a CacheMismatchError; the message
        names the shard).
    """
    manifest = read_manifest(path)
    check_manifest(manifest, expected_dim, expected_manifest)
    dim = int(manifest["dim"])
    mods = modalities_of(manifest)
    expected_count = manifest["counts"]["items"]
    files = sorted(tf.io.gfile.glob(os.path.join(path, SHARD_PATTERN)))
    parts = {k: [] for k in feature_spec(dim, mods)}
    if files:
        ds = (tf.data.TFRecordDataset(files)
              .batch(_READ_BATCH)
              .map(lambda s: tf.io.parse_example(s, feature_spec(dim, mods))))
        try:
            for batch in ds:
                for k, v in batch.items():
                    parts[k].append(v.numpy())
        except tf.errors.OpError as e:
            shard, error = _failing_shard(files, dim, mods, e)
            if isinstance(error, tf.errors.InvalidArgumentError):
                raise CacheMismatchError(
                    f"{shard}: records do not match the manifest's dim {dim} (a shard from "
                    f"another cache?): {error.message.splitlines()[0]}") from e
            raise CacheReadError(
                f"{shard}: cannot read this embedding cache shard ({type(error).__name__}: "
                f"{error.message.splitlines()[0]}): it is truncated or corrupted; rebuild the "
                "cache with `python -m beam_jobs.embed_items --overwrite`") from e
    n = sum(len(p) for p in parts["item_id"])
    if n != expected_count:
        raise CacheMismatchError(f"{path}: {n} records in {len(files)} shards but the manifest "
                                 f"counts {expected_count} items")
    cols = {k: (np.concatenate(v) if v else np.zeros((0,) + tuple(spec.shape),
                                                      spec.dtype.as_numpy_dtype))
            for (k, v), spec in zip(parts.items(), feature_spec(dim, mods).values())}
    ids = np.array([b.decode() for b in cols["item_id"]], dtype=str)
    order = np.argsort(ids, kind="stable")
    ids = ids[order]
    repeated = np.unique(ids[1:][ids[1:] == ids[:-1]])
    if len(repeated):
        raise CacheMismatchError(f"{path}: {len(repeated)} item ids occur more than once, "
                                 f"e.g. {repeated[:5].tolist()}")
    for m in MODALITIES:  # an absent modality: zero vectors, flag 0
        emb, flag = FEATURES_OF[m]
        if m not in mods:
            cols[emb] = np.zeros((len(ids), dim), np.float32)
            cols[flag] = np.zeros(len(ids), np.int64)
    return EmbeddingCache(
        ids=ids,
        title=cols["title_emb"][order],
        image=cols["image_emb"][order],
        has_title=cols["has_title"][order].astype(bool),
        has_image=cols["has_image"][order].astype(bool),
        manifest=manifest)
