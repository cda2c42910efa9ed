"""Checks a canonical dataset and names every violation: file, column and rows.

``python -m ppm.data.validate DIR`` prints one line per problem and exits with status 1 if
there is any error (0 otherwise). Warnings (undecodable images, events outside every time
window) are reported with counts but do not fail: such rows are kept and counted downstream,
never silently dropped.

Row numbers are 0-based positions in the Parquet file.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
import sys

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image

from ppm.data import canonical

_SHOW_ROWS = 10


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
        self.problems.append(Problem("error", file, column, message, tuple(int(r) for r in rows)))

    def warn(self, file, column, message, rows=()):
        self.problems.append(Problem("warning", file, column, message,
                                     tuple(int(r) for r in rows)))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


class DatasetError(ValueError):
    """Raised by :func:`check_dataset` when a dataset has errors; the message lists them."""


def _rows(mask) -> np.ndarray:
    return np.flatnonzero(np.asarray(mask))


def _check_windows(meta: canonical.DatasetMeta, report: Report) -> None:
    f = canonical.DATASET_FILE
    missing = [w for w in canonical.WINDOW_NAMES if w not in meta.windows]
    if missing:
        report.error(f, "windows", f"missing time windows {missing}")
        return
    for name in canonical.WINDOW_NAMES:
        w = meta.windows[name]
        if not (isinstance(w, (list, tuple)) and len(w) == 2
                and all(isinstance(x, int) for x in w)):
            report.error(f, "windows", f"{name} must be [start, end] in unix seconds, got {w!r}")
            return
        if meta.window(name).empty:
            report.error(f, "windows", f"{name} is empty: start {w[0]} >= end {w[1]}")
    names = canonical.DISJOINT_WINDOWS
    for a, b in zip(names, names[1:]):
        wa, wb = meta.window(a), meta.window(b)
        if wa.overlaps(wb) or wa.start > wb.start:
            report.error(f, "windows", f"{a} {list(meta.windows[a])} and {b} "
                         f"{list(meta.windows[b])} overlap or are out of order; {a} must end "
                         f"before {b} starts")
    small, large = meta.window("train_small"), meta.window("train_large")
    if not (large.start <= small.start and small.end == large.end):
        report.error(f, "windows", f"train_small {list(meta.windows['train_small'])} must be "
                     f"the most recent part of train_large {list(meta.windows['train_large'])}")
    for rule in ("order_requires_click", "cart_requires_click"):
        if not isinstance(meta.label_rules.get(rule, True), bool):
            report.error(f, "label_rules", f"{rule} must be true or false")
    unknown = sorted(set(meta.tasks) - set(canonical.LABEL_COLUMNS))
    if unknown or not meta.tasks:
        report.error(f, "tasks", f"tasks must be a non-empty subset of "
                     f"{list(canonical.LABEL_COLUMNS)}, got {meta.tasks}")


def _read_table(path: str, columns, report: Report) -> pa.Table | None:
    """Reads a table and checks presence, type and nulls of the canonical columns."""
    name = os.path.basename(path)
    if not os.path.exists(path):
        report.error(name, None, "file is missing")
        return None
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as e:
        report.error(name, None, f"not a readable Parquet file: {e}")
        return None
    ok = True
    for col in columns:
        if col.name not in table.column_names:
            if col.required:
                report.error(name, col.name, "column is missing")
                ok = False
            continue
        arr = table.column(col.name)
        kind = canonical.arrow_kind(arr.type)
        if kind != col.kind:
            report.error(name, col.name, f"wrong type {arr.type}; expected {col.kind}")
            ok = False
            continue
        if not col.nullable and arr.null_count:
            report.error(name, col.name, f"{arr.null_count} null values",
                         _rows(arr.is_null().to_numpy(zero_copy_only=False)))
            ok = False
    return table if ok else None


def _str_col(table: pa.Table, name: str) -> np.ndarray:
    return table.column(name).to_numpy(zero_copy_only=False)


def _is_in(values, value_set) -> np.ndarray:
    """Hash-based membership of strings (np.isin on object arrays is quadratic)."""
    mask = pc.is_in(pa.array(values, pa.string()), value_set=pa.array(value_set, pa.string()))
    return mask.to_numpy(zero_copy_only=False).astype(bool)


def _check_items(items: pa.Table, report: Report) -> np.ndarray:
    f = canonical.ITEMS_FILE
    ids = _str_col(items, "item_id")
    empty = ids == ""
    if empty.any():
        report.error(f, "item_id", "empty item ids", _rows(empty))
    _, first, counts = np.unique(ids, return_index=True, return_counts=True)
    dup = _is_in(ids, ids[first[counts > 1]])
    if dup.any():
        report.error(f, "item_id", f"{int((counts > 1).sum())} duplicate item ids, e.g. "
                     f"{ids[dup][0]!r}", _rows(dup))
    images = items.column("image").to_pylist()
    bad = []
    for i, data in enumerate(images):
        if data is None:
            continue
        try:
            with Image.open(io.BytesIO(data)) as img:
                img.verify()
        except Exception:  # noqa: BLE001 - PIL raises many types for corrupt data
            bad.append(i)
    if bad:
        report.warn(f, "image", f"{len(bad)} images cannot be decoded (they will be treated as "
                    "missing images)", bad)
    return ids


def _check_events(events: pa.Table, item_ids, meta, report: Report) -> None:
    f = canonical.EVENTS_FILE
    for col in ("request_id", "user_id"):
        empty = _str_col(events, col) == ""
        if empty.any():
            report.error(f, col, "empty values", _rows(empty))
    unknown = ~_is_in(_str_col(events, "item_id"), item_ids)
    if unknown.any():
        report.error(f, "item_id", f"{int(unknown.sum())} events name items missing from "
                     f"{canonical.ITEMS_FILE}", _rows(unknown))
    labels = {}
    for col in canonical.LABEL_COLUMNS:
        v = events.column(col).to_numpy()
        labels[col] = v
        bad = (v != 0) & (v != 1)
        if bad.any():
            report.error(f, col, "values outside {0, 1}", _rows(bad))
    for col in ("order", "cart"):
        if meta is not None and meta.label_rules.get(f"{col}_requires_click", True):
            bad = (labels[col] == 1) & (labels["click"] == 0)
            if bad.any():
                report.error(f, col, f"{col}=1 with click=0, which dataset.json's label_rules "
                             f"forbid ({col}_requires_click)", _rows(bad))
    pos = events.column("position").to_numpy()
    if (pos < 0).any():
        report.error(f, "position", "negative display positions", _rows(pos < 0))
    rank = events.column("rank").to_numpy(zero_copy_only=False)
    rank_bad = ~np.isnan(rank.astype(float)) & (rank.astype(float) < 0)
    if rank_bad.any():
        report.error(f, "rank", "negative ranks (use null for unknown)", _rows(rank_bad))
    for col in events.column_names:
        if col.startswith("user_") and col != "user_id":
            if canonical.arrow_kind(events.column(col).type) != "string":
                report.error(f, col, f"user profile columns must be strings, got "
                             f"{events.column(col).type}")
    if meta is not None and all(w in meta.windows for w in canonical.WINDOW_NAMES):
        ts = events.column("ts").to_numpy()
        inside = np.zeros(len(ts), bool)
        for w in canonical.WINDOW_NAMES:
            inside |= meta.window(w).contains(ts)
        if (~inside).any():
            report.warn(f, "ts", f"{int((~inside).sum())} events fall outside every time "
                        "window (they serve as history only)", _rows(~inside))


def _check_queries(queries: pa.Table, item_ids, report: Report) -> None:
    f = canonical.QUERIES_FILE
    kind = _str_col(queries, "kind")
    bad = ~_is_in(kind, canonical.QUERY_KINDS)
    if bad.any():
        report.error(f, "kind", f"values outside {list(canonical.QUERY_KINDS)}", _rows(bad))
    no_image = (kind == "image") & queries.column("query_image").is_null().to_numpy(
        zero_copy_only=False)
    if no_image.any():
        report.error(f, "query_image", "image queries without query_image bytes",
                     _rows(no_image))
    no_text = (kind == "text") & (_str_col(queries, "query") == "")
    if no_text.any():
        report.error(f, "query", "text queries with empty query text", _rows(no_text))
    unknown = ~_is_in(_str_col(queries, "item_id"), item_ids)
    if unknown.any():
        report.error(f, "item_id", "items missing from items.parquet", _rows(unknown))
    if "hard_negative_item_id" in queries.column_names:
        neg = _str_col(queries, "hard_negative_item_id")
        present = np.array([x is not None for x in neg], bool)
        unknown = present & ~_is_in(np.where(present, neg, ""), item_ids)
        if unknown.any():
            report.error(f, "hard_negative_item_id", "items missing from items.parquet",
                         _rows(unknown))


def validate(dataset_dir: str) -> Report:
    """Checks a dataset folder. Returns a :class:`Report` (never raises for bad data)."""
    report = Report()
    meta = None
    try:
        meta = canonical.read_meta(dataset_dir)
    except (FileNotFoundError, ValueError, TypeError) as e:
        report.error(canonical.DATASET_FILE, None, str(e))
    if meta is not None:
        _check_windows(meta, report)
    items = _read_table(os.path.join(dataset_dir, canonical.ITEMS_FILE),
                        canonical.ITEM_COLUMNS, report)
    events = _read_table(os.path.join(dataset_dir, canonical.EVENTS_FILE),
                         canonical.EVENT_COLUMNS, report)
    item_ids = _check_items(items, report) if items is not None else None
    if events is not None and item_ids is not None:
        _check_events(events, item_ids, meta, report)
    queries_path = os.path.join(dataset_dir, canonical.QUERIES_FILE)
    if os.path.exists(queries_path):
        queries = _read_table(queries_path, canonical.QUERY_COLUMNS, report)
        if queries is not None and item_ids is not None:
            _check_queries(queries, item_ids, report)
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
        "events.parquet, optional queries.parquet). Exit status 1 if there are errors.")
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
