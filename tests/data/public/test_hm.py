"""H&M adapter: raw fixtures in the published Kaggle formats, checked row by row."""

import calendar
import csv
import datetime
import hashlib
import io
import os

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from ppm.data import canonical, validate
from ppm.data.public import common, hm

DAY = 86400
T0 = calendar.timegm(datetime.date(2020, 9, 1).timetuple())
NEG = 2  # negatives per positive in the tests
C = [hashlib.sha256(f"customer {i}".encode()).hexdigest() for i in range(7)]  # 64 hex chars

ARTICLE_HEADER = (
    "article_id,product_code,prod_name,product_type_no,product_type_name,product_group_name,"
    "graphical_appearance_no,graphical_appearance_name,colour_group_code,colour_group_name,"
    "perceived_colour_value_id,perceived_colour_value_name,perceived_colour_master_id,"
    "perceived_colour_master_name,department_no,department_name,index_code,index_name,"
    "index_group_no,index_group_name,section_no,section_name,garment_group_no,"
    "garment_group_name,detail_desc").split(",")
# id as written in articles.csv: (prod_name, product_type_name, colour, department, section,
# detail_desc, has image).
ARTICLES = {
    "0108775015": ("Strap top", "Vest top", "Black", "1676", "16",
                   "Jersey top with narrow shoulder straps.", True),
    "108775044": ("Strap top", "Vest top", "White", "1676", "16", "", False),  # zero dropped
    "0110065001": ("OP T-shirt (Idro)", "Bra", "Black", "1339", "61",
                   'Microfibre T-shirt bra, "underwired", moulded', True),
    "0111565001": ("20 den 1p Stockings", "Underwear Tights", "Black", "3608", "62",
                   "Semi shiny nylon stockings\nwith a wide, reinforced trim", True),
    "0176209023": ("Crème jumper", "Sweater", "Light Beige", "5883", "2", "", True),
    "0189616006": ("Tigra", "", "Dark Blue", "1338", "19", "Top in soft jersey.", False),
    "0211143022": ("Never sold", "Trousers", "Grey", "1722", "15", "", True),
}
A1, A2, A3, A4, A5, A6, A7 = (i.zfill(10) for i in ARTICLES)
A8 = "0999999001"  # bought, missing from articles.csv
# (day, customer, article, price): 6 customers over 10 days.
PURCHASES = [
    (0, 0, A1, 0.0508), (0, 0, A3, 0.0305), (0, 1, A1, 0.0508),
    (1, 2, A2, 0.0169), (1, 1, A3, 0.0305), (1, 0, A1, 0.0474),
    (2, 3, A4, 0.0135), (2, 3, A4, 0.0135), (2, 4, A1, 0.0508),  # a repeat purchase
    (3, 0, A5, 0.0677), (3, 5, A2, 0.0169), (3, 1, A4, 0.0135),
    (4, 2, A6, 0.0338), (4, 4, A3, 0.0305), (4, 3, A1, 0.0508),
    (5, 1, A8, 0.0220), (5, 0, A2, 0.0152), (5, 5, A5, 0.0677),
    (6, 2, A1, 0.0440), (6, 4, A5, 0.0610), (6, 3, A6, 0.0338),
    (7, 0, A4, 0.0135), (7, 1, A6, 0.0338), (7, 5, A3, 0.0290),
    (8, 2, A5, 0.0677), (8, 4, A2, 0.0169), (8, 3, A8, 0.0220),
    (9, 1, A1, 0.0508), (9, 0, A6, 0.0305), (9, 5, A4, 0.0135), (9, 2, A3, 0.0305)]
BAD_TRANSACTIONS = [
    f"2020-09-04,{C[3]},01087",  # truncated: 3 fields
    f"2020-09-3x,{C[0]},0108775015,0.0508,2",  # unparsable date
    f"2020-09-05,{C[1]},0108775015,abc,2",  # unparsable price
    f"2020-09-06,{C[2]},0108775015,0.0508,",  # cut before the sales channel
]
# customer: (age, club_member_status, fashion_news_frequency, expected user_age); C[5] is
# missing from customers.csv, C[6] never buys.
CUSTOMERS = {0: ("23", "ACTIVE", "NONE", "16-24"), 1: ("37", "ACTIVE", "Regularly", "35-44"),
             2: ("", "PRE-CREATE", "None", "unknown"), 3: ("70", "", "", "65+"),
             4: ("49", "LEFT CLUB", "Monthly", "45-54"), 6: ("31", "ACTIVE", "NONE", "25-34")}


