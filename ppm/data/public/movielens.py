"""MovieLens 100K and 1M (GroupLens) -> the canonical dataset.

    python -m ppm.data.public.movielens --src DIR --out DIR [--posters DIR] [--negatives 4]

``--src`` is the unpacked archive: ``ml-100k/`` (``u.data``, ``u.item``, ``u.user``) or
``ml-1m/`` (``ratings.dat``, ``movies.dat``, ``users.dat``); the variant is recognised by its
files. ``--posters DIR`` holds ``<movie_id>.jpg``; a movie without one has no image (counted).

Formats read (as published): 100K ``u.data`` tab-separated ``user id, item id, rating,
timestamp``; ``u.item`` ``|``-separated Latin-1 ``movie id | title (year) | release date |
video release date | IMDb URL | 19 genre flags``; ``u.user`` ``user id | age | gender |
occupation | zip``. 1M ``ratings.dat`` ``UserID::MovieID::Rating::Timestamp``; ``movies.dat``
``MovieID::Title::Genres`` (Latin-1, genres ``|``-separated); ``users.dat``
``UserID::Gender::Age::Occupation::Zip-code`` (age and occupation codes of the 1M README).

Mapping (MovieLens logs ratings, not impressions):

- items: ``item_id`` the movie id; ``title`` the published title with its year;
  ``category_id`` and ``entity`` the first genre (``unknown`` when none); ``brand_id`` the
  release decade (``1990s``, from the title's year, else 100K's release date; empty when
  neither); ``shop_id`` empty (a film has no seller); ``image`` the poster or null;
  ``created_at`` the start (00:00 UTC) of the day of the movie's first rating (when MovieLens
  users could first see it; release dates are the film's, not the catalogue's). The day, not
  the second: a request starts at its user's first rating of the day, so a movie first rated
  later that day is shown in it before that rating; no event precedes ``created_at``. A movie
  that nobody rated gets the first day of the data. A rated movie missing from the movie file
  keeps its id with an empty title (counted).
- events: every rating is a click, a rating >= 4 is also an ``order``; ``cart`` is absent (0,
  and ``dataset.json`` ``tasks`` is ``[click, order]``). Requests are user-days with sampled
  negatives (:mod:`ppm.data.public.common`). MovieLens displayed nothing in a known order:
  ``position`` is 0 (the serving default) and ``rank`` null for every event, and
  ``dataset.json`` says ``positions: "none"``.
- users: ``user_gender``, ``user_age`` (1M's age groups; 100K ages mapped to them),
  ``user_occupation`` (names). Zip codes are not used.
- windows by time quantiles of the ratings (:func:`~ppm.data.public.common.quantile_windows`);
  ML-100K spans Sep 1997 - Apr 1998, ML-1M mostly 2000 (with a thin tail to 2003: its test
  window is long and sparse).
- no ``queries.parquet``: MovieLens has no search logs, and titles are not queries.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys

import numpy as np
import pandas as pd

from ppm.data import canonical
from ppm.data.public import common

logger = logging.getLogger(__name__)

GENRES_100K = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
               "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
               "Romance", "Sci-Fi", "Thriller", "War", "Western")
AGE_GROUPS = {1: "under 18", 18: "18-24", 25: "25-34", 35: "35-44", 45: "45-49", 50: "50-55",
              56: "56+"}
OCCUPATIONS_1M = ("other", "academic/educator", "artist", "clerical/admin", "college/grad student",
                  "customer service", "doctor/health care", "executive/managerial", "farmer",
                  "homemaker", "K-12 student", "lawyer", "programmer", "retired",
                  "sales/marketing", "scientist", "self-employed", "technician/engineer",
                  "tradesman/craftsman", "unemployed", "writer")
LICENCE = ("MovieLens data (GroupLens Research, University of Minnesota): research use; it may "
           "not be redistributed without permission (see the dataset's README). Posters belong "
           "to their rights holders. Nothing converted here may be committed.")
_YEAR = re.compile(r"\((\d{4})\)\s*$")


def age_group(age: int) -> str:
    """1M's age group of an age in years (100K gives ages)."""
    return AGE_GROUPS[max(k for k in AGE_GROUPS if age >= k or k == 1)]


