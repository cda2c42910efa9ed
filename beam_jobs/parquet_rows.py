"""Reading Parquet rows in Beam without dying on strings that are not UTF-8.

Arrow does not check UTF-8 when it reads Parquet, and files from other writers can hold such
bytes; Beam's ``ReadFromParquet`` then fails the whole job with a bare ``UnicodeDecodeError``
inside its table-to-rows step, naming no file and no row. :class:`ReadRows` reads the same
tables (``ReadFromParquetBatched``) and turns them into the same row dicts itself: a row with
undecodable strings is kept, its bad values shown with ``\\xNN`` escapes, and marked with the
reason under :data:`INVALID_UTF8` (``"invalid UTF-8 in <column>"``, the first such column), so
the job can dead-letter it with that reason.
"""

from __future__ import annotations

import apache_beam as beam
import pyarrow as pa

from ppm.data import canonical, columnar

INVALID_UTF8 = "_invalid_utf8"  # row key: why the row's strings are unusable


def _text_values(values: pa.ChunkedArray) -> list:
    """A string column as Python values, invalid UTF-8 bytes as ``\\xNN`` escapes."""
    raw = values.cast(pa.large_binary() if pa.types.is_large_string(values.type)
                      else pa.binary())
    return [None if v is None else v.decode("utf-8", "backslashreplace")
            for v in raw.to_pylist()]


def table_rows(table: pa.Table):
    """Yields the rows of ``table`` as dicts (``ReadFromParquet``'s), marking bad UTF-8.

    A row with invalid UTF-8 in a string column gets ``row[INVALID_UTF8] = "invalid UTF-8 in
    <column>"`` (the first such column of the table).
    """
    columns, bad = {}, {}
    for name in table.column_names:
        values = table.column(name)
        if pa.types.is_dictionary(values.type):
            values = values.cast(values.type.value_type)
        if canonical.arrow_kind(values.type) == "string":
            rows = columnar.invalid_utf8(values)
            if len(rows):
                for r in rows.tolist():
                    bad.setdefault(r, f"invalid UTF-8 in {name}")
                columns[name] = _text_values(values)
                continue
        columns[name] = values.to_pylist()
    for n in range(table.num_rows):
        row = {name: values[n] for name, values in columns.items()}
        if n in bad:
            row[INVALID_UTF8] = bad[n]
        yield row


def without_marker(row: dict) -> tuple[dict, str | None]:
    """``(row without the INVALID_UTF8 key, its reason or None)``; ``row`` is not changed."""
    if INVALID_UTF8 not in row:
        return row, None
    return {k: v for k, v in row.items() if k != INVALID_UTF8}, row[INVALID_UTF8]


class ReadRows(beam.PTransform):
    """``ReadFromParquet(path, columns)`` whose rows with invalid UTF-8 are marked, not fatal."""

    def __init__(self, path: str, columns=None):
        super().__init__()
        self._path = path
        self._columns = columns

    def expand(self, pbegin):
        return (pbegin
                | "ReadTables" >> beam.io.ReadFromParquetBatched(self._path,
                                                                 columns=self._columns)
                | "TableRows" >> beam.FlatMap(table_rows))


_SHOW_ROWS = 10


def check_utf8(path: str, columns) -> None:
    """Refuses a Parquet file whose string ``columns`` hold bytes that are not UTF-8.

    For a job that cannot leave rows out (the embedding cache needs a record per item): it
    reads the columns once in the driver, before the pipeline.

    Raises:
      FileNotFoundError, canonical.ParquetReadError: the file is missing or not Parquet.
      ValueError: some values are not UTF-8; the message names the file, each column, its
        count and rows (0-based), and shows the first bad value with ``\\xNN`` escapes.
    """
    table = canonical.read_parquet(path, columns=list(columns))
    problems = []
    for name in table.column_names:
        values = table.column(name)
        if pa.types.is_dictionary(values.type):
            values = values.cast(values.type.value_type)
        if canonical.arrow_kind(values.type) != "string":
            continue
        rows = columnar.invalid_utf8(values)
        if len(rows):
            shown = ", ".join(str(r) for r in rows[:_SHOW_ROWS].tolist())
            more = f", ... ({len(rows)} rows)" if len(rows) > _SHOW_ROWS else ""
            problems.append(f"column {name!r}: {len(rows)} values are not valid UTF-8 (e.g. "
                            f"{columnar.safe_text(values[int(rows[0])])!r}) [rows {shown}{more}]")
    if problems:
        raise ValueError(f"{path}: " + "; ".join(problems) + ". Parquet strings must be UTF-8: "
                         "re-encode them (or store the column as binary); `python -m "
                         "ppm.data.validate` lists every such column")
