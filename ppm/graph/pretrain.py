"""Pre-train item embeddings on the co-click graph with LightGCN (GRACE §2.4's ``psi``).

    python -m ppm.graph.pretrain --graph GRAPH_DIR --out EMB_DIR [--dim 32] [--layers 2] \\
        [--epochs 20] [--batch 1024] [--learning_rate 0.01] [--min_degree 2] [--seed 0] \\
        [--overwrite]

Reads the graph of ``python -m beam_jobs.item_graph``, trains :class:`~ppm.graph.lightgcn.
LightGCN` on all of it, and writes for the items with at least ``--min_degree`` neighbours
(unweighted degree: GRACE's "subset of items", those the graph says enough about)
``embeddings.parquet`` (final embeddings, L2-normalised, sorted by item id) and then
``manifest.json`` (:mod:`ppm.graph.tables`). :func:`ppm.graph.load_embeddings` reads them.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import sys

import numpy as np
import tensorflow as tf

from ppm.data import canonical
from ppm.graph import lightgcn, tables

L2 = 1e-4  # weight of the layer-0 L2 term (LightGCN's default lambda)
OUTPUTS = (tables.EMBEDDINGS_FILE, tables.EMBEDDINGS_MANIFEST)


def pretrain(graph_dir: str, out: str, *, dim: int = 32, layers: int = 2, epochs: int = 20,
             batch: int = 1024, learning_rate: float = 0.01, min_degree: int = 2,
             seed: int = 0, overwrite: bool = False, progress: bool = True) -> dict:
    """Trains LightGCN on the graph and writes the embeddings of the well-connected items.

    Returns:
      The manifest (also written to ``manifest.json``).

    Raises:
      FileNotFoundError, ValueError: the graph is missing or not a graph (see
        :func:`ppm.graph.read_graph`).
      ValueError: the graph has no edges, or no item has ``min_degree`` neighbours.
      FileExistsError: ``out`` is not empty and ``overwrite`` is False.
    """
    graph = tables.read_graph(graph_dir)
    n = len(graph.ids)
    if not n:
        raise ValueError(f"{graph_dir}: the graph has no edges (no session with two distinct "
                         "clicked items); build it from a longer window or a larger gap")
    degree = np.bincount(graph.src, minlength=n) + np.bincount(graph.dst, minlength=n)
    keep = np.flatnonzero(degree >= min_degree)
    if not len(keep):
        raise ValueError(f"no item of {graph_dir} has {min_degree} neighbours (the most is "
                         f"{degree.max()}): lower --min_degree")
    _prepare_output(out, overwrite)

    adjacency = lightgcn.normalized_adjacency(graph.src, graph.dst, graph.weight, n)
    model = lightgcn.LightGCN(n, dim, layers, seed=seed)
    losses = lightgcn.fit(model, adjacency, graph.src, graph.dst, epochs=epochs,
                          batch_size=batch, learning_rate=learning_rate, l2=L2, seed=seed,
                          progress=progress)
    final = model(adjacency).numpy()[keep]
    final /= np.maximum(np.linalg.norm(final, axis=1, keepdims=True), 1e-12)
    tables.write_embeddings(os.path.join(out, tables.EMBEDDINGS_FILE),
                            [graph.ids[i] for i in keep], final)
    manifest = {
        "format": tables.EMBEDDINGS_FORMAT, "format_version": tables.FORMAT_VERSION,
        "created_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "model": "lightgcn",
        "graph": os.path.abspath(graph_dir) if "://" not in graph_dir else graph_dir,
        "graph_window": graph.manifest.get("window"),
        "dim": dim, "layers": layers, "epochs": epochs, "batch": batch,
        "learning_rate": learning_rate, "l2": L2, "seed": seed, "min_degree": min_degree,
        "counts": {"graph_nodes": n, "graph_edges": len(graph.src), "items": len(keep)},
        "final_loss": losses[-1],
    }
    canonical.write_json(os.path.join(out, tables.EMBEDDINGS_MANIFEST), manifest)
    logging.info("%d of %d items embedded into %s (final loss %.4f)", len(keep), n, out,
                 losses[-1])
    return manifest


def _prepare_output(out: str, overwrite: bool) -> None:
    """Refuses a non-empty ``out`` unless ``overwrite``, which deletes this job's files only."""
    held = tf.io.gfile.listdir(out) if tf.io.gfile.isdir(out) else []
    if held and not overwrite:
        raise FileExistsError(f"{out} is not empty ({', '.join(sorted(held)[:5])}); pass "
                              "--overwrite to replace earlier embeddings or choose another --out")
    for name in OUTPUTS:
        if tf.io.gfile.exists(os.path.join(out, name)):
            tf.io.gfile.remove(os.path.join(out, name))
    tf.io.gfile.makedirs(out)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m ppm.graph.pretrain",
        description="Pre-train item embeddings with LightGCN on a co-click graph (python -m "
        "beam_jobs.item_graph) and write embeddings.parquet + manifest.json.")
    parser.add_argument("--graph", required=True, help="Graph folder (edges.parquet, graph.json).")
    parser.add_argument("--out", required=True, help="Output folder of the embeddings.")
    parser.add_argument("--dim", type=int, default=32, help="Embedding size (default 32).")
    parser.add_argument("--layers", type=int, default=2,
                        help="LightGCN propagation layers K (default 2).")
    parser.add_argument("--epochs", type=int, default=20,
                        help="Passes over the edges (default 20).")
    parser.add_argument("--batch", type=int, default=1024,
                        help="Samples (an edge read one way) per step (default 1024).")
    parser.add_argument("--learning_rate", type=float, default=0.01,
                        help="Adam's learning rate (default 0.01).")
    parser.add_argument("--min_degree", type=int, default=2,
                        help="Write only items with at least this many neighbours (default 2).")
    parser.add_argument("--seed", type=int, default=0, help="Initialisation and sampling seed.")
    parser.add_argument("--overwrite", action="store_true",
                        help="Replace earlier embeddings in a non-empty --out.")
    args = parser.parse_args(argv)
    for name, low in (("dim", 1), ("layers", 0), ("epochs", 1), ("batch", 1),
                      ("min_degree", 1)):
        if getattr(args, name) < low:
            parser.error(f"--{name} must be >= {low}")
    if args.learning_rate <= 0:
        parser.error("--learning_rate must be > 0")
    return args


def main(argv=None) -> int:
    logging.getLogger().setLevel(logging.INFO)
    args = parse_args(argv)
    manifest = pretrain(args.graph, args.out, dim=args.dim, layers=args.layers,
                        epochs=args.epochs, batch=args.batch,
                        learning_rate=args.learning_rate, min_degree=args.min_degree,
                        seed=args.seed, overwrite=args.overwrite)
    print(json.dumps(manifest, indent=2), file=sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
