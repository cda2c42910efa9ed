"""MIND adapter: raw fixture files in the published format -> a valid canonical dataset."""

import calendar
import json
import os

import pandas as pd
import pytest

from ppm.data import canonical, validate
from ppm.data.public import common, mind

DAY = 86400


def _utc(day, hour, minute, second, month=11):
    return calendar.timegm((2019, month, day, hour, minute, second))


NEWS = [  # news id, category, subcategory, title, abstract
    ("N1", "sports", "football_nfl", "Packers win", "A game."),
    ("N2", "news", "newsworld", "Café crème in Zürich – 東京 ünïcödé", "Ünïcödé abstract."),
    ("N3", "lifestyle", "lifestyleroyals", "The royals", ""),
    ("N4", "finance", "finance-companies", "Stocks", "Markets."),
    ("N5", "weather", "weathertopstories", "Snow", "first line\u2028second line"),
    ("N6", "news", "newsus", "History only", "Never shown."),
    ("N7", "video", "animals", "Never referenced", "Cats."),
]
# N9 is shown but missing from news.tsv.
BEHAVIORS = [
    "1\tU1\t11/9/2019 12:15:00 AM\tN6 N3\tN1-1 N2-0 N3-0",
    "2\tU2\t11/9/2019 12:30:00 PM\t\tN2-1 N9-0",
    "3\tU1\t11/10/2019 9:05:58 AM\tN6 N3\tN4-0 N1-0 N2-1",
    "4\tU3\t11/11/2019 11:59:59 PM\tN6 N1 N6\tN3-1 N4-0",
    "4\tU2\t11/12/2019 2:00:00 PM\t\tN1-0",  # duplicate impression id
    "5\tU2\t11/12/2019 1:00:00 PM\t\tN1-0 N2-1 N4-0 N5-0",
    "6\tU3\t11/13/2019 3:00:00 AM\tN6 N1 N6\tN1-1 N5-0",
    "7\tU1\t11/13/2019 4:00:00 PM",  # truncated
    "8\tU1\t11/14/2019 8:00:00 AM\tN6 N3\tN2-0 N5-1 N4-x",
    "9\tU2\t11/15/2019 10:00:00 PM\t\tN3-0 N5-1 N4",
    "10\tU3\t2019-11-15 10:00:00\t\tN1-0",  # unparsable time
    "11\tU3\t11/16/2019 12:00:00 PM\tN6 N1 N6 N2\tN1-0 N3-1 N1-1",
    "12\tU1\t11/16/2019 6:00:00 PM\tN6 N3\tN4-1 N5-0 N1-0",
]
# request -> (ts, [(item, index in the published list, click)]) of every usable impression;
# events keep this order, their position is 0 (the lists are shuffled: no display slot).
EXPECTED = {
    "src-1": (_utc(9, 0, 15, 0), [("N1", 0, 1), ("N2", 1, 0), ("N3", 2, 0)]),
    "src-2": (_utc(9, 12, 30, 0), [("N2", 0, 1), ("N9", 1, 0)]),
    "src-3": (_utc(10, 9, 5, 58), [("N4", 0, 0), ("N1", 1, 0), ("N2", 2, 1)]),
    "src-4": (_utc(11, 23, 59, 59), [("N3", 0, 1), ("N4", 1, 0)]),
    "src-5": (_utc(12, 13, 0, 0), [("N1", 0, 0), ("N2", 1, 1), ("N4", 2, 0), ("N5", 3, 0)]),
    "src-6": (_utc(13, 3, 0, 0), [("N1", 0, 1), ("N5", 1, 0)]),
    "src-8": (_utc(14, 8, 0, 0), [("N2", 0, 0), ("N5", 1, 1)]),
    "src-9": (_utc(15, 22, 0, 0), [("N3", 0, 0), ("N5", 1, 1)]),
    "src-11": (_utc(16, 12, 0, 0), [("N1", 0, 1), ("N3", 1, 1)]),
    "src-12": (_utc(16, 18, 0, 0), [("N4", 0, 1), ("N5", 1, 0), ("N1", 2, 0)]),
}
HISTORY_TS = _utc(9, 0, 0, 0) - 1
# The first impression's history, oldest first, one request per click one second apart (the
# most recent at HISTORY_TS); U3's repeated N6 is kept at its latest place.
HISTORIES = {"hist-U1-0": ("U1", "N6", HISTORY_TS - 1), "hist-U1-1": ("U1", "N3", HISTORY_TS),
             "hist-U3-0": ("U3", "N1", HISTORY_TS - 1), "hist-U3-1": ("U3", "N6", HISTORY_TS)}
