"""The two tables of the item graph stage and their readers (NumPy and pyarrow, no TensorFlow).

``beam_jobs.item_graph`` writes the co-click graph, :mod:`ppm.graph.pretrain` the embeddings::

    <graph dir>/edges.parquet          src, dst (item ids, src < dst), weight (int64); sorted
    <graph dir>/graph.json             dataset, window, session gap, counts
    <embeddings dir>/embeddings.parquet  item_id, embedding (list<float32>, L2-normalised)
    <embeddings dir>/manifest.json     graph, hyper-parameters, counts, final loss

A manifest is written last, after its table: a folder without one is an unfinished or failed
job, and the readers refuse it (as :func:`ppm.data.cache.load_cache` does).
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pyarrow as pa

from ppm.data import canonical

GRAPH_FORMAT = "ppm-item-graph"
EMBEDDINGS_FORMAT = "ppm-graph-embeddings"
FORMAT_VERSION = 1
EDGES_FILE = "edges.parquet"
GRAPH_MANIFEST = "graph.json"
EMBEDDINGS_FILE = "embeddings.parquet"
EMBEDDINGS_MANIFEST = "manifest.json"
EDGES_SCHEMA = pa.schema([("src", pa.string()), ("dst", pa.string()), ("weight", pa.int64())])
EMBEDDINGS_SCHEMA = pa.schema([("item_id", pa.string()), ("embedding", pa.list_(pa.float32()))])


def read_manifest(folder: str, name: str, fmt: str, writer: str) -> dict:
    """A manifest of ``fmt`` in ``folder``.

    Raises:
      FileNotFoundError: no manifest (``writer`` is the command that makes one).
      ValueError: not JSON, another format, or another format version.
    """
    path = os.path.join(folder, name)
    if not canonical.file_exists(path):
        raise FileNotFoundError(f"{path} is missing: {folder} was not written by `{writer}`, "
                                "or that job did not finish")
    with canonical.open_file(path) as f:
        try:
            manifest = json.loads(f.read().decode())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON: {e}") from e
    if manifest.get("format") != fmt or manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: format {manifest.get('format')!r} version "
                         f"{manifest.get('format_version')!r}; this code reads {fmt!r} version "
                         f"{FORMAT_VERSION}: rerun `{writer}`")
    return manifest


@dataclasses.dataclass(frozen=True, eq=False)
class ItemGraph:
    """An undirected weighted item graph, nodes numbered in item id order.

    Attributes:
      ids: item ids of the nodes, sorted, str [N] (every node has an edge).
      src: node index of each edge's smaller end, int64 [E].
      dst: node index of each edge's larger end, int64 [E] (``src < dst``, no repeats).
      weight: co-click count of each edge, float32 [E], > 0.
      manifest: ``graph.json``.
    """

    ids: list
    src: np.ndarray
    dst: np.ndarray
    weight: np.ndarray
    manifest: dict


def read_graph(graph_dir: str) -> ItemGraph:
    """Reads the graph written by ``python -m beam_jobs.item_graph``.

    Raises:
      FileNotFoundError: no ``graph.json`` or ``edges.parquet``.
      ValueError: another format, or edges that break the contract (``src >= dst``, a
        repeated pair, a weight < 1, a count that differs from the manifest's).
    """
    manifest = read_manifest(graph_dir, GRAPH_MANIFEST, GRAPH_FORMAT,
                             "python -m beam_jobs.item_graph")
    path = os.path.join(graph_dir, EDGES_FILE)
    table = canonical.read_parquet(path, columns=EDGES_SCHEMA.names)
    src = table.column("src").to_numpy(zero_copy_only=False).astype(str)
    dst = table.column("dst").to_numpy(zero_copy_only=False).astype(str)
    weight = table.column("weight").to_numpy(zero_copy_only=False)
    if not (src < dst).all():
        raise ValueError(f"{path}: every edge must have src < dst")
    if len(weight) and weight.min() < 1:
        raise ValueError(f"{path}: weights must be >= 1, found {weight.min()}")
    if len(src) != manifest["counts"]["edges"]:
        raise ValueError(f"{path}: {len(src)} edges but {GRAPH_MANIFEST} counts "
                         f"{manifest['counts']['edges']}")
    ids, index = np.unique(np.concatenate([src, dst]), return_inverse=True)
    index = index.astype(np.int64)
    s, d = index[:len(src)], index[len(src):]
    if len(np.unique(s * len(ids) + d)) != len(s):
        raise ValueError(f"{path}: an item pair occurs in more than one row")
    return ItemGraph(ids=ids.tolist(), src=s, dst=d, weight=weight.astype(np.float32),
                     manifest=manifest)


def write_embeddings(path: str, ids, embeddings: np.ndarray) -> None:
    """Writes ``embeddings.parquet``: ``ids`` [n] with their rows of ``embeddings`` [n, dim]."""
    import pyarrow.parquet as pq

    values = pa.array(np.asarray(embeddings, np.float32).reshape(-1), pa.float32())
    offsets = pa.array(np.arange(len(ids) + 1, dtype=np.int32) * embeddings.shape[1])
    table = pa.table([pa.array(list(ids), pa.string()),
                      pa.ListArray.from_arrays(offsets, values)], schema=EMBEDDINGS_SCHEMA)
    with canonical.open_file(path, "wb") as f:
        pq.write_table(table, f)


def load_embeddings(path: str) -> tuple[list[str], np.ndarray]:
    """Loads the item embeddings written by ``python -m ppm.graph.pretrain``.

    GRACE §2.4 aligns items to these (``psi``, Eq. 10); only a subset of items has one.

    Args:
      path: the embeddings folder (its ``manifest.json`` is checked), or an
        ``embeddings.parquet`` file itself.

    Returns:
      ``(item ids, float32 [n, dim])`` in the table's order (sorted by item id).

    Raises:
      FileNotFoundError: no such folder, manifest or table.
      ValueError: the table has no ``item_id``/``embedding`` column, the embedding column is not
        a list of floats, its rows differ in length or from the manifest's ``dim``, or a value
        is null.
    """
    manifest = None
    if path.endswith(".parquet"):
        table_path = path
    else:
        manifest = read_manifest(path, EMBEDDINGS_MANIFEST, EMBEDDINGS_FORMAT,
                                 "python -m ppm.graph.pretrain")
        table_path = os.path.join(path, EMBEDDINGS_FILE)
    table = canonical.read_parquet(table_path, columns=EMBEDDINGS_SCHEMA.names)
    column = table.column("embedding").combine_chunks()
    if not (pa.types.is_list(column.type) or pa.types.is_large_list(column.type)) or \
            not pa.types.is_floating(column.type.value_type):
        raise ValueError(f"{table_path}: column 'embedding' must be list<float32>, got "
                         f"{column.type}")
    if column.null_count or table.column("item_id").null_count or \
            column.flatten().null_count:
        raise ValueError(f"{table_path}: null item ids or embedding values")
    lengths = np.diff(column.offsets.to_numpy())
    dim = int(lengths[0]) if len(lengths) else int((manifest or {}).get("dim", 0))
    if (lengths != dim).any():
        raise ValueError(f"{table_path}: embeddings of different lengths "
                         f"{sorted(set(lengths.tolist()))[:5]}")
    if manifest is not None and dim != manifest["dim"]:
        raise ValueError(f"{table_path}: embeddings have dim {dim} but the manifest says "
                         f"{manifest['dim']}")
    values = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    return table.column("item_id").to_pylist(), values.reshape(len(lengths), dim)
