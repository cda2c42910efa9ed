"""The incremental side of ``beam_jobs.embed_items`` (``--parent``): a new cache version that
embeds only new and changed items (Taobao multimodal paper, arXiv:2407.19467, §5, Fig. 4:
"upon the introduction of new items, the system automatically initiates a request to the
pre-trained multimodal encoders").

Every record carries the :func:`ppm.data.cache.content_fingerprint` of the title and image it
was computed from. Given a parent cache:

- an item of the catalogue whose fingerprint equals its parent record's is **copied** (the
  record's bytes, unchanged: its vectors stay bit-identical, so existing items score the same);
- an item the parent lacks (**new**) or whose fingerprint differs (**changed**: a new title or
  image) is embedded again;
- a parent record whose item left the catalogue is **kept**: models trained on it still read
  its vectors.

The version is a complete cache folder (loadable alone, no chain to resolve at serving time),
written with the parent's encoders only: another encoder would mix two embedding spaces in one
table. A parent written before fingerprints existed has none: all its items count as changed.
"""

from __future__ import annotations

import os

import apache_beam as beam
from apache_beam.metrics import Metrics

from ppm.data import cache

NAMESPACE = "embed_items"


def check_parent(parent: str, encoders: dict, dim: int, modalities) -> dict:
    """The parent cache's manifest, once it is known that a version can extend it.

    Args:
      encoders: the job's ``{modality: manifest entry}`` (:func:`ppm.encoders.contract.describe`).

    Raises:
      FileNotFoundError: ``parent`` is not a finished cache.
      ValueError: the parent was built by other encoders, at another dimension or with other
        modalities (both named).
    """
    manifest = cache.read_manifest(parent)
    new = cache.identity({"dim": dim, "modalities": list(modalities),
                          **{f"{m}_encoder": e for m, e in encoders.items()}})
    old = cache.identity(manifest)
    if new != old:
        raise ValueError(
            f"--parent {parent} was built with {old}, this job has {new}: a cache version "
            "must use its parent's encoders (one embedding space per table); build a new "
            "cache without --parent instead")
    return manifest


def parent_summary(parent: str, manifest: dict) -> dict:
    """The new version's manifest entry ``parent``: the parent's path, version (1 for a cache
    written before versions), creation time and item count."""
    return {"path": parent, "version": int(manifest.get("version", 1)),
            "created_at": manifest.get("created_at"),
            "items": manifest.get("counts", {}).get("items")}


def read_parent(p: beam.Pipeline, parent: str):
    """``(id, fingerprint, {flag: 0/1}, record bytes)`` of every record of the parent cache
    (each record parsed once)."""

    def keyed(record):
        item_id, fingerprint, flags = cache.record_fields(record)
        return item_id, fingerprint, flags, record

    return (p
            | "ReadParent" >> beam.io.ReadFromTFRecord(os.path.join(parent, cache.SHARD_PATTERN))
            | "KeyParent" >> beam.Map(keyed))


class KeepParentRecord(beam.DoFn):
    """Passes on a parent record unless its item is in the catalogue with another content.

    Side input ``catalogue``: ``{item_id: fingerprint}`` of the dataset's items.
    """

    def __init__(self):
        self._copied = Metrics.counter(NAMESPACE, "copied")
        self._kept = Metrics.counter(NAMESPACE, "kept_not_in_dataset")
        self._replaced = Metrics.counter(NAMESPACE, "replaced")
        # with BuildRecord's, the version's totals
        self._flags = {flag: Metrics.counter(NAMESPACE, f"with_{flag.split('_')[1]}")
                       for _, flag in cache.FEATURES_OF.values()}

    def process(self, keyed, catalogue):
        item_id, fingerprint, flags, record = keyed
        current = catalogue.get(item_id)
        if current is None:
            self._kept.inc()
        elif fingerprint and current == fingerprint:
            self._copied.inc()
        else:
            self._replaced.inc()
            return
        for flag, counter in self._flags.items():
            counter.inc(flags.get(flag, 0))
        yield record