def decade(title: str, release_date: str = "") -> str:
    m = _YEAR.search(title)
    year = m.group(1) if m else (release_date[-4:] if re.fullmatch(r".*\d{4}", release_date)
                                 else "")
    return f"{year[:3]}0s" if year else ""


def _int(value: str, what: str, problems, path, line) -> int | None:
    try:
        return int(value)
    except ValueError:
        problems.add(f"{os.path.basename(path)}: malformed line skipped", 1,
                     f"{what} {value!r} in {line!r}")
        return None


def _ratings(path, sep, problems) -> pd.DataFrame:
    rows = common.split_lines(path, common.read_text(path, "latin-1"), sep, 4, problems)
    out = []
    for r in rows:
        vals = [_int(v.strip(), "number", problems, path, sep.join(r)) for v in r]
        if None in vals:
            continue
        if not 1 <= vals[2] <= 5:
            problems.add(f"{os.path.basename(path)}: malformed line skipped", 1,
                         f"rating {vals[2]} outside 1-5")
            continue
        out.append(vals)
    df = pd.DataFrame(out, columns=["user", "movie", "rating", "ts"])
    return df.assign(user_id=df["user"].astype(str), item_id=df["movie"].astype(str))


def read_100k(src: str, problems: common.Problems):
    what = "MovieLens 100K (u.data, u.item, u.user) or 1M (ratings.dat, movies.dat, users.dat)"
    ratings = _ratings(common.require(src, "u.data", what), "\t", problems)
    path = common.require(src, "u.item", what)
    movies = []
    for r in common.split_lines(path, common.read_text(path, "latin-1"), "|", 24, problems):
        flags = r[5:]
        if not all(f in ("0", "1") for f in flags):
            problems.add("u.item: malformed line skipped", 1, "|".join(r)[:80])
            continue
        genres = [g for g, f in zip(GENRES_100K, flags) if f == "1"]
        movies.append({"item_id": r[0].strip(), "title": r[1], "genres": genres,
                       "brand_id": decade(r[1], r[2])})
    path = common.require(src, "u.user", what)
    users = {}
    for r in common.split_lines(path, common.read_text(path, "latin-1"), "|", 5, problems):
        age = _int(r[1], "age", problems, path, "|".join(r))
        if age is None:
            continue
        users[r[0].strip()] = {"user_gender": r[2], "user_age": age_group(age),
                               "user_occupation": r[3]}
    return ratings, movies, users


def read_1m(src: str, problems: common.Problems):
    what = "MovieLens 1M (ratings.dat, movies.dat, users.dat)"
    ratings = _ratings(common.require(src, "ratings.dat", what), "::", problems)
    path = common.require(src, "movies.dat", what)
    movies = []
    for r in common.split_lines(path, common.read_text(path, "latin-1"), "::", 3, problems):
        genres = [g for g in r[2].split("|") if g and g != "(no genres listed)"]
        movies.append({"item_id": r[0].strip(), "title": r[1], "genres": genres,
                       "brand_id": decade(r[1])})
    path = common.require(src, "users.dat", what)
    users = {}
    for r in common.split_lines(path, common.read_text(path, "latin-1"), "::", 5, problems):
        age = _int(r[2], "age", problems, path, "::".join(r))
        occ = _int(r[3], "occupation", problems, path, "::".join(r))
        if age is None or occ is None:
            continue
        users[r[0].strip()] = {
            "user_gender": r[1], "user_age": AGE_GROUPS.get(age, str(age)),
            "user_occupation": OCCUPATIONS_1M[occ] if 0 <= occ < len(OCCUPATIONS_1M)
            else str(occ)}
    return ratings, movies, users


