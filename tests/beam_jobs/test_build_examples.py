"""The Beam example builder: windows, histories without leakage, vocabularies, dead letters."""

import glob
import json
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from beam_jobs import build_examples
from ppm import features
from ppm.data import canonical, pipeline

DAY = 86400
T0 = 1_700_000_000


def _read_examples(out, window):
    schema = features.FeatureSchema.load(os.path.join(out, features.SCHEMA_FILE))
    ds = pipeline.make_dataset(os.path.join(out, window), schema, 4096, training=False,
                               deterministic=True)
    parts = [({k: v.numpy() for k, v in f.items()}, {k: v.numpy() for k, v in y.items()})
             for f, y in ds]
    feats = {k: np.concatenate([p[0][k] for p in parts]) for k in parts[0][0]}
    labels = {k: np.concatenate([p[1][k] for p in parts]) for k in parts[0][1]}
    return feats, labels


def write_dataset(path, events, n_items=5, label_rules=None):
    """A hand-made canonical dataset: items i0..i{n-1}, the given event rows."""
    os.makedirs(path, exist_ok=True)
    items = {
        "item_id": [f"i{k}" for k in range(n_items)], "shop_id": ["s0"] * n_items,
        "brand_id": [f"b{k % 2}" for k in range(n_items)],
        "category_id": ["c0"] * n_items, "title": ["t"] * n_items, "image": [None] * n_items,
        "entity": ["e"] * n_items, "created_at": [0] * n_items, "price": [1.0] * n_items,
    }
    pq.write_table(pa.table(items, schema=canonical.arrow_schema(canonical.ITEM_COLUMNS)),
                   os.path.join(path, canonical.ITEMS_FILE))
    cols = {c.name: [e.get(c.name, 0 if c.kind == "int" else "") for e in events]
            for c in canonical.EVENT_COLUMNS}
    cols["user_age"] = [e.get("user_age", "25-34") for e in events]
    table = pa.table(cols, schema=canonical.arrow_schema(canonical.EVENT_COLUMNS,
                                                         {"user_age": pa.string()}))
    pq.write_table(table, os.path.join(path, canonical.EVENTS_FILE))
    windows = {"pretrain": [T0, T0 + DAY], "train_large": [T0 + DAY, T0 + 3 * DAY],
               "train_small": [T0 + 2 * DAY, T0 + 3 * DAY], "test": [T0 + 3 * DAY, T0 + 4 * DAY]}
    meta = canonical.DatasetMeta(name="hand", source="test", windows=windows)
    if label_rules:
        meta.label_rules.update(label_rules)
    canonical.write_meta(path, meta)
    return path


def _event(user, ts, item, position=0, click=0, order=0, cart=0, request=None):
    return {"request_id": request or f"{user}-{ts}", "user_id": user, "ts": ts,
            "item_id": item, "position": position, "rank": position, "click": click,
            "order": order, "cart": cart}


def test_stats_match_the_events(tiny_world, tiny_examples):
    out, stats = tiny_examples
    events = pd.read_parquet(os.path.join(tiny_world, "events.parquet"))
    meta = canonical.read_meta(tiny_world)
    for name in canonical.WINDOW_NAMES:
        w = meta.window(name)
        sel = events[(events.ts >= w.start) & (events.ts < w.end)]
        assert stats["windows"][name]["examples"] == len(sel)
        assert stats["windows"][name]["click"] == sel.click.sum()
        assert len(glob.glob(os.path.join(out, name, "part-*.tfrecord"))) == 3
    assert stats["dead_letter"] == 0 and stats["events"] == len(events)
    with open(os.path.join(out, "stats.json")) as f:
        assert json.load(f) == stats
    assert stats["profile_features"] == ["user_age", "user_city_tier", "user_gender",
                                         "user_power"]


