"""Beam job: build training examples (TFRecords of tf.train.Example) from a canonical dataset.

    python -m beam_jobs.build_examples --dataset DIR --out DIR [standard Beam flags]

Runs locally on Beam's ``FnApiRunner`` by default (chosen explicitly, so no Prism runner is
downloaded: :mod:`beam_jobs.options`). On Dataflow, add the standard flags::

    --runner DataflowRunner --project PROJECT --region REGION \\
    --temp_location gs://BUCKET/tmp --setup_file ./setup.py

(``pip install -e '.[gcp]'`` first; ``--dataset`` and ``--out`` may then be ``gs://`` paths).

Writes into ``--out``:

- ``pretrain/``, ``train_small/``, ``train_large/``, ``test/``: TFRecord shards of examples per
  time window, one example per displayed candidate, with the features of
  :mod:`ppm.features` (``train_small`` examples are also in ``train_large``, as the windows
  are nested; see :mod:`ppm.data.canonical`). Events outside every window give no example but
  still count as history.
- ``schema.json``: the :class:`ppm.features.FeatureSchema` of the examples.
- ``vocab/{item_id,shop_id,brand_id,category_id}.tsv``: ``id<TAB>count`` of the targets in
  the ``train_large`` window, most frequent first (ties by id).
- ``dead_letter/rows-*.jsonl``: malformed rows, one JSON per line: ``kind`` (``event`` or
  ``item``), ``reason`` and the ``row``. Items with a missing or duplicated id are dead-lettered
  and their events too (``item_id duplicated in items.parquet`` / ``unknown item_id``).
  A row whose strings are not valid UTF-8 (Parquet from other writers can hold such bytes) is
  dead-lettered as ``invalid UTF-8 in <column>``, the bad bytes shown as ``\\xNN`` escapes;
  the events of such an item as ``item has invalid UTF-8 in <column>``
  (:mod:`beam_jobs.parquet_rows`).
- ``stats.json``: counts per window, labels, dead letters by reason, cold-start shares, and
  the dataset's source and counts (so a stale example folder can be recognised). The counts are
  computed by the pipeline itself (``_counts.json``), not read from runner metrics.

Histories hold only clicks strictly before the event's time (PPM §3.1.2: the user's previous
clicked items), most recent first, at most ``--max_history``; ``hist_session`` numbers their
sessions from the clicks' timestamps (DSIN §4.1: a gap over 30 minutes starts a new one; 0 is
the most recent session). ``item_freq`` is the number of ``train_large`` events whose target is
the item (the cold-start buckets of PPM §4.5).

Before running, dataset.json and the Parquet schemas are checked (a missing or mistyped column
would make every row bad; an empty, truncated or non-Parquet file is named). The job fails,
keeping the dead letters but deleting the example folders, when more than
``--max_bad_fraction`` of the events are malformed or a time window gets no example.
"""

from __future__ import annotations

import argparse
import bisect
import collections
import json
import logging
import math
import os
from collections.abc import Iterable

import apache_beam as beam
import numpy as np

from beam_jobs import parquet_rows
from beam_jobs.options import pipeline_options
from ppm import features
from ppm.data import canonical

VOCAB_FIELDS = features.ID_FIELDS
TRAIN_WINDOW = "train_large"
COLD_THRESHOLDS = (1, 5, 20)  # report the share of test examples with item_freq < t


class BadDataError(RuntimeError):
    """Too many malformed rows."""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m beam_jobs.build_examples",
        description="Build TFRecord training examples, vocabularies and stats from a canonical "
        "dataset. Runs on Beam's FnApiRunner unless --runner is given. Unknown flags are "
        "passed to Beam (e.g. --runner DataflowRunner --project P "
        "--region R --temp_location gs://... --setup_file ./setup.py).")
    parser.add_argument("--dataset", required=True, help="Canonical dataset folder.")
    parser.add_argument("--out", required=True, help="Output folder for examples.")
    parser.add_argument("--max_history", type=int, default=features.DEFAULT_MAX_HISTORY,
                        help="Most recent clicks kept per example (default %(default)s).")
    parser.add_argument("--max_bad_fraction", type=float, default=0.01,
                        help="Fail if more than this fraction of events is malformed "
                        "(default %(default)s).")
    parser.add_argument("--num_shards", type=int, default=0,
                        help="TFRecord shards per window; 0 lets the runner decide.")
    parser.add_argument("--overwrite", action="store_true",
                        help="Delete earlier outputs of this job in --out first (otherwise "
                        "the job refuses to mix old and new shards).")
    return parser.parse_known_args(argv)


