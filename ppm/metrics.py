"""Offline ranking metrics in NumPy (exact, unlike the streaming Keras AUC).

- :func:`auc`: ROC AUC with ties counted as one half (Mann-Whitney U).
- :func:`gauc`: AUC per group (user), averaged with impression weights over the groups that
  have both a positive and a negative (Zhou et al., DIN, KDD 2018).
- :func:`precision_at_n`: PPM Table 2's P@N: the share of relevant items among each
  request's top-N by score, averaged over requests with at least N candidates and at least one
  positive (a request without a positive has no ranking to get right).
- :func:`logloss`: mean binary cross-entropy.
- :func:`auc_by_bucket`: AUC within target-item training-frequency buckets (PPM Fig. 2 /
  Taobao Fig. 6b: the cold-start analysis), each with its sampling error.
- :class:`Bootstrap`: the standard error of AUC by a bootstrap over users (or requests):
  examples of one user are correlated, so resampling examples would understate the error.
  A Poisson bootstrap (each user drawn Poisson(1) times; Hanley & MacGibbon's analytic error
  assumes independent examples, which a feed's examples are not).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Upper bounds of the item-frequency buckets: 0, 1-4, 5-19, 20-99, 100+.
FREQUENCY_BUCKETS = ((0, 0), (1, 4), (5, 19), (20, 99), (100, None))
BOOTSTRAP_REPLICATES = 100
# Below this many positives (or negatives) a bucket's AUC is too noisy to read: its bootstrap
# error is typically above 0.03 (PPM Table 3's differences are 0.001-0.01).
MIN_POSITIVES = 50


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


class Bootstrap:
    """A Poisson bootstrap over groups (users): in each replicate every group is drawn
    Poisson(1) times and all its examples carry that count.

    Args:
      groups: the group of each example, [N].
      replicates: bootstrap replicates.
      seed: the draw's seed (the same seed gives the same draws, so two models scored on the
        same examples are resampled alike).
    """

    def __init__(self, groups, replicates: int = BOOTSTRAP_REPLICATES, seed: int = 0):
        _, self.inverse = np.unique(np.asarray(groups), return_inverse=True)
        n_groups = int(self.inverse.max()) + 1 if len(self.inverse) else 0
        self.counts = np.random.default_rng(seed).poisson(1.0, size=(replicates, n_groups)
                                                          ).astype(np.float64)

    def weights(self, mask=None, rows=slice(None)) -> np.ndarray:
        """Example weights ``[replicates, N]`` (of the examples in ``mask``)."""
        inverse = self.inverse if mask is None else self.inverse[mask]
        return self.counts[rows][:, inverse]

    def auc_se(self, labels, scores, mask=None, chunk: int = 25) -> float | None:
        """Standard deviation of AUC over the replicates (None when fewer than two have both
        classes); ``chunk`` replicates at a time bound the memory to ``chunk * N``."""
        labels, scores = np.asarray(labels), np.asarray(scores)
        if mask is not None:
            labels, scores = labels[mask], scores[mask]
        values = np.concatenate([
            weighted_auc(labels, scores, self.weights(mask, slice(k, k + chunk)))
            for k in range(0, len(self.counts), chunk)])
        values = values[np.isfinite(values)]
        return float(np.std(values, ddof=1)) if len(values) > 1 else None


def weighted_auc(labels, scores, weights) -> np.ndarray:
    """AUC of each row of ``weights`` ``[R, N]`` (example weights; ties count one half);
    NaN where a row has no positive or no negative weight."""
    labels = np.asarray(labels) > 0.5
    scores = np.asarray(scores, float)
    weights = np.atleast_2d(np.asarray(weights, float))
    order = np.argsort(scores, kind="mergesort")
    s, y, w = scores[order], labels[order], weights[:, order]
    _, first, group = np.unique(s, return_index=True, return_inverse=True)
    neg = np.where(y, 0.0, w)
    # Negative weight strictly below each example's score, plus half its tie group's.
    cum = np.concatenate([np.zeros((len(w), 1)), np.cumsum(neg, axis=1)], axis=1)
    last = np.append(first[1:], len(s))
    below = cum[:, first[group]]
    ties = cum[:, last[group]] - below
    wins = (np.where(y, w, 0.0) * (below + 0.5 * ties)).sum(axis=1)
    pos, negs = np.where(y, w, 0.0).sum(axis=1), neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((pos > 0) & (negs > 0), wins / (pos * negs), np.nan)


def bucket_masks(frequency, buckets: Sequence[tuple] = FREQUENCY_BUCKETS) -> dict:
    """``{bucket name: bool mask [N]}`` of the examples whose ``frequency`` is in each bucket."""
    frequency = np.asarray(frequency)
    out = {}
    for low, high in buckets:
        mask = frequency >= low
        if high is not None:
            mask &= frequency <= high
        out[bucket_name(low, high)] = mask
    return out


def paired_auc_difference(labels, scores_a, scores_b, bootstrap: Bootstrap,
                          mask=None) -> tuple[float, float] | None:
    """``(AUC(b) - AUC(a), its paired bootstrap SE)`` of two models scored on the same
    examples: every replicate draws the same users for both, so what the two share (the
    examples' own difficulty) cancels. None when the examples lack a class.

    Args:
      mask: only these examples (a frequency bucket, say).
    """
    labels, a, b = np.asarray(labels), np.asarray(scores_a), np.asarray(scores_b)
    if mask is None:
        mask = np.ones(len(labels), bool)
    y = labels[mask]
    if not mask.any() or len(np.unique(y > 0.5)) < 2:
        return None
    w = bootstrap.weights(mask)
    diff = weighted_auc(y, b[mask], w) - weighted_auc(y, a[mask], w)
    diff = diff[np.isfinite(diff)]
    return (auc(y, b[mask]) - auc(y, a[mask]),
            float(np.std(diff, ddof=1)) if len(diff) > 1 else float("nan"))


def auc_by_bucket(labels, scores, frequency,
                  buckets: Sequence[tuple] = FREQUENCY_BUCKETS,
                  bootstrap: Bootstrap | None = None) -> dict:
    """``{bucket: {"examples", "positives", "auc"[, "auc_se"]}}`` over target-item training
    frequency; ``auc_se`` (:meth:`Bootstrap.auc_se`) with a ``bootstrap``."""
    labels, scores = np.asarray(labels), np.asarray(scores)
    out = {}
    for name, mask in bucket_masks(frequency, buckets).items():
        value = auc(labels[mask], scores[mask]) if mask.any() else None
        out[name] = {"examples": int(mask.sum()), "positives": int((labels[mask] > 0.5).sum()),
                     "auc": value}
        if bootstrap is not None:
            out[name]["auc_se"] = None if value is None else bootstrap.auc_se(labels, scores,
                                                                              mask)
    return out


def task_metrics(labels, scores, users, requests, frequency, n: int = 2,
                 bootstrap: Bootstrap | None = None) -> dict:
    """Every metric of one task; with a ``bootstrap`` (:class:`Bootstrap`, over ``users``)
    also ``auc_se`` overall and per frequency bucket."""
    value = auc(labels, scores)
    out = {"auc": value, "gauc": gauc(labels, scores, users),
           f"p@{n}": precision_at_n(labels, scores, requests, n),
           "logloss": logloss(labels, scores), "positives": int((np.asarray(labels) > .5).sum()),
           "auc_by_frequency": auc_by_bucket(labels, scores, frequency, bootstrap=bootstrap)}
    if bootstrap is not None:
        out["auc_se"] = None if value is None else bootstrap.auc_se(labels, scores)
    return out
