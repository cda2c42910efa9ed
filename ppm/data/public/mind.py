"""MIND (Microsoft News Recommendation Dataset, MINDsmall and MINDlarge) -> the canonical dataset.

    python -m ppm.data.public.mind --src DIR --out DIR [--dev DIR]

``--src`` is one unpacked split folder (``MINDsmall_train/``: ``behaviors.tsv``, ``news.tsv``);
``--dev`` optionally the dev split folder (``MINDsmall_dev/``), whose impressions become the test
window. MIND's test split (``MINDlarge_test``) has no click labels and is refused. The variant is
read from the folder name (``MINDsmall_*`` -> ``mind-small``, ``MINDlarge_*`` -> ``mind-large``,
otherwise ``mind``).

Formats read (as published: UTF-8, tab-separated, no header): ``behaviors.tsv`` ``impression
id, user id, time, history, impressions``: time like ``11/11/2019 9:05:58 AM`` (month/day/year,
12-hour clock; read as UTC), history the space-separated ids of the news the user clicked before
the data, oldest first (msnews/msnews.github.io#20), impressions space-separated ``N1-1 N2-0``
(news id, dash, click label); ``news.tsv`` ``news id, category, subcategory, title, abstract, url,
title entities, abstract entities`` (the entity columns are JSON and not read).

Mapping (MIND logs impressions with clicks: no orders, carts, prices, images or profiles):

- events: every impression candidate is one event with its click label; ``order`` and ``cart``
  are 0 and ``dataset.json`` ``tasks`` is ``[click]`` (``label_rules`` keep the default "no
  order or cart without a click", trivially true). ``request_id`` is ``src-<impression id>``
  (``dev-<impression id>`` for ``--dev``), ``ts`` the time column, ``rank`` null (unknown),
  ``position`` 0 for every event and ``dataset.json`` ``positions: "none"``. MIND shuffled its
  impression lists (msnews/msnews.github.io#8), so the index in a list is not the on-screen
  slot: it carries no position bias, but it does encode the list's length (a candidate at
  index 40 is in a list of more than 40, whose click rate is lower), which a model would learn
  and serving (every candidate at position 0) would not have. The rows of an impression keep
  the published order. A news id repeated within an impression is kept once (first place,
  labels OR-ed; counted).
- history: the history column holds clicks from the four weeks before the data, without times
  but oldest first. Each click of a user's history becomes a request of its own,
  ``hist-<user id>-<k>`` (``k`` its place in the list, from 0), one second apart: the most
  recent at ``history_ts`` = the ``pretrain`` start - 1 s, the one before it 1 s earlier, and so
  on (outside every window: history only; ``validate`` warns, it does not fail). The times keep
  the order (the most recent click comes first in the most-recent-first histories of
  ``beam_jobs.build_examples``; later in-window clicks follow it); the seconds are invented.
  The history is the one of the user's first impression: MIND builds it from the weeks before
  the data, so later impressions repeat it (users whose impressions disagree are counted in
  ``extra.users_with_differing_histories``). A news id repeated within a history is kept at its
  most recent place (counted). The recency of these clicks is a lower bound (times unknown).
- items: ``item_id`` the news id; ``title`` the title (UTF-8 as published); ``category_id`` the
  category; ``brand_id`` and ``entity`` the subcategory (``entity`` is the finest published
  label of what the item is, as a product type is for a shop; it is only a training target with
  images, which MIND lacks); ``shop_id`` empty (every URL has the host ``assets.msn.com``, and
  MIND names no publisher); ``image`` null; ``created_at`` the news' first event: its first
  history click if it was clicked before the data, else its first impression (news never
  referenced: ``history_ts``), so no event precedes it. News referenced by ``behaviors.tsv``
  but missing from ``news.tsv`` keep their id with empty title and categories (counted). With
  ``--dev`` the two ``news.tsv`` are merged (``--src`` first; rows that differ are counted).
- users: MIND has no profile: no ``user_*`` columns.
- windows: without ``--dev`` by time quantiles of the impression candidates
  (:func:`~ppm.data.public.common.quantile_windows`; MINDsmall's train split spans 6 days,
  9-14 Nov 2019). With ``--dev`` (:func:`dev_windows`): ``test`` from the first to the last dev
  impression; ``--src``'s days split into ``pretrain`` (the first half of its impressions) and
  ``train_large`` up to the test start, ``train_small`` its last quarter.
- no ``queries.parquet``: MIND has no search logs.

Problems: truncated rows, unparsable times, empty ids and duplicate impression ids skip their
row; malformed impression tokens (``N1``, ``N1-x``, ``-1``) skip the token (the other candidates
keep their published order); all counted in ``extra.problems``. Titles are kept as
published, U+2028 and other Unicode line separators included (lines split at ``\n`` only).
"""

