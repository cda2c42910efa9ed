"""LightGCN on the item graph: the normalised propagation by hand, training, the written table."""

import itertools
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from ppm.graph import lightgcn, load_embeddings, pretrain, read_graph, tables

A, B = [f"a{k}" for k in range(4)], [f"b{k}" for k in range(4)]
CLIQUES = [(x, y) for c in (A, B) for x, y in itertools.combinations(c, 2)]


def write_graph(path, edges):
    """A graph folder as beam_jobs.item_graph writes it; ``edges``: (src, dst[, weight])."""
    os.makedirs(path, exist_ok=True)
    rows = sorted((s, d, *(w or [1])) for s, d, *w in edges)
    pq.write_table(pa.table(dict(zip(["src", "dst", "weight"], map(list, zip(*rows)))),
                            schema=tables.EDGES_SCHEMA), os.path.join(path, tables.EDGES_FILE))
    manifest = {"format": tables.GRAPH_FORMAT, "format_version": tables.FORMAT_VERSION,
                "window": {"name": "pretrain", "start": 0, "end": 1},
                "counts": {"edges": len(rows)}}
    with open(os.path.join(path, tables.GRAPH_MANIFEST), "w") as f:
        json.dump(manifest, f)
    return str(path)


def _cosines(embeddings):
    e = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    return e @ e.T


def _separation(embeddings, groups):
    """(lowest cosine within a group, highest across groups, mean within - mean across)."""
    c = _cosines(embeddings)
    same = groups[:, None] == groups[None, :]
    within = c[same & ~np.eye(len(groups), dtype=bool)]
    return within.min(), c[~same].max(), within.mean() - c[~same].mean()


def test_propagation_is_the_normalised_matrix_power_mean():
    # Path 0 -(2)- 1 -(1)- 2: weighted degrees 2, 3, 1.
    adjacency = lightgcn.normalized_adjacency([0, 1], [1, 2], [2.0, 1.0], 3)
    a01, a12 = 2 / np.sqrt(2 * 3), 1 / np.sqrt(3 * 1)
    by_hand = np.array([[0, a01, 0], [a01, 0, a12], [0, a12, 0]])
    np.testing.assert_allclose(tf.sparse.to_dense(adjacency).numpy(), by_hand, rtol=1e-6)
    # E = I, K = 2: (I + Â + Â²) / 3; Â² = [[4/6, 0, 2/√18], [0, 1, 0], [2/√18, 0, 1/3]].
    a2 = np.array([[4 / 6, 0, 2 / np.sqrt(18)], [0, 1, 0], [2 / np.sqrt(18), 0, 1 / 3]])
    expected = (np.eye(3) + by_hand + a2) / 3
    got = lightgcn.propagate(adjacency, np.eye(3, dtype=np.float32), 2).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    model = lightgcn.LightGCN(3, 4, num_layers=0, seed=1)
    np.testing.assert_array_equal(model(adjacency).numpy(), model.embeddings.numpy())


def test_bpr_loss_by_hand():
    final = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]], np.float32)
    layer0 = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], np.float32)
    # anchor 0, positive 1, negative 2: margin <e0, e1 - e2> = 1 - 0 = 1.
    loss = lightgcn.bpr_loss(final, layer0, [0], [1], [2], l2=0.5).numpy()
    assert loss == pytest.approx(np.log1p(np.exp(-1.0)) + 0.5 * (1 + 1 + 2) / 2, rel=1e-6)


def test_training_separates_two_cliques_and_is_deterministic():
    ids = A + B
    index = {k: i for i, k in enumerate(ids)}
    src = np.array([index[s] for s, _ in CLIQUES])
    dst = np.array([index[d] for _, d in CLIQUES])
    adjacency = lightgcn.normalized_adjacency(src, dst, np.ones(len(src)), len(ids))
    groups = np.array([k < len(A) for k in range(len(ids))])

    def train(seed):
        model = lightgcn.LightGCN(len(ids), 8, num_layers=2, seed=seed)
        before = model(adjacency).numpy()
        losses = lightgcn.fit(model, adjacency, src, dst, epochs=30, batch_size=8,
                              learning_rate=0.05, seed=seed, progress=False)
        return before, model(adjacency).numpy(), losses

    before, after, losses = train(0)
    assert losses[-1] < 0.6 * losses[0]
    lowest_within, highest_across, gap = _separation(after, groups)
    assert lowest_within > highest_across
    assert highest_across < 0 and gap > _separation(before, groups)[2] + 0.5
    again = train(0)
    np.testing.assert_array_equal(again[1], after)
    assert again[2] == losses
    assert not np.allclose(train(1)[1], after)