# --- validation of raw rows -----------------------------------------------------------------

def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def event_problem(row: dict, items: dict, label_rules: dict,
                  profile: tuple[str, ...] = ()) -> str | None:
    """The reason an event row is malformed, or None if it is usable.

    Args:
      row: the event as read from Parquet.
      items: item_id -> attributes, None for ids duplicated in items.parquet, or the reason
        (a string) the item's row is unusable.
      label_rules: ``dataset.json`` label rules.
      profile: names of the user profile columns (strings or null).
    """
    for col in ("request_id", "user_id", "item_id"):
        value = row.get(col)
        if value is None or value == "":
            return f"missing {col}"
        if not isinstance(value, str):
            return f"{col} is not a string"
    if not _is_int(row.get("ts")):
        return "ts is not an integer"
    if row["item_id"] not in items:
        return "unknown item_id"
    if items[row["item_id"]] is None:
        return "item_id duplicated in items.parquet"
    if isinstance(items[row["item_id"]], str):
        return f"item has {items[row['item_id']]}"
    pos = row.get("position")
    if not _is_int(pos) or pos < 0:
        return "position is not an integer >= 0"
    rank = row.get("rank")
    if rank is not None and (not _is_int(rank) or rank < 0):
        return "rank is not null or an integer >= 0"
    for col in canonical.LABEL_COLUMNS:
        if not _is_int(row.get(col)) or row[col] not in (0, 1):
            return f"{col} not in {{0, 1}}"
    for col in ("order", "cart"):
        if label_rules.get(f"{col}_requires_click", True) and row[col] == 1 and row["click"] == 0:
            return f"{col} without click"
    for col in profile:
        if row.get(col) is not None and not isinstance(row[col], str):
            return f"{col} is not a string"
    if "exposure" in row:  # a search pre-ranking log (canonical.SEARCH_EVENT_COLUMNS)
        if row["exposure"] not in canonical.EXPOSURES:
            return f"exposure not in {list(canonical.EXPOSURES)}"
        score = row.get("ranker_score")
        if score is not None and not (isinstance(score, float) and math.isfinite(score)):
            return "ranker_score is not null or a finite number"
    return None


def _dead_letter(kind: str, reason: str, row: dict) -> str:
    return json.dumps({"kind": kind, "reason": reason, "row": row}, default=str,
                      sort_keys=True)


class ValidateEvents(beam.DoFn):
    """Emits usable events; malformed ones go to the ``dead_letter`` output with the reason.

    Every event also adds to the ``counts`` output, so the summary does not depend on the
    runner's metrics support.
    """

    DEAD_LETTER = "dead_letter"
    COUNTS = "counts"

    def __init__(self, label_rules: dict, profile: tuple[str, ...]):
        self._rules = label_rules
        self._profile = profile

    def process(self, row, items):
        row, reason = parquet_rows.without_marker(row)
        try:
            reason = reason or event_problem(row, items, self._rules, self._profile)
        except Exception as e:  # noqa: BLE001 - any surprise in a row is that row's problem
            reason = f"unexpected {type(e).__name__}: {e}"
        yield beam.pvalue.TaggedOutput(self.COUNTS, ("events", 1))
        if reason is None:
            yield row
            return
        yield beam.pvalue.TaggedOutput(self.COUNTS, ("dead_letter", 1))
        yield beam.pvalue.TaggedOutput(self.COUNTS, (f"dead_letter/{reason}", 1))
        yield beam.pvalue.TaggedOutput(self.DEAD_LETTER, _dead_letter("event", reason, row))