def _date(day):
    return (datetime.date(2020, 9, 1) + datetime.timedelta(days=day)).isoformat()


def _jpg(seed):
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (seed * 37 % 256, 90, 200)).save(buf, "JPEG")
    return buf.getvalue()


def write_hm(root, sep=",", customers=True, articles_encoding="utf-8"):
    """A folder in the published layout; returns (src, {article_id: jpg bytes})."""
    os.makedirs(root, exist_ok=True)
    header = ["t_dat", "customer_id", "article_id", "price", "sales_channel_id"]
    lines = [sep.join(header)]
    for k, (d, c, a, p) in enumerate(PURCHASES):
        written = a[1:] if k == len(PURCHASES) - 1 else a  # 110065001: zero dropped
        lines.append(sep.join([_date(d), C[c], written, f"{p}", str(1 + k % 2)]))
    lines[5:5] = BAD_TRANSACTIONS
    with open(os.path.join(root, hm.TRANSACTIONS), "w") as f:
        f.write("\n".join(lines) + "\n")
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(ARTICLE_HEADER)
    for a, (name, kind, colour, dept, section, desc, _) in ARTICLES.items():
        writer.writerow([a, a[:7], name, "253", kind, "Garment Upper body", "1010016", "Solid",
                         "09", colour, "4", "Dark", "5", colour, dept, "Jersey Basic", "A",
                         "Ladieswear", "1", "Ladieswear", section, "Womens Everyday Basics",
                         "1002", "Jersey Basic", desc])
    with open(os.path.join(root, hm.ARTICLES), "wb") as f:
        f.write(text.getvalue().encode(articles_encoding))
    if customers:
        with open(os.path.join(root, hm.CUSTOMERS), "w") as f:
            f.write("customer_id,FN,Active,club_member_status,fashion_news_frequency,age,"
                    "postal_code\n")
            for c, (age, status, news, _) in CUSTOMERS.items():
                f.write(f"{C[c]},1.0,,{status},{news},{age},{C[c][::-1]}\n")
    jpgs = {}
    for k, (a, spec) in enumerate(ARTICLES.items()):
        if spec[-1]:
            a = a.zfill(10)
            os.makedirs(os.path.join(root, "images", a[:3]), exist_ok=True)
            jpgs[a] = _jpg(k)
            with open(os.path.join(root, "images", a[:3], f"{a}.jpg"), "wb") as f:
                f.write(jpgs[a])
    return str(root), jpgs


def _read(out):
    items = pq.read_table(os.path.join(out, canonical.ITEMS_FILE)).to_pandas().set_index(
        "item_id")
    events = pq.read_table(os.path.join(out, canonical.EVENTS_FILE)).to_pandas()
    return items, events, canonical.read_meta(out)


def _first_day():
    first = {}
    for d, _, a, _ in PURCHASES:
        first[a] = min(first.get(a, d), d)
    return first


def _check_requests(items, events, per_positive=NEG):
    """Each request: one user and ts, position 0 and no rank (nothing displayed), the right
    number of negatives, never a positive, only items available that day. Returns how many
    requests were short."""
    available = {d: int((items["created_at"] < T0 + (d + 1) * DAY).sum()) for d in range(10)}
    short = 0
    for _, req in events.groupby("request_id"):
        pos, neg = req[req["click"] == 1], req[req["click"] == 0]
        day = (int(req["ts"].iloc[0]) - T0) // DAY
        assert req["ts"].nunique() == 1 and req["user_id"].nunique() == 1
        assert req["ts"].iloc[0] == T0 + day * DAY  # midnight UTC
        assert (req["position"] == 0).all() and req["rank"].isna().all()
        assert not set(neg["item_id"]) & set(pos["item_id"])
        assert neg["item_id"].is_unique
        assert (items.loc[neg["item_id"], "created_at"] <= req["ts"].iloc[0]).all()
        want = per_positive * len(pos)
        assert len(neg) == min(want, available[day] - len(pos))
        short += len(neg) < want
    return short


