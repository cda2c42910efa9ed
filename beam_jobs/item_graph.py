"""Beam job: the item co-click graph of one time window (GRACE §2.4's pre-trained GNN input).

    python -m beam_jobs.item_graph --dataset DIR --out DIR [--window pretrain] \\
        [--session_gap_s 1800] [--overwrite] [standard Beam flags]

Reads the clicks (``click == 1``) of ``events.parquet`` whose ``ts`` lies in the window of
``dataset.json``, groups them by user and splits each user's clicks into sessions (a gap of
more than ``--session_gap_s`` starts a new one: :func:`ppm.features.session_ids`, DSIN §4.1).
Every unordered pair of distinct items clicked in one session adds 1 to that pair's weight, once
per session however often either item was clicked. Rows that are not usable (a missing id, a
non-integer ``ts``, strings that are not UTF-8) are left out and counted as ``skipped_rows``.

Writes into ``--out`` (:mod:`ppm.graph.tables`): ``edges.parquet`` (``src < dst``, ``weight``
int64, sorted by ``src, dst``) and then ``graph.json`` (dataset, window, session gap, counts).
The shards the pipeline writes are sorted into the one table by the driver, in Arrow: a graph
whose edges do not fit one machine's memory would need a sharded table instead.

Runs on Beam's ``FnApiRunner`` unless ``--runner`` is given (:mod:`beam_jobs.options`).
"""

from __future__ import annotations

import argparse
import collections
import datetime
import itertools
import json
import logging
import os

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from beam_jobs import parquet_rows
from beam_jobs.options import pipeline_options
from ppm import features
from ppm.data import canonical
from ppm.graph import tables

COUNTS = "counts"
SHARDS = "_edges"  # the pipeline's unsorted shards, deleted once edges.parquet is written
COUNTS_FILE = "_counts.json"
OUTPUTS = (tables.GRAPH_MANIFEST, tables.EDGES_FILE, SHARDS, COUNTS_FILE)
EVENT_COLUMNS = ["user_id", "ts", "item_id", "click"]


class EmptyWindowError(ValueError):
    """The window holds no usable click."""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m beam_jobs.item_graph",
        description="Count co-click edges between items clicked in the same session of one "
        "time window and write edges.parquet + graph.json. Unknown flags are passed to Beam.")
    parser.add_argument("--dataset", required=True, help="Canonical dataset folder.")
    parser.add_argument("--out", required=True, help="Output folder of the graph.")
    parser.add_argument("--window", default="pretrain",
                        help="Time window of dataset.json to read (default %(default)s).")
    parser.add_argument("--session_gap_s", type=int, default=features.SESSION_GAP_S,
                        help="A gap of more than this many seconds between two clicks of a "
                        "user starts a new session (default %(default)s).")
    parser.add_argument("--overwrite", action="store_true",
                        help="Replace this job's earlier outputs in a non-empty --out.")
    args, beam_args = parser.parse_known_args(argv)
    if args.session_gap_s < 0:
        parser.error("--session_gap_s must be >= 0")
    return args, beam_args


def session_co_clicks(clicks, session_gap_s: int = features.SESSION_GAP_S):
    """Co-click pairs of one user's clicks.

    Args:
      clicks: ``(ts, item_id)`` of the user's clicks, in any order.
      session_gap_s: a gap of more than this starts a new session.

    Returns:
      ``(Counter {(src, dst): sessions holding both, src < dst}, number of sessions)``.
    """
    ordered = sorted(clicks, reverse=True)  # most recent first, as session_ids wants
    sessions = collections.defaultdict(set)
    for (_, item), s in zip(ordered, features.session_ids([t for t, _ in ordered],
                                                          session_gap_s)):
        sessions[s].add(item)
    pairs = collections.Counter()
    for items in sessions.values():
        pairs.update(itertools.combinations(sorted(items), 2))
    return pairs, len(sessions)


