"""The search pre-ranking scenario of the synthetic world (GRACE §2.1, §3.1.1) and the
validator's checks of a search log."""

import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ppm.data import canonical, synthetic, validate
from ppm.data.synthetic import search
from ppm.data.synthetic.world import DAY

SEED = 3


@pytest.fixture(scope="module")
def search_world(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("search_world"))
    meta = synthetic.generate(path, "tiny", SEED, scenario="search", with_queries=False)
    events = pq.read_table(f"{path}/events.parquet").to_pandas()
    return path, meta, events


def test_the_search_world_validates_and_says_what_it_is(search_world):
    path, meta, events = search_world
    report = validate.validate(path)
    assert report.ok, str(report)
    scale = search.SEARCH_SCALES["tiny"]
    assert meta.extra["scenario"] == "search"
    assert meta.extra["candidates"] == scale.candidates
    start, end = meta.windows["train_large"]
    assert (end - start) // DAY == 15  # GRACE §3.1.1: 15 training days, then the test day
    assert (meta.windows["test"][1] - meta.windows["test"][0]) // DAY == 1
    assert meta.counts["exposure_displayed"] == (events["exposure"] == "displayed").sum()


def test_each_request_has_m_ranked_candidates_the_top_ten_displayed(search_world):
    _, _, events = search_world
    m = search.SEARCH_SCALES["tiny"].candidates
    for _, req in events.groupby("request_id"):
        recalled = req[req["exposure"] != "sampled"]
        assert len(recalled) == m
        assert sorted(recalled["rank"].astype(int)) == list(range(m))
        shown = req[req["exposure"] == "displayed"]
        assert sorted(shown["rank"].astype(int)) == list(range(search.DISPLAYED))
        assert (shown["position"] == shown["rank"]).all()
        by_rank = recalled.sort_values("rank")["ranker_score"].to_numpy()
        assert (np.diff(by_rank) <= 0).all()  # rank is the ranking model's order
        sampled = req[req["exposure"] == "sampled"]
        assert len(sampled) and sampled["rank"].isna().all()
        assert sampled["ranker_score"].isna().all()
        assert not set(sampled["item_id"]) & set(recalled["item_id"])
        assert req["query"].nunique() == 1 and req["query"].iloc[0]


def test_only_displayed_candidates_have_labels_drawn_from_their_probabilities(search_world):
    _, _, events = search_world
    hidden = events[events["exposure"] != "displayed"]
    assert (hidden[["click", "order", "cart", "true_p_click"]] == 0).all().all()
    shown = events[events["exposure"] == "displayed"]
    n = len(shown)
    ctr, expected = shown["click"].mean(), shown["true_p_click"].mean()
    assert abs(ctr - expected) < 4 * np.sqrt(expected * (1 - expected) / n)
    assert 0.05 < ctr < 0.3
    # Recall favours the query: displayed and recalled candidates are more relevant to it than
    # the random negatives.
    rel = events.groupby("exposure")["true_query_relevance"].mean()
    assert rel["displayed"] > rel["recalled"] > rel["sampled"]


def _corrupt(search_world, tmp_path, change):
    path = str(tmp_path / "world")
    shutil.copytree(search_world[0], path)
    events = pq.read_table(f"{path}/events.parquet")
    df = events.to_pandas()
    change(df)
    pq.write_table(pa.Table.from_pandas(df, schema=events.schema, preserve_index=False),
                   f"{path}/events.parquet")
    return validate.validate(path)


def _first(df, exposure):
    return df.index[df["exposure"] == exposure][0]


@pytest.mark.parametrize("change, column, message", [
    (lambda df: df.__setitem__("click", np.where(df.index == _first(df, "recalled"), 1,
                                                 df["click"])),
     "click", "not displayed"),
    (lambda df: df.loc.__setitem__((_first(df, "sampled"), "rank"), 3), "rank",
     "sampled negatives with a rank"),
    (lambda df: df.loc.__setitem__((_first(df, "displayed"), "ranker_score"), None),
     "ranker_score", "without a ranker_score"),
    (lambda df: df.loc.__setitem__((df.index[(df["rank"] == 5)][0], "ranker_score"), 0.9999),
     "ranker_score", "higher ranker score than a better-ranked row"),
    (lambda df: df.loc.__setitem__((0, "exposure"), "shown"), "exposure", "values outside"),
])
def test_the_validator_names_a_broken_search_log(search_world, tmp_path, change, column,
                                                 message):
    report = _corrupt(search_world, tmp_path, change)
    errors = [e for e in report.errors if e.column == column and message in e.message]
    assert errors, str(report)
    assert errors[0].file == canonical.EVENTS_FILE


def test_the_feed_world_is_unchanged_by_the_scenario(tmp_path):
    feed = synthetic.generate(str(tmp_path), "tiny", SEED, with_queries=False)
    assert "scenario" not in feed.extra
    names = pq.read_schema(str(tmp_path / "events.parquet")).names
    assert "exposure" not in names and "ranker_score" not in names
    with pytest.raises(ValueError, match="Unknown search scale 'small'"):
        synthetic.generate(str(tmp_path / "x"), "small", 0, scenario="search")
