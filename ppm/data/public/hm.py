"""H&M Personalized Fashion Recommendations (Kaggle) -> the canonical dataset.

    python -m ppm.data.public.hm --src DIR --out DIR [--since YYYY-MM-DD] [--max_customers N]
        [--negatives 4] [--seed 0] [--no_queries]

``--src`` is the unpacked competition archive: ``transactions_train.csv`` and ``articles.csv``
(required), ``customers.csv`` and ``images/<first 3 digits>/<article_id>.jpg`` (optional; a
missing file leaves user profiles empty, a missing jpg leaves the article without an image,
both counted).

Formats read (as published): comma-separated UTF-8 with a header line, fields quoted where
needed. ``transactions_train.csv`` ``t_dat`` (``2018-09-20``), ``customer_id`` (64 hex
characters), ``article_id`` (10 digits with a leading zero, read as text; an id written as a
9-digit integer gets its zero back, counted), ``price``, ``sales_channel_id``.
``articles.csv`` ``article_id, product_code, prod_name, product_type_no, product_type_name,
...`` (25 columns; the ones used are named below). ``customers.csv`` ``customer_id, FN, Active,
club_member_status, fashion_news_frequency, age, postal_code``. A header without the expected
columns (a ``;``- or tab-separated file) and a file that is not UTF-8 are errors; rows with the
wrong field count, unparsable dates, prices or article ids are counted and skipped.

Scale: the published file holds 31.8M purchases (Sep 2018 - Sep 2020) of 1.36M customers and
105K articles, too much for one machine's pandas frames and for 29 GB of images.
``--since YYYY-MM-DD`` drops earlier purchases; ``--max_customers N`` keeps the purchases of N
customers drawn (seeded by ``--seed``) among those who bought on or after ``--since``. The file
is streamed (twice with ``--max_customers``); only the kept purchases are held in memory.

Mapping (H&M logs purchases, not impressions):

- items: the articles bought in the converted purchases (articles never bought there are left
  out; their number is ``extra.articles_not_bought``). ``item_id`` the 10-digit article id;
  ``title`` ``prod_name`` and ``colour_group_name`` (``Strap top Black``; ``detail_desc`` is not
  used: it is a paragraph, not a title); ``category_id`` and ``entity`` ``product_type_name``
  (``unknown`` when empty); ``brand_id`` ``department_no`` (H&M sells one brand: its departments
  are the closest thing to brands); ``shop_id`` ``section_no`` (the section a shopper walks
  into); ``image`` the jpg or null; ``created_at`` the article's first purchase in the whole
  file, at midnight UTC (the catalogue has no listing date; not the first kept purchase, so
  ``--since`` and ``--max_customers`` do not move it); ``price`` the mean price of the article's
  purchases in the whole file (prices are scaled by H&M; a static attribute, so it also
  reflects later markdowns). A bought article missing from ``articles.csv`` keeps its id with
  an empty title, ``unknown`` category and empty brand and shop (counted).
- events: every purchase is a click and an ``order``; ``cart`` is absent (0, and
  ``dataset.json`` ``tasks`` is ``[click, order]``). ``t_dat`` has no time of day: ``ts`` is
  midnight UTC of ``t_dat``, so all purchases of a customer-day form one request, and repeat
  purchases of an article on one day are one positive (quantities are lost). Requests get
  sampled negatives (:mod:`ppm.data.public.common`). Nothing was displayed in a known order:
  ``position`` is 0 (the serving default) and ``rank`` null for every event, and
  ``dataset.json`` says ``positions: "none"``.
  ``sales_channel_id`` is checked, not used.
- users: ``user_id`` the customer id; ``user_age`` (``16-24``, ``25-34``, ``35-44``,
  ``45-54``, ``55-64``, ``65+``, ``under 16``, ``unknown`` when empty),
  ``user_club_member_status`` and ``user_fashion_news_frequency`` as published (``None`` and
  ``NONE`` both ``NONE``; empty when empty). All three are empty when ``customers.csv`` is
  missing or lacks the customer (counted). ``FN``, ``Active`` and postal codes are not used.
- windows by time quantiles of the purchases
  (:func:`~ppm.data.public.common.quantile_windows`).
- ``queries.parquet`` (unless ``--no_queries``): H&M has no search logs. The one honest text
  query is an article's product name: one ``text`` row per item with a non-empty ``prod_name``,
  ``query`` the ``prod_name`` as published. A product name is shared by all colours of a
  product, each its own row; the query is a prefix of the item's title, an easy retrieval task.
"""

