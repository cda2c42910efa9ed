"""benchmarks/movielens_format.py: a synthetic world in MovieLens-100K's format, read back by
the MovieLens adapter."""

import os

import pandas as pd

from benchmarks import movielens_format
from ppm.data.public import movielens


def test_world_round_trips_through_the_movielens_adapter(tiny_world, tmp_path):
    counts = movielens_format.write(tiny_world, str(tmp_path / "ml"))
    items = pd.read_parquet(os.path.join(tiny_world, "items.parquet"))
    events = pd.read_parquet(os.path.join(tiny_world, "events.parquet"))
    clicks = events[events["click"] == 1]
    assert counts["movies"] == len(items) and counts["ratings"] == len(clicks)
    assert counts["posters"] == int(items["image"].notna().sum())
    ratings = pd.read_csv(tmp_path / "ml" / "ml-100k" / "u.data", sep="\t",
                          names=["user", "movie", "rating", "ts"])
    # ordered or carted clicks are the ratings >= 4 (the adapter's orders), in time order
    assert (ratings["rating"] >= 4).sum() == int(((clicks["order"] == 1) |
                                                  (clicks["cart"] == 1)).sum())
    assert ratings["ts"].is_monotonic_increasing

    meta = movielens.convert(str(tmp_path / "ml" / "ml-100k"), str(tmp_path / "dataset"),
                             posters=str(tmp_path / "ml" / "posters"))
    assert meta.counts["items"] == len(items)
    back = pd.read_parquet(tmp_path / "dataset" / "items.parquet")
    assert back["image"].notna().sum() == counts["posters"]
    # a movie's genre and decade are its category's and brand's: items of one category share
    # a genre
    merged = back.assign(item=back["item_id"].astype(int) - 1)
    merged["category"] = items["category_id"].to_numpy()[merged["item"]]
    assert (merged.groupby("category")["category_id"].nunique() == 1).all()
