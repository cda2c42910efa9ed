"""benchmarks/taobao.py's arithmetic on made-up scores: the frequency groups of Fig. 6(b), the
relative improvements, and the Table 3 rows."""

import numpy as np

from benchmarks import taobao
from ppm import evaluate, metrics


def test_frequency_groups_split_the_items_not_the_examples():
    # 16 items with frequencies 0..15; item k appears k + 1 times in the test window.
    items = np.repeat([f"i{k:02d}" for k in range(16)], np.arange(1, 17))
    freq = np.repeat(np.arange(16), np.arange(1, 17))
    groups = taobao.frequency_groups(items, freq, groups=8)
    for k in range(16):  # two items per group, rarest first
        assert set(groups[items == f"i{k:02d}"]) == {k // 2}
    # Shuffled examples give the same groups.
    order = np.random.default_rng(0).permutation(len(items))
    np.testing.assert_array_equal(taobao.frequency_groups(items[order], freq[order], 8),
                                  groups[order])


def _scores(tmp_path, name, y, p, items, freq):
    n = len(y)
    scored = {"p_click": p, "label_click": y, "request_id": np.arange(n).astype(str),
              "user_id": (np.arange(n) % 7).astype(str), "item_id": items, "item_freq": freq,
              "position": np.zeros(n, int)}
    folder = tmp_path / name
    folder.mkdir()
    return evaluate.write_scores(str(folder), "test", scored, ["click"])


def _row(label, seed, path, y, p):
    m = {"auc": metrics.auc(y, p), "gauc": metrics.auc(y, p)}
    return {"label": label, "seed": seed, "metrics": {"tasks": {"click": m}, "scores": path}}


def test_fig6b_and_table3_from_scores(tmp_path):
    rng = np.random.default_rng(1)
    n = 4000
    items = np.array([f"i{k:03d}" for k in rng.integers(0, 400, n)])
    freq = np.array([int(i[1:]) for i in items])  # frequency = the item's number
    y = (rng.random(n) < 0.3).astype(float)
    noise = rng.normal(size=n)
    p_id = 1 / (1 + np.exp(-(y + 2 * noise)))
    # The multimodal model is better on the rare half of the items only.
    p_mm = np.where(freq < 200, 1 / (1 + np.exp(-(2 * y + 2 * noise))), p_id)
    a = _scores(tmp_path, "id", y, p_id, items, freq)
    b = _scores(tmp_path, "mm", y, p_mm, items, freq)
    results = {"seeds": [0], "rows": [_row(taobao.REFERENCE, 0, a, y, p_id),
                                      _row("SimTier + MAKE", 0, b, y, p_mm)]}
    groups = taobao.fig6b(results)
    assert [g["group"] for g in groups] == list(range(1, 9))
    assert sum(g["examples"] for g in groups) == n
    rare, common = groups[:4], groups[4:]
    assert all(g["auc"] > 0.01 and g["logloss"] > 0 for g in rare)
    assert all(abs(g["auc"]) < 1e-12 and abs(g["logloss"]) < 1e-12 for g in common)
    g0 = groups[0]
    m = taobao.frequency_groups(items, freq) == 0
    expected = (metrics.auc(y[m], p_mm[m]) - metrics.auc(y[m], p_id[m])) / metrics.auc(
        y[m], p_id[m])
    assert abs(g0["auc"] - expected) < 1e-12 and not g0["too_few_clicks"]
    table = taobao.table3(results)
    assert "| SimTier + MAKE |" in table and f"| {taobao.REFERENCE} |" in table
    d = metrics.auc(y, p_mm) - metrics.auc(y, p_id)
    assert f"{d:+.4f} ±" in table