def convert(src: str, out: str, posters: str | None = None, negatives_per_positive: int = 4,
            seed: int = 0) -> canonical.DatasetMeta:
    """Converts an unpacked MovieLens 100K or 1M folder; returns the written dataset.json.

    Raises:
      AdapterError: not a MovieLens folder, a missing file, a wrong separator, too little time.
    """
    problems = common.Problems()
    if os.path.exists(os.path.join(src, "u.data")):
        variant, (ratings, movies, users) = "100k", read_100k(src, problems)
    elif os.path.exists(os.path.join(src, "ratings.dat")):
        variant, (ratings, movies, users) = "1m", read_1m(src, problems)
    else:
        raise common.AdapterError(
            f"{src} holds neither u.data (MovieLens 100K) nor ratings.dat (MovieLens 1M)")
    if posters is not None and not os.path.isdir(posters):
        raise common.AdapterError(f"--posters {posters} is not a folder")
    items = pd.DataFrame(movies).drop_duplicates("item_id", keep="first")
    if len(items) < len(movies):
        problems.add("duplicate movie ids (first kept)", len(movies) - len(items))
    missing = sorted(set(ratings["item_id"]) - set(items["item_id"]))
    if missing:
        problems.add("rated movies missing from the movie file (kept, empty title)",
                     len(missing), missing[0])
        items = pd.concat([items, pd.DataFrame({"item_id": missing, "title": "",
                                                "genres": [[]] * len(missing),
                                                "brand_id": ""})], ignore_index=True)
    first = ratings.groupby("item_id")["ts"].min()
    unrated = ~items["item_id"].isin(first.index)
    if unrated.any():
        problems.add("movies without any rating (kept; shown from the first day)",
                     int(unrated.sum()), items.loc[unrated, "item_id"].iloc[0])
    items["created_at"] = common.day_start(
        items["item_id"].map(first).fillna(ratings["ts"].min()).astype(np.int64))
    items["category_id"] = [g[0] if g else "unknown" for g in items["genres"]]
    items["entity"] = items["category_id"]
    items["shop_id"] = ""
    items["image"] = _posters(items["item_id"], posters, problems)
    unknown_users = sorted(set(ratings["user_id"]) - set(users))
    if unknown_users:
        problems.add("rating users missing from the user file (empty profile)",
                     len(unknown_users), unknown_users[0])
    profile = pd.DataFrame.from_dict(users, orient="index")
    for col in ("user_gender", "user_age", "user_occupation"):
        ratings[col] = ratings["user_id"].map(profile[col] if col in profile else {}).fillna("")
    interactions = ratings.assign(click=1, order=(ratings["rating"] >= 4).astype(int), cart=0)
    events = common.impressions(
        interactions[["user_id", "ts", "item_id", "click", "order", "cart", "user_gender",
                      "user_age", "user_occupation"]],
        items.set_index("item_id")["created_at"], negatives_per_positive, seed, problems)
    windows = common.quantile_windows(events["ts"].to_numpy())
    problems.log()
    meta = canonical.DatasetMeta(
        name=f"movielens-{variant}",
        source=f"ppm.data.public.movielens --src {src}" + (f" --posters {posters}"
                                                          if posters else ""),
        windows=windows, tasks=["click", "order"], counts=common.counts(items, events),
        licence=LICENCE, positions="none",
        extra={"variant": variant, "ratings": len(ratings),
               "negatives_per_positive": negatives_per_positive, "seed": seed,
               "posters": int(items["image"].notna().sum()), "problems": problems.to_dict(),
               "mapping": {"click": "every rating", "order": "rating >= 4", "cart": "absent",
                           "category_id": "first genre", "brand_id": "release decade",
                           "shop_id": "empty", "created_at": "day of the first rating",
                           "position": "0: nothing was displayed (positions: none)",
                           "rank": "null"}})
    common.write_dataset(out, items.drop(columns=["genres"]), events, meta)
    return meta


def _posters(ids: pd.Series, posters: str | None, problems: common.Problems) -> list:
    if posters is None:
        return [None] * len(ids)
    return common.read_images([os.path.join(posters, f"{i}.jpg") for i in ids], problems,
                              "movies without a poster (no image)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ppm.data.public.movielens", description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", required=True, help="Unpacked ml-100k/ or ml-1m/ folder.")
    parser.add_argument("--out", required=True, help="Output dataset folder.")
    parser.add_argument("--posters", default=None, help="Folder of <movie_id>.jpg posters.")
    parser.add_argument("--negatives", type=int, default=4,
                        help="Negatives drawn per rating (default 4).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the negative draws.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.negatives < 0:
        parser.error("--negatives must be >= 0")
    return common.run_cli(
        lambda: convert(args.src, args.out, args.posters, args.negatives, args.seed), args.out)


if __name__ == "__main__":
    sys.exit(main())
