"""The canonical dataset: the contract between data sources and the pipeline.

A dataset is a folder (docs/data.md, "The canonical dataset")::

    dataset.json      name, schema version, source, time windows, label rules, counts, licence
    items.parquet     one row per item
    events.parquet    one row per displayed candidate
    queries.parquet   optional search logs (text and image queries)

Every source (the synthetic world, the public-data adapters, a user's own logs) writes this
format; everything downstream reads only this. :mod:`ppm.data.validate` checks it.

Time windows are half-open unix-second ranges ``[start, end)``. ``pretrain``, ``train_large``
and ``test`` must not overlap and come in that order; ``train_small`` is the most recent part
of ``train_large`` (PPM Table 1: the Small set is one week, the Large set two weeks, both
followed by the test day), so it must lie inside ``train_large`` and end where it ends.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping

import pyarrow as pa

SCHEMA_VERSION = 1
DATASET_FILE = "dataset.json"
ITEMS_FILE = "items.parquet"
EVENTS_FILE = "events.parquet"
QUERIES_FILE = "queries.parquet"

WINDOW_NAMES = ("pretrain", "train_small", "train_large", "test")
# Windows that must be disjoint and ordered in time.
DISJOINT_WINDOWS = ("pretrain", "train_large", "test")


@dataclasses.dataclass(frozen=True)
class Column:
    """A column of a canonical table.

    Attributes:
      name: column name.
      kind: ``"string"``, ``"int"``, ``"float"`` or ``"binary"``; any Arrow width is accepted
        (int32 or int64, large_string or string, ...).
      required: whether the column must be present.
      nullable: whether null values are allowed.
    """

    name: str
    kind: str
    required: bool = True
    nullable: bool = False


ITEM_COLUMNS = (
    Column("item_id", "string"),
    Column("shop_id", "string"),
    Column("brand_id", "string"),
    Column("category_id", "string"),
    Column("title", "string"),
    Column("image", "binary", nullable=True),
    Column("entity", "string"),
    Column("created_at", "int"),
    Column("price", "float", required=False, nullable=True),
)

EVENT_COLUMNS = (
    Column("request_id", "string"),
    Column("user_id", "string"),
    Column("ts", "int"),
    Column("item_id", "string"),
    Column("position", "int"),
    Column("rank", "int", nullable=True),
    Column("query", "string"),
    Column("click", "int"),
    Column("order", "int"),
    Column("cart", "int"),
)

QUERY_COLUMNS = (
    Column("query", "string"),
    Column("item_id", "string"),
    Column("kind", "string"),
    Column("query_image", "binary", nullable=True),
    Column("hard_negative_item_id", "string", required=False, nullable=True),
)

# Columns of a search pre-ranking log (GRACE §3.1.1; the synthetic world's search scenario),
# where events.parquet holds every candidate the pre-ranking model scored, not only those
# displayed: ``exposure`` says which kind a row is (EXPOSURES), ``ranker_score`` is the ranking
# model's score (null where it scored none; its order is ``rank``: a higher score, a better rank).
SEARCH_EVENT_COLUMNS = (
    Column("exposure", "string", required=False),
    Column("ranker_score", "float", required=False, nullable=True),
)
# displayed: shown to the user (labels observed); recalled: scored by the ranking model, not
# shown (labels 0); sampled: a random item that recall did not return (labels 0, no rank).
EXPOSURES = ("displayed", "recalled", "sampled")
TABLES = {ITEMS_FILE: ITEM_COLUMNS, EVENTS_FILE: EVENT_COLUMNS + SEARCH_EVENT_COLUMNS,
          QUERIES_FILE: QUERY_COLUMNS}
QUERY_KINDS = ("text", "image")
LABEL_COLUMNS = ("click", "order", "cart")
# dataset.json ``positions``: "displayed" (``position`` is the slot each candidate was shown
# in) or "none" (no display order is known: every position is 0, the serving default).
POSITIONS = ("displayed", "none")


def arrow_kind(t: pa.DataType) -> str:
    """The canonical kind of an Arrow type ("string", "int", "float", "binary" or "other").

    A dictionary-encoded column (what pandas writes for a ``category`` column) has the kind of
    its values.
    """
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "binary"
    return "other"


def arrow_schema(columns, extra: Mapping[str, pa.DataType] | None = None) -> pa.Schema:
    """The Arrow schema a writer should use for a canonical table."""
    types = {"string": pa.string(), "int": pa.int64(), "float": pa.float64(),
             "binary": pa.binary()}
    fields = [pa.field(c.name, types[c.kind], nullable=c.nullable) for c in columns]
    fields += [pa.field(k, v) for k, v in (extra or {}).items()]
    return pa.schema(fields)


@dataclasses.dataclass(frozen=True)
class Window:
    """A half-open time range ``[start, end)`` in unix seconds."""

    start: int
    end: int

    def contains(self, ts):
        return (ts >= self.start) & (ts < self.end)

    @property
    def empty(self) -> bool:
        return self.end <= self.start

    def overlaps(self, other: Window) -> bool:
        return self.start < other.end and other.start < self.end


@dataclasses.dataclass
class DatasetMeta:
    """The content of `dataset.json`.

    Attributes:
      name: dataset name, e.g. ``"synthetic-demo"``.
      source: where the data came from (generator and its arguments, or the raw dataset).
      windows: the four time windows, keyed by :data:`WINDOW_NAMES`.
      label_rules: ``order_requires_click`` / ``cart_requires_click``: whether the schema
        forbids an order (add-to-cart) without a click in the same event.
      tasks: the labels that carry information (e.g. ``["click"]`` for MIND, whose order and
        cart columns are all 0); training disables the others.
      counts: row counts and other figures, informational.
      licence: licence note, required for real data.
      extra: anything a source wants to record (e.g. synthetic generator parameters).
      positions: ``"displayed"`` when ``position`` is the slot each candidate was shown in (a
        logged feed), ``"none"`` when no display order is known (requests built from
        interactions, or a published list that was shuffled): then every ``position`` is 0,
        the value the serving client scores with, so the model learns nothing from it and its
        offline metrics are the ones serving gets. Missing in older files: ``"displayed"``.
    """

    name: str
    source: str
    windows: dict
    label_rules: dict = dataclasses.field(
        default_factory=lambda: {"order_requires_click": True, "cart_requires_click": True})
    tasks: list = dataclasses.field(default_factory=lambda: list(LABEL_COLUMNS))
    counts: dict = dataclasses.field(default_factory=dict)
    licence: str = ""
    extra: dict = dataclasses.field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    positions: str = "displayed"

    def window(self, name: str) -> Window:
        if name not in self.windows:
            raise KeyError(f"dataset.json has no time window {name!r}; it has "
                           f"{sorted(self.windows)}")
        w = self.windows[name]
        return Window(int(w[0]), int(w[1]))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping) -> DatasetMeta:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"dataset.json: unknown keys {unknown}; known keys are "
                             f"{sorted(known)}")
        missing = [k for k in ("name", "source", "windows") if k not in d]
        if missing:
            raise ValueError(f"dataset.json: missing keys {missing}")
        return cls(**d)


def is_remote(path: str) -> bool:
    """Whether ``path`` names a remote filesystem (``gs://``, ``s3://``, ...)."""
    return "://" in path


def open_file(path: str, mode: str = "rb"):
    """Opens a local file, or a remote one through Beam's filesystems (``gs://`` etc.)."""
    if not is_remote(path):
        return open(path, mode)
    from apache_beam.io.filesystems import FileSystems  # heavy: only for remote paths

    return FileSystems.open(path) if mode == "rb" else FileSystems.create(path)


def file_exists(path: str) -> bool:
    if not is_remote(path):
        return os.path.exists(path)
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.exists(path)


def write_json(path: str, obj) -> None:
    """Writes ``obj`` as indented JSON to a local or remote path."""
    with open_file(path, "wb") as f:
        f.write((json.dumps(obj, indent=2) + "\n").encode())


class ParquetReadError(OSError):
    """A file that cannot be read as Parquet (empty, truncated, not Parquet); names the file.

    An ``OSError``, as pyarrow's own I/O errors are, so callers that caught those still do.
    """

    def __init__(self, path: str, reason: str):
        super().__init__(f"not a readable Parquet file: {path}: {reason}")
        self.path = path
        self.reason = reason


def _reason(e: Exception, path: str) -> str:
    """pyarrow's message, without the path it may repeat (ParquetReadError names it)."""
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text.replace(f"Could not open Parquet input source '{path}': ", "")


def read_parquet(path: str, columns=None):
    """Reads a Parquet table from a local path, or from a remote one through Beam's filesystems.

    Remote files are read serially from a Python file object: Arrow's threaded reads from such
    objects can abort the interpreter at exit (apache/arrow#34314).

    Raises:
      FileNotFoundError: no such file.
      ParquetReadError: the file is not readable Parquet (the message names it).
      ValueError: some of ``columns`` are not in the file (the message names them and the file).
    """
    import pyarrow.parquet as pq

    try:
        if not is_remote(path):
            return pq.read_table(path, columns=columns)
        with open_file(path) as f:
            return pq.read_table(f, columns=columns, pre_buffer=False, use_threads=False)
    except FileNotFoundError:
        raise
    except (pa.ArrowException, OSError) as e:
        if columns is not None:  # a missing column reads as ArrowInvalid too: say which
            missing = [c for c in columns if c not in read_parquet_schema(path).names]
            if missing:
                raise ValueError(f"{path}: no columns {missing}") from e
        raise ParquetReadError(path, _reason(e, path)) from e


def read_parquet_schema(path: str):
    """The Arrow schema of a Parquet file (local or remote).

    Raises:
      FileNotFoundError: no such file.
      ParquetReadError: the file is not readable Parquet (the message names it).
    """
    import pyarrow.parquet as pq

    try:
        if not is_remote(path):
            return pq.read_schema(path)
        with open_file(path) as f:
            return pq.read_schema(f)
    except FileNotFoundError:
        raise
    except (pa.ArrowException, OSError) as e:
        raise ParquetReadError(path, _reason(e, path)) from e


def read_meta(dataset_dir: str) -> DatasetMeta:
    """Reads `dataset.json` from a dataset folder (local or any Beam filesystem)."""
    path = os.path.join(dataset_dir, DATASET_FILE)
    if not file_exists(path):
        raise FileNotFoundError(f"{path}: missing (a canonical dataset needs {DATASET_FILE})")
    with open_file(path) as f:
        try:
            d = json.loads(f.read().decode())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON: {e}") from e
    return DatasetMeta.from_dict(d)


def write_meta(dataset_dir: str, meta: DatasetMeta) -> None:
    os.makedirs(dataset_dir, exist_ok=True)
    with open(os.path.join(dataset_dir, DATASET_FILE), "w") as f:
        f.write(meta.to_json() + "\n")
