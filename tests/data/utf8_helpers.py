"""Parquet strings that are not UTF-8, as other writers can store them (Arrow does not check)."""

import os

import pyarrow as pa
import pyarrow.parquet as pq

BAD_BYTES = b"caf\xe9 \xff\xfe"  # Latin-1 and stray bytes: not UTF-8


def with_invalid_utf8(table: pa.Table, column: str, rows, bad: bytes = BAD_BYTES) -> pa.Table:
    """``table`` with ``column``'s values at ``rows`` replaced by ``bad`` (still type string)."""
    values = [None if v is None else v.encode() for v in table.column(column).to_pylist()]
    for r in rows:
        values[r] = bad
    raw = pa.array(values, pa.binary())
    # Reinterpreting the buffers skips Arrow's UTF-8 check, as a foreign Parquet writer would.
    text = pa.Array.from_buffers(pa.string(), len(raw), raw.buffers(), null_count=raw.null_count)
    return table.set_column(table.schema.get_field_index(column), column, text)


def corrupt_parquet(dataset: str, file: str, column: str, rows) -> None:
    """Rewrites ``dataset/file`` with invalid UTF-8 in ``column`` at ``rows``."""
    path = os.path.join(dataset, file)
    pq.write_table(with_invalid_utf8(pq.read_table(path), column, rows), path)
