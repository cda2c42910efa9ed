"""The Beam jobs on Parquet they cannot use: strings that are not UTF-8 (dead-lettered by
build_examples, refused with file, column and rows by embed_items), and files that are empty,
truncated or not Parquet (refused with the file named, by both jobs and the canonical readers).
"""

import os

import pyarrow.parquet as pq
import pytest

from beam_jobs import build_examples, embed_items, parquet_rows
from ppm.data import canonical, validate
from tests.beam_jobs.test_build_examples import DAY, T0, _dead_letters, _event, write_dataset
from tests.beam_jobs.test_embed_items import write_fake_encoder
from tests.conftest import copy_dataset
from tests.data.utf8_helpers import BAD_BYTES, corrupt_parquet, with_invalid_utf8

SHOWN = BAD_BYTES.decode("utf-8", "backslashreplace")  # what a dead letter holds


def _events():
    events = [_event(f"u{k % 2}", T0 + DAY + 10 * k, f"i{k % 4}", click=1) for k in range(12)]
    return events + [_event("u1", T0 + 5, "i0"), _event("u1", T0 + 3 * DAY + 1, "i1"),
                     _event("u1", T0 + 2 * DAY + 1, "i2")]


def test_invalid_utf8_rows_are_dead_letters(tmp_path):
    events = _events()
    ds = write_dataset(str(tmp_path / "ds"), events)
    corrupt_parquet(ds, canonical.EVENTS_FILE, "user_id", [4])
    corrupt_parquet(ds, canonical.EVENTS_FILE, "user_age", [5])  # a profile column
    corrupt_parquet(ds, canonical.ITEMS_FILE, "shop_id", [3])  # item i3
    out = str(tmp_path / "out")
    stats = build_examples.run(["--dataset", ds, "--out", out, "--max_bad_fraction", "0.5"])

    i3_events = [k for k, e in enumerate(events) if e["item_id"] == "i3" and k not in (4, 5)]
    assert stats["dead_letter_by_reason"] == {
        "invalid UTF-8 in user_id": 1, "invalid UTF-8 in user_age": 1,
        "item has invalid UTF-8 in shop_id": len(i3_events)}
    assert stats["dead_letter"] == 2 + len(i3_events)
    assert stats["dead_letter_items"] == 1
    assert stats["events"] == len(events)
    letters = {(r["kind"], r["reason"]): r["row"] for r in _dead_letters(out)}
    assert letters[("event", "invalid UTF-8 in user_id")]["user_id"] == SHOWN
    assert letters[("event", "invalid UTF-8 in user_id")]["request_id"] == events[4][
        "request_id"]
    assert letters[("event", "invalid UTF-8 in user_age")]["user_age"] == SHOWN
    assert letters[("item", "invalid UTF-8 in shop_id")] == {
        "item_id": "i3", "shop_id": SHOWN, "brand_id": "b1", "category_id": "c0"}
    assert not any(parquet_rows.INVALID_UTF8 in row for row in letters.values())
    # The good rows still make examples.
    good = [k for k, e in enumerate(events) if T0 + DAY <= e["ts"] < T0 + 3 * DAY
            and k not in (4, 5) and k not in i3_events]
    assert stats["windows"]["train_large"]["examples"] == len(good)


def test_table_rows_match_beams_rows_and_mark_the_first_bad_column():
    import pyarrow as pa

    table = pa.table({"a": ["x", "y", "z"], "b": ["p", "q", "r"], "n": [1, 2, None]})
    assert list(parquet_rows.table_rows(table)) == [
        {"a": "x", "b": "p", "n": 1}, {"a": "y", "b": "q", "n": 2},
        {"a": "z", "b": "r", "n": None}]
    table = with_invalid_utf8(with_invalid_utf8(table, "b", [1, 2]), "a", [2])
    rows = list(parquet_rows.table_rows(table))
    assert rows[0] == {"a": "x", "b": "p", "n": 1}
    assert rows[1] == {"a": "y", "b": SHOWN, "n": 2, parquet_rows.INVALID_UTF8:
                       "invalid UTF-8 in b"}
    assert rows[2][parquet_rows.INVALID_UTF8] == "invalid UTF-8 in a"
    row, reason = parquet_rows.without_marker(rows[1])
    assert reason == "invalid UTF-8 in b" and parquet_rows.INVALID_UTF8 not in row
    assert parquet_rows.INVALID_UTF8 in rows[1]  # the input row is left as it was


