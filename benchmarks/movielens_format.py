"""Writes a synthetic world in MovieLens-100K's published format, so the MovieLens adapter
and everything after it can be measured on data large enough to train, with no MovieLens
file in the repository.

    .venv/bin/python benchmarks/movielens_format.py --dataset runs/demo/dataset --out DIR

Reads a canonical synthetic dataset (``python -m ppm.data.synthetic``) and writes
``DIR/ml-100k/{u.data, u.item, u.user}`` and ``DIR/posters/<movie_id>.jpg``, which
``python -m ppm.data.public.movielens --src DIR/ml-100k --posters DIR/posters`` converts back.
What a MovieLens export keeps of the world, and only that:

- a rating per click (MovieLens logs ratings, not impressions): 5 when the click was ordered,
  4 when carted, else 1-3 (uniform); the adapter makes every rating a click and a rating >= 4
  an order, and samples the negatives itself;
- a movie per item, ids 1..N in item order: the item's title with a year, the genre flag of
  its category (19 genres: categories share them modulo 19), a release date whose decade
  stands for the brand (10 decades: brands share them modulo 10), the item's picture as the
  poster (JPEG); shops and prices are lost;
- a user per user: an age inside the world's age group, the gender, an occupation from the
  city tier; the user's power is lost.

The ids, the categories and brands folded into 19 genres and 10 decades, and the lost
impressions make it harder than the synthetic world itself, as a public dataset is.
"""

from __future__ import annotations

import argparse
import io
import os
import sys

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ppm  # noqa: E402,F401

GENRES = 19
DECADES = tuple(range(1920, 2020, 10))
AGES = {"18-24": (18, 24), "25-34": (25, 34), "35-44": (35, 44), "45-54": (45, 54),
        "55+": (55, 70)}
OCCUPATIONS = {"1": "executive", "2": "engineer", "3": "technician", "4": "student"}
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _index(ids: pd.Series) -> pd.Series:
    """Position of each id among the sorted distinct ids (category -> genre, brand -> decade)."""
    codes = {v: k for k, v in enumerate(sorted(ids.dropna().unique()))}
    return ids.map(codes)


def _jpeg(data: bytes | None) -> bytes | None:
    if not data:
        return None
    from PIL import Image

    out = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").save(out, format="JPEG", quality=90)
    return out.getvalue()


def write(dataset: str, out: str, seed: int = 0) -> dict:
    """Writes ``out/ml-100k`` and ``out/posters``; returns the counts written."""
    rng = np.random.default_rng(seed)
    items = pd.read_parquet(os.path.join(dataset, "items.parquet"))
    events = pd.read_parquet(os.path.join(dataset, "events.parquet"))
    src, posters = os.path.join(out, "ml-100k"), os.path.join(out, "posters")
    os.makedirs(src, exist_ok=True)
    os.makedirs(posters, exist_ok=True)
    movie = pd.Series(np.arange(1, len(items) + 1), index=items["item_id"])
    genre = _index(items["category_id"]) % GENRES
    decade = _index(items["brand_id"]) % len(DECADES)
    with open(os.path.join(src, "u.item"), "wb") as f:
        for k, row in enumerate(items.itertuples(index=False)):
            year = DECADES[int(decade.iloc[k])] + int(rng.integers(0, 10))
            flags = ["0"] * GENRES
            flags[int(genre.iloc[k])] = "1"
            title = (row.title or "").replace("|", " ").strip()
            date = f"01-{MONTHS[int(rng.integers(0, 12))]}-{year}"
            f.write(f"{k + 1}|{title} ({year})|{date}||http://example.invalid/{k + 1}|"
                    f"{'|'.join(flags)}\n".encode("latin-1", "replace"))
            image = _jpeg(row.image)
            if image is not None:
                with open(os.path.join(posters, f"{k + 1}.jpg"), "wb") as p:
                    p.write(image)
    clicks = events[events["click"] == 1].sort_values("ts", kind="stable")
    rating = np.where(clicks["order"] == 1, 5, np.where(clicks["cart"] == 1, 4,
                                                         rng.integers(1, 4, len(clicks))))
    users = {u: k + 1 for k, u in enumerate(sorted(events["user_id"].unique()))}
    with open(os.path.join(src, "u.data"), "w") as f:
        for u, i, r, t in zip(clicks["user_id"], clicks["item_id"], rating, clicks["ts"]):
            f.write(f"{users[u]}\t{movie[i]}\t{r}\t{int(t)}\n")
    profile = events.drop_duplicates("user_id").set_index("user_id")
    with open(os.path.join(src, "u.user"), "w") as f:
        for u, k in users.items():
            p = profile.loc[u]
            low, high = AGES.get(p["user_age"], (25, 34))
            f.write(f"{k}|{int(rng.integers(low, high + 1))}|{p['user_gender']}|"
                    f"{OCCUPATIONS.get(str(p['user_city_tier']), 'other')}|00000\n")
    return {"movies": len(items), "ratings": len(clicks), "users": len(users),
            "posters": len(os.listdir(posters))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, help="A canonical synthetic dataset.")
    parser.add_argument("--out", required=True, help="Writes OUT/ml-100k and OUT/posters.")
    parser.add_argument("--seed", type=int, default=0, help="Ratings 1-3, ages, years.")
    args = parser.parse_args(argv)
    print(write(args.dataset, args.out, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
