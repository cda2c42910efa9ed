"""Training and evaluation pairs for the encoders, read from a canonical dataset.

- Query matching (PPM Eq. 1) and text SCL: ``queries.parquet`` rows of kind ``text``: the query
  text, the clicked item's title (positive) and the hard negative's title.
- Image SCL (Taobao §3.2): rows of kind ``image``: the user's photo, the purchased item's
  image (positive) and the hard negative's image.
- Entity prediction (PPM Eq. 2): every item with a decodable image (image tower) or a title
  (text tower) and its ``entity`` label. It needs no ``queries.parquet``.

``queries.parquet`` is optional (MovieLens and MIND have no search logs): without it, or
without rows of the modality's kind, the pairs are empty, and only the tasks that train on them
(``qm``, ``scl``) refuse, through :func:`require_queries`, before any image is decoded.
Pairs whose positive has no title (no image) cannot be used and are dropped; the numbers are
logged and returned, never silent. A missing hard negative is replaced by a random other
positive of the same split (a plain negative rather than a hard one), also counted.
Held-out pairs for Acc@N are a seeded random share of the rows.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os

import numpy as np
import pandas as pd
from PIL import Image

from ppm.data import canonical

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Pairs:
    """Aligned arrays: ``query`` (str or bytes), ``positive``, ``negative`` (title or image
    bytes), ``item_id`` of the positive."""

    query: np.ndarray
    positive: np.ndarray
    negative: np.ndarray
    item_id: np.ndarray

    def __len__(self):
        return len(self.item_id)

    def subset(self, idx) -> Pairs:
        return Pairs(*(getattr(self, f.name)[idx] for f in dataclasses.fields(self)))


class DatasetError(ValueError):
    """The dataset cannot feed the chosen task (the message says why and what to run instead)."""


# What each task trains on, for the messages.
NEEDS = {"qm": "search queries (queries.parquet rows of kind 'text')",
         "scl": "query pairs (queries.parquet rows of the modality's kind)"}
INSTEAD = ("--task ep (entity prediction: needs only items.parquet with an `entity` label) or "
           "--steps 0 (export the pre-trained encoder as is)")


def _decodable(data) -> bool:
    if data is None:
        return False
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
        return True
    except Exception:  # noqa: BLE001 - PIL raises many types on corrupt data
        return False


def read_items(dataset_dir: str, modality: str | None = None) -> pd.DataFrame:
    """items.parquet indexed by item_id, with ``has_title`` and ``has_image`` (decodable).

    Args:
      dataset_dir: the canonical dataset folder.
      modality: ``"text"`` skips decoding images (``has_image`` is then only "has bytes");
        ``"image"`` or None decodes every image.
    """
    items = pd.read_parquet(os.path.join(dataset_dir, canonical.ITEMS_FILE),
                            columns=["item_id", "title", "image", "entity"]).set_index("item_id")
    items["has_title"] = items["title"].fillna("").str.strip() != ""
    if modality == "text":
        items["has_image"] = items["image"].notna()
    else:
        items["has_image"] = [_decodable(b) for b in items["image"]]
    return items


def read_queries(dataset_dir: str, modality: str) -> tuple[pd.DataFrame | None, dict]:
    """The rows of ``queries.parquet`` of one kind, without decoding anything.

    Returns:
      ``(rows or None, counts)``: None when the dataset has no ``queries.parquet``; counts say
      how many rows the file has and of which kind.
    """
    path = os.path.join(dataset_dir, canonical.QUERIES_FILE)
    if not os.path.exists(path):
        return None, {"rows": 0, "pairs": 0, "source": "no queries.parquet"}
    q = pd.read_parquet(path)
    kinds = q["kind"].value_counts().to_dict()
    rows = q[q["kind"] == modality].reset_index(drop=True)
    return rows, {"file_rows": len(q), "kinds": {str(k): int(v) for k, v in kinds.items()},
                  "rows": len(rows)}


def require_queries(dataset_dir: str, modality: str, task: str, rows, counts: dict) -> None:
    """Raises :class:`DatasetError` unless there are query rows of ``modality`` for ``task``.

    Cheap (no image is decoded), so the training CLI calls it before reading the catalogue.
    """
    path = os.path.join(dataset_dir, canonical.QUERIES_FILE)
    if rows is None:
        raise DatasetError(
            f"{path} does not exist: --task {task} trains on {NEEDS[task]}. Datasets without "
            f"search logs (MovieLens, MIND) can use {INSTEAD}.")
    if not len(rows):
        kinds = ", ".join(f"{k}: {v}" for k, v in sorted(counts["kinds"].items())) or "none"
        raise DatasetError(
            f"{path}: no usable {modality} query pairs: 0 of its {counts['file_rows']} rows are "
            f"of kind {modality!r} (rows by kind: {kinds}), and --modality {modality} --task "
            f"{task} trains on them. Use {INSTEAD}.")


def query_pairs(dataset_dir: str, modality: str, items: pd.DataFrame | None = None,
                seed: int = 0, rows: pd.DataFrame | None = None,
                counts: dict | None = None) -> tuple[Pairs, dict]:
    """All usable (query, positive, negative) rows of one modality. Returns (pairs, counts).

    Without ``queries.parquet``, or without a usable row, the pairs are empty (Acc@N then
    reports "no held-out pairs"): tasks that need pairs check with :func:`require_queries`
    and :func:`require_pairs`.

    Args:
      dataset_dir: the canonical dataset folder.
      modality: ``"text"`` or ``"image"``.
      items: :func:`read_items` of the dataset (read here if None).
      seed: seed of the replacement negatives.
      rows, counts: :func:`read_queries` of the dataset (read here if None).
    """
    if rows is None and counts is None:
        rows, counts = read_queries(dataset_dir, modality)
    counts = dict(counts)
    if rows is None or not len(rows):
        counts["pairs"] = 0
        return empty_pairs(), counts
    items = read_items(dataset_dir, modality) if items is None else items
    q = rows
    content, usable = (("title", "has_title") if modality == "text" else ("image", "has_image"))
    query_col = "query" if modality == "text" else "query_image"
    ok = q["item_id"].map(items[usable]).eq(True).to_numpy(bool)  # unknown ids: False
    if modality == "image":
        ok &= np.array([_decodable(b) for b in q[query_col]], bool)
    counts["dropped_unusable_positive_or_query"] = int((~ok).sum())
    q = q[ok].reset_index(drop=True)
    counts["pairs"] = len(q)
    if not len(q):
        return empty_pairs(), counts
    neg_ids = q.get("hard_negative_item_id", pd.Series([None] * len(q)))
    neg_ok = neg_ids.map(items[usable]).eq(True).to_numpy(bool)
    rng = np.random.default_rng(seed)
    # Replace missing hard negatives by a random other positive (never the pair's own).
    fallback = (np.arange(len(q)) + rng.integers(1, max(len(q), 2), len(q))) % len(q)
    negative = np.where(neg_ok, neg_ids.where(neg_ok, q["item_id"]).to_numpy(),
                        q["item_id"].to_numpy()[fallback])
    counts["negatives_replaced"] = int((~neg_ok).sum())
    if counts["dropped_unusable_positive_or_query"] or counts["negatives_replaced"]:
        logger.info("%s %s pairs: %s", dataset_dir, modality, counts)
    pairs = Pairs(query=q[query_col].to_numpy(object),
                  positive=items[content].reindex(q["item_id"]).to_numpy(object),
                  negative=items[content].reindex(negative).to_numpy(object),
                  item_id=q["item_id"].to_numpy(object))
    return pairs, counts


def require_pairs(dataset_dir: str, modality: str, task: str, pairs: Pairs,
                  counts: dict) -> None:
    """Raises :class:`DatasetError` if ``task`` has no usable pair to train on."""
    if not len(pairs):
        raise DatasetError(
            f"{os.path.join(dataset_dir, canonical.QUERIES_FILE)}: no usable {modality} query "
            f"pairs: {counts.get('rows', 0)} rows of kind {modality!r}, "
            f"{counts.get('dropped_unusable_positive_or_query', 0)} dropped (the item has no "
            f"{'title' if modality == 'text' else 'decodable image'}, or the query image is "
            f"not decodable); --task {task} trains on them. Use {INSTEAD}.")


def empty_pairs() -> Pairs:
    return Pairs(*(np.array([], object) for _ in dataclasses.fields(Pairs)))


def split(pairs: Pairs, eval_fraction: float, seed: int) -> tuple[Pairs, Pairs]:
    """A seeded random split into (train, held-out)."""
    if not 0 < eval_fraction < 1:
        raise ValueError(f"eval_fraction must be in (0, 1), got {eval_fraction}")
    perm = np.random.default_rng(seed).permutation(len(pairs))
    # At least one held-out pair when there are two or more, and never the only pair (a task
    # that trains on pairs needs one; a single held-out pair would give a meaningless Acc@N).
    n_eval = min(max(1, int(round(len(pairs) * eval_fraction))), max(len(pairs) - 1, 0))
    return pairs.subset(np.sort(perm[n_eval:])), pairs.subset(np.sort(perm[:n_eval]))


def entity_examples(items: pd.DataFrame, modality: str = "image"
                    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(image bytes or titles, entity index, entity vocabulary) of the items that have both the
    content (a decodable image, a non-empty title) and an ``entity`` label."""
    content, usable = (("title", "has_title") if modality == "text" else ("image", "has_image"))
    usable = items[items[usable] & (items["entity"].fillna("") != "")]
    vocab = sorted(usable["entity"].unique())
    index = {e: i for i, e in enumerate(vocab)}
    return (usable[content].to_numpy(object),
            usable["entity"].map(index).to_numpy(np.int64), vocab)