from __future__ import annotations

import argparse
import calendar
import codecs
import datetime
import logging
import os
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
from tqdm.auto import tqdm

from ppm.data import canonical
from ppm.data.public import common

logger = logging.getLogger(__name__)

TRANSACTIONS = "transactions_train.csv"
ARTICLES = "articles.csv"
CUSTOMERS = "customers.csv"
IMAGES = "images"
LAYOUT = ("the unpacked H&M competition archive: transactions_train.csv and articles.csv "
          "(required), customers.csv and images/<first 3 digits>/<article_id>.jpg (optional)")
TRANSACTION_COLUMNS = ("t_dat", "customer_id", "article_id", "price", "sales_channel_id")
ARTICLE_COLUMNS = ("article_id", "prod_name", "product_type_name", "colour_group_name",
                   "department_no", "section_no")
CUSTOMER_COLUMNS = ("customer_id", "age", "club_member_status", "fashion_news_frequency")
USER_COLUMNS = ("user_age", "user_club_member_status", "user_fashion_news_frequency")
AGE_GROUPS = ((65, "65+"), (55, "55-64"), (45, "45-54"), (35, "35-44"), (25, "25-34"),
              (16, "16-24"))
LICENCE = ("H&M Personalized Fashion Recommendations (Kaggle competition data, H&M Group): the "
           "competition rules allow use for the competition and research only and forbid "
           "redistribution; images belong to H&M. Nothing converted here may be committed.")
_BLOCK = 16 << 20  # bytes of CSV per streamed batch


def age_group(age: float) -> str:
    """The age bucket of an age in years (``unknown`` for a missing age)."""
    if not np.isfinite(age):
        return "unknown"
    return next((name for low, name in AGE_GROUPS if age >= low), "under 16")


def _not_utf8(path: str) -> common.AdapterError:
    """The error for a file that is not UTF-8, with the first bad byte's offset."""
    decoder, offset = codecs.getincrementaldecoder("utf-8")(), 0
    with open(path, "rb") as f:
        while chunk := f.read(_BLOCK):
            pending = decoder.getstate()[0]  # a character cut by the previous chunk
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as e:
                data = pending + chunk
                return common.AdapterError(
                    f"{path}: not UTF-8 text (byte {offset - len(pending) + e.start}: "
                    f"{data[e.start:e.start + 8]!r}); is this the published file?")
            offset += len(chunk)
    return common.AdapterError(f"{path}: not UTF-8 text; is this the published file?")


def _header(path: str, expected) -> list[str]:
    """The column names of a CSV file; AdapterError naming the missing ones."""
    with open(path, "rb") as f:
        line = f.readline(1 << 16)
    try:
        text = line.decode("utf-8").lstrip("\ufeff").rstrip("\r\n")
    except UnicodeDecodeError as e:
        raise _not_utf8(path) from e
    names = [n.strip().strip('"') for n in text.split(",")]
    missing = [c for c in expected if c not in names]
    if missing:
        seps = [s for s in (";", "\t", "|") if s in text]
        hint = (f"; it looks {seps[0]!r}-separated, the published files are comma-separated"
                if seps else "")
        raise common.AdapterError(
            f"{path}: the header lacks columns {missing}{hint}. Header: {text[:120]!r}")
    return names


def _batches(path: str, columns, problems: common.Problems, newlines: bool = False):
    """Streams ``columns`` of a CSV file as pandas frames of strings (empty fields ``""``).

    Rows with the wrong field count are counted and skipped; undecodable text is an
    AdapterError.
    """
    name = os.path.basename(path)
    header = _header(path, columns)

    def invalid(row):
        problems.add(f"{name}: malformed line skipped", 1,
                     f"{row.actual_columns} fields, expected {row.expected_columns}: "
                     f"{row.text[:80]!r}")
        return "skip"

    try:
        reader = pa_csv.open_csv(
            path, read_options=pa_csv.ReadOptions(block_size=_BLOCK),
            parse_options=pa_csv.ParseOptions(newlines_in_values=newlines,
                                               invalid_row_handler=invalid),
            convert_options=pa_csv.ConvertOptions(
                column_types={c: pa.string() for c in header}, include_columns=list(columns),
                strings_can_be_null=False, quoted_strings_can_be_null=False))
        for batch in reader:
            yield batch.to_pandas().apply(lambda s: s.str.strip())
    except pa.ArrowInvalid as e:
        if "UTF8" in str(e):
            raise _not_utf8(path) from e
        raise common.AdapterError(f"{path}: not a readable CSV file ({e})") from e


