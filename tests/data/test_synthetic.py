"""The synthetic world: deterministic, valid, and with the papers' phenomena measurable."""

import io
import json
import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from ppm.data import synthetic, validate
from ppm.data.synthetic import words


@pytest.fixture(scope="module")
def world(tiny_world):
    items = pd.read_parquet(os.path.join(tiny_world, "items.parquet"))
    events = pd.read_parquet(os.path.join(tiny_world, "events.parquet"))
    queries = pd.read_parquet(os.path.join(tiny_world, "queries.parquet"))
    with open(os.path.join(tiny_world, "dataset.json")) as f:
        meta = json.load(f)
    return items, events, queries, meta


def _window(events, meta, name):
    start, end = meta["windows"][name]
    return events[(events.ts >= start) & (events.ts < end)]


def test_deterministic_for_a_seed(tmp_path, tiny_world):
    from tests.conftest import TINY_SEED

    synthetic.generate(str(tmp_path / "same"), "tiny", TINY_SEED)
    synthetic.generate(str(tmp_path / "other"), "tiny", TINY_SEED + 1)
    for name in ("items.parquet", "events.parquet", "queries.parquet"):
        a = pd.read_parquet(os.path.join(tiny_world, name))
        pd.testing.assert_frame_equal(a, pd.read_parquet(tmp_path / "same" / name))
    other = pd.read_parquet(tmp_path / "other" / "events.parquet")
    assert not other["item_id"].equals(pd.read_parquet(
        os.path.join(tiny_world, "events.parquet"))["item_id"])


def test_valid_canonical_dataset(tiny_world):
    report = validate.validate(tiny_world)
    assert report.ok, str(report)
    assert not report.warnings, str(report)


def test_unknown_scale_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="Unknown feed scale 'huge'"):
        synthetic.generate(str(tmp_path), "huge", 0)


def test_labels_follow_true_probabilities(world):
    _, events, _, meta = world
    assert (events.order <= events.click).all() and (events.cart <= events.click).all()
    assert 0.03 < events.click.mean() < 0.2
    # Calibrated: mean true probability matches the empirical rate.
    for label in ("click", "order", "cart"):
        p = events[f"true_p_{label}"]
        assert abs(p.mean() - events[label].mean()) < 4 * np.sqrt(p.mean() / len(events))
    # The oracle is informative (the quality limit later models are compared with).
    assert roc_auc_score(events.click, events.true_p_click) > 0.7
    # Order and add-to-cart are correlated with click but are different tasks.
    corr = np.corrcoef(events.true_p_order, events.true_p_cart)[0, 1]
    assert 0.2 < corr < 0.95


def test_position_bias(world):
    _, events, _, _ = world
    # In exploration traffic items are shown in random order, so any difference in click
    # probability between the first and the last slot is the position effect itself.
    explore = events[events.true_explore == 1]
    assert 0.05 < len(explore) / len(events) < 0.2
    p = explore.groupby("position").true_p_click.mean()
    assert p.iloc[0] > 1.5 * p.iloc[-1], p
    # Elsewhere the ranker also puts better items first.
    ranked = events[events.true_explore == 0].groupby("position").true_p_click.mean()
    assert ranked.iloc[0] / ranked.iloc[-1] > p.iloc[0] / p.iloc[-1]
    # Each request shows distinct items at distinct positions, ranked 0..n-1.
    per_req = events.groupby("request_id")
    assert (per_req.item_id.nunique() == per_req.size()).all()
    assert (per_req.position.nunique() == per_req.size()).all()
    assert (per_req["rank"].max() == per_req.size() - 1).all()


def test_long_tail_and_cold_items_in_test(world):
    items, events, _, meta = world
    counts = events.item_id.value_counts()
    top = counts.iloc[: max(1, len(counts) // 10)].sum() / counts.sum()
    assert top > 0.3, f"top 10% of items get {top:.0%} of impressions"
    train_freq = _window(events, meta, "train_large").item_id.value_counts()
    test = _window(events, meta, "test")
    freq = test.item_id.map(train_freq).fillna(0)
    assert (freq == 0).mean() > 0.01 and (freq < 5).mean() > 0.05
    # Items keep arriving: some are created inside the training and test windows.
    assert (items.created_at >= meta["windows"]["train_large"][0]).sum() > 0
    # No item is shown before it exists.
    created = events.item_id.map(items.set_index("item_id").created_at)
    assert (created <= events.ts).all()


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_titles_and_pictures_carry_the_semantics(world):
    items, _, _, _ = world
    assert (items.title == "").any() and items.image.isna().any()
    titled = items[items.title != ""]
    assert all(e in t for e, t in zip(titled.entity, titled.title))
    colours = {w for w, _ in words.COLOURS} | set(words.NEUTRAL_COLOURS)
    assert all(any(f" {c} " in f" {t} " for c in colours) for t in titled.title)
    # An image classifier predicts the category from pixels far above chance.
    with_image = items[items.image.notna()]
    x = np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB").resize((16, 16)),
                             np.float32).ravel() / 255 for b in with_image.image])
    assert x.shape[1] == 16 * 16 * 3
    y = with_image.category_id.to_numpy()
    n = len(y) * 2 // 3
    clf = LogisticRegression(max_iter=300).fit(x[:n], y[:n])
    acc = clf.score(x[n:], y[n:])
    chance = pd.Series(y[n:]).value_counts(normalize=True).max()
    assert acc > chance + 0.3, (acc, chance)


def test_search_logs(world):
    items, events, queries, meta = world
    by_id = items.set_index("item_id")
    text = queries[queries.kind == "text"]
    image = queries[queries.kind == "image"]
    assert len(text) and len(image)
    # Text queries use the item's words or a synonym of its category noun.
    nouns = dict(words.CATEGORY_NOUNS)
    for q, item in zip(text["query"], text.item_id):
        entity = by_id.entity[item]
        assert entity in q or any(s in q for s in nouns.get(entity, ())) or any(
            w in q.split() for w in by_id.title[item].lower().split()), (q, item)
    # Image queries are perturbed photos of the item: same size, different pixels.
    for qb, item in zip(image.query_image.head(10), image.item_id.head(10)):
        photo = np.asarray(Image.open(io.BytesIO(qb)))
        assert photo.shape == (64, 64, 3)
        if by_id.image[item] is not None:
            original = np.asarray(Image.open(io.BytesIO(by_id.image[item])))
            assert np.abs(photo.astype(int) - original).mean() > 1
    # Hard negatives: another item of the same category.
    neg = queries.hard_negative_item_id.dropna()
    assert len(neg) > 0.9 * len(queries)
    pos = queries.loc[neg.index, "item_id"]
    assert (neg.to_numpy() != pos.to_numpy()).all()
    assert (by_id.category_id[neg].to_numpy() == by_id.category_id[pos].to_numpy()).all()
    # Image queries come from purchases before the test window.
    bought = events[(events.order == 1) & (events.ts < meta["windows"]["test"][0])]
    assert set(image.item_id) <= set(bought.item_id)