def test_histories_hold_only_earlier_clicks(tiny_world, tiny_examples):
    """No leakage: each history equals the user's clicks strictly before the event."""
    out, _ = tiny_examples
    events = pd.read_parquet(os.path.join(tiny_world, "events.parquet"))
    items = pd.read_parquet(os.path.join(tiny_world, "items.parquet")).set_index("item_id")
    clicks = events[events.click == 1].sort_values(["ts", "request_id", "position"])
    by_user = {u: g for u, g in clicks.groupby("user_id")}
    feats, labels = _read_examples(out, "test")
    checked_nonempty = 0
    for k in range(len(feats["user_id"])):
        user = feats["user_id"][k].decode()
        ts = feats["ts"][k]
        g = by_user.get(user)
        before = g[g.ts < ts].iloc[::-1].head(12) if g is not None else clicks.head(0)
        n = int(feats["hist_len"][k])
        assert n == len(before)
        got = [x.decode() for x in feats["hist_item_id"][k][:n]]
        assert got == before.item_id.tolist()
        assert all(x == b"" for x in feats["hist_item_id"][k][n:])
        np.testing.assert_array_equal(feats["hist_position"][k][:n], before.position)
        np.testing.assert_array_equal(
            feats["hist_recency"][k][:n], features.recency_bucket(ts - before.ts.to_numpy()))
        assert [x.decode() for x in feats["hist_brand_id"][k][:n]] == items.brand_id[
            before.item_id].tolist()
        checked_nonempty += n > 0
    assert checked_nonempty > 10


def test_same_time_clicks_are_not_history(tmp_path):
    events = [
        _event("u1", T0 + DAY + 100, "i0", position=0, click=1, request="r1"),
        _event("u1", T0 + DAY + 100, "i1", position=1, click=1, request="r1"),
        _event("u1", T0 + DAY + 200, "i2", position=0, click=0, request="r2"),
        _event("u1", T0 + 10, "i3", position=2, click=1, request="r0"),  # pretrain
        _event("u1", T0 - 10, "i4", position=0, click=1, request="old"),  # before windows
    ]
    events += [_event("u2", T0 + 5, "i0"), _event("u2", T0 + 3 * DAY + 5, "i0"),
               _event("u2", T0 + 2 * DAY + 5, "i1")]
    ds = write_dataset(str(tmp_path / "ds"), events)
    out = str(tmp_path / "out")
    stats = build_examples.run(["--dataset", ds, "--out", out, "--num_shards", "1"])
    assert stats["history_only_events"] == 1
    feats, _ = _read_examples(out, "train_large")
    hist = {feats["item_id"][k].decode(): [x.decode() for x in feats["hist_item_id"][k]
                                           if x]
            for k in range(len(feats["item_id"])) if feats["user_id"][k] == b"u1"}
    assert hist == {"i0": ["i3", "i4"], "i1": ["i3", "i4"], "i2": ["i1", "i0", "i3", "i4"]}
    # Recency: 100 s -> bucket 1 ([60 s, 600 s)); a day and 190 s -> bucket 5 ([1 d, 3 d)).
    k = [i for i, (item, user) in enumerate(zip(feats["item_id"], feats["user_id"]))
         if (item, user) == (b"i2", b"u1")][0]
    assert feats["hist_recency"][k][:3].tolist() == [1, 1, 5]
    assert feats["user_age"][k] == b"25-34"
    assert feats["rank"][k] == 0 and feats["item_freq"][k] == 1
    assert stats["windows"]["train_small"]["examples"] == 1


def test_vocab_counts_from_the_training_window(tiny_world, tiny_examples):
    out, _ = tiny_examples
    events = pd.read_parquet(os.path.join(tiny_world, "events.parquet"))
    items = pd.read_parquet(os.path.join(tiny_world, "items.parquet")).set_index("item_id")
    w = canonical.read_meta(tiny_world).window("train_large")
    train = events[(events.ts >= w.start) & (events.ts < w.end)]
    for field in features.ID_FIELDS:
        vocab = pd.read_csv(os.path.join(out, "vocab", f"{field}.tsv"), sep="\t",
                            names=["id", "count"], dtype={"id": str})
        ids = train.item_id if field == "item_id" else items[field][train.item_id]
        expected = ids.value_counts()
        assert dict(zip(vocab["id"], vocab["count"])) == expected.to_dict()
        assert vocab["count"].is_monotonic_decreasing
    feats, _ = _read_examples(out, "test")
    counts = train.item_id.value_counts()
    expected_freq = [counts.get(i.decode(), 0) for i in feats["item_id"]]
    np.testing.assert_array_equal(feats["item_freq"], expected_freq)


def _dead_letters(out):
    return [json.loads(x) for f in glob.glob(os.path.join(out, "dead_letter", "*.jsonl"))
            for x in open(f)]


