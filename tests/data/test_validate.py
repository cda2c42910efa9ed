"""The validator names file, column and rows of every violation; CLI exit codes."""

import io
import json
import os

import pandas as pd
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


def test_nulls_are_not_unknown_items(dataset):
    _edit(dataset, "events.parquet", lambda t: _set(t, "item_id", [4], None))
    _edit(dataset, "queries.parquet", lambda t: _set(t, "hard_negative_item_id", [0], None))
    (problem,) = validate.validate(dataset).errors
    assert (problem.column, problem.message, problem.rows) == ("item_id", "1 null values", (4,))


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


def _errors_by_column(report, file):
    return {p.column: p for p in report.errors if p.file == file}


def test_several_errors_are_all_reported(dataset):
    """A broken column hides nothing else: every violation of every table is named."""
    _edit(dataset, "items.parquet", lambda t: _set(t.set_column(
        t.schema.get_field_index("price"), "price", pc.cast(t.column("price"), pa.string())),
        "title", [1], None))
    _edit(dataset, "events.parquet", lambda t: _set(_set(_set(_set(
        t, "click", [4], 2), "query", [5], None), "item_id", [2], "no-such-item"),
        "cart", [6], 5))
    _edit(dataset, "queries.parquet", lambda t: _set(t, "kind", [0], "video"))
    report = validate.validate(dataset)
    items = _errors_by_column(report, "items.parquet")
    assert "wrong type string" in items["price"].message
    assert items["title"].rows == (1,)
    events = _errors_by_column(report, "events.parquet")
    assert events["click"].rows == (4,)
    assert events["query"].rows == (5,) and "1 null values" in events["query"].message
    assert events["item_id"].rows == (2,)
    assert events["cart"].rows == (6,)
    assert _errors_by_column(report, "queries.parquet")["kind"].rows == (0,)
    assert len(report.errors) == 7, str(report)


def test_timestamps_in_milliseconds_leave_every_window_empty(dataset):
    _edit(dataset, "events.parquet", lambda t: t.set_column(
        t.schema.get_field_index("ts"), "ts", pc.multiply(t.column("ts"), 1000)))
    report = validate.validate(dataset)
    empty = [p for p in report.errors if p.column == "ts"]
    assert sorted(p.message.split()[2] for p in empty) == sorted(canonical.WINDOW_NAMES)
    assert all("looks like milliseconds" in p.message for p in empty)
    (outside,) = [p for p in report.warnings if p.column == "ts"]
    assert "8884 events fall outside every time window" in outside.message


def test_one_empty_window_is_an_error(dataset):
    def later_test_day(m):
        end = m["windows"]["train_large"][1]
        m["windows"]["test"] = [end + 10 * 86400, end + 11 * 86400]

    _edit_meta(dataset, later_test_day)
    report = validate.validate(dataset)
    (problem,) = report.errors
    assert (problem.file, problem.column) == ("events.parquet", "ts")
    assert "time window test" in problem.message and "holds no events" in problem.message
    assert "milliseconds" not in problem.message
    assert any("outside every time window" in p.message for p in report.warnings)


def test_event_before_item_creation_is_a_counted_warning(dataset):
    events = pq.read_table(os.path.join(dataset, "events.parquet")).to_pandas()
    item, ts = events.item_id[0], int(events.ts[0])
    expected = events.index[(events.item_id == item) & (events.ts < ts + 1)].tolist()

    def apply(t):
        row = t.column("item_id").to_pylist().index(item)
        return _set(t, "created_at", [row], ts + 1)

    _edit(dataset, "items.parquet", apply)
    report = validate.validate(dataset)
    assert report.ok, str(report)
    (warning,) = report.warnings
    assert (warning.file, warning.column) == ("events.parquet", "ts")
    assert warning.rows == tuple(expected) and 0 in warning.rows
    assert warning.message.startswith(f"{len(expected)} events show an item before its "
                                      "created_at in items.parquet (1 items;")


@pytest.mark.parametrize("column, message", [("item_id", "(request_id, item_id) pair"),
                                             ("position", "(request_id, position) pair")])