def test_pretrain_writes_the_well_connected_items(tmp_path):
    # Two 4-cliques (degree 3) and a lone pair x-y (degree 1).
    graph = write_graph(tmp_path / "graph", CLIQUES + [("x", "y", 5)])
    out = str(tmp_path / "emb")
    assert pretrain.main(["--graph", graph, "--out", out, "--dim", "8", "--epochs", "30",
                          "--batch", "8", "--learning_rate", "0.05", "--min_degree", "2"]) == 0
    ids, emb = load_embeddings(out)
    assert ids == A + B  # x and y have one neighbour each
    assert emb.dtype == np.float32 and emb.shape == (8, 8)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    lowest_within, highest_across, _ = _separation(emb, np.array([k < 4 for k in range(8)]))
    assert lowest_within > highest_across
    with open(os.path.join(out, tables.EMBEDDINGS_MANIFEST)) as f:
        manifest = json.load(f)
    assert manifest["counts"] == {"graph_nodes": 10, "graph_edges": 13, "items": 8}
    assert (manifest["dim"], manifest["layers"], manifest["min_degree"]) == (8, 2, 2)
    assert manifest["graph"] == graph and np.isfinite(manifest["final_loss"])
    ids_file, emb_file = load_embeddings(os.path.join(out, tables.EMBEDDINGS_FILE))
    assert ids_file == ids and np.array_equal(emb_file, emb)

    with pytest.raises(FileExistsError, match="--overwrite"):
        pretrain.pretrain(graph, out, dim=4, epochs=1)
    manifest = pretrain.pretrain(graph, out, dim=4, epochs=1, min_degree=1, overwrite=True,
                                 progress=False)
    ids, emb = load_embeddings(out)
    assert manifest["counts"]["items"] == 10 and emb.shape == (10, 4) and "x" in ids
    with pytest.raises(ValueError, match="no item of .* has 4 neighbours"):
        pretrain.pretrain(graph, str(tmp_path / "e2"), min_degree=4)


def test_read_graph_numbers_nodes_by_id(tmp_path):
    graph = read_graph(write_graph(tmp_path / "g", [("b", "c", 2), ("a", "c", 3)]))
    assert graph.ids == ["a", "b", "c"]
    assert graph.src.tolist() == [0, 1] and graph.dst.tolist() == [2, 2]
    assert graph.weight.tolist() == [3.0, 2.0]
    bad = write_graph(tmp_path / "bad", [("c", "b")])
    with pytest.raises(ValueError, match="src < dst"):
        read_graph(bad)
    with pytest.raises(FileNotFoundError, match="graph.json is missing"):
        read_graph(str(tmp_path))


def test_load_embeddings_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest.json is missing"):
        load_embeddings(str(tmp_path / "nowhere"))
    folder = tmp_path / "emb"
    folder.mkdir()
    tables.write_embeddings(str(folder / tables.EMBEDDINGS_FILE), ["a", "b"],
                            np.ones((2, 3), np.float32))
    manifest = {"format": tables.EMBEDDINGS_FORMAT, "format_version": tables.FORMAT_VERSION,
                "dim": 4}
    (folder / tables.EMBEDDINGS_MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="dim 3 but the manifest says 4"):
        load_embeddings(str(folder))
    ragged = pa.table({"item_id": ["a", "b"], "embedding": [[1.0, 2.0], [1.0]]},
                      schema=tables.EMBEDDINGS_SCHEMA)
    pq.write_table(ragged, str(folder / tables.EMBEDDINGS_FILE))
    with pytest.raises(ValueError, match="different lengths"):
        load_embeddings(str(folder))
    pq.write_table(pa.table({"item_id": ["a"], "embedding": [1.0]}),
                   str(folder / tables.EMBEDDINGS_FILE))
    with pytest.raises(ValueError, match="must be list<float32>"):
        load_embeddings(str(folder))
    pq.write_table(pa.table({"item_id": ["a"], "vector": [[1.0]]}),
                   str(folder / tables.EMBEDDINGS_FILE))
    with pytest.raises(ValueError, match="no columns"):
        load_embeddings(str(folder))
