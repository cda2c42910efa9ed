"""What the public-data adapters share: requests from interactions, windows, counted problems.

**Requests from interactions** (MovieLens, H&M have interactions, not logged impressions):
:func:`impressions` groups a user's interactions of one UTC day into one request; each
interacted item is a positive (duplicates within the day merged, labels OR-ed) and
``negatives_per_positive`` negatives are drawn from the items *available* then (first seen
before the end of that day), with probability proportional to ``(count + 1) ** 0.75``, where
``count`` is the item's interactions on earlier days (popular items are drawn more often, as a
ranker would show them, without looking into the future; the exponent is word2vec's). Draws
are seeded. Nothing was displayed, so nothing is invented about a display: ``position`` is 0
(the serving default: the client scores every candidate at position 0) and ``rank`` is null
for every event, and the adapters write ``positions: "none"`` in ``dataset.json``. (These
columns used to hold the order of a simulated popularity ranker: a feature the served model
never sees, and one that told the model which candidates were the drawn negatives.) A
request's rows are sorted by item id. The request's ``ts`` is its first interaction of the
day, so the history of every candidate is what the user did on earlier days; an item's
availability (its ``created_at``) must therefore be at the latest the start of the UTC day of
its first interaction (:func:`day_start`), or a request would show it before it existed.

**Windows** (:func:`quantile_windows`): from the data's own time range, cut at UTC day
boundaries near the quantiles of event time: ``pretrain`` the first half of the events,
``train_large`` the next 40% (``train_small`` its second half), ``test`` the rest.

**Problems** (:class:`Problems`): rows that cannot be used (truncated, unparsable) and missing
files of optional parts (posters, images) are counted with an example and logged, recorded in
``dataset.json`` under ``extra.problems``; nothing is dropped silently. A missing required file
or a file in the wrong format (separator, encoding) is an :class:`AdapterError`.
"""

from __future__ import annotations

import collections
import logging
import os
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ppm.data import canonical

logger = logging.getLogger(__name__)
DAY = 86400
POPULARITY_EXPONENT = 0.75


class AdapterError(ValueError):
    """Input that cannot be converted: a missing file, a wrong separator or encoding."""


class Problems:
    """Counted, logged problems of a conversion (``extra.problems`` of dataset.json)."""

    def __init__(self):
        self.counts: collections.Counter = collections.Counter()
        self.examples: dict = {}

    def add(self, kind: str, n: int = 1, example=None) -> None:
        if n <= 0:
            return
        self.counts[kind] += int(n)
        if example is not None and kind not in self.examples:
            self.examples[kind] = str(example)[:200]

    def to_dict(self) -> dict:
        return {k: {"count": n, **({"example": self.examples[k]} if k in self.examples else {})}
                for k, n in sorted(self.counts.items())}

    def log(self) -> None:
        for kind, n in sorted(self.counts.items()):
            example = f" (e.g. {self.examples[kind]})" if kind in self.examples else ""
            logger.warning("%d x %s%s", n, kind, example)


def require(src: str, name: str, what: str) -> str:
    """``src/name``; AdapterError naming the dataset layout when it is missing."""
    path = os.path.join(src, name)
    if not os.path.exists(path):
        raise AdapterError(f"{path} is missing: --src must hold {what}")
    return path