def test_duplicates_within_a_request(dataset, column, message):
    _edit(dataset, "events.parquet", lambda t: _set(t, column, [1], t.column(column)[0]
                                                    .as_py()))
    problem = _only_error(validate.validate(dataset), "events.parquet", column)
    assert message in problem.message and problem.rows == (0, 1)


@pytest.mark.parametrize("column", ["user_id", "ts"])
def test_request_has_one_user_and_one_time(dataset, column):
    events = pq.read_table(os.path.join(dataset, "events.parquet"))
    request = events.column("request_id").to_pylist()
    same_request = tuple(i for i, r in enumerate(request) if r == request[0])
    value = "u-other" if column == "user_id" else events.column("ts")[1].as_py() + 1
    _edit(dataset, "events.parquet", lambda t: _set(t, column, [1], value))
    problem = _only_error(validate.validate(dataset), "events.parquet", column)
    assert f"1 request_ids have several {column} values" in problem.message
    assert problem.rows == same_request and len(same_request) > 1


def test_undecodable_query_images_are_a_counted_warning(dataset):
    kinds = pq.read_table(os.path.join(dataset, "queries.parquet")).column("kind").to_pylist()
    image_row, text_row = kinds.index("image"), kinds.index("text")
    _edit(dataset, "queries.parquet", lambda t: _set(t, "query_image", [image_row, text_row],
                                                     b"not an image"))
    report = validate.validate(dataset)
    assert report.ok, str(report)
    (warning,) = report.warnings
    assert (warning.file, warning.column) == ("queries.parquet", "query_image")
    assert warning.rows == (image_row,) and "1 query images cannot be decoded" in str(warning)


def test_hard_negative_must_differ_from_the_item(dataset):
    _edit(dataset, "queries.parquet", lambda t: _set(t, "hard_negative_item_id", [3],
                                                     t.column("item_id")[3].as_py()))
    problem = _only_error(validate.validate(dataset), "queries.parquet",
                          "hard_negative_item_id")
    assert "own item" in problem.message and problem.rows == (3,)


@pytest.mark.parametrize("value, message", [(float("nan"), "1 NaN values"),
                                            (float("inf"), "1 infinite prices"),
                                            (-0.5, "1 negative prices")])
def test_bad_prices(dataset, value, message):
    _edit(dataset, "items.parquet", lambda t: _set(t, "price", [2], value))
    problem = _only_error(validate.validate(dataset), "items.parquet", "price")
    assert message in problem.message and problem.rows == (2,)


def test_nan_in_any_float_column(dataset):
    _edit(dataset, "events.parquet", lambda t: _set(t, "true_p_click", [3], float("nan")))
    problem = _only_error(validate.validate(dataset), "events.parquet", "true_p_click")
    assert "NaN" in problem.message and problem.rows == (3,)


@pytest.mark.parametrize("version", [2, "1", True])
def test_schema_version(dataset, version):
    _edit_meta(dataset, lambda m: m.update(schema_version=version))
    problem = _only_error(validate.validate(dataset), "dataset.json", "schema_version")
    assert f"schema version {version!r} is not supported" in problem.message


def test_misspelled_label_rule_is_an_error_not_a_default(dataset):
    def apply(t):
        row = t.column("click").to_pylist().index(0)
        return _set(t, "order", [row], 1)

    _edit(dataset, "events.parquet", apply)
    _edit_meta(dataset, lambda m: m.update(label_rules={"order_require_click": False}))
    report = validate.validate(dataset)
    assert "unknown rules ['order_require_click']" in _only_error(
        report, "dataset.json", "label_rules").message
    assert "order=1 with click=0" in _only_error(report, "events.parquet", "order").message


@pytest.mark.parametrize("key, value, message", [
    ("label_rules", ["order_requires_click"], "must be a JSON object, got list"),
    ("tasks", "click", "must be a JSON list, got str"),
    ("windows", list(canonical.WINDOW_NAMES), "must be a JSON object, got list"),
    ("counts", 3, "must be a JSON object, got int"),
])
def test_dataset_json_types(dataset, key, value, message):
    _edit_meta(dataset, lambda m: m.update({key: value}))
    report = validate.validate(dataset)
    assert message in _only_error(report, "dataset.json", key).message


