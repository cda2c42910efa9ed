"""Beam job: build training examples (TFRecords of tf.train.Example) from a canonical dataset.

    python -m beam_jobs.build_examples --dataset DIR --out DIR [standard Beam flags]

Runs on the DirectRunner by default. On Dataflow, add the standard flags::

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
- ``dead_letter/events-*.jsonl``: malformed event rows with the reason, one JSON per line.
- ``stats.json``: counts per window, labels, dead letters by reason, cold-start shares.

Histories hold only clicks strictly before the event's time (PPM §3.1.2: the user's previous
clicked items), most recent first, at most ``--max_history``. ``item_freq`` is the number of
``train_large`` events whose target is the item (the cold-start buckets of PPM §4.5).

The job fails (after writing the dead letters) when more than ``--max_bad_fraction`` of the
events are malformed.
"""

from __future__ import annotations

import argparse
import bisect
import json
import logging
import os
from collections.abc import Iterable

import apache_beam as beam
from apache_beam.metrics import Metrics, MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions

from ppm import features
from ppm.data import canonical

NAMESPACE = "build_examples"
VOCAB_FIELDS = features.ID_FIELDS
TRAIN_WINDOW = "train_large"
COLD_THRESHOLDS = (1, 5, 20)  # report the share of test examples with item_freq < t


class BadDataError(RuntimeError):
    """Too many malformed rows."""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m beam_jobs.build_examples",
        description="Build TFRecord training examples, vocabularies and stats from a canonical "
        "dataset. Unknown flags are passed to Beam (e.g. --runner DataflowRunner --project P "
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

def event_problem(row: dict, items: dict, label_rules: dict) -> str | None:
    """The reason an event row is malformed, or None if it is usable."""
    for col in ("request_id", "user_id", "item_id"):
        if not row.get(col):
            return f"missing {col}"
    if row.get("ts") is None:
        return "missing ts"
    if row["item_id"] not in items:
        return "unknown item_id"
    pos = row.get("position")
    if pos is None or pos < 0:
        return "bad position"
    for col in canonical.LABEL_COLUMNS:
        if row.get(col) not in (0, 1):
            return f"{col} not in {{0, 1}}"
    for col in ("order", "cart"):
        if label_rules.get(f"{col}_requires_click", True) and row[col] == 1 and row["click"] == 0:
            return f"{col} without click"
    return None


class ValidateEvents(beam.DoFn):
    """Emits usable events; malformed ones go to the ``dead_letter`` output with the reason."""

    DEAD_LETTER = "dead_letter"

    def __init__(self, label_rules: dict):
        self._rules = label_rules
        self._total = Metrics.counter(NAMESPACE, "events")
        self._bad = Metrics.counter(NAMESPACE, "dead_letter")

    def process(self, row, items):
        self._total.inc()
        reason = event_problem(row, items, self._rules)
        if reason is None:
            yield row
            return
        self._bad.inc()
        Metrics.counter(NAMESPACE, f"dead_letter/{reason}").inc()
        yield beam.pvalue.TaggedOutput(self.DEAD_LETTER, json.dumps(
            {"reason": reason, "row": row}, default=str, sort_keys=True))


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
        values = {
            "item_id": e["item_id"], "shop_id": shop, "brand_id": brand, "category_id": cat,
            "position": e["position"],
            "hist_item_id": [clicks[i]["item_id"] for i in idx],
            "hist_shop_id": [hist_attrs[i][0] for i in idx],
            "hist_brand_id": [hist_attrs[i][1] for i in idx],
            "hist_category_id": [hist_attrs[i][2] for i in idx],
            "hist_position": [clicks[i]["position"] for i in idx],
            "hist_recency": [int(features.recency_bucket(e["ts"] - click_ts[i])) for i in idx],
            "hist_len": len(idx),
            "click": e["click"], "order": e["order"], "cart": e["cart"],
            "request_id": e["request_id"], "user_id": e["user_id"], "ts": e["ts"],
            "rank": -1 if rank is None else rank,
            "item_freq": item_freq.get(e["item_id"], 0),
        }
        for name in schema.profile_features:
            values[name] = e.get(name) or ""
        for name in names:
            yield name, values


