"""Checks a canonical dataset and names every violation: file, column and rows.

``python -m ppm.data.validate DIR`` prints one line per problem and exits with status 1 if
there is any error (0 otherwise). Warnings (undecodable images, events outside every time
window, events before their item's ``created_at``) are reported with counts but do not fail:
such rows are kept and counted downstream, never silently dropped.

Checks are per column: a column that is missing or of the wrong type is reported once and only
the checks that need it are skipped; null values are reported and the other checks run on the
remaining rows. ``DIR`` may be local or on any Beam filesystem (``gs://...``).

Row numbers are 0-based positions in the Parquet file.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ppm.data import canonical
from ppm.data.columnar import (
    as_bool,
    codes,
    conflicting,
    duplicated,
    invalid_utf8,
    not_in,
    pair_keys,
    safe_text,
    undecodable_images,
)

_SHOW_ROWS = 10
LABEL_RULES = ("order_requires_click", "cart_requires_click")
# dataset.json keys and the JSON type each must have.
_META_TYPES = {"name": (str, "string"), "source": (str, "string"), "licence": (str, "string"),
               "windows": (dict, "object"), "label_rules": (dict, "object"),
               "tasks": (list, "list"), "counts": (dict, "object"), "extra": (dict, "object"),
               "positions": (str, "string")}


@dataclasses.dataclass(frozen=True)
class Problem:
    """One violation. ``rows`` holds the offending 0-based row numbers (may be empty)."""

    severity: str  # "error" or "warning"
    file: str
    column: str | None
    message: str
    rows: tuple = ()

    def __str__(self) -> str:
        where = self.file + (f", column {self.column!r}" if self.column else "")
        text = f"{self.severity.upper()}: {where}: {self.message}"
        if self.rows:
            shown = ", ".join(str(r) for r in self.rows[:_SHOW_ROWS])
            more = f", ... ({len(self.rows)} rows)" if len(self.rows) > _SHOW_ROWS else ""
            text += f" [rows {shown}{more}]"
        return text


def _rows(mask) -> np.ndarray:
    return np.flatnonzero(mask)


def _row_tuple(rows) -> tuple:
    return tuple(np.asarray(rows, dtype=np.int64).ravel().tolist())


@dataclasses.dataclass
class Report:
    problems: list = dataclasses.field(default_factory=list)

    @property
    def errors(self) -> list:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def error(self, file, column, message, rows=()):
        self.problems.append(Problem("error", file, column, message, _row_tuple(rows)))

    def warn(self, file, column, message, rows=()):
        self.problems.append(Problem("warning", file, column, message, _row_tuple(rows)))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


class DatasetError(ValueError):
    """Raised by :func:`check_dataset` when a dataset has errors; the message lists them."""


# --- dataset.json ---------------------------------------------------------------------------

def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)  # JSON true is a Python int


def check_meta(meta: canonical.DatasetMeta, report: Report) -> dict | None:
    """Checks the content of `dataset.json`.

    Returns:
      The time windows as ``{name: canonical.Window}``, or None if they are unusable.
    """
    f = canonical.DATASET_FILE
    for key, (type_, json_name) in _META_TYPES.items():
        value = getattr(meta, key)
        if not isinstance(value, type_):
            report.error(f, key, f"must be a JSON {json_name}, got {type(value).__name__} "
                         f"{value!r:.60}")
    if not (_is_int(meta.schema_version) and meta.schema_version == canonical.SCHEMA_VERSION):
        report.error(f, "schema_version", f"schema version {meta.schema_version!r} is not "
                     f"supported; this code reads version {canonical.SCHEMA_VERSION}")
    if isinstance(meta.label_rules, dict):
        unknown = sorted(set(meta.label_rules) - set(LABEL_RULES))
        if unknown:
            report.error(f, "label_rules", f"unknown rules {unknown}; known rules are "
                         f"{list(LABEL_RULES)}")
        for rule in LABEL_RULES:
            if not isinstance(meta.label_rules.get(rule, True), bool):
                report.error(f, "label_rules", f"{rule} must be true or false")
    if isinstance(meta.tasks, list):
        names = canonical.LABEL_COLUMNS
        if not meta.tasks or not all(isinstance(t, str) and t in names for t in meta.tasks):
            report.error(f, "tasks", f"tasks must be a non-empty subset of {list(names)}, "
                         f"got {meta.tasks}")
    if isinstance(meta.positions, str) and meta.positions not in canonical.POSITIONS:
        report.error(f, "positions", f"positions must be one of {list(canonical.POSITIONS)}, "
                     f"got {meta.positions!r}")
    return _check_windows(meta.windows, report) if isinstance(meta.windows, dict) else None


def _check_windows(windows: dict, report: Report) -> dict | None:
    f = canonical.DATASET_FILE
    missing = [w for w in canonical.WINDOW_NAMES if w not in windows]
    if missing:
        report.error(f, "windows", f"missing time windows {missing}")
        return None
    malformed = False
    for name in canonical.WINDOW_NAMES:
        w = windows[name]
        if not (isinstance(w, list) and len(w) == 2 and all(_is_int(x) for x in w)):
            report.error(f, "windows", f"{name} must be [start, end] with integer unix "
                         f"seconds, got {w!r}")
            malformed = True
    if malformed:
        return None
    parsed = {name: canonical.Window(*windows[name]) for name in canonical.WINDOW_NAMES}
    for name, w in parsed.items():
        if w.empty:
            report.error(f, "windows", f"{name} is empty: start {w.start} >= end {w.end}")
    names = canonical.DISJOINT_WINDOWS
    for a, b in zip(names, names[1:]):
        wa, wb = parsed[a], parsed[b]
        if wa.overlaps(wb) or wa.start > wb.start:
            report.error(f, "windows", f"{a} {windows[a]} and {b} {windows[b]} overlap or "
                         f"are out of order; {a} must end before {b} starts")
    small, large = parsed["train_small"], parsed["train_large"]
    if not (large.start <= small.start and small.end == large.end):
        report.error(f, "windows", f"train_small {windows['train_small']} must be the most "
                     f"recent part of train_large {windows['train_large']}")
    return parsed


# --- Parquet schemas and columns ------------------------------------------------------------

def check_schema(file: str, schema: pa.Schema, columns, report: Report) -> frozenset:
    """Checks presence and type of a table's columns (no data needed).

    Returns:
      The names of the canonical columns that are present and of the right type.
    """
    usable = set()
    for col in columns:
        if col.name not in schema.names:
            if col.required:
                report.error(file, col.name, "column is missing")
            continue
        type_ = schema.field(col.name).type
        if canonical.arrow_kind(type_) != col.kind:
            report.error(file, col.name, f"wrong type {type_}; expected {col.kind}")
            continue
        usable.add(col.name)
    if file == canonical.EVENTS_FILE:
        for field in schema:
            if (field.name.startswith("user_") and field.name != "user_id"
                    and canonical.arrow_kind(field.type) != "string"):
                report.error(file, field.name, f"user profile columns must be strings, got "
                             f"{field.type}")
    return frozenset(usable)


@dataclasses.dataclass
class _Table:
    file: str
    data: pa.Table
    usable: frozenset  # canonical columns present with the right type

    def has(self, *columns) -> bool:
        return set(columns) <= self.usable

    def __getitem__(self, column) -> pa.ChunkedArray:
        return self.data.column(column)


def _read_table(dataset_dir: str, file: str, report: Report) -> _Table | None:
    """Reads a table, checks its schema and the nulls of its non-nullable columns."""
    path = os.path.join(dataset_dir, file)
    if not canonical.file_exists(path):
        report.error(file, None, "file is missing")
        return None
    try:
        data = canonical.read_parquet(path)
    except (pa.ArrowException, OSError) as e:
        report.error(file, None, str(e))  # ParquetReadError names the file
        return None
    # Dictionary-encoded columns (pandas categories) are checked as their values.
    for i, field in enumerate(data.schema):
        if pa.types.is_dictionary(field.type):
            data = data.set_column(i, field.name, data.column(i).cast(field.type.value_type))
    columns = canonical.TABLES[file]
    table = _Table(file, data, check_schema(file, data.schema, columns, report))
    _check_utf8(table, report)
    for col in columns:
        if table.has(col.name) and not col.nullable and table[col.name].null_count:
            report.error(file, col.name, f"{table[col.name].null_count} null values",
                         _rows(as_bool(table[col.name].is_null())))
    return table


def _check_utf8(t: _Table, report: Report) -> None:
    """Every string column, canonical or extra, holds UTF-8 (other writers may not check)."""
    for field in t.data.schema:
        if canonical.arrow_kind(field.type) == "string":
            bad = invalid_utf8(t[field.name])
            if len(bad):
                report.error(t.file, field.name, f"{len(bad)} values are not valid UTF-8 (e.g. "
                             f"{safe_text(t[field.name][int(bad[0])])!r}); Parquet strings "
                             "must be UTF-8: re-encode them, or store the column as binary",
                             bad)


def _check_floats(t: _Table, report: Report) -> None:
    """NaN is never a value: a missing float is null."""
    for field in t.data.schema:
        if canonical.arrow_kind(field.type) == "float":
            nan = as_bool(pc.is_nan(t[field.name]))
            if nan.any():
                report.error(t.file, field.name, f"{int(nan.sum())} NaN values (use null for "
                             "a missing value)", _rows(nan))


# --- Table checks ---------------------------------------------------------------------------

def _check_items(items: _Table, report: Report) -> None:
    f = items.file
    if items.has("item_id"):
        ids = items["item_id"]
        empty = as_bool(pc.equal(ids, ""))
        if empty.any():
            report.error(f, "item_id", "empty item ids", _rows(empty))
        dup = duplicated(codes(ids)) & as_bool(ids.is_valid())
        if dup.any():
            n = len(pc.unique(ids.filter(pa.array(dup))))
            report.error(f, "item_id", f"{n} duplicate item ids, e.g. "
                         f"{safe_text(ids[int(_rows(dup)[0])])!r}", _rows(dup))
    if items.has("image"):
        bad = undecodable_images(items["image"])
        if bad:
            report.warn(f, "image", f"{len(bad)} images cannot be decoded (they will be "
                        "treated as missing images)", bad)
    if items.has("price"):
        price = items["price"]
        for what, mask in (("infinite", pc.is_inf(price)), ("negative", pc.less(price, 0))):
            bad = as_bool(mask)
            if bad.any():
                report.error(f, "price", f"{int(bad.sum())} {what} prices", _rows(bad))
    _check_floats(items, report)


def _check_events(events: _Table, items: _Table | None, windows: dict | None,
                  label_rules: dict | None, report: Report,
                  positions: str = "displayed") -> None:
    f = events.file
    for col in ("request_id", "user_id"):
        if events.has(col):
            empty = as_bool(pc.equal(events[col], ""))
            if empty.any():
                report.error(f, col, "empty values", _rows(empty))
    if events.has("item_id") and items is not None and items.has("item_id"):
        unknown = not_in(events["item_id"], items["item_id"])
        if unknown.any():
            report.error(f, "item_id", f"{int(unknown.sum())} events name items missing from "
                         f"{items.file}", _rows(unknown))
        if items.has("created_at") and events.has("ts"):
            at = pc.index_in(events["item_id"], value_set=items["item_id"])
            early = as_bool(pc.less(events["ts"], items["created_at"].take(at)))
            if early.any():
                n_items = len(pc.unique(events["item_id"].filter(pa.array(early))))
                report.warn(f, "ts", f"{int(early.sum())} events show an item before its "
                            f"created_at in {items.file} ({n_items} items; catalogue creation "
                            "times may be imprecise)", _rows(early))
    for col in canonical.LABEL_COLUMNS:
        if events.has(col):
            bad = not_in(events[col], pa.array([0, 1]))
            if bad.any():
                report.error(f, col, "values outside {0, 1}", _rows(bad))
    for col in ("order", "cart"):
        rule = f"{col}_requires_click"
        if events.has(col, "click") and label_rules is not None and label_rules.get(rule, True):
            bad = as_bool(pc.and_(pc.equal(events[col], 1), pc.equal(events["click"], 0)))
            if bad.any():
                report.error(f, col, f"{col}=1 with click=0, which dataset.json's label_rules "
                             f"forbid ({rule})", _rows(bad))
    for col in ("position", "rank"):
        if events.has(col):
            bad = as_bool(pc.less(events[col], 0))
            if bad.any():
                unknown = " (use null for unknown)" if col == "rank" else ""
                report.error(f, col, f"negative {col}s{unknown}", _rows(bad))
    if positions == "none" and events.has("position"):
        bad = as_bool(pc.not_equal(events["position"], 0))
        if bad.any():
            report.error(f, "position", f"{int(bad.sum())} positions other than 0, but "
                         "dataset.json says positions: none (no display order is known)",
                         _rows(bad))
    if events.has("request_id"):
        _check_requests(events, report, positions)
    if events.has("exposure"):
        _check_search(events, report)
    if events.has("ts") and windows is not None:
        _check_event_windows(events, windows, report)
    _check_floats(events, report)


def _check_requests(events: _Table, report: Report, positions: str = "displayed") -> None:
    """A request is one display: one user, one time, distinct items at distinct positions
    (positions only when they were displayed)."""
    f = events.file
    request = codes(events["request_id"])
    valid = as_bool(events["request_id"].is_valid())
    unique = (("item_id", "item"),) + ((("position", "position"),)
                                       if positions != "none" else ())
    for col, what in unique:
        if events.has(col):
            dup = duplicated(pair_keys(request, codes(events[col])))
            dup &= valid & as_bool(events[col].is_valid())
            if dup.any():
                report.error(f, col, f"{int(dup.sum())} rows repeat a (request_id, {col}) "
                             f"pair: a request shows each {what} once", _rows(dup))
    for col in ("user_id", "ts"):
        if events.has(col):
            bad = conflicting(request, codes(events[col])) & valid
            if bad.any():
                n = len(pc.unique(events["request_id"].filter(pa.array(bad))))
                report.error(f, col, f"{n} request_ids have several {col} values; a request "
                             f"has one {col}", _rows(bad))


def _check_search(events: _Table, report: Report) -> None:
    """A search pre-ranking log (canonical.SEARCH_EVENT_COLUMNS): only displayed rows have
    labels; sampled rows have no rank and no ranker score, the others have both; in a request, a
    better (lower) rank never has a lower ranker score."""
    f = events.file
    exposure = events["exposure"]
    bad = not_in(exposure, pa.array(canonical.EXPOSURES))
    if bad.any():
        report.error(f, "exposure", f"values outside {list(canonical.EXPOSURES)}", _rows(bad))
    hidden = as_bool(pc.not_equal(exposure, "displayed"))
    for col in canonical.LABEL_COLUMNS:
        if events.has(col):
            labelled = hidden & as_bool(pc.equal(events[col], 1))
            if labelled.any():
                report.error(f, col, f"{int(labelled.sum())} rows not displayed (exposure "
                             f"recalled or sampled) have {col}=1", _rows(labelled))
    sampled = as_bool(pc.equal(exposure, "sampled"))
    for col in ("rank", "ranker_score"):
        if not events.has(col):
            continue
        null = as_bool(events[col].is_null())
        if (sampled & ~null).any():
            report.error(f, col, f"sampled negatives with a {col} (recall did not return them: "
                         "null)", _rows(sampled & ~null))
        if (~sampled & null).any():
            report.error(f, col, f"displayed or recalled rows without a {col}",
                         _rows(~sampled & null))
    if events.has("rank", "ranker_score", "request_id"):
        scored = np.flatnonzero(~as_bool(events["rank"].is_null())
                                & ~as_bool(events["ranker_score"].is_null()))
        request = codes(events["request_id"])[scored]
        rank = events["rank"].to_numpy(zero_copy_only=False)[scored]
        score = events["ranker_score"].to_numpy(zero_copy_only=False)[scored]
        order = np.lexsort((rank, request))
        same = request[order][1:] == request[order][:-1]
        worse = same & (score[order][1:] > score[order][:-1])
        if worse.any():
            rows = np.zeros(len(events["rank"]), bool)
            rows[scored[order][1:][worse]] = True
            report.error(f, "ranker_score", f"{int(worse.sum())} rows have a higher ranker "
                         "score than a better-ranked row of their request (rank is the ranking "
                         "model's order by score, 0 = best)", _rows(rows))


def _check_event_windows(events: _Table, windows: dict, report: Report) -> None:
    f = events.file
    ts = events["ts"].fill_null(np.iinfo(np.int64).min).to_numpy()
    inside = np.zeros(len(ts), bool)
    hint = ""
    if len(ts) and np.median(ts) > 1e11:  # year 5138 in seconds; now in milliseconds
        hint = " (ts looks like milliseconds; the canonical ts is unix seconds)"
    for name, w in windows.items():
        in_w = w.contains(ts)
        inside |= in_w
        if not in_w.any():
            report.error(f, "ts", f"time window {name} [{w.start}, {w.end}) holds no "
                         f"events{hint}")
    outside = ~inside & as_bool(events["ts"].is_valid())
    if outside.any():
        report.warn(f, "ts", f"{int(outside.sum())} events fall outside every time window "
                    "(they serve as history only)", _rows(outside))


def _check_queries(queries: _Table, items: _Table | None, report: Report) -> None:
    f = queries.file
    kind = queries["kind"] if queries.has("kind") else None
    if kind is not None:
        bad = not_in(kind, pa.array(canonical.QUERY_KINDS))
        if bad.any():
            report.error(f, "kind", f"values outside {list(canonical.QUERY_KINDS)}",
                         _rows(bad))
    if kind is not None and queries.has("query_image"):
        is_image = as_bool(pc.equal(kind, "image"))
        no_image = is_image & as_bool(queries["query_image"].is_null())
        if no_image.any():
            report.error(f, "query_image", "image queries without query_image bytes",
                         _rows(no_image))
        bad = undecodable_images(queries["query_image"], only=is_image)
        if bad:
            report.warn(f, "query_image", f"{len(bad)} query images cannot be decoded",
                        bad)
    if kind is not None and queries.has("query"):
        no_text = as_bool(pc.and_(pc.equal(kind, "text"), pc.equal(queries["query"], "")))
        if no_text.any():
            report.error(f, "query", "text queries with empty query text", _rows(no_text))
    negative = "hard_negative_item_id"
    for col in ("item_id", negative):
        if queries.has(col) and items is not None and items.has("item_id"):
            unknown = not_in(queries[col], items["item_id"])
            if unknown.any():
                report.error(f, col, f"items missing from {items.file}", _rows(unknown))
    if queries.has("item_id", negative):
        same = as_bool(pc.equal(queries[negative], queries["item_id"]))
        if same.any():
            report.error(f, negative, "the hard negative is the query's own item",
                         _rows(same))
    _check_floats(queries, report)


def validate(dataset_dir: str) -> Report:
    """Checks a dataset folder. Returns a :class:`Report` (never raises for bad data)."""
    report = Report()
    windows = label_rules = None
    positions = "displayed"
    try:
        meta = canonical.read_meta(dataset_dir)
    except (FileNotFoundError, ValueError, TypeError) as e:
        report.error(canonical.DATASET_FILE, None, str(e))
    else:
        windows = check_meta(meta, report)
        label_rules = meta.label_rules if isinstance(meta.label_rules, dict) else None
        positions = meta.positions
    items = _read_table(dataset_dir, canonical.ITEMS_FILE, report)
    events = _read_table(dataset_dir, canonical.EVENTS_FILE, report)
    if items is not None:
        _check_items(items, report)
    if events is not None:
        _check_events(events, items, windows, label_rules, report, positions)
    if canonical.file_exists(os.path.join(dataset_dir, canonical.QUERIES_FILE)):
        queries = _read_table(dataset_dir, canonical.QUERIES_FILE, report)
        if queries is not None:
            _check_queries(queries, items, report)
    return report


def check_dataset(dataset_dir: str) -> Report:
    """Validates and raises :class:`DatasetError` listing every error, if any."""
    report = validate(dataset_dir)
    if not report.ok:
        raise DatasetError(f"{dataset_dir} is not a valid canonical dataset:\n{report}")
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ppm.data.validate",
        description="Validate a canonical dataset folder (dataset.json, items.parquet, "
        "events.parquet, optional queries.parquet), local or gs://. Exit status 1 if there "
        "are errors.")
    parser.add_argument("dataset", help="Dataset folder.")
    args = parser.parse_args(argv)
    report = validate(args.dataset)
    if report.problems:
        print(report, file=sys.stderr)
    status = "OK" if report.ok else "INVALID"
    print(f"{args.dataset}: {status} ({len(report.errors)} errors, "
          f"{len(report.warnings)} warnings)")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