def _unreadable(path, how):
    if how == "empty":
        open(path, "wb").close()
        return "Parquet file size is 0 bytes"
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[:len(data) // 2])
    return "magic bytes not found"


@pytest.mark.parametrize("file", [canonical.ITEMS_FILE, canonical.EVENTS_FILE])
@pytest.mark.parametrize("how", ["empty", "truncated"])
def test_unreadable_parquet_is_named_by_build_examples(tmp_path, file, how):
    ds = write_dataset(str(tmp_path / "ds"), _events())
    path = os.path.join(ds, file)
    reason = _unreadable(path, how)
    with pytest.raises(validate.DatasetError) as info:
        build_examples.run(["--dataset", ds, "--out", str(tmp_path / "out")])
    assert f"not a readable Parquet file: {path}: " in str(info.value)
    assert reason in str(info.value)
    assert not (tmp_path / "out").exists()  # refused before any output


def test_canonical_readers_name_the_file(tmp_path):
    ds = write_dataset(str(tmp_path / "ds"), _events())
    path = os.path.join(ds, canonical.ITEMS_FILE)
    with pytest.raises(ValueError, match=f"{path}: no columns \\['nope'\\]"):
        canonical.read_parquet(path, columns=["item_id", "nope"])
    _unreadable(path, "truncated")
    for read in (canonical.read_parquet, canonical.read_parquet_schema):
        with pytest.raises(canonical.ParquetReadError,
                           match=f"not a readable Parquet file: {path}: .*magic bytes"):
            read(path)
    with pytest.raises(OSError):  # as pyarrow's own errors were caught by callers
        canonical.read_parquet(path, columns=["item_id"])
    with pytest.raises(FileNotFoundError):
        canonical.read_parquet_schema(os.path.join(ds, "missing.parquet"))
    # The validator reports it once, naming the file.
    problems = [str(p) for p in validate.validate(ds).errors if p.file == canonical.ITEMS_FILE]
    assert problems == [f"ERROR: {canonical.ITEMS_FILE}: not a readable Parquet file: {path}: "
                        "Parquet magic bytes not found in footer. Either the file is "
                        "corrupted or this is not a parquet file."]


# --- embed_items ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    root = tmp_path_factory.mktemp("encoders")
    return {m: write_fake_encoder(str(root / m), m) for m in ("text", "image")}


def _embed(ds, encoders, out, modalities=("text", "image")):
    argv = ["--dataset", ds, "--out", str(out)]
    for m in modalities:
        argv += [f"--{m}_model", encoders[m]]
    return embed_items.run(argv)


def _small(tiny_world, path, n=12):
    path = copy_dataset(tiny_world, path)
    file = os.path.join(path, canonical.ITEMS_FILE)
    pq.write_table(pq.read_table(file).slice(0, n), file)
    return path


def test_embed_items_refuses_invalid_utf8_naming_file_column_rows(tiny_world, encoders,
                                                                  tmp_path):
    ds = _small(tiny_world, str(tmp_path / "ds"))
    corrupt_parquet(ds, canonical.ITEMS_FILE, "title", [1, 4])
    path = os.path.join(ds, canonical.ITEMS_FILE)
    out = tmp_path / "out"
    with pytest.raises(ValueError) as info:
        _embed(ds, encoders, out)
    message = str(info.value)
    assert message.startswith(f"{path}: column 'title': 2 values are not valid UTF-8")
    assert "[rows 1, 4]" in message and repr(SHOWN) in message and "re-encode" in message
    assert not out.exists()  # refused before touching --out


def test_embed_items_checks_only_the_columns_it_reads(tiny_world, encoders, tmp_path):
    ds = _small(tiny_world, str(tmp_path / "ds"))
    corrupt_parquet(ds, canonical.ITEMS_FILE, "title", [2])
    corrupt_parquet(ds, canonical.ITEMS_FILE, "entity", [3])  # read by neither modality
    # The title is not read by an image-only cache ...
    manifest = _embed(ds, encoders, tmp_path / "image_only", modalities=("image",))
    assert manifest["counts"]["items"] == 12
    # ... but the item ids always are.
    corrupt_parquet(ds, canonical.ITEMS_FILE, "item_id", [0])
    with pytest.raises(ValueError, match="column 'item_id': 1 values .* \\[rows 0\\]"):
        _embed(ds, encoders, tmp_path / "out", modalities=("image",))


@pytest.mark.parametrize("how", ["empty", "truncated"])
def test_embed_items_names_an_unreadable_items_file(tiny_world, encoders, tmp_path, how):
    ds = _small(tiny_world, str(tmp_path / "ds"))
    path = os.path.join(ds, canonical.ITEMS_FILE)
    reason = _unreadable(path, how)
    out = tmp_path / "out"
    with pytest.raises(canonical.ParquetReadError,
                       match=f"not a readable Parquet file: {path}: .*{reason}"):
        _embed(ds, encoders, out)
    assert not out.exists()