from __future__ import annotations

import argparse
import array
import logging
import os
import re
import sys

import numpy as np
import pandas as pd
from tqdm import tqdm

from ppm.data import canonical
from ppm.data.public import common

logger = logging.getLogger(__name__)

LICENCE = ("MIND (Microsoft News Dataset) is licensed under the Microsoft Research License "
           "Terms: non-commercial research use only; it may not be redistributed. Nothing "
           "converted here may be committed.")
LAYOUT = ("a MIND split folder (behaviors.tsv and news.tsv, e.g. MINDsmall_train/ from "
          "MINDsmall_train.zip)")
TIME_FORMAT = "%m/%d/%Y %I:%M:%S %p"
_VARIANT = re.compile(r"mind[_-]?(small|large)", re.IGNORECASE)
BEHAVIORS = "behaviors.tsv"


def parse_times(values) -> np.ndarray:
    """Unix seconds of MIND times (``11/11/2019 9:05:58 AM``, UTC); -1 where unparsable."""
    parsed = pd.to_datetime(pd.Series(values, dtype=object), format=TIME_FORMAT,
                            errors="coerce")
    seconds = (parsed - pd.Timestamp("1970-01-01")) // pd.Timedelta(seconds=1)
    return seconds.fillna(-1).to_numpy(np.int64)


def variant(folder: str) -> str | None:
    """``"small"`` or ``"large"`` from a split folder's name (``MINDsmall_train``), else None."""
    m = _VARIANT.search(os.path.basename(os.path.normpath(os.path.abspath(folder))))
    return m.group(1).lower() if m else None


def read_news(folder: str, problems: common.Problems) -> dict:
    """``news id -> (category, subcategory, title)`` from ``folder/news.tsv``."""
    path = common.require(folder, "news.tsv", LAYOUT)
    text = common.read_text(path, "utf-8")
    news = {}
    for r in common.split_lines(path, text, "\t", 8, problems):
        nid = r[0].strip()
        if not nid:
            problems.add("news.tsv: malformed line skipped", 1, f"empty news id: {r[:4]}")
        elif nid in news:
            problems.add("news.tsv: duplicate news ids (first kept)", 1, nid)
        else:
            news[nid] = (r[1], r[2], r[3])
    return news