def _article_ids(ids: pd.Series, bad: pd.Series, name: str, problems) -> pd.Series:
    """10-digit ids; a 9-digit id (written as an integer) gets its leading zero back."""
    short = ids.str.fullmatch(r"\d{9}") & ~bad
    problems.add(f"{name}: article ids without their leading zero (zero restored)",
                 int(short.sum()), ids[short].iloc[0] if short.any() else None)
    return ids.where(~short, ids.str.zfill(10))


def _skip(df: pd.DataFrame, checks, name: str, problems) -> pd.Series:
    """Rows failing a check, each counted under the first check it fails."""
    bad = pd.Series(False, index=df.index)
    for col, fail in checks:
        new = fail & ~bad
        if new.any():
            problems.add(f"{name}: unparsable {col} (row skipped)", int(new.sum()),
                         ",".join(df.loc[new].iloc[0]))
        bad |= fail
    return bad


def _transactions(path: str, problems: common.Problems):
    """Valid purchases as frames: ``ts`` (day, unix seconds), ``customer_id``, ``item_id``,
    ``price``."""
    for df in _batches(path, TRANSACTION_COLUMNS, problems):
        day = pd.to_datetime(df["t_dat"], format="%Y-%m-%d", errors="coerce")
        price = pd.to_numeric(df["price"], errors="coerce")
        ids = df["article_id"]
        bad = _skip(df, [("t_dat", day.isna()), ("customer_id", df["customer_id"] == ""),
                         ("article_id", ~ids.str.fullmatch(r"\d{9,10}")),
                         ("price", ~np.isfinite(price) | (price < 0)),
                         ("sales_channel_id", ~df["sales_channel_id"].str.fullmatch(r"\d+"))],
                    TRANSACTIONS, problems)
        ids = _article_ids(ids, bad, TRANSACTIONS, problems)
        ok = ~bad
        yield pd.DataFrame({
            "ts": day[ok].to_numpy("datetime64[s]").astype(np.int64),
            "customer_id": df.loc[ok, "customer_id"].to_numpy(object),
            "item_id": ids[ok].to_numpy(object), "price": price[ok].to_numpy(np.float64)})


def read_articles(src: str, problems: common.Problems) -> pd.DataFrame:
    """``articles.csv`` as a frame indexed by item id: ``title``, ``prod_name``,
    ``category_id``, ``brand_id``, ``shop_id``."""
    path = common.require(src, ARTICLES, LAYOUT)
    parts = []
    for df in _batches(path, ARTICLE_COLUMNS, problems, newlines=True):
        bad = _skip(df, [("article_id", ~df["article_id"].str.fullmatch(r"\d{9,10}"))],
                    ARTICLES, problems)
        df["article_id"] = _article_ids(df["article_id"], bad, ARTICLES, problems)
        parts.append(df[~bad])
    df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=list(ARTICLE_COLUMNS))
    dup = df["article_id"].duplicated()
    problems.add("duplicate article ids in articles.csv (first kept)", int(dup.sum()),
                 df.loc[dup, "article_id"].iloc[0] if dup.any() else None)
    df = df[~dup]
    return pd.DataFrame({
        "title": (df["prod_name"] + " " + df["colour_group_name"]).str.strip(),
        "prod_name": df["prod_name"],
        "category_id": df["product_type_name"].replace("", "unknown"),
        "brand_id": df["department_no"], "shop_id": df["section_no"]}).set_axis(
        df["article_id"].to_numpy(object))


def read_customers(src: str, wanted, problems: common.Problems) -> pd.DataFrame | None:
    """The ``user_*`` profile of the ``wanted`` customers, indexed by customer id; None when
    ``customers.csv`` is missing."""
    path = os.path.join(src, CUSTOMERS)
    if not os.path.exists(path):
        return None
    wanted = set(wanted)
    parts, seen = [], 0
    for df in _batches(path, CUSTOMER_COLUMNS, problems):
        seen += len(df)
        parts.append(df[df["customer_id"].isin(wanted)])
    df = pd.concat(parts, ignore_index=True)
    dup = df["customer_id"].duplicated()
    problems.add("duplicate customer ids in customers.csv (first kept)", int(dup.sum()),
                 df.loc[dup, "customer_id"].iloc[0] if dup.any() else None)
    df = df[~dup]
    age = pd.to_numeric(df["age"], errors="coerce").to_numpy(np.float64)
    news = df["fashion_news_frequency"]
    logger.info("%s: %d customers, %d of them bought", path, seen, len(df))
    return pd.DataFrame({
        "user_age": [age_group(a) for a in age],
        "user_club_member_status": df["club_member_status"].to_numpy(object),
        "user_fashion_news_frequency": news.where(news.str.upper() != "NONE", "NONE")
        .to_numpy(object)}, index=df["customer_id"].to_numpy(object))