def test_items_events_users_and_problems(tmp_path):
    src, jpgs = write_hm(tmp_path / "hm")
    out = str(tmp_path / "out")
    meta = hm.convert(src, out, negatives_per_positive=NEG, seed=3)
    items, events, written = _read(out)
    assert written.name == "hm" and written.tasks == ["click", "order"]
    assert "forbid redistribution" in written.licence and "may be committed" in written.licence
    # Items, row by row: the bought articles (A7 never sold), leading zeros kept.
    assert sorted(items.index) == sorted([A1, A2, A3, A4, A5, A6, A8])
    assert A1 == "0108775015" and A2 == "0108775044"
    assert items.loc[A1, "title"] == "Strap top Black" and items.loc[A2, "title"] == \
        "Strap top White"
    assert items.loc[A5, "title"] == "Crème jumper Light Beige"  # UTF-8
    assert items.loc[A3, "title"] == "OP T-shirt (Idro) Black"
    assert items.loc[A1, "category_id"] == "Vest top" == items.loc[A1, "entity"]
    assert items.loc[A6, "category_id"] == "unknown" == items.loc[A6, "entity"]
    assert items.loc[A4, "brand_id"] == "3608" and items.loc[A4, "shop_id"] == "62"
    assert items.loc[A5, "brand_id"] == "5883" and items.loc[A5, "shop_id"] == "2"
    assert items.loc[A8, ["title", "brand_id", "shop_id", "category_id"]].tolist() == [
        "", "", "", "unknown"]
    for a in items.index:
        assert items.loc[a, "image"] == jpgs.get(a)
    assert items["image"].notna().sum() == 4 == meta.extra["images"]
    first = _first_day()
    for a in items.index:
        assert items.loc[a, "created_at"] == T0 + first[a] * DAY
        prices = [p for _, _, b, p in PURCHASES if b == a]
        assert items.loc[a, "price"] == pytest.approx(np.mean(prices))
    # Events: every purchase is a positive with click = order = 1, in its user-day request.
    positives = events[events["click"] == 1]
    expected = {(C[c], d, a) for d, c, a, _ in PURCHASES}
    assert len(positives) == len(expected) == len(PURCHASES) - 1  # the repeat is merged
    got = {(u, (t - T0) // DAY, a) for u, t, a in
           zip(positives["user_id"], positives["ts"], positives["item_id"])}
    assert got == expected
    assert (positives["order"] == 1).all() and (events["cart"] == 0).all()
    assert (events.loc[events["click"] == 0, "order"] == 0).all()
    for u, t, rid in zip(events["user_id"], events["ts"], events["request_id"]):
        assert rid == f"{u}@{t // DAY}"
    short = _check_requests(items, events)
    # Users.
    for c in range(6):
        rows = events[events["user_id"] == C[c]]
        profile = CUSTOMERS.get(c)
        want = ([profile[3], profile[1], "NONE" if profile[2] == "None" else profile[2]]
                if profile else ["", "", ""])
        assert len(rows) and (rows[list(hm.USER_COLUMNS)] == want).all().all(), c
    # Problems, each counted.
    problems = {k: v["count"] for k, v in meta.extra["problems"].items()}
    assert problems == {
        "transactions_train.csv: malformed line skipped": 1,
        "transactions_train.csv: unparsable t_dat (row skipped)": 1,
        "transactions_train.csv: unparsable price (row skipped)": 1,
        "transactions_train.csv: unparsable sales_channel_id (row skipped)": 1,
        "transactions_train.csv: article ids without their leading zero (zero restored)": 1,
        "articles.csv: article ids without their leading zero (zero restored)": 1,
        "purchased articles missing from articles.csv (kept, empty title)": 1,
        "articles without an image (no image)": 3,
        "customers missing from customers.csv (empty profile)": 1,
        "requests with fewer negatives than asked (few items available)": short}
    assert short > 0  # the first days have few articles on sale
    assert meta.extra["problems"]["purchased articles missing from articles.csv (kept, empty "
                                  "title)"]["example"] == A8
    assert meta.extra["transactions"] == len(PURCHASES)
    assert meta.extra["articles_not_bought"] == 1
    assert meta.extra["negatives_per_positive"] == NEG and meta.extra["seed"] == 3
    assert meta.extra["mapping"]["brand_id"] == "department_no"
    assert meta.counts["orders"] == len(expected) == meta.counts["clicks"]
    report = validate.validate(out)
    assert report.ok, str(report)
    assert not report.warnings, str(report)  # real jpgs, no event before its item


def test_queries_are_product_names(tmp_path):
    src, _ = write_hm(tmp_path / "hm")
    out = str(tmp_path / "out")
    meta = hm.convert(src, out)
    queries = pq.read_table(os.path.join(out, canonical.QUERIES_FILE)).to_pandas()
    names = {a.zfill(10): spec[0] for a, spec in ARTICLES.items()}
    assert sorted(zip(queries["query"], queries["item_id"])) == sorted(
        (names[a], a) for a in (A1, A2, A3, A4, A5, A6))  # A8 has no name, A7 is not sold
    assert (queries["kind"] == "text").all() and queries["query_image"].isna().all()
    assert meta.extra["queries"] == 6
    out2 = str(tmp_path / "out2")
    meta = hm.convert(src, out2, queries=False)
    assert not os.path.exists(os.path.join(out2, canonical.QUERIES_FILE))
    assert meta.source.endswith("--no_queries") and validate.validate(out2).ok


def test_windows_cover_the_data_in_order(tmp_path):
    meta = hm.convert(write_hm(tmp_path / "hm")[0], str(tmp_path / "out"))
    w = {k: meta.window(k) for k in canonical.WINDOW_NAMES}
    assert w["pretrain"].start == T0 and w["test"].end == T0 + 10 * DAY
    assert w["pretrain"].end == w["train_large"].start
    assert w["train_large"].end == w["test"].start
    assert w["train_large"].start < w["train_small"].start < w["train_small"].end
    _, events, _ = _read(str(tmp_path / "out"))
    for x in w.values():  # all four non-empty
        assert x.contains(events["ts"].to_numpy()).any()


def test_since_and_max_customers(tmp_path):
    src, _ = write_hm(tmp_path / "hm")
    out = str(tmp_path / "since")
    meta = hm.convert(src, out, since="2020-09-05", negatives_per_positive=NEG)
    items, events, _ = _read(out)
    assert events["ts"].min() == T0 + 4 * DAY
    kept = [p for p in PURCHASES if p[0] >= 4]
    assert (events["click"] == 1).sum() == len({(c, d, a) for d, c, a, _ in kept})
    assert meta.extra["transactions_before_since"] == len(PURCHASES) - len(kept)
    assert meta.extra["since"] == "2020-09-05" and "--since 2020-09-05" in meta.source
    assert sorted(items.index) == sorted({a for _, _, a, _ in kept})
    assert items.loc[A1, "created_at"] == T0  # the first purchase in the file, before --since
    _check_requests(items, events)
    assert validate.validate(out).ok

    out = str(tmp_path / "sample")
    meta = hm.convert(src, out, max_customers=3, negatives_per_positive=NEG, seed=1)
    items, events, _ = _read(out)
    users = set(events["user_id"])
    assert len(users) == 3 and users <= set(C[:6])
    mine = {(u, d, a) for d, c, a, _ in PURCHASES if (u := C[c]) in users}
    pos = events[events["click"] == 1]
    assert set(zip(pos["user_id"], (pos["ts"] - T0) // DAY, pos["item_id"])) == mine
    assert sorted(items.index) == sorted({a for _, _, a in mine})
    assert meta.extra["max_customers"] == 3 and meta.extra["customers"] == 3
    assert "--max_customers 3" in meta.source
    # Counted once, although the file is read twice.
    assert meta.extra["problems"]["transactions_train.csv: malformed line skipped"][
        "count"] == 1
    _check_requests(items, events)
    assert validate.validate(out).ok
    again = hm.convert(src, str(tmp_path / "again"), max_customers=3, negatives_per_positive=NEG,
                       seed=1)
    assert set(_read(str(tmp_path / "again"))[1]["user_id"]) == users
    assert again.counts == meta.counts
    many = hm.convert(src, str(tmp_path / "many"), max_customers=100)
    assert many.extra["customers"] == 6
    with pytest.raises(common.AdapterError, match="no valid purchase on or after"):
        hm.convert(src, str(tmp_path / "late"), since="2021-01-01")
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        hm.convert(src, str(tmp_path / "bad"), since="05/09/2020")


def test_without_customers_file_profiles_are_empty(tmp_path):
    src, _ = write_hm(tmp_path / "hm", customers=False)
    meta = hm.convert(src, str(tmp_path / "out"))
    _, events, _ = _read(str(tmp_path / "out"))
    assert (events[list(hm.USER_COLUMNS)] == "").all().all()
    assert meta.extra["problems"]["customers.csv missing (every user profile empty)"][
        "count"] == 6
    assert validate.validate(str(tmp_path / "out")).ok


@pytest.mark.parametrize("sep,name", [(";", "';'"), ("\t", "'\\\\t'")])
def test_wrong_separator_is_an_error(tmp_path, sep, name):
    src, _ = write_hm(tmp_path / "hm", sep=sep)
    with pytest.raises(common.AdapterError,
                       match=rf"lacks columns \['t_dat', .*looks {name}-separated"):
        hm.convert(src, str(tmp_path / "out"))


def test_not_utf8_is_an_error(tmp_path):
    src, _ = write_hm(tmp_path / "hm", articles_encoding="latin-1")
    with open(os.path.join(src, hm.ARTICLES), "rb") as f:
        offset = f.read().index("Crème".encode("latin-1")) + 2
    with pytest.raises(common.AdapterError, match=rf"articles.csv: not UTF-8 text \(byte "
                       rf"{offset}: b'\\xe8me"):
        hm.convert(src, str(tmp_path / "out"))


def test_cli(tmp_path, capsys):
    src, _ = write_hm(tmp_path / "hm")
    assert hm.main(["--src", src, "--out", str(tmp_path / "out"), "--max_customers", "4",
                    "--since", "2020-09-02", "--negatives", "1"]) == 0
    out = capsys.readouterr().out
    assert "hm -> " in out and "1 x transactions_train.csv: malformed line skipped" in out
    meta = canonical.read_meta(str(tmp_path / "out"))
    assert meta.extra["max_customers"] == 4 and meta.extra["since"] == "2020-09-02"
    assert meta.extra["negatives_per_positive"] == 1
    os.remove(os.path.join(src, hm.ARTICLES))
    assert hm.main(["--src", src, "--out", str(tmp_path / "out2")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "articles.csv is missing" in err
    assert "transactions_train.csv and articles.csv (required)" in err
    src, _ = write_hm(tmp_path / "semi", sep=";")
    assert hm.main(["--src", src, "--out", str(tmp_path / "out3")]) == 2
    err = capsys.readouterr().err
    assert "transactions_train.csv: the header lacks columns" in err and "';'-separated" in err
    with pytest.raises(SystemExit) as e:
        hm.main(["--src", src, "--out", str(tmp_path / "out4"), "--since", "2020-9-5x"])
    assert e.value.code == 2 and "YYYY-MM-DD" in capsys.readouterr().err


def test_age_groups():
    assert [hm.age_group(a) for a in (15, 16, 24, 25, 34.5, 35, 54, 55, 64, 65, 99)] == [
        "under 16", "16-24", "16-24", "25-34", "25-34", "35-44", "45-54", "55-64", "55-64",
        "65+", "65+"]
    assert hm.age_group(float("nan")) == "unknown"