class Behaviors:
    """Impressions of one or more ``behaviors.tsv`` as integer-coded arrays.

    Attributes:
      items, users: id -> code, in order of first appearance.
      request_ids, request_ts, request_user: one entry per request (impression).
      event_request, event_item, event_click, event_position: one entry per candidate
        (``event_position``: its index in the published list, which orders the rows of a
        request; it is not written: every ``position`` is 0).
      first_history: user code -> (ts, history text) of the user's first impression.
      impressions: impressions read per role (``src``, ``dev``).
    """

    def __init__(self):
        self.items: dict = {}
        self.users: dict = {}
        self.request_ids: list = []
        self.request_ts = array.array("q")
        self.request_user = array.array("i")
        self.event_request = array.array("i")
        self.event_item = array.array("i")
        self.event_click = array.array("b")
        self.event_position = array.array("i")
        self.first_history: dict = {}
        self.differing: set = set()
        self.impressions: dict = {}
        self._history_hash: dict = {}

    def read(self, folder: str, role: str, problems: common.Problems) -> None:
        """Adds the impressions of ``folder/behaviors.tsv``; request ids ``<role>-<id>``.

        Raises:
          AdapterError: a missing file, a wrong separator or encoding, MIND's unlabelled test
            split.
        """
        path = common.require(folder, BEHAVIORS, LAYOUT)
        rows = common.split_lines(path, common.read_text(path, "utf-8"), "\t", 5, problems)
        first = rows[0][4].split()
        if first and not any("-" in t for t in first):
            raise common.AdapterError(
                f"{path}: the first impression carries no click labels ({first[0]!r}, not "
                "'N1-1'): MIND's test split has none and cannot be converted; use the train "
                "split as --src and the dev split as --dev")
        times = parse_times([r[2].strip() for r in rows])
        seen = set()
        n = 0
        for r, ts in zip(tqdm(rows, desc=f"{role} {BEHAVIORS}", unit=" impressions",
                              mininterval=2, disable=None), times):
            imp, user = r[0].strip(), r[1].strip()
            if ts < 0:
                problems.add(f"{BEHAVIORS}: rows with an unparsable time skipped", 1,
                             f"{role} impression {imp}: {r[2]!r}")
            elif not imp or not user:
                problems.add(f"{BEHAVIORS}: rows with an empty impression or user id skipped",
                             1, f"{role}: {r[:3]}")
            elif imp in seen:
                problems.add(f"{BEHAVIORS}: duplicate impression ids (later rows skipped)", 1,
                             f"{role} impression {imp}")
            else:
                seen.add(imp)
                n += self._add(f"{role}-{imp}", user, int(ts), r[3], r[4], problems)
        if not n:
            raise common.AdapterError(f"{path}: no usable impression; problems: "
                                      f"{problems.to_dict()}")
        self.impressions[role] = n
        logger.info("%s: %d impressions", path, n)

    def _add(self, request_id, user, ts, history, impressions, problems) -> int:
        """Adds one impression; returns 1, or 0 when it has no usable candidate."""
        parts = [t.rpartition("-") for t in impressions.split()]
        ids = [p[0] for p in parts]
        positions = range(len(parts))
        clicks = [p[2] == "1" for p in parts]
        if not (all(p[1] and p[0] and p[2] in ("0", "1") for p in parts)
                and len(set(ids)) == len(ids)):
            ids, positions, clicks = self._clean(request_id, parts, problems)
        if not ids:
            problems.add(f"{BEHAVIORS}: impressions without a usable candidate skipped", 1,
                         request_id)
            return 0
        u = self.users.setdefault(user, len(self.users))
        key = hash(history)
        if self._history_hash.setdefault(u, key) != key:
            self.differing.add(u)
        if u not in self.first_history or ts < self.first_history[u][0]:
            self.first_history[u] = (ts, history)
        req = len(self.request_ids)
        self.request_ids.append(request_id)
        self.request_ts.append(ts)
        self.request_user.append(u)
        items = self.items
        self.event_request.extend([req] * len(ids))
        self.event_item.extend([items.setdefault(nid, len(items)) for nid in ids])
        self.event_click.extend(clicks)
        self.event_position.extend(positions)
        return 1

    @staticmethod
    def _clean(request_id, parts, problems):
        """(ids, positions, clicks) of an impression with malformed or repeated tokens."""
        clicks, positions = {}, {}
        for position, (nid, dash, label) in enumerate(parts):
            if not dash or not nid or label not in ("0", "1"):
                problems.add(f"{BEHAVIORS}: malformed impression tokens skipped", 1,
                             f"{request_id}: {nid + dash + label!r}")
            elif nid in clicks:
                clicks[nid] |= label == "1"
                problems.add(f"{BEHAVIORS}: news repeated within an impression (first position "
                             "kept, labels OR-ed)", 1, f"{request_id}: {nid}")
            else:
                clicks[nid], positions[nid] = label == "1", position
        return list(clicks), [positions[n] for n in clicks], list(clicks.values())

    def add_histories(self, ts: int, problems: common.Problems) -> int:
        """Adds one ``hist-<user>-<k>`` request per history click, the most recent at ``ts``,
        earlier ones a second apart before it; returns the number of history events (module
        docstring)."""
        names = list(self.users)
        n = 0
        for u, (_, history) in tqdm(sorted(self.first_history.items()), desc="histories",
                                    unit=" users", mininterval=2, disable=None):
            ids = history.split()
            last = {nid: k for k, nid in enumerate(ids)}  # most recent place of each id
            if len(last) < len(ids):
                problems.add(f"{BEHAVIORS}: news repeated within a history (most recent "
                             "kept)", len(ids) - len(last), f"user {names[u]}")
            ordered = sorted(last, key=last.get)  # oldest first
            for k, nid in enumerate(ordered):
                self.event_request.append(len(self.request_ids))
                self.request_ids.append(f"hist-{names[u]}-{k}")
                self.request_ts.append(ts - (len(ordered) - 1 - k))
                self.request_user.append(u)
                self.event_item.append(self.items.setdefault(nid, len(self.items)))
                self.event_click.append(1)
                self.event_position.append(0)
                n += 1
        return n

    def events(self) -> pd.DataFrame:
        """The canonical events, sorted by ``ts``, ``request_id`` and the published order;
        ``position`` 0 (module docstring).

        Columns are narrow (int8 labels and positions, categorical ids: MINDlarge has 83M
        candidates); :func:`~ppm.data.public.common.write_dataset` widens them to int64.
        """
        req_ts = np.frombuffer(self.request_ts, np.int64)
        names = np.array(self.request_ids, dtype=object)
        order = pd.DataFrame({"ts": req_ts, "id": names}).sort_values(
            ["ts", "id"], kind="stable").index.to_numpy()
        rank = np.empty(len(order), np.int32)
        rank[order] = np.arange(len(order), dtype=np.int32)
        position = np.frombuffer(self.event_position, np.int32)
        request = np.frombuffer(self.event_request, np.int32)
        rows = np.lexsort((position, rank[request]))
        request = request[rows]
        n = len(rows)
        return pd.DataFrame({
            "request_id": pd.Categorical.from_codes(rank[request], names[order]),
            "user_id": pd.Categorical.from_codes(
                np.frombuffer(self.request_user, np.int32)[request], list(self.users)),
            "ts": req_ts[request],
            "item_id": pd.Categorical.from_codes(
                np.frombuffer(self.event_item, np.int32)[rows], list(self.items)),
            "position": np.zeros(n, np.int8),
            "rank": pd.arrays.IntegerArray(np.zeros(n, np.int8), np.ones(n, bool)),
            "query": pd.Categorical.from_codes(np.zeros(n, np.int8), [""]),
            "click": np.frombuffer(self.event_click, np.int8)[rows],
            "order": np.zeros(n, np.int8),
            "cart": np.zeros(n, np.int8),
        }, copy=False)

    def first_shown(self) -> pd.Series:
        """Item code -> time of its first event so far (before any history is added: its first
        impression)."""
        ts = np.frombuffer(self.request_ts, np.int64)[np.frombuffer(self.event_request,
                                                                    np.int32)]
        return pd.Series(ts).groupby(np.frombuffer(self.event_item, np.int32)).min()

    def impression_ts(self) -> np.ndarray:
        """Per-candidate times of the impressions read so far."""
        return np.frombuffer(self.request_ts, np.int64)[np.frombuffer(self.event_request,
                                                                      np.int32)]