class BuildExamples(beam.DoFn):
    """Per user: serialized tf.train.Examples tagged by window name."""

    def __init__(self, schema: features.FeatureSchema, windows: dict):
        self._schema = schema
        self._windows = windows

    def process(self, user_and_events, items, item_freq):
        _, events = user_and_events
        for window, values in user_examples(events, items, item_freq, self._schema,
                                            self._windows):
            Metrics.counter(NAMESPACE, f"{window}/examples").inc()
            for label in canonical.LABEL_COLUMNS:
                Metrics.counter(NAMESPACE, f"{window}/{label}").inc(values[label])
            if window == "test":
                for t in COLD_THRESHOLDS:
                    if values["item_freq"] < t:
                        Metrics.counter(NAMESPACE, f"test/item_freq_lt_{t}").inc()
            yield beam.pvalue.TaggedOutput(window, self._schema.to_example(values)
                                           .SerializeToString())


def format_vocab(counts: list) -> list[str]:
    """``id<TAB>count`` lines, most frequent first, ties broken by id."""
    return [f"{k}\t{c}" for k, c in sorted(counts, key=lambda kc: (-kc[1], kc[0]))]


def _count_outside(row, windows):
    if not windows_of(row["ts"], windows):
        Metrics.counter(NAMESPACE, "history_only_events").inc()
    return row


# --- pipeline ---------------------------------------------------------------------------------

def build_pipeline(p: beam.Pipeline, dataset: str, out: str, schema: features.FeatureSchema,
                   meta: canonical.DatasetMeta, num_shards: int = 0) -> None:
    windows = {name: (meta.window(name).start, meta.window(name).end)
               for name in canonical.WINDOW_NAMES}
    train = windows[TRAIN_WINDOW]
    event_cols = [c.name for c in canonical.EVENT_COLUMNS] + list(schema.profile_features)

    items = (
        p
        | "ReadItems" >> beam.io.ReadFromParquet(
            os.path.join(dataset, canonical.ITEMS_FILE),
            columns=["item_id", "shop_id", "brand_id", "category_id"])
        | "KeyItems" >> beam.Map(lambda r: (r["item_id"], (r["shop_id"] or "",
                                                            r["brand_id"] or "",
                                                            r["category_id"] or ""))))
    items_side = beam.pvalue.AsDict(items)

    checked = (
        p
        | "ReadEvents" >> beam.io.ReadFromParquet(
            os.path.join(dataset, canonical.EVENTS_FILE), columns=event_cols)
        | "ValidateEvents" >> beam.ParDo(ValidateEvents(meta.label_rules), items_side)
        .with_outputs(ValidateEvents.DEAD_LETTER, main="events"))
    events = checked.events | "CountHistoryOnly" >> beam.Map(_count_outside, windows)
    _ = (checked[ValidateEvents.DEAD_LETTER]
         | "WriteDeadLetter" >> beam.io.WriteToText(
             os.path.join(out, "dead_letter", "events"), file_name_suffix=".jsonl"))

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
        .with_outputs(*canonical.WINDOW_NAMES))
    for name in canonical.WINDOW_NAMES:
        _ = examples[name] | f"Write{name}" >> beam.io.WriteToTFRecord(
            os.path.join(out, name, "part"), file_name_suffix=".tfrecord",
            num_shards=num_shards)


def _counters(result) -> dict:
    out = {}
    for c in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]:
        out[c.key.metric.name] = out.get(c.key.metric.name, 0) + c.committed
    return out