def _since(since: str | None) -> int:
    if since is None:
        return np.iinfo(np.int64).min
    try:
        day = datetime.date.fromisoformat(since)
    except ValueError as e:
        raise ValueError(f"since {since!r} is not a YYYY-MM-DD date") from e
    return calendar.timegm(day.timetuple())


def _sample_customers(path: str, since_ts: int, n: int, seed: int) -> set:
    """``n`` customers drawn among those with a valid purchase on or after ``since_ts``."""
    seen: set = set()
    with tqdm(desc=f"{TRANSACTIONS} (customers)", unit=" rows", disable=None) as bar:
        for df in _transactions(path, common.Problems()):  # counted on the second pass
            seen.update(df.loc[df["ts"] >= since_ts, "customer_id"])
            bar.update(len(df))
    pool = np.array(sorted(seen), dtype=object)
    rng = np.random.default_rng(seed)
    return set(pool[rng.choice(len(pool), size=min(n, len(pool)), replace=False)])


def convert(src: str, out: str, since: str | None = None, max_customers: int | None = None,
            negatives_per_positive: int = 4, seed: int = 0,
            queries: bool = True) -> canonical.DatasetMeta:
    """Converts an unpacked H&M competition folder; returns the written dataset.json.

    Args:
      src: the folder holding ``transactions_train.csv``, ``articles.csv``, ...
      out: the dataset folder to write.
      since: ``YYYY-MM-DD``: purchases before this day are dropped.
      max_customers: keep the purchases of this many customers (seeded draw), or all.
      negatives_per_positive: negatives drawn per purchased article of a request.
      seed: the customer draw and the negative draws.
      queries: write ``queries.parquet`` (product names as text queries).

    Raises:
      AdapterError: a missing file, a wrong separator or encoding, no purchase left, too
        little time.
      ValueError: a malformed ``since`` or ``max_customers < 1``.
    """
    since_ts = _since(since)
    if max_customers is not None and max_customers < 1:
        raise ValueError(f"max_customers must be >= 1, got {max_customers}")
    problems = common.Problems()
    path = common.require(src, TRANSACTIONS, LAYOUT)
    common.require(src, ARTICLES, LAYOUT)
    chosen = None if max_customers is None else _sample_customers(path, since_ts,
                                                                  max_customers, seed)
    kept, stats, total, before = [], [], 0, 0
    with tqdm(desc=TRANSACTIONS, unit=" rows", disable=None) as bar:
        for df in _transactions(path, problems):
            total += len(df)
            bar.update(len(df))
            stats.append(df.groupby("item_id").agg(first=("ts", "min"), sum=("price", "sum"),
                                                   n=("price", "size")))
            keep = (df["ts"] >= since_ts).to_numpy()
            before += int((~keep).sum())
            if chosen is not None:
                keep &= df["customer_id"].isin(chosen).to_numpy()
            kept.append(df[keep])
    purchases = pd.concat(kept, ignore_index=True).rename(columns={"customer_id": "user_id"})
    if purchases.empty:
        raise common.AdapterError(f"{path}: no valid purchase" + (
            f" on or after --since {since}" if since else ""))
    logger.info("%s: %d valid purchases, %d kept", path, total, len(purchases))
    stats = pd.concat(stats).groupby(level=0).agg({"first": "min", "sum": "sum", "n": "sum"})
    articles = read_articles(src, problems)
    bought = np.array(sorted(purchases["item_id"].unique()), dtype=object)
    items = articles.reindex(bought)
    missing = items["title"].isna()
    problems.add("purchased articles missing from articles.csv (kept, empty title)",
                 int(missing.sum()), bought[missing.to_numpy()][0] if missing.any() else None)
    items = items.fillna({"title": "", "prod_name": "", "category_id": "unknown",
                          "brand_id": "", "shop_id": ""})
    items = items.rename_axis("item_id").reset_index()
    items["entity"] = items["category_id"]
    items["created_at"] = items["item_id"].map(stats["first"]).astype(np.int64)
    items["price"] = items["item_id"].map(stats["sum"] / stats["n"]).astype(np.float64)
    items["image"] = _images(items["item_id"], os.path.join(src, IMAGES), problems)
    users = np.array(sorted(purchases["user_id"].unique()), dtype=object)
    profile = read_customers(src, users, problems)
    if profile is None:
        problems.add("customers.csv missing (every user profile empty)", len(users),
                     os.path.join(src, CUSTOMERS))
        profile = pd.DataFrame(columns=list(USER_COLUMNS), dtype=object)
    else:
        absent = ~pd.Index(users).isin(profile.index)
        problems.add("customers missing from customers.csv (empty profile)",
                     int(absent.sum()), users[absent][0] if absent.any() else None)
    for col in USER_COLUMNS:
        purchases[col] = purchases["user_id"].map(profile[col]).fillna("").astype(object)
    events = common.impressions(
        purchases.assign(click=1, order=1, cart=0)[
            ["user_id", "ts", "item_id", "click", "order", "cart", *USER_COLUMNS]],
        items.set_index("item_id")["created_at"], negatives_per_positive, seed, problems)
    windows = common.quantile_windows(events["ts"].to_numpy())
    texts = None
    if queries:
        named = items[items["prod_name"] != ""]
        texts = pd.DataFrame({"query": named["prod_name"], "item_id": named["item_id"],
                              "kind": "text", "query_image": None})
    problems.log()
    source = f"ppm.data.public.hm --src {src}" + "".join(
        f" --{flag} {value}" for flag, value, default in (
            ("since", since, None), ("max_customers", max_customers, None),
            ("negatives", negatives_per_positive, 4), ("seed", seed, 0)) if value != default)
    meta = canonical.DatasetMeta(
        name="hm", source=source + ("" if queries else " --no_queries"), windows=windows,
        tasks=["click", "order"], counts=common.counts(items, events), licence=LICENCE,
        positions="none",
        extra={"transactions": total, "transactions_kept": len(purchases),
               "transactions_before_since": before, "since": since,
               "max_customers": max_customers, "customers": len(users),
               "negatives_per_positive": negatives_per_positive, "seed": seed,
               "images": int(items["image"].notna().sum()),
               "articles_not_bought": int((~articles.index.isin(bought)).sum()),
               "queries": 0 if texts is None else len(texts), "problems": problems.to_dict(),
               "mapping": {"click": "every purchase", "order": "every purchase",
                           "cart": "absent", "ts": "t_dat midnight UTC",
                           "title": "prod_name + colour_group_name",
                           "category_id": "product_type_name", "brand_id": "department_no",
                           "shop_id": "section_no", "created_at": "first purchase",
                           "price": "mean purchase price", "queries": "prod_name",
                           "position": "0: nothing was displayed (positions: none)",
                           "rank": "null"}})
    common.write_dataset(out, items.drop(columns=["prod_name"]), events, meta, texts)
    return meta


