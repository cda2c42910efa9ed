"""Offline ranking metrics in NumPy (exact, unlike the streaming Keras AUC).

- :func:`auc`: ROC AUC with ties counted as one half (Mann-Whitney U).
- :func:`gauc`: AUC per group (user), averaged with impression weights over the groups that
  have both a positive and a negative (Zhou et al., DIN, KDD 2018).
- :func:`precision_at_n`: PPM Table 2's P@N: the share of relevant items among each
  request's top-N by score, averaged over requests with at least N candidates and at least one
  positive (a request without a positive has no ranking to get right).
- :func:`logloss`: mean binary cross-entropy.
- :func:`auc_by_bucket`: AUC within target-item training-frequency buckets (PPM Fig. 2 /
  Taobao Fig. 6b: the cold-start analysis).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Upper bounds of the item-frequency buckets: 0, 1-4, 5-19, 20-99, 100+.
FREQUENCY_BUCKETS = ((0, 0), (1, 4), (5, 19), (20, 99), (100, None))


def _ranks(scores: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank."""
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0  # average 1-based rank of each tie group
    ranks = np.empty(len(scores), float)
    ranks[order] = np.repeat(avg, counts)
    return ranks


def auc(labels, scores) -> float | None:
    """ROC AUC; None when only one class is present."""
    labels = np.asarray(labels) > 0.5
    scores = np.asarray(scores, float)
    if labels.shape != scores.shape:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} differ")
    pos = int(labels.sum())
    neg = len(labels) - pos
    if pos == 0 or neg == 0:
        return None
    rank_sum = _ranks(scores)[labels].sum()
    return float((rank_sum - pos * (pos + 1) / 2.0) / (pos * neg))


def gauc(labels, scores, groups) -> float | None:
    """Impression-weighted mean of per-group AUCs over groups with both classes."""
    labels, scores, groups = np.asarray(labels), np.asarray(scores), np.asarray(groups)
    order = np.argsort(groups, kind="mergesort")
    _, starts = np.unique(groups[order], return_index=True)
    total, weight = 0.0, 0
    for idx in np.split(order, starts[1:]):
        a = auc(labels[idx], scores[idx])
        if a is not None:
            total += a * len(idx)
            weight += len(idx)
    return total / weight if weight else None


def precision_at_n(labels, scores, requests, n: int = 2) -> float | None:
    """Mean share of positives among each request's top-``n`` (see the module docstring)."""
    labels, scores, requests = np.asarray(labels), np.asarray(scores), np.asarray(requests)
    # Sort by request, then by descending score (ties: original order).
    order = np.lexsort((-scores, requests))
    _, starts, counts = np.unique(requests[order], return_index=True, return_counts=True)
    values = []
    for start, count in zip(starts, counts):
        idx = order[start:start + count]
        if count < n or labels[idx].sum() == 0:
            continue
        values.append(float((labels[idx[:n]] > 0.5).mean()))
    return float(np.mean(values)) if values else None


def logloss(labels, probabilities, eps: float = 1e-7) -> float:
    p = np.clip(np.asarray(probabilities, float), eps, 1 - eps)
    y = np.asarray(labels, float)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def bucket_name(low: int, high: int | None) -> str:
    if high is None:
        return f"{low}+"
    return str(low) if low == high else f"{low}-{high}"


def auc_by_bucket(labels, scores, frequency,
                  buckets: Sequence[tuple] = FREQUENCY_BUCKETS) -> dict:
    """``{bucket: {"examples", "positives", "auc"}}`` over target-item training frequency."""
    labels, scores = np.asarray(labels), np.asarray(scores)
    frequency = np.asarray(frequency)
    out = {}
    for low, high in buckets:
        mask = frequency >= low
        if high is not None:
            mask &= frequency <= high
        out[bucket_name(low, high)] = {
            "examples": int(mask.sum()), "positives": int((labels[mask] > 0.5).sum()),
            "auc": auc(labels[mask], scores[mask]) if mask.any() else None}
    return out


def task_metrics(labels, scores, users, requests, frequency, n: int = 2) -> dict:
    """Every metric of one task."""
    return {"auc": auc(labels, scores), "gauc": gauc(labels, scores, users),
            f"p@{n}": precision_at_n(labels, scores, requests, n),
            "logloss": logloss(labels, scores), "positives": int((np.asarray(labels) > .5).sum()),
            "auc_by_frequency": auc_by_bucket(labels, scores, frequency)}