@pytest.mark.parametrize("bounds", [lambda w: [True, w[1]], lambda w: [w[0], float(w[1])],
                                    lambda w: [w[0]], lambda w: "2024"])
def test_window_bounds_must_be_integers(dataset, bounds):
    _edit_meta(dataset, lambda m: m["windows"].update(pretrain=bounds(m["windows"]["pretrain"])))
    problem = _only_error(validate.validate(dataset), "dataset.json", "windows")
    assert "pretrain must be [start, end] with integer unix seconds" in problem.message


def test_dictionary_encoded_strings_are_strings(dataset):
    assert canonical.arrow_kind(pa.dictionary(pa.int32(), pa.string())) == "string"
    assert canonical.arrow_kind(pa.dictionary(pa.int8(), pa.int64())) == "int"
    for name, columns in (("items.parquet", ["shop_id", "category_id", "entity"]),
                          ("events.parquet", ["item_id", "user_gender", "query"])):
        path = os.path.join(dataset, name)
        df = pd.read_parquet(path)
        df[columns] = df[columns].astype("category")
        df.to_parquet(path, index=False)
        assert pa.types.is_dictionary(pq.read_schema(path).field(columns[0]).type)
    assert validate.validate(dataset).ok
    # The checks still see the values behind the dictionary.
    _edit(dataset, "events.parquet", lambda t: _set(
        t, "item_id", [2], "no-such-item", pa.dictionary(pa.int32(), pa.string())))
    assert _only_error(validate.validate(dataset), "events.parquet", "item_id").rows == (2,)


def test_remote_paths_go_through_canonical_file_access(dataset, monkeypatch):
    """Files are found and read with canonical.file_exists/open_file, as for gs:// paths."""
    opened = []

    def local(path):
        assert path.startswith("mem://")
        return path[len("mem://"):]

    def open_file(path, mode="rb"):
        opened.append(os.path.basename(path))
        with open(local(path), mode) as f:  # a file object that is not a local file
            return io.BytesIO(f.read())

    monkeypatch.setattr(canonical, "file_exists", lambda path: os.path.exists(local(path)))
    monkeypatch.setattr(canonical, "open_file", open_file)
    report = validate.validate("mem://" + dataset)
    assert report.ok and not report.warnings, str(report)
    assert sorted(opened) == sorted(["dataset.json", "items.parquet", "events.parquet",
                                     "queries.parquet"])


def test_check_schema_returns_usable_columns():
    schema = canonical.arrow_schema(canonical.ITEM_COLUMNS).remove(0)  # no item_id
    schema = schema.set(schema.get_field_index("created_at"), pa.field("created_at", pa.string()))
    report = validate.Report()
    usable = validate.check_schema("items.parquet", schema, canonical.ITEM_COLUMNS, report)
    assert {p.column for p in report.errors} == {"item_id", "created_at"}
    assert usable == {"shop_id", "brand_id", "category_id", "title", "image", "entity", "price"}


def test_invalid_utf8_is_reported_for_every_string_column(dataset, capsys):
    """Every string column of every table (canonical, profile, extra) is checked."""
    from tests.data.utf8_helpers import corrupt_parquet

    expected = {}
    for file in ("items.parquet", "events.parquet", "queries.parquet"):
        schema = pq.read_schema(os.path.join(dataset, file))
        strings = [n for n in schema.names if canonical.arrow_kind(schema.field(n).type)
                   == "string"]
        assert len(strings) >= 3
        for k, column in enumerate(strings):
            rows = (k, k + 7, k + 20)
            corrupt_parquet(dataset, file, column, rows)
            expected[file, column] = rows
    report = validate.validate(dataset)
    for (file, column), rows in expected.items():
        problem = [p for p in report.errors if (p.file, p.column) == (file, column)
                   and "UTF-8" in p.message]
        assert problem, (file, column, str(report))
        assert problem[0].rows == rows
        assert problem[0].message.startswith("3 values are not valid UTF-8")
        assert "caf\\\\xe9" in problem[0].message  # the bytes shown escaped, not a crash
    assert validate.main([dataset]) == 1
    err = capsys.readouterr().err
    assert "items.parquet, column 'title': 3 values are not valid UTF-8" in err