PROBLEMS = {
    "behaviors.tsv: malformed line skipped": 1,
    "behaviors.tsv: rows with an unparsable time skipped": 1,
    "behaviors.tsv: duplicate impression ids (later rows skipped)": 1,
    "behaviors.tsv: malformed impression tokens skipped": 2,
    "behaviors.tsv: news repeated within an impression (first position kept, labels OR-ed)": 1,
    "behaviors.tsv: news repeated within a history (most recent kept)": 1,
    "news referenced by behaviors.tsv missing from news.tsv (kept, empty title)": 1,
}


def _news_line(nid, cat, sub, title, abstract):
    return "\t".join([nid, cat, sub, title, abstract, f"https://assets.msn.com/labs/mind/{nid}"
                      ".html", "[]", '[{"Label": "X", "Type": "P"}]'])


def write_split(folder, behaviors, news):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "behaviors.tsv"), "w", encoding="utf-8", newline="") as f:
        f.write("\n".join(behaviors) + "\n")
    with open(os.path.join(folder, "news.tsv"), "w", encoding="utf-8", newline="") as f:
        f.write("\n".join(_news_line(*n) for n in news) + "\n")
    return str(folder)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("mind")
    src = write_split(root / "MINDsmall_train", BEHAVIORS, NEWS)
    out = str(root / "out")
    meta = mind.convert(src, out)
    return out, meta


def _events(out):
    return pd.read_parquet(os.path.join(out, canonical.EVENTS_FILE))


def test_every_impression_candidate_is_an_event(converted):
    out, _ = converted
    ev = _events(out)
    got = ev[ev["request_id"].str.startswith("src-")]
    want = [(rid, ts, item, click) for rid, (ts, cands) in EXPECTED.items()
            for item, _, click in cands]
    rows = sorted(zip(got["request_id"], got["ts"], got["item_id"], got["click"]))
    assert rows == sorted(want)
    assert (ev["position"] == 0).all()
    for rid, (_, cands) in EXPECTED.items():  # the published order
        assert list(got.loc[got["request_id"] == rid, "item_id"]) == [c[0] for c in cands]
    assert (ev.groupby("request_id")["user_id"].nunique() == 1).all()
    assert dict(zip(got["request_id"], got["user_id"]))["src-5"] == "U2"
    assert ev["rank"].isna().all()
    assert (ev["order"] == 0).all() and (ev["cart"] == 0).all() and (ev["query"] == "").all()
    # sorted by time, request, published order
    assert list(ev["ts"]) == sorted(ev["ts"])
    assert list(ev.loc[ev["request_id"] == "src-12", "item_id"]) == ["N4", "N5", "N1"]


def test_twelve_am_and_pm(converted):
    out, _ = converted
    ts = _events(out).groupby("request_id")["ts"].first()
    assert ts["src-1"] == _utc(9, 0, 15, 0)     # 12:15 AM is 00:15
    assert ts["src-2"] == _utc(9, 12, 30, 0)    # 12:30 PM is 12:30
    assert ts["src-4"] == _utc(11, 23, 59, 59)  # 11:59:59 PM
    assert ts["src-11"] == _utc(16, 12, 0, 0)
    assert mind.parse_times(["12/31/2019 12:00:00 AM", "1/1/2020 12:00:01 PM", "bad",
                             "13/1/2019 1:00:00 AM"]).tolist() == [
        calendar.timegm((2019, 12, 31, 0, 0, 0)), calendar.timegm((2020, 1, 1, 12, 0, 1)),
        -1, -1]


def test_history_requests(converted):
    out, meta = converted
    ev = _events(out)
    hist = ev[ev["request_id"].str.startswith("hist-")]
    assert sorted(hist["request_id"]) == sorted(HISTORIES)  # U2's history is empty
    for rid, (user, item, ts) in HISTORIES.items():
        h = hist[hist["request_id"] == rid]
        assert list(zip(h["user_id"], h["item_id"], h["ts"], h["click"], h["position"])) == [
            (user, item, ts, 1, 0)]
    assert HISTORY_TS < meta.windows["pretrain"][0]
    assert meta.extra["history_ts"] == HISTORY_TS
    assert meta.extra["history_requests"] == 4 and meta.extra["history_events"] == 4
    assert meta.extra["users_with_differing_histories"] == 1  # U3's impression 11


