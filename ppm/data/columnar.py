"""Vectorised column operations for checking large tables: no Python loop over rows.

Strings are compared by hashing in Arrow (``np.isin`` on object arrays is quadratic) and
groupings use dense integer codes, so the validator stays fast on millions of events.
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image


def as_bool(flags) -> np.ndarray:
    """A boolean Arrow array as numpy; null (unknown) counts as False."""
    return np.asarray(flags.fill_null(False), dtype=bool)


def not_in(values: pa.ChunkedArray, value_set) -> np.ndarray:
    """Non-null values outside ``value_set``, by hashing (np.isin on objects is quadratic)."""
    inside = pc.is_in(values, value_set=value_set.cast(values.type))
    return ~as_bool(inside) & as_bool(values.is_valid())


def codes(values: pa.ChunkedArray) -> np.ndarray:
    """Non-negative int64 codes, below ``len(values)`` or 2**31: equal values, equal codes.

    Null-free integers need no hashing: they are shifted to start at 0 when their range allows.
    """
    if pa.types.is_integer(values.type) and not values.null_count and len(values):
        lo, hi = pc.min_max(values).values()
        if hi.as_py() - lo.as_py() < 2**31:
            return values.to_numpy().astype(np.int64) - lo.as_py()
    encoded = values.dictionary_encode()  # one hash pass; chunks share the final dictionary
    sizes = {len(chunk.dictionary) for chunk in encoded.chunks}
    if len(sizes) > 1:  # not expected from Arrow; a second pass is always right
        return np.asarray(pc.index_in(values, value_set=pc.unique(values)), dtype=np.int64)
    null_code = sizes.pop() if sizes else 0
    return np.concatenate([np.asarray(chunk.indices.fill_null(null_code), dtype=np.int64)
                           for chunk in encoded.chunks] or [np.zeros(0, np.int64)])


def pair_keys(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """One int64 key per row for the pair (a, b) of two :func:`codes` arrays."""
    return a * (int(b.max(initial=0)) + 1) + b


def duplicated(keys: np.ndarray) -> np.ndarray:
    """Rows whose key occurs more than once (by sorting: hashing 10M keys is slower)."""
    order = np.argsort(keys, kind="stable")  # fast when rows come grouped, as logs do
    same = keys[order[1:]] == keys[order[:-1]]
    dup = np.zeros(len(keys), bool)
    dup[order[1:][same]] = True
    dup[order[:-1][same]] = True
    return dup


def conflicting(groups: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Rows whose group holds more than one distinct value.

    Args:
      groups: :func:`codes` of the grouping column.
      values: integer values (or codes) of the column that must be constant in a group.
    """
    first = np.zeros(groups.max(initial=0) + 1, values.dtype)
    first[groups[::-1]] = values[::-1]  # the last write wins: each group's first value
    bad = np.zeros(len(first), bool)
    bad[groups[values != first[groups]]] = True
    return bad[groups]


def undecodable_images(images: pa.ChunkedArray, only=None) -> list:
    """Rows whose bytes are not a decodable image (nulls, and rows not in ``only``, skipped)."""
    bad, offset = [], 0
    for chunk in images.chunks:
        for i, data in enumerate(chunk.to_pylist(), offset):
            if data is None or (only is not None and not only[i]):
                continue
            try:
                with Image.open(io.BytesIO(data)) as img:
                    img.verify()
            except Exception:  # noqa: BLE001 - PIL raises many types for corrupt data
                bad.append(i)
        offset += len(chunk)
    return bad


def invalid_utf8(values: pa.ChunkedArray) -> np.ndarray:
    """Rows of a string column whose bytes are not valid UTF-8 (nulls are valid).

    Arrow does not check UTF-8 when it reads Parquet (files from other writers can hold such
    bytes); converting them to Python raises ``UnicodeDecodeError``. Each chunk is checked
    by Arrow's full validation (vectorised); only a chunk that fails is decoded value by value
    to find its rows.

    Returns:
      The 0-based row numbers, int64, ascending.
    """
    bad, offset = [], 0
    for chunk in values.chunks:
        try:
            chunk.validate(full=True)
        except pa.ArrowInvalid:
            raw = chunk.view(pa.large_binary() if pa.types.is_large_string(chunk.type)
                             else pa.binary())
            for i, data in enumerate(raw.to_pylist(), offset):
                if data is None:
                    continue
                try:
                    data.decode("utf-8")
                except UnicodeDecodeError:
                    bad.append(i)
        offset += len(chunk)
    return np.asarray(bad, dtype=np.int64)


def safe_text(value: pa.Scalar) -> str:
    """The Python text of a string scalar; invalid UTF-8 bytes shown as ``\\xNN`` escapes."""
    if not value.is_valid:
        return "None"
    try:
        return value.as_py()
    except UnicodeDecodeError:
        return value.cast(pa.binary()).as_py().decode("utf-8", "backslashreplace")