def stats_from_counters(counters: dict, meta: canonical.DatasetMeta,
                        schema: features.FeatureSchema) -> dict:
    total = counters.get("events", 0)
    windows = {}
    for name in canonical.WINDOW_NAMES:
        n = counters.get(f"{name}/examples", 0)
        w = {"examples": n}
        for label in canonical.LABEL_COLUMNS:
            w[label] = counters.get(f"{name}/{label}", 0)
        w["ctr"] = w["click"] / n if n else None
        windows[name] = w
    n_test = windows["test"]["examples"]
    return {
        "dataset": meta.name,
        "events": total,
        "dead_letter": counters.get("dead_letter", 0),
        "dead_letter_by_reason": {k.split("/", 1)[1]: v for k, v in sorted(counters.items())
                                  if k.startswith("dead_letter/")},
        "history_only_events": counters.get("history_only_events", 0),
        "windows": windows,
        "test_cold_share": {f"item_freq<{t}": (counters.get(f"test/item_freq_lt_{t}", 0)
                                               / n_test if n_test else None)
                            for t in COLD_THRESHOLDS},
        "max_history": schema.max_history,
        "profile_features": list(schema.profile_features),
    }


OUTPUTS = canonical.WINDOW_NAMES + ("vocab", "dead_letter", features.SCHEMA_FILE,
                                    "stats.json")


def prepare_output(out: str, overwrite: bool) -> None:
    """Refuses to write over earlier outputs unless ``overwrite``, which deletes them."""
    from apache_beam.io.filesystems import FileSystems

    existing = [os.path.join(out, name) for name in OUTPUTS
                if FileSystems.exists(os.path.join(out, name))]
    if existing and not overwrite:
        raise FileExistsError(f"{out} already holds examples ({', '.join(existing)}); pass "
                              "--overwrite to replace them or choose another --out")
    if existing:
        FileSystems.delete(existing)
    if not canonical.is_remote(out):
        os.makedirs(out, exist_ok=True)


def _profile_features(dataset: str) -> tuple[str, ...]:
    import pyarrow.parquet as pq

    with canonical.open_file(os.path.join(dataset, canonical.EVENTS_FILE)) as f:
        return features.profile_columns(pq.read_schema(f).names)


def run(argv=None, save_main_session=True, test_pipeline=None) -> dict:
    """Builds and runs the pipeline. Returns the stats (also written to stats.json).

    Raises:
      BadDataError: more than --max_bad_fraction of the events are malformed.
    """
    args, beam_args = parse_args(argv)
    meta = canonical.read_meta(args.dataset)
    schema = features.FeatureSchema(max_history=args.max_history,
                                    profile_features=_profile_features(args.dataset))
    prepare_output(args.out, args.overwrite)
    schema.save(os.path.join(args.out, features.SCHEMA_FILE))

    if test_pipeline is not None:
        p = test_pipeline
    else:
        options = PipelineOptions(beam_args)
        options.view_as(SetupOptions).save_main_session = save_main_session
        p = beam.Pipeline(options=options)
    build_pipeline(p, args.dataset, args.out, schema, meta, args.num_shards)
    result = p.run()
    result.wait_until_finish()

    stats = stats_from_counters(_counters(result), meta, schema)
    bad, total = stats["dead_letter"], stats["events"]
    if total and bad / total > args.max_bad_fraction:
        raise BadDataError(
            f"{bad} of {total} events ({bad / total:.2%}) are malformed, more than "
            f"--max_bad_fraction={args.max_bad_fraction}; reasons: "
            f"{stats['dead_letter_by_reason']}; rows in {args.out}/dead_letter/")
    with canonical.open_file(os.path.join(args.out, "stats.json"), "wb") as f:
        f.write((json.dumps(stats, indent=2) + "\n").encode())
    logging.info("Examples written to %s: %s", args.out, json.dumps(stats["windows"]))
    return stats


def main(argv=None) -> int:
    logging.getLogger().setLevel(logging.INFO)
    stats = run(argv)
    print(json.dumps(stats, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