def test_build_examples_reads_the_history(converted):
    from beam_jobs import build_examples
    from ppm import features

    out, meta = converted
    ev = _events(out)
    items = pd.read_parquet(os.path.join(out, canonical.ITEMS_FILE))
    attrs = {r.item_id: (r.shop_id, r.brand_id, r.category_id) for r in items.itertuples()}
    windows = {n: tuple(w) for n, w in meta.windows.items()}
    rows = ev[ev["user_id"] == "U1"].to_dict("records")
    examples = list(build_examples.user_examples(
        rows, attrs, {}, features.FeatureSchema(max_history=10), windows))
    first = {v["request_id"]: v["hist_item_id"] for _, v in examples}
    assert first["src-1"] == ["N3", "N6"]  # most recent first; oldest-first list reversed
    assert first["src-3"] == ["N1", "N3", "N6"]  # plus the click of impression 1
    assert not any(r.startswith("hist-") for r in first)  # history gives no example
    n_u1 = sum(len(EXPECTED[r][1]) for r in ("src-1", "src-3", "src-8", "src-12"))
    assert len({(v["request_id"], v["item_id"]) for _, v in examples}) == n_u1


def test_items(converted):
    out, _ = converted
    items = pd.read_parquet(os.path.join(out, canonical.ITEMS_FILE)).set_index("item_id")
    assert sorted(items.index) == ["N1", "N2", "N3", "N4", "N5", "N6", "N7", "N9"]
    n2 = items.loc["N2"]
    assert n2["title"] == "Café crème in Zürich – 東京 ünïcödé"
    assert (n2["category_id"], n2["brand_id"], n2["entity"]) == ("news", "newsworld",
                                                                 "newsworld")
    assert items.loc["N5", "title"] == "Snow"  # the U+2028 in its abstract split nothing
    assert (items.loc["N9", ["title", "category_id", "brand_id"]] == "").all()
    assert (items["shop_id"] == "").all() and items["image"].isna().all()
    created = items["created_at"].to_dict()  # the first event: history click or impression
    assert created["N1"] == HISTORY_TS - 1  # in U3's history, shown later
    assert created["N3"] == HISTORY_TS  # in U1's history, shown later
    assert created["N5"] == _utc(12, 13, 0, 0)
    assert created["N9"] == _utc(9, 12, 30, 0)
    assert created["N6"] == HISTORY_TS - 1 and created["N7"] == HISTORY_TS


def test_meta_and_validation(converted):
    out, meta = converted
    report = validate.validate(out)
    assert report.ok, str(report)
    # the one expected warning: history outside the windows (none before created_at)
    assert len(report.warnings) == 1 and "outside every time window" in \
        report.warnings[0].message, str(report)
    stored = canonical.read_meta(out)
    assert stored.positions == "none"
    assert stored.name == "mind-small"
    assert stored.tasks == ["click"]
    assert stored.windows == {
        "pretrain": [_utc(9, 0, 0, 0), _utc(12, 0, 0, 0)],
        "train_large": [_utc(12, 0, 0, 0), _utc(16, 0, 0, 0)],
        "train_small": [_utc(14, 0, 0, 0), _utc(16, 0, 0, 0)],
        "test": [_utc(16, 0, 0, 0), _utc(17, 0, 0, 0)]}
    assert {k: v["count"] for k, v in stored.extra["problems"].items()} == PROBLEMS
    assert "Microsoft Research License" in stored.licence and "committed" in stored.licence
    assert stored.counts["events"] == 25 + 4 and stored.counts["requests"] == 10 + 4
    assert stored.extra["impressions"] == {"src": 10}
    assert stored.extra["impression_events"] == 25
    assert not os.path.exists(os.path.join(out, canonical.QUERIES_FILE))
    assert not [c for c in _events(out).columns if c.startswith("user_") and c != "user_id"]


DEV_BEHAVIORS = [
    "1\tU1\t11/17/2019 12:00:00 AM\tN6 N3\tN7-1 N1-0",
    "2\tU4\t11/17/2019 12:59:59 PM\tN2\tN2-0 N8-1",
]
DEV_NEWS = [NEWS[6], ("N8", "tv", "tvnews", "Dev only", ""),
            ("N1", "sports", "football_nfl", "Packers win again", "A game.")]


