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


def test_weighted_auc_equals_auc_of_the_repeated_examples():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    s = rng.integers(0, 20, 300) / 20  # ties
    counts = rng.poisson(1.0, size=(4, 300))
    got = metrics.weighted_auc(y, s, counts)
    for row, c in zip(got, counts):
        assert row == pytest.approx(metrics.auc(np.repeat(y, c), np.repeat(s, c)))
    assert metrics.weighted_auc(y, s, np.ones(300))[0] == pytest.approx(metrics.auc(y, s))
    assert np.isnan(metrics.weighted_auc([1, 1, 0], [.3, .2, .1], [[1, 1, 0]])[0])


def test_bootstrap_weights_draw_users_not_examples():
    users = np.array(["a", "a", "b", "c", "c", "c"])
    w = metrics.Bootstrap(users, replicates=50, seed=3).weights()
    assert w.shape == (50, 6)
    # A user's examples are drawn together: equal weights within a user, in every replicate.
    assert (w[:, 0] == w[:, 1]).all() and (w[:, 3] == w[:, 5]).all()
    assert 0.7 < w.mean() < 1.3 and w.std() > 0.5  # Poisson(1)


def test_bootstrap_error_shrinks_with_the_sample_and_grows_with_user_correlation():
    rng = np.random.default_rng(2)

    def se(n, per_user):
        y = rng.integers(0, 2, n)
        s = y * 0.5 + rng.normal(size=n)
        users = np.arange(n) // per_user
        # Correlated users: every example of a user repeats the user's first label and score.
        y, s = y[users * per_user], s[users * per_user]
        return metrics.Bootstrap(users, 200, seed=0).auc_se(y, s)

    small, large = se(400, 1), se(6400, 1)
    assert 2.5 < small / large < 6  # ~ sqrt(16) = 4
    assert se(6400, 16) > 2.5 * large  # 16 copies per user: the error of 400 users


def test_task_metrics_report_bootstrap_errors_per_bucket():
    rng = np.random.default_rng(4)
    n = 2000
    y = rng.integers(0, 2, n)
    s = y + rng.normal(size=n)
    users = rng.integers(0, 300, n)
    freq = rng.choice([0, 3, 50], n)
    b = metrics.Bootstrap(users, 100, seed=0)
    m = metrics.task_metrics(y, s, users, np.arange(n) // 5, freq, bootstrap=b)
    assert 0.005 < m["auc_se"] < 0.03
    buckets = m["auc_by_frequency"]
    assert buckets["0"]["auc_se"] > m["auc_se"]  # a third of the examples
    assert buckets["5-19"]["examples"] == 0 and buckets["5-19"]["auc_se"] is None
    assert "auc_se" not in metrics.task_metrics(y, s, users, users, freq)


def test_paired_difference_is_tighter_than_the_unpaired_errors():
    rng = np.random.default_rng(3)
    n = 3000
    users = rng.integers(0, 300, n)
    y = (rng.random(n) < 0.3).astype(int)
    shared = y * 0.8 + rng.normal(size=n)  # what both models see
    a, b = shared, shared + 0.3 * y + 0.2 * rng.normal(size=n)
    boot = metrics.Bootstrap(users, seed=0)
    diff, se = metrics.paired_auc_difference(y, a, b, boot)
    assert np.isclose(diff, metrics.auc(y, b) - metrics.auc(y, a))
    assert diff > 5 * se > 0
    # pairing cancels the shared difficulty: the paired error is below either model's own
    assert se < min(boot.auc_se(y, a), boot.auc_se(y, b))
    assert metrics.paired_auc_difference(y, a, a, boot) == (0.0, 0.0)
    assert metrics.paired_auc_difference(y, a, b, boot, mask=y == 1) is None