def dev_windows(src_ts: np.ndarray, dev_ts: np.ndarray) -> dict:
    """Windows when ``--dev`` gives the test impressions (module docstring).

    Args:
      src_ts: unix seconds of the ``--src`` impression candidates.
      dev_ts: unix seconds of the ``--dev`` impression candidates.

    Raises:
      AdapterError: ``--src`` spans fewer than 2 days or does not end before ``--dev`` starts.
    """
    test_start, test_end = int(dev_ts.min()), int(dev_ts.max()) + 1
    if src_ts.max() >= test_start:
        raise common.AdapterError(
            f"--dev must follow --src in time: --src ends at {pd.Timestamp(src_ts.max(), unit='s')}"
            f", --dev starts at {pd.Timestamp(test_start, unit='s')} (UTC)")
    days = np.unique(common.day_start(src_ts))
    if len(days) < 2:
        raise common.AdapterError(f"--src spans {len(days)} day: at least 2 are needed for "
                                  "the pretrain and train windows")
    ts = np.sort(src_ts)

    def edge(q):  # the day boundary before the q-quantile
        return int(common.day_start(ts[min(int(q * len(ts)), len(ts) - 1)]))

    start, last = int(days[0]), int(days[-1])
    b1 = min(max(edge(0.5), start + common.DAY), last)
    b2 = min(max(edge(0.75), b1), last)
    return {"pretrain": [start, b1], "train_large": [b1, test_start],
            "train_small": [b2, test_start], "test": [test_start, test_end]}