def test_malformed_rows_go_to_dead_letter(tmp_path):
    good = [_event("u1", T0 + DAY + 10 * k, f"i{k % 5}", click=k % 2) for k in range(20)]
    good += [_event("u3", T0 + 10, "i0"), _event("u3", T0 + 3 * DAY + 5, "i0"),
             _event("u3", T0 + 2 * DAY + 5, "i1")]
    bad = [_event("u2", T0 + DAY, "nope"), _event("u2", T0 + DAY + 1, "i1", click=2),
           _event("u2", T0 + DAY + 2, "i1", click=0, order=1), _event("", T0 + DAY, "i1")]
    ds = write_dataset(str(tmp_path / "ds"), good + bad)
    out = str(tmp_path / "out")
    stats = build_examples.run(["--dataset", ds, "--out", out, "--max_bad_fraction", "0.5"])
    assert stats["dead_letter"] == 4
    assert stats["dead_letter_by_reason"] == {"unknown item_id": 1, "click not in {0, 1}": 1,
                                              "order without click": 1, "missing user_id": 1}
    lines = _dead_letters(out)
    assert sorted(r["reason"] for r in lines) == sorted(stats["dead_letter_by_reason"])
    assert {r["row"]["item_id"] for r in lines} == {"nope", "i1"}
    assert {r["kind"] for r in lines} == {"event"}
    assert stats["windows"]["train_large"]["examples"] == 21

    with pytest.raises(build_examples.BadDataError, match="4 of 27 events"):
        build_examples.run(["--dataset", ds, "--out", out, "--overwrite"])
    assert not os.path.exists(os.path.join(out, "stats.json"))
    assert not os.path.exists(os.path.join(out, "train_large"))  # no half-valid output
    assert len(_dead_letters(out)) == 4  # kept for inspection


def test_wrongly_typed_values_are_dead_letters_not_crashes(tmp_path):
    """Values that the schema check cannot see (NaN in a float ts column) are row problems."""
    events = [_event("u1", T0 + DAY + 10 * k, f"i{k % 5}", click=1) for k in range(8)]
    events += [_event("u1", T0 + 5, "i0"), _event("u1", T0 + 3 * DAY + 1, "i1"),
               _event("u1", T0 + 2 * DAY + 1, "i2")]
    ds = write_dataset(str(tmp_path / "ds"), events)
    path = os.path.join(ds, canonical.EVENTS_FILE)
    table = pq.read_table(path)
    ts = [float(x) for x in table.column("ts").to_pylist()]
    ts[3] = float("nan")
    table = table.set_column(table.schema.get_field_index("ts"), "ts", pa.array(ts))
    pq.write_table(table, path)
    with pytest.raises(Exception, match="ts"):  # a float ts column is refused up front
        build_examples.run(["--dataset", ds, "--out", str(tmp_path / "o1")])
    problem = build_examples.event_problem(
        {"request_id": "r", "user_id": "u", "item_id": "i0", "ts": float("nan"),
         "position": 0, "rank": None, "click": 1, "order": 0, "cart": 0},
        {"i0": ("s", "b", "c")}, {})
    assert problem == "ts is not an integer"
    assert build_examples.event_problem(
        {"request_id": "r", "user_id": "u", "item_id": "i0", "ts": 5, "position": "3",
         "rank": None, "click": 1, "order": 0, "cart": 0}, {"i0": ("s", "b", "c")},
        {}) == "position is not an integer >= 0"
    assert build_examples.event_problem(
        {"request_id": "r", "user_id": "u", "item_id": "i0", "ts": 5, "position": 1,
         "rank": None, "click": True, "order": 0, "cart": 0}, {"i0": ("s", "b", "c")},
        {}) == "click not in {0, 1}"


def test_duplicate_items_are_dead_letters(tmp_path):
    events = [_event("u1", T0 + DAY + 10 * k, f"i{k % 4}", click=1) for k in range(8)]
    events += [_event("u1", T0 + 5, "i0"), _event("u1", T0 + 3 * DAY + 1, "i1"),
               _event("u1", T0 + 2 * DAY + 1, "i2")]
    ds = write_dataset(str(tmp_path / "ds"), events)
    path = os.path.join(ds, canonical.ITEMS_FILE)
    table = pq.read_table(path)
    pq.write_table(pa.concat_tables([table, table.slice(3, 1)]), path)  # i3 twice
    out = str(tmp_path / "out")
    stats = build_examples.run(["--dataset", ds, "--out", out, "--max_bad_fraction", "0.5"])
    assert stats["dead_letter_items"] == 2
    assert stats["dead_letter_by_reason"] == {"item_id duplicated in items.parquet": 2}
    kinds = sorted((r["kind"], r["reason"]) for r in _dead_letters(out))
    assert kinds == [("event", "item_id duplicated in items.parquet")] * 2 + [
        ("item", "item_id duplicated (2 rows)")] * 2