def test_dev_split_is_the_test_window(tmp_path):
    src = write_split(tmp_path / "MINDsmall_train", BEHAVIORS, NEWS)
    dev = write_split(tmp_path / "MINDsmall_dev", DEV_BEHAVIORS, DEV_NEWS)
    out = str(tmp_path / "out")
    meta = mind.convert(src, out, dev)
    assert validate.validate(out).ok
    assert meta.windows == {
        "pretrain": [_utc(9, 0, 0, 0), _utc(12, 0, 0, 0)],
        "train_large": [_utc(12, 0, 0, 0), _utc(17, 0, 0, 0)],
        "train_small": [_utc(15, 0, 0, 0), _utc(17, 0, 0, 0)],
        "test": [_utc(17, 0, 0, 0), _utc(17, 12, 59, 59) + 1]}
    ev = _events(out)
    dev_rows = ev[ev["request_id"].str.startswith("dev-")]
    assert list(zip(dev_rows["request_id"], dev_rows["item_id"], dev_rows["position"],
                    dev_rows["click"])) == [("dev-1", "N7", 0, 1), ("dev-1", "N1", 0, 0),
                                            ("dev-2", "N2", 0, 0), ("dev-2", "N8", 0, 1)]
    h4 = ev[ev["request_id"] == "hist-U4-0"]
    assert list(h4["item_id"]) == ["N2"] and (h4["ts"] == HISTORY_TS).all()
    assert meta.extra["impressions"] == {"src": 10, "dev": 2}
    problems = {k: v["count"] for k, v in meta.extra["problems"].items()}
    assert problems["news.tsv rows differing between --src and --dev (--src kept)"] == 1
    items = pd.read_parquet(os.path.join(out, canonical.ITEMS_FILE)).set_index("item_id")
    assert items.loc["N1", "title"] == "Packers win"
    assert items.loc["N8", "created_at"] == _utc(17, 12, 59, 59)
    assert items.loc["N7", "created_at"] == _utc(17, 0, 0, 0)


def test_dev_before_src_is_refused(tmp_path):
    src = write_split(tmp_path / "train", BEHAVIORS, NEWS)
    dev = write_split(tmp_path / "dev", ["1\tU1\t11/10/2019 1:00:00 AM\t\tN1-1"], NEWS)
    with pytest.raises(common.AdapterError, match="--dev must follow --src"):
        mind.convert(src, str(tmp_path / "out"), dev)


def test_splits_of_two_variants_are_refused(tmp_path):
    src = write_split(tmp_path / "MINDsmall_train", BEHAVIORS, NEWS)
    dev = write_split(tmp_path / "MINDlarge_dev", DEV_BEHAVIORS, DEV_NEWS)
    with pytest.raises(common.AdapterError, match="MINDsmall but --dev .* is MINDlarge"):
        mind.convert(src, str(tmp_path / "out"), dev)


def test_cli(tmp_path, capsys):
    src = write_split(tmp_path / "split", BEHAVIORS, NEWS)
    out = str(tmp_path / "out")
    assert mind.main(["--src", src, "--out", out]) == 0
    with open(os.path.join(out, canonical.DATASET_FILE)) as f:
        meta = json.load(f)
    assert meta["name"] == "mind" and meta["tasks"] == ["click"]
    assert meta["source"] == f"ppm.data.public.mind --src {src}"
    assert "2 x behaviors.tsv: malformed impression tokens skipped" in capsys.readouterr().out


@pytest.mark.parametrize("case, message", [
    ("missing", "behaviors.tsv is missing: --src must hold a MIND split folder"),
    ("commas", "line 1 has 1 field(s) separated by '\\t', expected 5"),
    ("latin1", "news.tsv: not utf-8 text"),
    ("unlabelled", "MIND's test split has none"),
    ("no_usable", "no usable impression"),
])
def test_cli_errors(tmp_path, capsys, case, message):
    src = write_split(tmp_path / "split", BEHAVIORS, NEWS)
    if case == "missing":
        os.remove(os.path.join(src, "behaviors.tsv"))
    elif case == "commas":
        with open(os.path.join(src, "behaviors.tsv"), "w") as f:
            f.write("1,U1,11/9/2019 12:15:00 AM,N6 N3,N1-1 N2-0\n")
    elif case == "latin1":
        with open(os.path.join(src, "news.tsv"), "wb") as f:
            f.write(_news_line("N1", "news", "newsus", "Caf\u00e9", "").encode("latin-1"))
    elif case == "unlabelled":
        with open(os.path.join(src, "behaviors.tsv"), "w") as f:
            f.write("1\tU1\t11/15/2019 8:00:00 AM\tN6\tN1 N2\n")
    else:
        with open(os.path.join(src, "behaviors.tsv"), "w") as f:
            f.write("1\tU1\t11/15/2019 8:00:00\tN6\tN1-1 N2-0\n")  # no AM/PM
    assert mind.main(["--src", src, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err, err
