"""MovieLens 100K / 1M adapters: raw fixtures in the published formats, checked row by row."""

import os

import pyarrow.parquet as pq
import pytest

from ppm.data import canonical, validate
from ppm.data.public import common, movielens

DAY = 86400
T0 = 880_000_000 - 880_000_000 % DAY  # a UTC midnight in Nov 1997
GENRE_FLAGS = "|".join(["0"] * 19)


def _flags(*on):
    flags = ["0"] * 19
    for g in on:
        flags[movielens.GENRES_100K.index(g)] = "1"
    return "|".join(flags)


# (user, movie, rating, day, second of day): 5 users over 12 days, 8 movies.
RATINGS = [(u, m, r, d, s) for u, m, r, d, s in [
    (1, 1, 5, 0, 100), (1, 2, 3, 0, 200), (2, 1, 4, 1, 50), (2, 3, 2, 1, 60), (3, 2, 5, 2, 10),
    (3, 4, 1, 3, 10), (4, 5, 4, 4, 10), (1, 6, 5, 5, 10), (2, 5, 3, 6, 10), (5, 1, 4, 7, 10),
    (5, 7, 5, 8, 10), (3, 6, 2, 9, 10), (4, 8, 4, 10, 10), (1, 7, 1, 11, 10), (5, 3, 5, 11, 20)]]
MOVIES = {
    1: ("Toy Story (1995)", "01-Jan-1995", ("Animation", "Children's", "Comedy")),
    2: ("GoldenEye (1995)", "01-Jan-1995", ("Action", "Adventure")),
    3: ("Café au lait (1993)", "01-Jan-1993", ("Comedy",)),  # Latin-1 in the file
    4: ("Shanghai Triad (Yao a yao yao dao waipo qiao) (1995)", "", ("Drama",)),
    5: ("Usual Suspects, The", "14-Aug-1995", ("Crime", "Thriller")),  # year from the date
    6: ("Unknown genre film (1988)", "01-Jan-1988", ()),
    7: ("Nosferatu (1922)", "01-Jan-1922", ("Horror",)),
    # 8 is rated but missing from the movie file
    9: ("Never Rated (2000)", "01-Jan-2000", ("Drama",)),
}
USERS = {1: (24, "M", "technician"), 2: (53, "F", "other"), 3: (17, "M", "student"),
         4: (33, "F", "writer")}  # user 5 is missing from the user file


def write_100k(root, separator="\t", truncated=True):
    os.makedirs(root, exist_ok=True)
    lines = [separator.join(map(str, (u, m, r, T0 + d * DAY + s))) for u, m, r, d, s in RATINGS]
    if truncated:
        lines.insert(3, "2\t9\t4")  # a truncated row: counted, skipped
    with open(os.path.join(root, "u.data"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(root, "u.item"), "wb") as f:
        for m, (title, date, genres) in MOVIES.items():
            row = f"{m}|{title}|{date}||http://us.imdb.com/M/title-exact?x|{_flags(*genres)}\n"
            f.write(row.encode("latin-1"))
    with open(os.path.join(root, "u.user"), "w") as f:
        for u, (age, gender, occ) in USERS.items():
            f.write(f"{u}|{age}|{gender}|{occ}|55105\n")
    return str(root)


def write_1m(root):
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "ratings.dat"), "w") as f:
        f.write("\n".join(f"{u}::{m}::{r}::{T0 + d * DAY + s}" for u, m, r, d, s in RATINGS)
                + "\n")
    with open(os.path.join(root, "movies.dat"), "wb") as f:
        for m, (title, _, genres) in MOVIES.items():
            f.write(f"{m}::{title}::{'|'.join(genres) or '(no genres listed)'}\n"
                    .encode("latin-1"))
    with open(os.path.join(root, "users.dat"), "w") as f:
        for u, code, occ in ((1, 18, 17), (2, 50, 0), (3, 1, 4), (4, 25, 20)):
            f.write(f"{u}::{'MF'[u % 2]}::{code}::{occ}::55105\n")
    return str(root)


