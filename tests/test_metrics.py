import itertools

import numpy as np
import pytest

from ppm import metrics


def _brute_auc(y, s):
    pos = [a for a, lab in zip(s, y) if lab]
    neg = [a for a, lab in zip(s, y) if not lab]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_auc_matches_pair_counting_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = rng.integers(0, 10, 200) / 10  # many ties
    assert metrics.auc(y, s) == pytest.approx(_brute_auc(y, s))
    assert metrics.auc([1, 0, 1, 0], [0.9, 0.1, 0.8, 0.3]) == 1.0
    assert metrics.auc([1, 1], [0.2, 0.3]) is None


def test_gauc_weights_groups_by_impressions_and_skips_one_class_groups():
    y = [1, 0, 0, 1, 0, 1, 1]
    s = [.9, .1, .5, .4, .2, .3, .3]
    g = ["a", "a", "b", "b", "b", "c", "c"]
    # a: 1.0 (2 imps), b: pos .4 vs .5, .2 -> 0.5 (3 imps), c: one class, skipped.
    assert metrics.gauc(y, s, g) == pytest.approx((2 * 1.0 + 3 * 0.5) / 5)


def test_precision_at_n_per_request():
    y = [1, 0, 0, 0, 1, 0, 0, 0, 0]
    s = [.9, .8, .1, .7, .6, .5, .9, .8, .7]
    r = ["r1", "r1", "r1", "r2", "r2", "r2", "r3", "r3", "r3"]
    # r1 top-2 = (1, 0) -> .5; r2 top-2 = (0, 1) -> .5; r3 has no positive: skipped.
    assert metrics.precision_at_n(y, s, r, 2) == pytest.approx(0.5)
    assert metrics.precision_at_n([1], [.5], ["x"], 2) is None  # fewer than N candidates


def test_logloss_and_buckets():
    assert metrics.logloss([1, 0], [0.5, 0.5]) == pytest.approx(np.log(2))
    out = metrics.auc_by_bucket([1, 0, 1, 0, 1], [.9, .1, .2, .8, .5], [0, 0, 3, 3, 200])
    assert out["0"] == {"examples": 2, "positives": 1, "auc": 1.0}
    assert out["1-4"]["auc"] == 0.0 and out["5-19"]["examples"] == 0
    assert out["100+"]["auc"] is None
