"""What every public adapter must get right: no invented display positions, and catalogue times
that no event precedes (the data converted by our own adapters validates without spurious
warnings)."""

import os

import numpy as np
import pandas as pd
import pytest

from ppm.data import canonical, validate
from ppm.data.public import hm, mind, movielens
from tests.data.public import test_hm, test_mind, test_movielens
from tests.data.public.test_end_to_end import _write_random_100k


def _movielens(root):
    return movielens.convert(test_movielens.write_100k(root / "ml-100k"), str(root / "out"),
                             negatives_per_positive=2, seed=3)


def _movielens_random(root):  # several ratings per user-day: the request starts before some
    return movielens.convert(_write_random_100k(root / "ml-100k"), str(root / "out"))


def _hm(root):
    return hm.convert(test_hm.write_hm(root / "hm")[0], str(root / "out"),
                      negatives_per_positive=test_hm.NEG, seed=3)


def _mind(root):
    src = test_mind.write_split(root / "MINDsmall_train", test_mind.BEHAVIORS, test_mind.NEWS)
    return mind.convert(src, str(root / "out"))


def _mind_dev(root):
    src = test_mind.write_split(root / "MINDsmall_train", test_mind.BEHAVIORS, test_mind.NEWS)
    dev = test_mind.write_split(root / "MINDsmall_dev", test_mind.DEV_BEHAVIORS,
                                test_mind.DEV_NEWS)
    return mind.convert(src, str(root / "out"), dev)


ADAPTERS = {"movielens": _movielens, "movielens_random": _movielens_random, "hm": _hm,
            "mind": _mind, "mind_dev": _mind_dev}


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_no_position_where_none_was_displayed(tmp_path, name):
    """MovieLens and H&M have no display (requests are built from interactions), MIND's lists
    are shuffled: the index in them encodes the list's length, not a slot. Every event gets the
    serving default 0, and dataset.json says so."""
    meta = ADAPTERS[name](tmp_path)
    out = str(tmp_path / "out")
    events = pd.read_parquet(os.path.join(out, canonical.EVENTS_FILE))
    assert (events["position"] == 0).all()
    assert events["rank"].isna().all()  # no ranker ranked these candidates either
    assert meta.positions == "none" == canonical.read_meta(out).positions
    assert "position" in meta.extra["mapping"]
    report = validate.validate(out)
    assert report.ok, str(report)


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_no_event_before_its_items_created_at(tmp_path, name):
    ADAPTERS[name](tmp_path)
    out = str(tmp_path / "out")
    report = validate.validate(out)
    assert report.ok, str(report)
    assert not [w for w in report.warnings if "created_at" in w.message], str(report)
    items = pd.read_parquet(os.path.join(out, canonical.ITEMS_FILE)).set_index("item_id")
    events = pd.read_parquet(os.path.join(out, canonical.EVENTS_FILE))
    first = events.groupby("item_id")["ts"].min()
    assert (items.loc[first.index, "created_at"].to_numpy() <= first.to_numpy()).all()


def test_movielens_created_at_is_the_day_of_the_first_rating(tmp_path):
    """A user's request starts at their first rating of the day, so a movie first rated later
    that day is shown before that rating: created_at is the UTC day it was first rated."""
    _movielens(tmp_path)
    items = pd.read_parquet(os.path.join(tmp_path / "out", canonical.ITEMS_FILE)).set_index(
        "item_id")
    first = {}
    for _, m, _, d, s in test_movielens.RATINGS:
        first[m] = min(first.get(m, 1 << 62), test_movielens.T0 + d * test_movielens.DAY + s)
    for m, t in first.items():
        assert items.loc[str(m), "created_at"] == t - t % test_movielens.DAY
    assert items.loc["9", "created_at"] == test_movielens.T0  # never rated: the first day


def test_mind_history_keeps_its_order_without_positions(tmp_path):
    """The history's order (oldest first) was carried by position; it is carried by time now:
    one request per history click, one second apart, the most recent at ``history_ts``."""
    meta = _mind(tmp_path)
    events = pd.read_parquet(os.path.join(tmp_path / "out", canonical.EVENTS_FILE))
    hist = events[events["request_id"].str.startswith("hist-")]
    u3 = hist[hist["user_id"] == "U3"].sort_values("ts")
    assert list(u3["item_id"]) == ["N1", "N6"]
    assert list(u3["ts"]) == [test_mind.HISTORY_TS - 1, test_mind.HISTORY_TS]
    assert u3["request_id"].is_unique
    assert meta.extra["history_ts"] == test_mind.HISTORY_TS
    items = pd.read_parquet(os.path.join(tmp_path / "out", canonical.ITEMS_FILE)).set_index(
        "item_id")
    # N1 was clicked in U3's history before its first impression: created then.
    assert items.loc["N1", "created_at"] == test_mind.HISTORY_TS - 1


def test_validator_checks_positions_against_dataset_json(tmp_path):
    """``positions: none`` allows repeated positions within a request, and requires them all
    to be the serving default; ``displayed`` (the default) keeps one candidate per slot."""
    _movielens(tmp_path)
    out = str(tmp_path / "out")
    path = os.path.join(out, canonical.EVENTS_FILE)
    events = pd.read_parquet(path)
    events.loc[3, "position"] = 2
    events.to_parquet(path, index=False)
    report = validate.validate(out)
    assert not report.ok
    assert any(p.column == "position" and "positions" in p.message and 3 in p.rows
               for p in report.errors), str(report)
    meta = canonical.read_meta(out)
    meta.positions = "displayed"
    canonical.write_meta(out, meta)
    report = validate.validate(out)
    assert any(p.column == "position" and "repeat" in p.message for p in report.errors)
    meta.positions = "guessed"
    canonical.write_meta(out, meta)
    report = validate.validate(out)
    assert any(p.column == "positions" for p in report.errors), str(report)


def test_old_dataset_json_without_positions_reads_as_displayed(tmp_path):
    meta = canonical.DatasetMeta(name="d", source="s", windows={})
    d = {k: v for k, v in meta.__dict__.items() if k != "positions"}
    assert canonical.DatasetMeta.from_dict(d).positions == "displayed"
    assert np.isin(canonical.POSITIONS, ["displayed", "none"]).all()
