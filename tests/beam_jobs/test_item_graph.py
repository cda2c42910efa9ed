"""The co-click graph job: sessions, windows, once-per-session pairs, counts, refusals."""

import json
import os

import pyarrow.parquet as pq
import pytest

from beam_jobs import item_graph
from ppm.graph import read_graph
from tests.beam_jobs.test_build_examples import DAY, T0, _event, write_dataset

GAP = 1800


def _click(user, ts, item, click=1):
    return _event(user, ts, item, click=click)


# (user, ts, item, click) of a log whose pretrain window is [T0, T0 + DAY).
LOG = [
    # u1, session A: i0 and i1 clicked twice each -> (i0, i1) counted once.
    _click("u1", T0 + 0, "i0"), _click("u1", T0 + 60, "i1"),
    _click("u1", T0 + 120, "i0"), _click("u1", T0 + 180, "i1"),
    # u1, session B: 1820 s after A (> GAP); i4 comes exactly GAP after i0, so it stays in B.
    _click("u1", T0 + 2000, "i2"), _click("u1", T0 + 2100, "i3"), _click("u1", T0 + 2200, "i0"),
    _click("u1", T0 + 2150, "i1", click=0),  # shown, not clicked: no (i1, *) pair in B
    _click("u1", T0 + 2200 + GAP, "i4"),
    # u2: one pair in window; a click just before the window and one at its (open) end.
    _click("u2", T0 - 100, "i1"), _click("u2", T0 + 100, "i2"), _click("u2", T0 + 200, "i3"),
    _click("u2", T0 + DAY - 10, "i0"), _click("u2", T0 + DAY, "i4"),
    # u3: a lone click: a clicked item that is no node of the graph.
    _click("u3", T0 + 500, "i5"),
    # unusable: no user id.
    _click("", T0 + 10, "i0"),
]
EXPECTED = {("i0", "i1"): 1, ("i0", "i2"): 1, ("i0", "i3"): 1, ("i0", "i4"): 1,
            ("i2", "i3"): 2, ("i2", "i4"): 1, ("i3", "i4"): 1}


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    root = tmp_path_factory.mktemp("item_graph")
    dataset = write_dataset(str(root / "dataset"), LOG, n_items=6)
    out = str(root / "graph")
    manifest = item_graph.run(["--dataset", dataset, "--out", out])
    return dataset, out, manifest


def test_session_co_clicks_by_hand():
    clicks = [(100, "b"), (0, "a"), (50, "b"), (10, "a"), (2000, "c"), (2001, "a")]
    pairs, sessions = item_graph.session_co_clicks(clicks, session_gap_s=GAP)
    assert sessions == 2 and pairs == {("a", "b"): 1, ("a", "c"): 1}
    pairs, sessions = item_graph.session_co_clicks(clicks, session_gap_s=5000)
    assert sessions == 1 and pairs == {("a", "b"): 1, ("a", "c"): 1, ("b", "c"): 1}
    assert item_graph.session_co_clicks([], GAP) == ({}, 0)


def test_edges_match_the_hand_count(graph):
    _, out, _ = graph
    table = pq.read_table(os.path.join(out, "edges.parquet"))
    assert [(f.name, str(f.type)) for f in table.schema] == [
        ("src", "string"), ("dst", "string"), ("weight", "int64")]
    rows = list(zip(*table.to_pydict().values()))
    assert rows == sorted(rows)
    assert {(s, d): w for s, d, w in rows} == EXPECTED
    assert sorted(os.listdir(out)) == ["edges.parquet", "graph.json"]


def test_manifest_counts(graph):
    dataset, out, manifest = graph
    with open(os.path.join(out, "graph.json")) as f:
        assert json.load(f) == manifest
    assert manifest["window"] == {"name": "pretrain", "start": T0, "end": T0 + DAY}
    assert manifest["session_gap_s"] == GAP and manifest["dataset"] == dataset
    assert manifest["counts"] == {
        "clicks": 12, "users": 3, "sessions": 5, "clicked_items": 6, "nodes": 5,
        "edges": len(EXPECTED), "total_weight": sum(EXPECTED.values()), "skipped_rows": 1}
    loaded = read_graph(out)
    assert loaded.ids == ["i0", "i1", "i2", "i3", "i4"]
    assert len(loaded.src) == len(EXPECTED) and (loaded.src < loaded.dst).all()


def test_refuses_a_non_empty_output_without_overwrite(graph, tmp_path):
    dataset, out, _ = graph
    before = open(os.path.join(out, "graph.json")).read()
    with pytest.raises(FileExistsError, match="--overwrite"):
        item_graph.run(["--dataset", dataset, "--out", out])
    assert open(os.path.join(out, "graph.json")).read() == before
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        item_graph.run(["--dataset", dataset, "--out", str(other)])
    manifest = item_graph.run(["--dataset", dataset, "--out", str(other), "--overwrite",
                               "--session_gap_s", "0"])
    assert (other / "notes.txt").read_text() == "mine"  # only the job's own files are replaced
    # gap 0: every click is its own session except same-second ones, so no pair at all
    assert manifest["counts"]["edges"] == 0 and manifest["counts"]["sessions"] == 12
    assert pq.read_table(str(other / "edges.parquet")).num_rows == 0


def test_clear_errors(graph, tmp_path):
    dataset, _, _ = graph
    out = str(tmp_path / "g")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        item_graph.run(["--dataset", str(tmp_path / "missing"), "--out", out])
    with pytest.raises(ValueError, match="'holiday' is not a time window.*pretrain"):
        item_graph.run(["--dataset", dataset, "--out", out, "--window", "holiday"])
    with pytest.raises(item_graph.EmptyWindowError, match="no clicks in window 'test'"):
        item_graph.run(["--dataset", dataset, "--out", out, "--window", "test"])
    assert not os.path.exists(os.path.join(out, "graph.json"))