def test_empty_window_fails_and_profile_types_are_checked(tmp_path):
    events = [_event("u1", T0 + DAY + 10 * k, f"i{k % 4}", click=1) for k in range(8)]
    ds = write_dataset(str(tmp_path / "ds"), events)  # nothing in pretrain or test
    with pytest.raises(build_examples.BadDataError, match="no examples in the time windows"):
        build_examples.run(["--dataset", ds, "--out", str(tmp_path / "out")])
    path = os.path.join(ds, canonical.EVENTS_FILE)
    table = pq.read_table(path)
    table = table.set_column(table.schema.get_field_index("user_age"), "user_age",
                             pa.array([30] * table.num_rows))
    pq.write_table(table, path)
    with pytest.raises(Exception, match="user_age"):
        build_examples.run(["--dataset", ds, "--out", str(tmp_path / "out2")])


def test_refuses_to_mix_old_and_new_outputs(tmp_path, tiny_examples):
    ds = write_dataset(str(tmp_path / "ds"), [_event("u1", T0 + DAY, "i0")])
    out, _ = tiny_examples
    with pytest.raises(FileExistsError, match="--overwrite"):
        build_examples.run(["--dataset", ds, "--out", out])


def test_parse_example_features_are_the_schema(tiny_examples):
    out, _ = tiny_examples
    schema = features.FeatureSchema.load(os.path.join(out, features.SCHEMA_FILE))
    path = sorted(glob.glob(os.path.join(out, "test", "*.tfrecord")))[0]
    record = next(iter(tf.data.TFRecordDataset(path))).numpy()
    example = tf.train.Example.FromString(record)
    assert set(example.features.feature) == set(schema.names)
    assert schema.max_history == 12


def test_user_examples_number_the_history_sessions():
    """hist_session from the clicks' timestamps: a gap over 30 minutes starts a session."""
    t = T0 + DAY
    clicks = [_event("u1", t + dt, f"i{k % 5}", position=k, click=1)
              for k, dt in enumerate((0, 1800, 3601, 3700, 10_000))]
    last = _event("u1", t + 20_000, "i0")
    items = {f"i{k}": ("s0", f"b{k % 2}", "c0") for k in range(5)}
    windows = {"train_large": (t, t + DAY)}

    def examples(max_history):
        schema = features.FeatureSchema(max_history=max_history)
        return {v["ts"]: v for _, v in build_examples.user_examples(
            clicks + [last], items, {}, schema, windows)}

    got = examples(12)
    # Most recent first: gaps 6300 (new), 99, 1801 (new), 1800 (same session).
    assert got[t + 20_000]["hist_session"] == [0, 1, 1, 2, 2]
    assert got[t + 3700]["hist_session"] == [0, 1, 1]  # 1801 s (new), then 1800 s
    assert got[t + 1800]["hist_session"] == [0]
    assert got[t]["hist_session"] == []
    assert examples(3)[t + 20_000]["hist_session"] == [0, 1, 1]  # cut to the 3 most recent
    for v in got.values():
        assert len(v["hist_session"]) == v["hist_len"]


def test_examples_carry_hist_session(tiny_world, tiny_examples):
    """Through the Beam job and the parser: the sessions of the clicks before each event."""
    out, _ = tiny_examples
    events = pd.read_parquet(os.path.join(tiny_world, "events.parquet"))
    clicks = events[events.click == 1].sort_values(["ts", "request_id", "position"])
    by_user = {u: g for u, g in clicks.groupby("user_id")}
    feats, _ = _read_examples(out, "test")
    sessions = []
    for k in range(len(feats["user_id"])):
        g = by_user.get(feats["user_id"][k].decode())
        if g is None:
            continue
        before = g[g.ts < feats["ts"][k]].iloc[::-1].head(12)
        n = int(feats["hist_len"][k])
        expected = features.session_ids(before.ts.tolist())
        assert feats["hist_session"][k][:n].tolist() == expected
        assert not feats["hist_session"][k][n:].any()
        sessions += expected
    assert max(sessions) > 0  # the tiny world has several sessions per history
