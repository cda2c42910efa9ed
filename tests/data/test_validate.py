"""The validator names file, column and rows of every violation; CLI exit codes."""

import json
import os

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from ppm.data import canonical, validate
from tests.conftest import copy_dataset


@pytest.fixture
def dataset(tiny_world, tmp_path):
    return copy_dataset(tiny_world, tmp_path / "ds")


def _edit(dataset, name, fn):
    path = os.path.join(dataset, name)
    pq.write_table(fn(pq.read_table(path)), path)


def _set(table, column, rows, value, type_=None):
    values = table.column(column).to_pylist()
    for r in rows:
        values[r] = value
    col = pa.array(values, type_ or table.schema.field(column).type)
    return table.set_column(table.schema.get_field_index(column), column, col)


def _edit_meta(dataset, fn):
    path = os.path.join(dataset, "dataset.json")
    with open(path) as f:
        meta = json.load(f)
    fn(meta)
    with open(path, "w") as f:
        json.dump(meta, f)


def _only_error(report, file, column):
    errors = [p for p in report.errors if p.file == file and p.column == column]
    assert errors, str(report)
    return errors[0]


def test_clean_dataset_passes_cli(dataset, capsys):
    assert validate.main([dataset]) == 0
    assert "OK (0 errors" in capsys.readouterr().out


@pytest.mark.parametrize("missing", ["items.parquet", "events.parquet", "dataset.json"])
def test_missing_file(dataset, missing):
    os.remove(os.path.join(dataset, missing))
    report = validate.validate(dataset)
    assert not report.ok
    assert any(p.file == missing for p in report.errors), str(report)


def test_missing_column_and_wrong_type(dataset, capsys):
    _edit(dataset, "events.parquet", lambda t: t.drop_columns(["cart"]))
    _edit(dataset, "items.parquet", lambda t: t.set_column(
        t.schema.get_field_index("created_at"), "created_at",
        pc.cast(t.column("created_at"), pa.string())))
    report = validate.validate(dataset)
    assert "column is missing" in _only_error(report, "events.parquet", "cart").message
    assert "wrong type string" in _only_error(report, "items.parquet", "created_at").message
    assert validate.main([dataset]) == 1
    err = capsys.readouterr().err
    assert "events.parquet, column 'cart': column is missing" in err


def test_duplicate_item_ids_name_rows(dataset):
    _edit(dataset, "items.parquet", lambda t: _set(t, "item_id", [5], t.column("item_id")[3]
                                                   .as_py()))
    problem = _only_error(validate.validate(dataset), "items.parquet", "item_id")
    assert "duplicate" in problem.message and problem.rows == (3, 5)


def test_event_errors_name_rows(dataset):
    clicks = pq.read_table(os.path.join(dataset, "events.parquet")).column("click").to_pylist()
    no_click = next(i for i, c in enumerate(clicks) if c == 0 and i > 10)
    _edit(dataset, "events.parquet", lambda t: _set(_set(_set(_set(
        t, "item_id", [2], "no-such-item"), "click", [4], 2), "order", [no_click], 1),
        "position", [7], -1))
    report = validate.validate(dataset)
    assert _only_error(report, "events.parquet", "item_id").rows == (2,)
    assert _only_error(report, "events.parquet", "click").rows == (4,)
    order = _only_error(report, "events.parquet", "order")
    assert order.rows == (no_click,) and "order=1 with click=0" in order.message
    assert _only_error(report, "events.parquet", "position").rows == (7,)
    assert "[rows 2]" in str(_only_error(report, "events.parquet", "item_id"))


def test_order_without_click_allowed_when_rules_allow(dataset):
    def apply(t):
        clicks = t.column("click").to_pylist()
        row = next(i for i, c in enumerate(clicks) if c == 0)
        return _set(t, "order", [row], 1)

    _edit(dataset, "events.parquet", apply)
    _edit_meta(dataset, lambda m: m["label_rules"].update(order_requires_click=False))
    assert validate.validate(dataset).ok


def test_nulls_in_required_columns(dataset):
    _edit(dataset, "events.parquet", lambda t: _set(t, "user_id", [0, 9], None))
    problem = _only_error(validate.validate(dataset), "events.parquet", "user_id")
    assert "2 null values" in problem.message and problem.rows == (0, 9)


@pytest.mark.parametrize("edit, message", [
    (lambda w: w.update(test=[w["train_large"][1] - 10, w["train_large"][1] + 86400]),
     "overlap"),
    (lambda w: w.update(pretrain=[w["pretrain"][0], w["pretrain"][0]]), "pretrain is empty"),
    (lambda w: w.update(train_small=[w["pretrain"][0], w["pretrain"][0] + 10]),
     "most recent part of train_large"),
    (lambda w: w.pop("test"), "missing time windows ['test']"),
])
def test_bad_windows(dataset, edit, message):
    _edit_meta(dataset, lambda m: edit(m["windows"]))
    problem = _only_error(validate.validate(dataset), "dataset.json", "windows")
    assert message in problem.message


def test_undecodable_images_are_a_counted_warning(dataset):
    _edit(dataset, "items.parquet", lambda t: _set(t, "image", [1, 3], b"not a png"))
    report = validate.validate(dataset)
    assert report.ok, str(report)
    (warning,) = [p for p in report.warnings if p.column == "image"]
    assert warning.rows == (1, 3) and "2 images cannot be decoded" in warning.message


def test_query_errors(dataset):
    def apply(t):
        kinds = t.column("kind").to_pylist()
        image_row = kinds.index("image")
        t = _set(t, "query_image", [image_row], None)
        return _set(t, "kind", [0], "video")

    _edit(dataset, "queries.parquet", apply)
    report = validate.validate(dataset)
    assert _only_error(report, "queries.parquet", "kind").rows == (0,)
    assert "without query_image" in _only_error(report, "queries.parquet",
                                                "query_image").message


def test_check_dataset_raises_with_every_error(dataset):
    _edit(dataset, "events.parquet", lambda t: _set(t, "click", [1], 3))
    with pytest.raises(validate.DatasetError, match="values outside"):
        validate.check_dataset(dataset)


def test_unknown_dataset_json_keys(dataset):
    _edit_meta(dataset, lambda m: m.update(windowz={}))
    assert "unknown keys ['windowz']" in _only_error(validate.validate(dataset),
                                                     canonical.DATASET_FILE, None).message