def item_attributes(item_id_and_rows):
    """(item_id, [rows]) -> (item_id, (shop, brand, category)), or None when duplicated, or
    the reason when the row's strings are not UTF-8."""
    item_id, rows = item_id_and_rows
    rows = list(rows)
    if len(rows) > 1:
        return item_id, None
    r, reason = parquet_rows.without_marker(rows[0])
    if reason:
        return item_id, reason
    return item_id, (r["shop_id"] or "", r["brand_id"] or "", r["category_id"] or "")


def item_problems(item_id_and_rows):
    """Dead letters for items with a missing id, an id used by several rows, or strings that
    are not UTF-8."""
    item_id, rows = item_id_and_rows
    rows = [parquet_rows.without_marker(r) for r in rows]
    if not item_id:
        for r, _ in rows:
            yield _dead_letter("item", "missing item_id", r)
    elif len(rows) > 1:
        for r, _ in rows:
            yield _dead_letter("item", f"item_id duplicated ({len(rows)} rows)", r)
    elif rows[0][1]:
        yield _dead_letter("item", rows[0][1], rows[0][0])


# --- examples ---------------------------------------------------------------------------------

def windows_of(ts: int, windows: dict) -> list[str]:
    """Names of the windows containing ``ts`` (train_small also lies in train_large)."""
    return [name for name, (start, end) in windows.items() if start <= ts < end]


def user_examples(events: Iterable[dict], items: dict, item_freq: dict,
                  schema: features.FeatureSchema, windows: dict):
    """Yields ``(window, feature dict)`` for every event of one user inside a window.

    Args:
      events: the user's event rows (any order).
      items: item_id -> (shop_id, brand_id, category_id).
      item_freq: item_id -> count in the training window.
      schema: the feature schema (max_history, profile features).
      windows: window name -> (start, end).
    """
    events = sorted(events, key=lambda e: (e["ts"], e["request_id"], e["position"]))
    clicks = [e for e in events if e["click"] == 1]
    click_ts = [e["ts"] for e in clicks]
    hist_attrs = [items[e["item_id"]] for e in clicks]
    length = schema.max_history
    for e in events:
        names = windows_of(e["ts"], windows)
        if not names:
            continue
        end = bisect.bisect_left(click_ts, e["ts"])  # strictly before: same-ts clicks excluded
        idx = range(end - 1, max(end - length, 0) - 1, -1)  # most recent first
        shop, brand, cat = items[e["item_id"]]
        rank = e.get("rank")
        if schema.search:
            score = e.get(features.RANKER_SCORE)
            values = {features.QUERY: e.get("query") or "", "exposure": e["exposure"],
                      features.RANKER_SCORE: -1.0 if score is None else score}
        else:
            values = {}
        values.update({
            "item_id": e["item_id"], "shop_id": shop, "brand_id": brand, "category_id": cat,
            "position": e["position"],
            "hist_item_id": [clicks[i]["item_id"] for i in idx],
            "hist_shop_id": [hist_attrs[i][0] for i in idx],
            "hist_brand_id": [hist_attrs[i][1] for i in idx],
            "hist_category_id": [hist_attrs[i][2] for i in idx],
            "hist_position": [clicks[i]["position"] for i in idx],
            "hist_recency": [int(features.recency_bucket(e["ts"] - click_ts[i])) for i in idx],
            "hist_session": features.session_ids([click_ts[i] for i in idx]),
            "hist_len": len(idx),
            "click": e["click"], "order": e["order"], "cart": e["cart"],
            "request_id": e["request_id"], "user_id": e["user_id"], "ts": e["ts"],
            "rank": -1 if rank is None else rank,
            "item_freq": item_freq.get(e["item_id"], 0),
        })
        for name in schema.profile_features:
            values[name] = e.get(name) or ""
        for name in names:
            yield name, values