def window_click(row: dict, start: int, end: int):
    """``(user_id, (ts, item_id))`` for a usable click in ``[start, end)``; counts the rest."""
    row, reason = parquet_rows.without_marker(row)
    ok = (reason is None and all(isinstance(row.get(c), str) and row[c]
                                 for c in ("user_id", "item_id"))
          and isinstance(row.get("ts"), int) and isinstance(row.get("click"), int))
    if not ok:
        yield beam.pvalue.TaggedOutput(COUNTS, ("skipped_rows", 1))
    elif row["click"] == 1 and start <= row["ts"] < end:
        yield row["user_id"], (row["ts"], row["item_id"])


def user_pairs(user_and_clicks, session_gap_s: int):
    """``((src, dst), 1)`` per session pair of one user, and that user's counts."""
    _, clicks = user_and_clicks
    clicks = list(clicks)
    pairs, sessions = session_co_clicks(clicks, session_gap_s)
    for key, n in (("users", 1), ("clicks", len(clicks)), ("sessions", sessions)):
        yield beam.pvalue.TaggedOutput(COUNTS, (key, n))
    yield from pairs.items()


def build_pipeline(p, dataset: str, out: str, window: canonical.Window, gap: int) -> None:
    read = (p
            | "ReadEvents" >> parquet_rows.ReadRows(
                os.path.join(dataset, canonical.EVENTS_FILE), columns=EVENT_COLUMNS)
            | "WindowClicks" >> beam.FlatMap(window_click, window.start, window.end)
            .with_outputs(COUNTS, main="clicks"))
    clicks = read.clicks
    users = (clicks
             | "GroupByUser" >> beam.GroupByKey()
             | "SessionPairs" >> beam.FlatMap(user_pairs, gap).with_outputs(COUNTS, main="pairs"))
    edges = users.pairs | "SumPairs" >> beam.CombinePerKey(sum)
    _ = (edges
         | "ToRows" >> beam.Map(lambda kv: {"src": kv[0][0], "dst": kv[0][1], "weight": kv[1]})
         | "WriteShards" >> beam.io.WriteToParquet(
             os.path.join(out, SHARDS, "part"), tables.EDGES_SCHEMA,
             file_name_suffix=".parquet"))

    def total(name, pcoll, combine):
        return pcoll | f"Count{name}" >> combine | f"Key{name}" >> beam.Map(lambda n: (name, n))

    counted = (
        total("clicked_items", clicks | "ClickedItems" >> beam.Map(lambda kv: kv[1][1])
              | "DistinctClicked" >> beam.Distinct(), beam.combiners.Count.Globally()),
        total("nodes", edges | "Ends" >> beam.FlatMap(lambda kv: kv[0])
              | "DistinctNodes" >> beam.Distinct(), beam.combiners.Count.Globally()),
        total("edges", edges, beam.combiners.Count.Globally()),
        total("total_weight", edges | "Weights" >> beam.Map(lambda kv: kv[1]),
              beam.CombineGlobally(sum)))
    _ = ((read[COUNTS], users[COUNTS]) + counted
         | "AllCounts" >> beam.Flatten()
         | "SumCounts" >> beam.CombinePerKey(sum)
         | "CollectCounts" >> beam.combiners.ToList()
         | "FormatCounts" >> beam.Map(lambda kv: json.dumps(dict(kv)))
         | "WriteCounts" >> beam.io.WriteToText(os.path.join(out, COUNTS_FILE),
                                                shard_name_template="", num_shards=1))


def prepare_output(out: str, overwrite: bool) -> None:
    """Refuses a non-empty ``out`` unless ``overwrite``, which deletes this job's outputs only."""
    held = FileSystems.match([os.path.join(out, "*")])[0].metadata_list
    if held and not overwrite:
        raise FileExistsError(f"{out} is not empty ({len(held)} entries, e.g. {held[0].path});"
                              " pass --overwrite to replace an earlier graph or choose "
                              "another --out")
    _delete(out, OUTPUTS)
    if not canonical.is_remote(out):
        os.makedirs(out, exist_ok=True)


