"""Ranking requests built from the dataset, for the demo, the notebook and the benchmark.

A ranking request (:mod:`ppm.serving.client`) is one user and N candidates. Here the user is a
real one from the examples (history, profile) and the candidates are catalogue items drawn at
random: what a ranking service receives after retrieval.
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow.parquet as pq

ITEM_FIELDS = ("item_id", "shop_id", "brand_id", "category_id")


def sample_ranking_request(examples_dir: str, items_path: str, num_candidates: int = 200,
                           history: int = 50, split: str = "test", seed: int = 0) -> dict:
    """A JSON-ready ranking request.

    Args:
      examples_dir: the examples of ``beam_jobs.build_examples`` (``schema.json`` inside).
      items_path: the dataset's ``items.parquet``.
      num_candidates: distinct catalogue items drawn (seeded) as candidates.
      history: the user is the first example of ``split`` with at least this many history
        items (or the longest one), cut to ``history``.
      split: the examples' window.
      seed: candidate draw.

    Raises:
      ValueError: more candidates than catalogue items, or ``history`` < 1.
    """
    from ppm import features
    from ppm.data import pipeline

    if history < 1:
        raise ValueError(f"history must be >= 1, got {history}")
    schema = features.FeatureSchema.load(os.path.join(examples_dir, features.SCHEMA_FILE))
    history = min(history, schema.max_history)
    ds = pipeline.make_dataset(os.path.join(examples_dir, split), schema, 256, training=False,
                               deterministic=True)
    best = None
    for feats, _ in ds:
        lengths = feats["hist_len"].numpy()
        i = int(np.argmax(lengths))
        if best is None or lengths[i] > best[1]["hist_len"][best[0]]:
            best = (i, {k: v.numpy() for k, v in feats.items()})
        if lengths[i] >= history:
            break
    row, batch = best
    n = min(int(batch["hist_len"][row]), history)
    user = {"hist_len": n}
    for f in schema.by_role(features.HISTORY):
        if f.sequence:
            user[f.name] = [_plain(v) for v in batch[f.name][row][:n]]
    for f in schema.by_role(features.PROFILE):
        user[f.name] = _plain(batch[f.name][row])
    for f in schema.by_role(features.CONTEXT):  # the request's query (search examples)
        if f.name != "position":
            user[f.name] = _plain(batch[f.name][row])
    items = pq.read_table(items_path, columns=list(ITEM_FIELDS)).to_pandas()
    if num_candidates > len(items):
        raise ValueError(f"{num_candidates} candidates asked, the catalogue has {len(items)}")
    picked = items.iloc[np.random.default_rng(seed).choice(len(items), num_candidates,
                                                            replace=False)]
    candidates = [{k: str(r[k]) for k in ITEM_FIELDS} for _, r in picked.iterrows()]
    return {"user": user, "candidates": candidates}


def _plain(v):
    if isinstance(v, bytes):
        return v.decode()
    return v.item() if hasattr(v, "item") else v