class BuildExamples(beam.DoFn):
    """Per user: serialized tf.train.Examples tagged by window name, and counts."""

    def __init__(self, schema: features.FeatureSchema, windows: dict):
        self._schema = schema
        self._windows = windows

    def process(self, user_and_events, items, item_freq):
        _, events = user_and_events
        events = list(events)
        counts = collections.Counter()
        counts["history_only_events"] = sum(not windows_of(e["ts"], self._windows)
                                            for e in events)
        for window, values in user_examples(events, items, item_freq, self._schema,
                                            self._windows):
            counts[f"{window}/examples"] += 1
            for label in canonical.LABEL_COLUMNS:
                counts[f"{window}/{label}"] += values[label]
            counts[f"{window}/ranked"] += values["rank"] >= 0  # GRACE's top<k> tasks
            if self._schema.search:
                counts[f"{window}/exposure_{values['exposure']}"] += 1
            if window == "test":
                for t in COLD_THRESHOLDS:
                    counts[f"test/item_freq_lt_{t}"] += values["item_freq"] < t
            yield beam.pvalue.TaggedOutput(window, self._schema.to_example(values)
                                           .SerializeToString())
        for key, n in counts.items():
            if n:
                yield beam.pvalue.TaggedOutput(ValidateEvents.COUNTS, (key, int(n)))


def format_vocab(counts: list) -> list[str]:
    """``id<TAB>count`` lines, most frequent first, ties broken by id.

    The empty id is left out: it is the padding and unknown value of the examples.
    """
    return [f"{k}\t{c}" for k, c in sorted(counts, key=lambda kc: (-kc[1], kc[0])) if k]


# --- pipeline ---------------------------------------------------------------------------------

COUNTS_FILE = "_counts.json"


def _merge_counts(pairs: list) -> str:
    return json.dumps(dict(sorted(pairs)), indent=1)


def build_pipeline(p: beam.Pipeline, dataset: str, out: str, schema: features.FeatureSchema,
                   meta: canonical.DatasetMeta, num_shards: int = 0) -> None:
    windows = {name: (meta.window(name).start, meta.window(name).end)
               for name in canonical.WINDOW_NAMES}
    train = windows[TRAIN_WINDOW]
    event_cols = [c.name for c in canonical.EVENT_COLUMNS] + list(schema.profile_features)
    if schema.search:
        event_cols += [c.name for c in canonical.SEARCH_EVENT_COLUMNS]

    items_by_id = (
        p
        | "ReadItems" >> parquet_rows.ReadRows(
            os.path.join(dataset, canonical.ITEMS_FILE),
            columns=["item_id", "shop_id", "brand_id", "category_id"])
        | "KeyItems" >> beam.Map(lambda r: (r["item_id"], r))
        | "GroupItems" >> beam.GroupByKey())
    items = (items_by_id
             | "ItemsWithIds" >> beam.Filter(lambda kv: bool(kv[0]))
             | "ItemAttributes" >> beam.Map(item_attributes))
    items_side = beam.pvalue.AsDict(items)
    bad_items = items_by_id | "ItemProblems" >> beam.FlatMap(item_problems)

    checked = (
        p
        | "ReadEvents" >> parquet_rows.ReadRows(
            os.path.join(dataset, canonical.EVENTS_FILE), columns=event_cols)
        | "ValidateEvents" >> beam.ParDo(
            ValidateEvents(meta.label_rules, schema.profile_features), items_side)
        .with_outputs(ValidateEvents.DEAD_LETTER, ValidateEvents.COUNTS, main="events"))
    events = checked.events
    _ = ((checked[ValidateEvents.DEAD_LETTER], bad_items)
         | "AllDeadLetters" >> beam.Flatten()
         | "WriteDeadLetter" >> beam.io.WriteToText(
             os.path.join(out, "dead_letter", "rows"), file_name_suffix=".jsonl"))
    item_dead = (bad_items | "CountBadItems" >> beam.combiners.Count.Globally()
                 | "KeyBadItems" >> beam.Map(lambda n: ("dead_letter_items", n)))

    train_events = events | "TrainWindow" >> beam.Filter(
        lambda r: train[0] <= r["ts"] < train[1])
    item_freq = (train_events
                 | "TrainItems" >> beam.Map(lambda r: r["item_id"])
                 | "CountItems" >> beam.combiners.Count.PerElement())
    for k, field in enumerate(VOCAB_FIELDS):
        ids = (item_freq if field == "item_id" else (
            item_freq
            | f"To{field}" >> beam.Map(lambda kc, items, k=k: (items[kc[0]][k - 1], kc[1]),
                                       items_side)
            | f"Sum{field}" >> beam.CombinePerKey(sum)))
        _ = (ids
             | f"Collect{field}" >> beam.combiners.ToList()
             | f"Format{field}" >> beam.FlatMap(format_vocab)
             | f"Write{field}Vocab" >> beam.io.WriteToText(
                 os.path.join(out, "vocab", f"{field}.tsv"), shard_name_template="",
                 num_shards=1))

    examples = (
        events
        | "KeyByUser" >> beam.Map(lambda r: (r["user_id"], r))
        | "GroupByUser" >> beam.GroupByKey()
        | "BuildExamples" >> beam.ParDo(BuildExamples(schema, windows), items_side,
                                        beam.pvalue.AsDict(item_freq))
        .with_outputs(ValidateEvents.COUNTS, *canonical.WINDOW_NAMES))
    for name in canonical.WINDOW_NAMES:
        _ = examples[name] | f"Write{name}" >> beam.io.WriteToTFRecord(
            os.path.join(out, name, "part"), file_name_suffix=".tfrecord",
            num_shards=num_shards)
    _ = ((checked[ValidateEvents.COUNTS], examples[ValidateEvents.COUNTS], item_dead)
         | "AllCounts" >> beam.Flatten()
         | "SumCounts" >> beam.CombinePerKey(sum)
         | "CollectCounts" >> beam.combiners.ToList()
         | "FormatCounts" >> beam.Map(_merge_counts)
         | "WriteCounts" >> beam.io.WriteToText(os.path.join(out, COUNTS_FILE),
                                                shard_name_template="", num_shards=1))