def _read(out):
    items = pq.read_table(os.path.join(out, canonical.ITEMS_FILE)).to_pandas().set_index(
        "item_id")
    events = pq.read_table(os.path.join(out, canonical.EVENTS_FILE)).to_pandas()
    return items, events, canonical.read_meta(out)


def test_100k_items_events_and_problems(tmp_path):
    src = write_100k(tmp_path / "ml-100k")
    posters = tmp_path / "posters"
    posters.mkdir()
    jpgs = {m: f"poster-{m}".encode() + bytes(range(8)) for m in (1, 3, 7)}
    for m, data in jpgs.items():
        (posters / f"{m}.jpg").write_bytes(data)
    out = str(tmp_path / "out")
    meta = movielens.convert(src, out, str(posters), negatives_per_positive=2, seed=3)
    items, events, written = _read(out)
    assert written.name == "movielens-100k" and written.tasks == ["click", "order"]
    # Items, row by row.
    assert sorted(items.index) == [str(m) for m in range(1, 10)]
    assert items.loc["3", "title"] == "Café au lait (1993)"  # Latin-1 decoded
    assert items.loc["1", "category_id"] == "Animation" == items.loc["1", "entity"]
    assert items.loc["6", "category_id"] == "unknown"
    assert items.loc["1", "brand_id"] == "1990s" and items.loc["7", "brand_id"] == "1920s"
    assert items.loc["5", "brand_id"] == "1990s"  # from the release date
    assert items.loc["8", "title"] == "" and items.loc["8", "brand_id"] == ""
    assert (items["shop_id"] == "").all()
    for m in range(1, 10):
        assert items.loc[str(m), "image"] == jpgs.get(m)
    first = {}
    for _, m, _, d, s in RATINGS:
        first[m] = min(first.get(m, 1 << 62), T0 + d * DAY + s)
    for m, t in first.items():  # the day of the first rating
        assert items.loc[str(m), "created_at"] == t - t % DAY
    # Events: every rating is a click, >= 4 an order; user-day requests.
    positives = events[events["click"] == 1]
    assert len(positives) == len(RATINGS)
    for u, m, r, d, _ in RATINGS:
        row = positives[(positives["user_id"] == str(u)) & (positives["item_id"] == str(m))]
        assert len(row) == 1 and row["order"].iloc[0] == int(r >= 4)
        assert row["request_id"].iloc[0] == f"{u}@{(T0 + d * DAY) // DAY}"
    assert (events["cart"] == 0).all()
    assert set(events.loc[events["click"] == 0, "order"]) == {0}
    for _, req in events.groupby("request_id"):
        pos = req[req["click"] == 1]
        neg = req[req["click"] == 0]
        assert len(neg) <= 2 * len(pos) and req["ts"].nunique() == 1
        assert not set(neg["item_id"]) & set(pos["item_id"])
        day_end = (req["ts"].iloc[0] // DAY + 1) * DAY
        assert (items.loc[neg["item_id"], "created_at"] < day_end).all()
        assert (req["position"] == 0).all() and req["rank"].isna().all()  # nothing displayed
    assert events.loc[events["user_id"] == "1", "user_age"].iloc[0] == "18-24"
    assert events.loc[events["user_id"] == "3", "user_age"].iloc[0] == "under 18"
    assert events.loc[events["user_id"] == "2", "user_occupation"].iloc[0] == "other"
    assert (events.loc[events["user_id"] == "5", "user_gender"] == "").all()
    # Later days have more items to draw from: the full 2 negatives per positive.
    late = events[events["ts"] >= T0 + 8 * DAY]
    for _, req in late.groupby("request_id"):
        assert (req["click"] == 0).sum() == 2 * (req["click"] == 1).sum()
    problems = meta.extra["problems"]
    assert problems["u.data: malformed line skipped"]["count"] == 1
    assert problems["rated movies missing from the movie file (kept, empty title)"][
        "count"] == 1
    assert problems["movies without a poster (no image)"]["count"] == 6
    assert problems["rating users missing from the user file (empty profile)"]["count"] == 1
    assert problems["movies without any rating (kept; shown from the first day)"][
        "count"] == 1
    assert meta.extra["posters"] == 3
    report = validate.validate(out)
    assert report.ok, str(report)
    # the only warning: the fake posters are not images; no event before its created_at
    assert [w.column for w in report.warnings] == ["image"], str(report)
    assert written.positions == "none"
    assert not os.path.exists(os.path.join(out, canonical.QUERIES_FILE))


def test_1m_format_and_same_mapping(tmp_path):
    src = write_1m(tmp_path / "ml-1m")
    out = str(tmp_path / "out")
    meta = movielens.convert(src, out, negatives_per_positive=1)
    items, events, written = _read(out)
    assert written.name == "movielens-1m"
    assert items.loc["3", "title"] == "Café au lait (1993)"
    assert items.loc["2", "category_id"] == "Action" and items.loc["6", "category_id"] == "unknown"
    assert items.loc["5", "brand_id"] == ""  # no year in the title, and 1M has no date
    assert items["image"].isna().all()
    assert events.loc[events["user_id"] == "1", "user_age"].iloc[0] == "18-24"
    assert events.loc[events["user_id"] == "1", "user_occupation"].iloc[0] == \
        "technician/engineer"
    assert events.loc[events["user_id"] == "4", "user_occupation"].iloc[0] == "writer"
    assert (events["click"] == 1).sum() == len(RATINGS)
    assert meta.counts["orders"] == sum(r >= 4 for _, _, r, _, _ in RATINGS)
    assert validate.validate(out).ok


def test_windows_cover_the_data_in_order(tmp_path):
    meta = movielens.convert(write_100k(tmp_path / "ml"), str(tmp_path / "out"))
    w = {k: meta.window(k) for k in canonical.WINDOW_NAMES}
    assert w["pretrain"].start == T0 and w["test"].end == T0 + 12 * DAY
    assert w["pretrain"].end == w["train_large"].start and w["train_large"].end == \
        w["test"].start
    assert w["train_large"].start < w["train_small"].start < w["train_small"].end == \
        w["train_large"].end
    assert all(x.start % DAY == 0 for x in w.values())


def test_bad_inputs_are_clear(tmp_path, capsys):
    with pytest.raises(common.AdapterError, match="neither u.data"):
        movielens.convert(str(tmp_path), str(tmp_path / "out"))
    src = write_100k(tmp_path / "comma", separator=",", truncated=False)
    with pytest.raises(common.AdapterError, match="separated by '\\\\t'"):
        movielens.convert(src, str(tmp_path / "out"))
    src = write_100k(tmp_path / "nouser")
    os.remove(os.path.join(src, "u.user"))
    assert movielens.main(["--src", src, "--out", str(tmp_path / "out")]) == 2
    assert "u.user is missing" in capsys.readouterr().err
    src = write_100k(tmp_path / "ok")
    with pytest.raises(common.AdapterError, match="not a folder"):
        movielens.convert(src, str(tmp_path / "out"), posters=str(tmp_path / "none"))
    assert movielens.main(["--src", src, "--out", str(tmp_path / "out2")]) == 0
    out = capsys.readouterr().out
    assert "movielens-100k" in out and "1 x u.data: malformed line skipped" in out


def test_age_groups_and_decades():
    assert [movielens.age_group(a) for a in (7, 18, 24, 25, 49, 50, 56, 80)] == [
        "under 18", "18-24", "18-24", "25-34", "45-49", "50-55", "56+", "56+"]
    assert movielens.decade("Heat (1995)") == "1990s"
    assert movielens.decade("Heat", "15-Dec-1995") == "1990s"
    assert movielens.decade("Heat") == ""