def _images(ids: pd.Series, folder: str, problems: common.Problems) -> list:
    return common.read_images([os.path.join(folder, i[:3], f"{i}.jpg") for i in ids], problems,
                              "articles without an image (no image)", progress=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ppm.data.public.hm", description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", required=True,
                        help="Unpacked competition folder (transactions_train.csv, ...).")
    parser.add_argument("--out", required=True, help="Output dataset folder.")
    parser.add_argument("--since", default=None,
                        help="YYYY-MM-DD: drop purchases before this day (default: keep all).")
    parser.add_argument("--max_customers", type=int, default=None,
                        help="Keep the purchases of N customers drawn with --seed (default all).")
    parser.add_argument("--negatives", type=int, default=4,
                        help="Negatives drawn per purchased article (default 4).")
    parser.add_argument("--seed", type=int, default=0,
                        help="Seed of the customer draw and the negative draws.")
    parser.add_argument("--no_queries", action="store_true",
                        help="Write no queries.parquet (product names as text queries).")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.negatives < 0:
        parser.error("--negatives must be >= 0")
    if args.max_customers is not None and args.max_customers < 1:
        parser.error("--max_customers must be >= 1")
    try:
        _since(args.since)
    except ValueError as e:
        parser.error(f"--{e}")
    return common.run_cli(lambda: convert(args.src, args.out, args.since, args.max_customers,
                                          args.negatives, args.seed, not args.no_queries),
                          args.out)


if __name__ == "__main__":
    sys.exit(main())