def stats_from_counts(counts: dict, meta: canonical.DatasetMeta,
                      schema: features.FeatureSchema) -> dict:
    windows = {}
    for name in canonical.WINDOW_NAMES:
        n = counts.get(f"{name}/examples", 0)
        w = {"examples": n}
        for label in canonical.LABEL_COLUMNS:
            w[label] = counts.get(f"{name}/{label}", 0)
        w["ctr"] = w["click"] / n if n else None
        w["ranked"] = counts.get(f"{name}/ranked", 0)  # examples with a known rank
        if schema.search:
            w["exposure"] = {e: counts.get(f"{name}/exposure_{e}", 0)
                             for e in canonical.EXPOSURES}
        windows[name] = w
    n_test = windows["test"]["examples"]
    return {
        "dataset": meta.name,
        "dataset_source": meta.source,
        "dataset_counts": meta.counts,
        "dataset_tasks": list(meta.tasks),
        "events": counts.get("events", 0),
        "dead_letter": counts.get("dead_letter", 0),
        "dead_letter_by_reason": {k.split("/", 1)[1]: v for k, v in sorted(counts.items())
                                  if k.startswith("dead_letter/")},
        "dead_letter_items": counts.get("dead_letter_items", 0),
        "history_only_events": counts.get("history_only_events", 0),
        "windows": windows,
        "test_cold_share": {f"item_freq<{t}": (counts.get(f"test/item_freq_lt_{t}", 0)
                                               / n_test if n_test else None)
                            for t in COLD_THRESHOLDS},
        "max_history": schema.max_history,
        "profile_features": list(schema.profile_features),
    }


OUTPUTS = canonical.WINDOW_NAMES + ("vocab", "dead_letter", features.SCHEMA_FILE,
                                    "stats.json", COUNTS_FILE)
EXAMPLE_OUTPUTS = canonical.WINDOW_NAMES + ("vocab", "stats.json")


def _delete(out: str, names) -> None:
    from apache_beam.io.filesystems import FileSystems

    existing = [os.path.join(out, n) for n in names if FileSystems.exists(os.path.join(out, n))]
    if existing:
        FileSystems.delete(existing)


def prepare_output(out: str, overwrite: bool) -> None:
    """Refuses to write over earlier outputs unless ``overwrite``, which deletes them."""
    from apache_beam.io.filesystems import FileSystems

    existing = [n for n in OUTPUTS if FileSystems.exists(os.path.join(out, n))]
    if existing and not overwrite:
        raise FileExistsError(f"{out} already holds examples ({', '.join(existing)}); pass "
                              "--overwrite to replace them or choose another --out")
    _delete(out, existing)
    if not canonical.is_remote(out):
        os.makedirs(out, exist_ok=True)


