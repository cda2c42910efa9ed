"""Training and evaluation pairs for the encoders, read from a canonical dataset.

- Query matching (PPM Eq. 1) and text SCL: ``queries.parquet`` rows of kind ``text``: the query
  text, the clicked item's title (positive) and the hard negative's title.
- Image SCL (Taobao §3.2): rows of kind ``image``: the user's photo, the purchased item's
  image (positive) and the hard negative's image.
- Entity prediction (PPM Eq. 2): every item with a decodable image and its ``entity`` label.

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


def _decodable(data) -> bool:
    if data is None:
        return False
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
        return True
    except Exception:  # noqa: BLE001 - PIL raises many types on corrupt data
        return False


def read_items(dataset_dir: str) -> pd.DataFrame:
    """items.parquet indexed by item_id, with ``has_image`` (decodable) and ``has_title``."""
    items = pd.read_parquet(os.path.join(dataset_dir, canonical.ITEMS_FILE),
                            columns=["item_id", "title", "image", "entity"]).set_index("item_id")
    items["has_title"] = items["title"].fillna("").str.strip() != ""
    items["has_image"] = [_decodable(b) for b in items["image"]]
    return items


def query_pairs(dataset_dir: str, modality: str, items: pd.DataFrame | None = None,
                seed: int = 0) -> tuple[Pairs, dict]:
    """All (query, positive, negative) rows of one modality. Returns (pairs, counts).

    Raises:
      FileNotFoundError: the dataset has no queries.parquet.
      ValueError: no usable pair.
    """
    path = os.path.join(dataset_dir, canonical.QUERIES_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: query matching and SCL need search logs")
    items = read_items(dataset_dir) if items is None else items
    q = pd.read_parquet(path)
    q = q[q["kind"] == modality].reset_index(drop=True)
    content, usable = (("title", "has_title") if modality == "text" else ("image", "has_image"))
    query_col = "query" if modality == "text" else "query_image"
    ok = q["item_id"].map(items[usable]).fillna(False).to_numpy(bool)
    if modality == "image":
        ok &= np.array([_decodable(b) for b in q[query_col]], bool)
    counts = {"rows": len(q), "dropped_unusable_positive_or_query": int((~ok).sum())}
    q = q[ok].reset_index(drop=True)
    if not len(q):
        raise ValueError(f"{dataset_dir}: no usable {modality} query pairs")
    neg_ids = q.get("hard_negative_item_id", pd.Series([None] * len(q)))
    neg_ok = neg_ids.map(items[usable]).fillna(False).to_numpy(bool)
    rng = np.random.default_rng(seed)
    # Replace missing hard negatives by a random other positive (never the pair's own).
    fallback = (np.arange(len(q)) + rng.integers(1, max(len(q), 2), len(q))) % len(q)
    negative = np.where(neg_ok, neg_ids.where(neg_ok, q["item_id"]).to_numpy(),
                        q["item_id"].to_numpy()[fallback])
    counts["negatives_replaced"] = int((~neg_ok).sum())
    counts["pairs"] = len(q)
    if counts["dropped_unusable_positive_or_query"] or counts["negatives_replaced"]:
        logger.info("%s %s pairs: %s", dataset_dir, modality, counts)
    pairs = Pairs(query=q[query_col].to_numpy(object),
                  positive=items[content].reindex(q["item_id"]).to_numpy(object),
                  negative=items[content].reindex(negative).to_numpy(object),
                  item_id=q["item_id"].to_numpy(object))
    return pairs, counts


def split(pairs: Pairs, eval_fraction: float, seed: int) -> tuple[Pairs, Pairs]:
    """A seeded random split into (train, held-out)."""
    if not 0 < eval_fraction < 1:
        raise ValueError(f"eval_fraction must be in (0, 1), got {eval_fraction}")
    perm = np.random.default_rng(seed).permutation(len(pairs))
    n_eval = max(1, int(round(len(pairs) * eval_fraction)))
    return pairs.subset(np.sort(perm[n_eval:])), pairs.subset(np.sort(perm[:n_eval]))


def entity_examples(items: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(image bytes, entity index, entity vocabulary) for items with a decodable image."""
    usable = items[items["has_image"] & (items["entity"].fillna("") != "")]
    vocab = sorted(usable["entity"].unique())
    index = {e: i for i, e in enumerate(vocab)}
    return (usable["image"].to_numpy(object),
            usable["entity"].map(index).to_numpy(np.int64), vocab)