def require_entities(dataset_dir: str, modality: str, items: pd.DataFrame | None = None) -> None:
    """Raises :class:`DatasetError` unless entity prediction has >= 2 entities to learn.

    Without ``items`` only the item table's columns are read and nothing is decoded (an item
    with image bytes counts), so the CLI fails at once on a dataset without images; with
    :func:`read_items` it counts exactly the usable items.
    """
    path = os.path.join(dataset_dir, canonical.ITEMS_FILE)
    what = "a title" if modality == "text" else "an image"
    if items is None:
        col = "title" if modality == "text" else "image"
        t = pd.read_parquet(path, columns=[col, "entity"])
        has = (t[col].fillna("").str.strip() != "") if modality == "text" else t[col].notna()
        entities = t.loc[has & (t["entity"].fillna("") != ""), "entity"].nunique()
        n = int(has.sum())
    else:
        _, labels, vocab = entity_examples(items, modality)
        entities, n = len(vocab), len(labels)
        if modality == "image":
            what = "a decodable image"
    if not n:
        raise DatasetError(f"{path}: no item has {what}, so --modality {modality} --task ep "
                           "has nothing to learn from")
    if entities < 2:
        raise DatasetError(
            f"{path}: --task ep (entity prediction) needs >= 2 entities, found {entities} "
            f"among the {n} items with {what} (column `entity`); use --steps 0 to export the "
            "encoder without fine-tuning")