def preflight(dataset: str) -> tuple[canonical.DatasetMeta, tuple[str, ...], bool]:
    """Checks dataset.json and the Parquet schemas before any work. Returns (meta, profile
    columns, search): ``search`` when events.parquet is a search pre-ranking log (it has the
    ``exposure`` column; the examples then carry the query, exposure and ranker score).

    Row-level problems (invalid UTF-8 included) are left to the job's dead-letter output; a
    file that is not readable Parquet, a missing column, a column of the wrong type or unusable
    time windows would make every row bad, so they stop the job.

    Raises:
      DatasetError: the dataset cannot be processed.
    """

    from ppm.data import validate

    report = validate.Report()
    meta = canonical.read_meta(dataset)
    validate.check_meta(meta, report)
    schemas = {}
    for name in (canonical.ITEMS_FILE, canonical.EVENTS_FILE):
        path = os.path.join(dataset, name)
        if not canonical.file_exists(path):
            report.error(name, None, "file is missing")
            continue
        try:
            schemas[name] = canonical.read_parquet_schema(path)
        except canonical.ParquetReadError as e:
            report.error(name, None, str(e))
            continue
        validate.check_schema(name, schemas[name], canonical.TABLES[name], report)
    profile, search = (), False
    if canonical.EVENTS_FILE in schemas:
        events = schemas[canonical.EVENTS_FILE]
        profile = features.profile_columns(events.names)
        search = "exposure" in events.names
        if search and "ranker_score" not in events.names:
            report.error(canonical.EVENTS_FILE, "ranker_score", "a search log (it has the "
                         "exposure column) needs ranker_score too (null where unknown)")
        for name in profile:
            if canonical.arrow_kind(events.field(name).type) != "string":
                report.error(canonical.EVENTS_FILE, name, "user profile columns must be "
                             f"strings, got {events.field(name).type}")
    if not report.ok:
        raise validate.DatasetError(f"{dataset} cannot be turned into examples:\n{report}")
    return meta, profile, search


def run(argv=None, save_main_session=True, test_pipeline=None) -> dict:
    """Builds and runs the pipeline. Returns the stats (also written to stats.json).

    Raises:
      DatasetError: dataset.json or the Parquet schemas are unusable.
      BadDataError: more than --max_bad_fraction of the events are malformed, or a time window
        got no examples. Example folders are then deleted (the dead letters are kept).
    """
    args, beam_args = parse_args(argv)
    meta, profile, search = preflight(args.dataset)
    schema = features.FeatureSchema(max_history=args.max_history, profile_features=profile,
                                    search=search)
    prepare_output(args.out, args.overwrite)
    schema.save(os.path.join(args.out, features.SCHEMA_FILE))

    if test_pipeline is not None:
        p = test_pipeline
    else:
        p = beam.Pipeline(options=pipeline_options(beam_args, save_main_session))
    build_pipeline(p, args.dataset, args.out, schema, meta, args.num_shards)
    p.run().wait_until_finish()

    with canonical.open_file(os.path.join(args.out, COUNTS_FILE)) as f:
        stats = stats_from_counts(json.loads(f.read().decode() or "{}"), meta, schema)
    bad, total = stats["dead_letter"], stats["events"]
    problems = []
    if not total or bad / total > args.max_bad_fraction:
        problems.append(f"{bad} of {total} events are malformed, more than "
                        f"--max_bad_fraction={args.max_bad_fraction}; reasons: "
                        f"{stats['dead_letter_by_reason']}")
    empty = [w for w, v in stats["windows"].items() if not v["examples"]]
    if empty:
        problems.append(f"no examples in the time windows {empty} (check the ts unit: unix "
                        "seconds, and dataset.json's windows)")
    if problems:
        _delete(args.out, EXAMPLE_OUTPUTS)
        raise BadDataError("; ".join(problems) + f". Rows in {args.out}/dead_letter/; the "
                           "example folders were deleted.")
    canonical.write_json(os.path.join(args.out, "stats.json"), stats)
    logging.info("Examples written to %s: %s", args.out, json.dumps(stats["windows"]))
    return stats


def main(argv=None) -> int:
    logging.getLogger().setLevel(logging.INFO)
    stats = run(argv)
    print(json.dumps(stats, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