def _delete(out: str, names) -> None:
    paths = [os.path.join(out, n) for n in names if FileSystems.exists(os.path.join(out, n))]
    if paths:
        FileSystems.delete(paths)


def write_sorted_edges(out: str) -> None:
    """Sorts the pipeline's shards into ``edges.parquet`` and deletes them."""
    shards = FileSystems.match([os.path.join(out, SHARDS, "part*.parquet")])[0].metadata_list
    parts = [canonical.read_parquet(m.path).cast(tables.EDGES_SCHEMA) for m in shards]
    table = pa.concat_tables(parts) if parts else tables.EDGES_SCHEMA.empty_table()
    with canonical.open_file(os.path.join(out, tables.EDGES_FILE), "wb") as f:
        pq.write_table(table.sort_by([("src", "ascending"), ("dst", "ascending")]), f)
    _delete(out, (SHARDS, COUNTS_FILE))


def run(argv=None, save_main_session=True, test_pipeline=None) -> dict:
    """Builds the graph. Returns the manifest (also written to ``graph.json``).

    Raises:
      FileNotFoundError: no ``--dataset`` folder, or no dataset.json or events.parquet in it.
      ValueError: ``--window`` is not a window of dataset.json, or events.parquet lacks a column.
      EmptyWindowError: no usable click in the window (nothing is left in ``--out``).
      FileExistsError: ``--out`` is not empty and ``--overwrite`` was not given.
    """
    args, beam_args = parse_args(argv)
    if not canonical.is_remote(args.dataset) and not os.path.isdir(args.dataset):
        raise FileNotFoundError(f"--dataset {args.dataset}: no such folder")
    meta = canonical.read_meta(args.dataset)
    if args.window not in meta.windows:
        raise ValueError(f"--window {args.window!r} is not a time window of {args.dataset}/"
                         f"{canonical.DATASET_FILE}; it has {sorted(meta.windows)}")
    window = meta.window(args.window)
    events = os.path.join(args.dataset, canonical.EVENTS_FILE)
    if not canonical.file_exists(events):
        raise FileNotFoundError(f"{events}: missing (the clicks come from it)")
    missing = set(EVENT_COLUMNS) - set(canonical.read_parquet_schema(events).names)
    if missing:
        raise ValueError(f"{events}: no columns {sorted(missing)}")
    prepare_output(args.out, args.overwrite)

    p = test_pipeline if test_pipeline is not None else beam.Pipeline(
        options=pipeline_options(beam_args, save_main_session))
    build_pipeline(p, args.dataset, args.out, window, args.session_gap_s)
    p.run().wait_until_finish()

    with canonical.open_file(os.path.join(args.out, COUNTS_FILE)) as f:
        counts = json.loads(f.read().decode() or "{}")
    counts = {k: int(counts.get(k, 0)) for k in ("clicks", "users", "sessions", "clicked_items",
                                                 "nodes", "edges", "total_weight",
                                                 "skipped_rows")}
    if not counts["clicks"]:
        _delete(args.out, OUTPUTS)
        raise EmptyWindowError(
            f"no clicks in window {args.window!r} [{window.start}, {window.end}) of "
            f"{events} ({counts['skipped_rows']} unusable rows): check the window and the ts "
            "unit (unix seconds)")
    write_sorted_edges(args.out)
    manifest = {
        "format": tables.GRAPH_FORMAT, "format_version": tables.FORMAT_VERSION,
        "created_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "dataset": args.dataset if canonical.is_remote(args.dataset)
        else os.path.abspath(args.dataset),
        "dataset_name": meta.name,
        "window": {"name": args.window, "start": window.start, "end": window.end},
        "session_gap_s": args.session_gap_s,
        "counts": counts,
    }
    canonical.write_json(os.path.join(args.out, tables.GRAPH_MANIFEST), manifest)
    logging.info("Item graph written to %s: %s", args.out, json.dumps(counts))
    return manifest


def main(argv=None) -> int:
    logging.getLogger().setLevel(logging.INFO)
    print(json.dumps(run(argv), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