def _items(behaviors: Behaviors, news: dict, created_default: int,
           problems: common.Problems) -> pd.DataFrame:
    """Items in code order; ``created_at`` is ``created_default`` until set by the caller."""
    for nid in news:  # news never referenced are items too (created_at: created_default)
        behaviors.items.setdefault(nid, len(behaviors.items))
    ids = list(behaviors.items)
    missing = [nid for nid in ids if nid not in news]
    if missing:
        problems.add(f"news referenced by {BEHAVIORS} missing from news.tsv (kept, empty "
                     "title)", len(missing), missing[0])
    rows = [news.get(nid, ("", "", "")) for nid in ids]
    subcategory = [r[1] for r in rows]
    return pd.DataFrame({
        "item_id": ids, "shop_id": "", "brand_id": subcategory,
        "category_id": [r[0] for r in rows], "title": [r[2] for r in rows], "image": None,
        "entity": subcategory, "created_at": created_default})


def convert(src: str, out: str, dev: str | None = None) -> canonical.DatasetMeta:
    """Converts a MIND split folder (and optionally the dev split); returns the dataset.json.

    Raises:
      AdapterError: a missing file, a wrong separator or encoding, the unlabelled test split,
        too little time, ``--dev`` not after ``--src`` or of another variant.
    """
    problems = common.Problems()
    kind, dev_kind = variant(src), dev and variant(dev)
    if kind and dev_kind and dev_kind != kind:
        raise common.AdapterError(f"--src {src} is MIND{kind} but --dev {dev} is MIND{dev_kind}:"
                                  " convert the splits of one variant")
    kind = kind or dev_kind
    news = read_news(src, problems)
    if dev is not None:
        differ = [nid for nid, row in read_news(dev, problems).items()
                  if news.setdefault(nid, row) != row]
        problems.add("news.tsv rows differing between --src and --dev (--src kept)",
                     len(differ), differ[0] if differ else None)
    behaviors = Behaviors()
    behaviors.read(src, "src", problems)
    src_ts = behaviors.impression_ts()
    if dev is None:
        windows = common.quantile_windows(src_ts)
    else:
        behaviors.read(dev, "dev", problems)
        windows = dev_windows(src_ts, behaviors.impression_ts()[len(src_ts):])
    impression_events = len(behaviors.event_request)
    history_ts = windows["pretrain"][0] - 1
    shown = len(behaviors.first_shown())
    history_events = behaviors.add_histories(history_ts, problems)
    first = behaviors.first_shown()  # first impression or earlier history click
    items = _items(behaviors, news, history_ts, problems)
    items.loc[first.index, "created_at"] = first.to_numpy()
    events = behaviors.events()
    problems.log()
    meta = canonical.DatasetMeta(
        name=f"mind-{kind}" if kind else "mind",
        source=f"ppm.data.public.mind --src {src}" + (f" --dev {dev}" if dev else ""),
        windows=windows, tasks=["click"],
        label_rules={"order_requires_click": True, "cart_requires_click": True},
        counts=common.counts(items, events), licence=LICENCE, positions="none",
        extra={"variant": kind, "impressions": behaviors.impressions,
               "impression_events": impression_events,
               "history_requests": len(behaviors.request_ids) - sum(
                   behaviors.impressions.values()),
               "history_events": history_events, "history_ts": history_ts,
               "users_with_differing_histories": len(behaviors.differing),
               "news": len(news), "news_never_shown": int(len(items) - shown),
               "problems": problems.to_dict(),
               "mapping": {"click": "impression label", "order": "absent", "cart": "absent",
                           "request_id": "src-/dev-<impression id>; hist-<user id>",
                           "position": "0: the published lists are shuffled (positions: none)",
                           "rank": "null",
                           "history": "one request per click, 1 s apart, ending at history_ts",
                           "category_id": "category", "brand_id": "subcategory",
                           "entity": "subcategory", "shop_id": "empty",
                           "created_at": "first event (history click or impression), "
                                         "else history_ts",
                           "windows": "dev split" if dev else "time quantiles"}})
    common.write_dataset(out, items, events, meta)
    return meta


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ppm.data.public.mind", description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", required=True,
                        help="Unpacked MIND split folder (behaviors.tsv, news.tsv), e.g. "
                        "MINDsmall_train/.")
    parser.add_argument("--out", required=True, help="Output dataset folder.")
    parser.add_argument("--dev", default=None,
                        help="The dev split folder (e.g. MINDsmall_dev/): its impressions "
                        "become the test window.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return common.run_cli(lambda: convert(args.src, args.out, args.dev), args.out)


if __name__ == "__main__":
    sys.exit(main())