def read_text(path: str, encoding: str) -> str:
    """A whole text file; AdapterError (with the byte offset) when it is not ``encoding``."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as e:
        raise AdapterError(f"{path}: not {encoding} text (byte {e.start}: "
                           f"{raw[e.start:e.start + 8]!r}); is this the published file?") from e


def split_lines(path: str, text: str, sep: str, fields: int, problems: Problems,
                min_fields: int | None = None) -> list[list[str]]:
    """Rows of a separated text file. A first line with the wrong field count is an
    AdapterError (wrong separator or file); later bad lines are counted and skipped."""
    rows = []
    # Not str.splitlines(): it also breaks at \x85, \u2028 and other characters that titles
    # may hold (a Latin-1 0x85 byte decodes to \x85).
    lines = [ln.rstrip("\r") for ln in text.split("\n")]
    lines = [ln for ln in lines if ln.strip()]
    low = fields if min_fields is None else min_fields
    for number, line in enumerate(lines, 1):
        parts = line.split(sep)
        if not low <= len(parts) <= fields:
            if number == 1:
                raise AdapterError(
                    f"{path}: line 1 has {len(parts)} field(s) separated by {sep!r}, expected "
                    f"{fields}; wrong file or separator? Line: {line[:120]!r}")
            problems.add(f"{os.path.basename(path)}: malformed line skipped", 1,
                         f"line {number}: {line[:80]!r}")
            continue
        rows.append(parts)
    if not rows:
        raise AdapterError(f"{path} holds no row")
    return rows


def day_start(ts) -> np.ndarray:
    return (np.asarray(ts, np.int64) // DAY) * DAY


def quantile_windows(ts: np.ndarray, pretrain: float = 0.5, train: float = 0.4) -> dict:
    """``pretrain``, ``train_small``, ``train_large``, ``test`` windows (module docstring).

    Raises:
      AdapterError: fewer than 4 distinct days of data.
    """
    days = np.unique(day_start(ts))
    if len(days) < 4:
        raise AdapterError(f"the data spans {len(days)} day(s); at least 4 are needed for "
                           "pretrain / train / test windows")
    ts = np.sort(np.asarray(ts, np.int64))

    def cut(q, low):  # a day boundary near the q-quantile, after `low`
        edge = int(day_start(ts[min(int(q * len(ts)), len(ts) - 1)]))
        return max(edge, low + DAY)

    start, end = int(days[0]), int(days[-1]) + DAY
    b1 = cut(pretrain, start)
    b3 = min(cut(pretrain + train, b1), end - DAY)
    b2 = min(max(cut(pretrain + train / 2, b1), b1 + DAY), b3 - DAY) if b3 - b1 >= 2 * DAY \
        else b1
    if b1 >= b3:
        raise AdapterError("the data is too concentrated in time for three windows")
    return {"pretrain": [start, b1], "train_large": [b1, b3], "train_small": [b2, b3],
            "test": [b3, end]}


def impressions(interactions: pd.DataFrame, available_from: pd.Series,
                negatives_per_positive: int = 4, seed: int = 0,
                problems: Problems | None = None) -> pd.DataFrame:
    """Requests with sampled negatives from interactions (module docstring).

    Args:
      interactions: ``user_id``, ``ts``, ``item_id`` and 0/1 label columns ``click``,
        ``order``, ``cart``; any ``user_*`` columns are carried to the user's requests.
      available_from: unix seconds from which each item (index: item id) can be shown.
      negatives_per_positive: negatives drawn per positive of a request.
      seed: the draws.
      problems: counts requests that got fewer negatives than asked (too few items available).

    Returns:
      events (canonical columns + ``user_*``), sorted by ``ts``, ``request_id``, ``item_id``;
      ``position`` 0 and ``rank`` null (module docstring).
    """
    rng = np.random.default_rng(seed)
    labels = ["click", "order", "cart"]
    user_cols = [c for c in interactions.columns if c.startswith("user_") and c != "user_id"]
    df = interactions.assign(day=day_start(interactions["ts"]))
    agg = {"ts": "min", **{c: "max" for c in labels}, **{c: "first" for c in user_cols}}
    pos = df.groupby(["user_id", "day", "item_id"], sort=False, as_index=False).agg(agg)
    pos["ts"] = pos.groupby(["user_id", "day"])["ts"].transform("min")
    item_ids = np.array(sorted(available_from.index), dtype=object)
    index = {i: k for k, i in enumerate(item_ids)}
    avail = available_from.reindex(item_ids).to_numpy(np.int64)
    pos["item"] = pos["item_id"].map(index)
    if pos["item"].isna().any():
        raise ValueError("interactions name items without an availability time")
    pos["item"] = pos["item"].astype(np.int64)
    counts_by_day = pos.groupby(["day", "item"]).size()
    earlier = np.zeros(len(item_ids), np.int64)  # interactions on days before the current one
    out = []
    for day, block in pos.groupby("day", sort=True):
        block = block.copy()
        pool = np.flatnonzero(avail < day + DAY)
        weights = (earlier[pool] + 1.0) ** POPULARITY_EXPONENT
        weights /= weights.sum()
        negs = _draw_negatives(block, pool, weights, negatives_per_positive, rng, problems,
                               day)
        if len(negs):
            first = block.groupby("user_id", sort=False).first()
            negs = negs.join(first[["ts"] + user_cols], on="user_id")
            negs["day"] = day
            for c in labels:
                negs[c] = 0
            negs = [negs]
        else:
            negs = []
        out.append(pd.concat([block] + negs, ignore_index=True))
        today = counts_by_day.loc[day]  # one row per item: plain fancy-index addition
        earlier[today.index.to_numpy(np.int64)] += today.to_numpy(np.int64)
    events = pd.concat(out, ignore_index=True)
    events["item_id"] = item_ids[events["item"].to_numpy(np.int64)]
    events["position"] = np.int64(0)
    events["rank"] = pd.array([pd.NA] * len(events), dtype="Int64")
    events["request_id"] = events["user_id"].astype(str) + "@" + (
        events["day"] // DAY).astype(str)
    events["query"] = ""
    for c in labels:
        events[c] = events[c].astype(np.int64)
    events = events.sort_values(["ts", "request_id", "item_id"], kind="stable")
    cols = [c.name for c in canonical.EVENT_COLUMNS] + user_cols
    return events[cols].reset_index(drop=True)


def _draw_negatives(block, pool, weights, per_positive, rng, problems, day) -> pd.DataFrame:
    """``user_id``, ``item`` negatives for one day's sessions: vectorised weighted draws with
    replacement, duplicates and the session's positives redrawn (8 rounds), then, for sessions
    still short (pools barely larger than the request), the most popular remaining items."""
    want = block.groupby("user_id", sort=False).size() * per_positive
    positives = set(zip(block["user_id"], block["item"]))
    chosen = pd.DataFrame({"user_id": pd.Series(dtype=object), "item": pd.Series(dtype=np.int64)})
    short = want[want > 0]
    for _ in range(8):
        if short.empty:
            break
        users = np.repeat(short.index.to_numpy(), short.to_numpy() * 2)
        draws = pd.DataFrame({"user_id": users,
                              "item": rng.choice(pool, size=len(users), p=weights)})
        draws = draws[[(u, i) not in positives for u, i in zip(draws["user_id"], draws["item"])]]
        chosen = pd.concat([chosen, draws], ignore_index=True).drop_duplicates(
            ["user_id", "item"])
        chosen = chosen[chosen.groupby("user_id").cumcount() < chosen["user_id"].map(want)]
        have = chosen.groupby("user_id").size().reindex(want.index, fill_value=0)
        short = (want - have)[lambda d: d > 0]
    if not short.empty:  # tiny pools: the most popular items left, deterministic
        order = pool[np.argsort(-weights, kind="stable")]
        extra = []
        own = block.groupby("user_id", sort=False)["item"].agg(set)
        for user, n in short.items():
            taken = own[user] | set(chosen.loc[chosen["user_id"] == user, "item"])
            rest = [i for i in order if i not in taken][:n]
            extra.append(pd.DataFrame({"user_id": user, "item": np.array(rest, np.int64)}))
            if problems is not None and len(rest) < n:
                problems.add("requests with fewer negatives than asked (few items available)",
                             1, f"user {user} day {day}")
        chosen = pd.concat([chosen] + extra, ignore_index=True)
    return chosen.reset_index(drop=True).astype({"item": np.int64})


def write_dataset(out: str, items: pd.DataFrame, events: pd.DataFrame, meta: canonical.DatasetMeta,
                  queries: pd.DataFrame | None = None) -> None:
    """Writes the canonical files (Arrow types of :mod:`ppm.data.canonical`) and dataset.json."""
    os.makedirs(out, exist_ok=True)
    item_extra = {c: pa.string() for c in items.columns
                  if c not in {col.name for col in canonical.ITEM_COLUMNS}}
    schema = canonical.arrow_schema(canonical.ITEM_COLUMNS, item_extra)
    schema = pa.schema([f for f in schema if f.name in items.columns])
    pq.write_table(pa.Table.from_pandas(items[schema.names], schema=schema,
                                        preserve_index=False),
                   os.path.join(out, canonical.ITEMS_FILE), row_group_size=4096)
    user_cols = [c for c in events.columns if c.startswith("user_") and c != "user_id"]
    schema = canonical.arrow_schema(canonical.EVENT_COLUMNS, {c: pa.string() for c in user_cols})
    pq.write_table(pa.Table.from_pandas(events[schema.names], schema=schema,
                                        preserve_index=False),
                   os.path.join(out, canonical.EVENTS_FILE))
    if queries is not None:
        schema = canonical.arrow_schema(canonical.QUERY_COLUMNS)
        schema = pa.schema([f for f in schema if f.name in queries.columns])
        pq.write_table(pa.Table.from_pandas(queries[schema.names], schema=schema,
                                            preserve_index=False),
                       os.path.join(out, canonical.QUERIES_FILE))
    canonical.write_meta(out, meta)


def counts(items: pd.DataFrame, events: pd.DataFrame) -> dict:
    return {"items": len(items), "events": len(events),
            "requests": int(events["request_id"].nunique()),
            "users": int(events["user_id"].nunique()),
            **{f"{c}s": int(events[c].sum()) for c in ("click", "order", "cart")}}


def read_images(paths, problems: Problems, missing: str, progress: bool = False) -> list:
    """The bytes of each image file (None for a path that is None or does not exist: counted
    under ``missing``)."""
    from tqdm.auto import tqdm

    out = []
    for path in tqdm(paths, desc="images", unit=" files", disable=None if progress else True):
        if path is not None and os.path.exists(path):
            with open(path, "rb") as f:
                out.append(f.read())
        else:
            problems.add(missing, 1, path)
            out.append(None)
    return out


def run_cli(convert, out: str) -> int:
    """Runs an adapter's ``convert()`` for its CLI: exit 2 with ``error: ...`` on an
    AdapterError, else :func:`finish`'s code."""
    try:
        meta = convert()
    except AdapterError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return finish(out, meta)


def finish(out: str, meta: canonical.DatasetMeta) -> int:
    """Validates the written dataset, prints its counts and the report; the CLI exit code."""
    from ppm.data import validate

    report = validate.validate(out)
    print(f"{meta.name} -> {out}: {meta.counts}")
    problems = meta.extra.get("problems", {})
    for kind, p in problems.items():
        print(f"  {p['count']} x {kind}")
    print(report)
    return 0 if report.ok else 1
