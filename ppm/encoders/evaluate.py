"""Retrieval accuracy of an encoder on held-out query pairs (Taobao §6.1.2, Eq. 6).

Acc@N is the share of held-out queries whose own item is among the N items most similar
(cosine) to the query, retrieving among all positives of the held-out set (each distinct item
once). With no held-out pair (a dataset without ``queries.parquet``, or without rows of the
modality's kind) the report says ``"no held-out pairs"`` instead of a number.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ppm.encoders.data import Pairs

NO_PAIRS = "no held-out pairs"


def embed(fn, inputs, batch_size: int = 256) -> np.ndarray:
    """Applies ``fn`` (tf.string [n] -> [n, dim]) in batches. Returns float32 [N, dim]."""
    out = [np.asarray(fn(tf.constant(list(inputs[s:s + batch_size]), tf.string)))
           for s in range(0, len(inputs), batch_size)]
    return np.concatenate(out).astype(np.float32)


def accuracy_at(query_emb: np.ndarray, item_emb: np.ndarray, targets: np.ndarray,
                ks=(1, 5)) -> dict:
    """Acc@k for queries [Q, d] against items [I, d]; ``targets`` [Q] are item row indices."""
    scores = query_emb @ item_emb.T
    own = scores[np.arange(len(targets)), targets]
    # Rank of the own item: how many items score strictly higher (ties count in its favour).
    rank = (scores > own[:, None]).sum(axis=1)
    return {f"acc@{k}": float((rank < k).mean()) for k in ks}


def retrieval_accuracy(fn, pairs: Pairs, ks=(1, 5), batch_size: int = 256) -> dict:
    """Acc@N of an encoder function on held-out pairs (queries and positives share ``fn``).

    Returns:
      ``{"acc@1": ..., "acc@5": ..., "queries": Q, "candidates": I}``, or
      ``{"status": "no held-out pairs", "queries": 0}`` when ``pairs`` is empty.
    """
    if not len(pairs):
        return {"status": NO_PAIRS, "queries": 0}
    item_ids, first = np.unique(pairs.item_id.astype(str), return_index=True)
    row = {item: i for i, item in enumerate(item_ids)}
    targets = np.array([row[i] for i in pairs.item_id.astype(str)])
    query_emb = embed(fn, pairs.query, batch_size)
    item_emb = embed(fn, pairs.positive[first], batch_size)
    result = accuracy_at(query_emb, item_emb, targets, ks)
    result.update(queries=len(pairs), candidates=len(item_ids))
    return result


def format_accuracy(result: dict) -> str:
    """One line for logs: ``Acc@1 0.250, Acc@5 1.000 (4 queries, 3 candidates)``."""
    if not result.get("queries"):
        return result.get("status", NO_PAIRS)
    accs = ", ".join(f"Acc@{k.split('@')[1]} {v:.3f}" for k, v in result.items()
                     if k.startswith("acc@"))
    return f"{accs} ({result['queries']} queries, {result['candidates']} candidates)"
