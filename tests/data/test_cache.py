"""The embedding cache loader: round trip, and each refusal with a message naming both values."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from ppm.data import cache

DIM = 4


def _manifest(count, dim=DIM, text_fp="aaaa", image_fp="bbbb"):
    return {"format": cache.FORMAT, "format_version": cache.FORMAT_VERSION, "dataset": "hand",
            "dim": dim, "counts": {"items": count},
            "text_encoder": {"path": "/enc/text", "fingerprint": text_fp, "info": {}},
            "image_encoder": {"path": "/enc/image", "fingerprint": image_fp, "info": {}}}


def write_cache(path, ids, dim=DIM, shards=2, manifest=None, record_dim=None):
    """A hand-made cache: title row k = k + 1 (unit 0), image row k = -(k + 1); item k has a
    title when k is even and an image when k % 3 != 0 (zeros otherwise)."""
    os.makedirs(path, exist_ok=True)
    record_dim = record_dim or dim
    writers = [tf.io.TFRecordWriter(os.path.join(path, f"part-{s:05d}-of-{shards:05d}.tfrecord"))
               for s in range(shards)]
    for k, item_id in enumerate(ids):
        has_title, has_image = k % 2 == 0, k % 3 != 0
        title = np.eye(record_dim)[0] * (k + 1) * has_title
        image = -np.eye(record_dim)[0] * (k + 1) * has_image
        ex = cache.make_example(item_id, title, image, has_title, has_image)
        writers[k % shards].write(ex.SerializeToString())
    for w in writers:
        w.close()
    with open(os.path.join(path, cache.MANIFEST_FILE), "w") as f:
        json.dump(manifest or _manifest(len(ids), dim), f)
    return str(path)


def test_round_trip_sorted_by_id(tmp_path):
    ids = ["i3", "i1", "i0", "i2", "i4"]
    got = cache.load_cache(write_cache(tmp_path / "c", ids, shards=2), expected_dim=DIM)
    assert got.ids.tolist() == ["i0", "i1", "i2", "i3", "i4"] and len(got) == 5
    assert got.dim == DIM and got.title.dtype == np.float32
    k = np.array([ids.index(i) for i in got.ids])  # write order of each sorted row
    np.testing.assert_array_equal(got.has_title, k % 2 == 0)
    np.testing.assert_array_equal(got.has_image, k % 3 != 0)
    np.testing.assert_array_equal(got.title[:, 0], (k + 1) * (k % 2 == 0))
    np.testing.assert_array_equal(got.image[:, 0], -(k + 1) * (k % 3 != 0))
    m = got.matrix()
    assert m.shape == (5, 2 * DIM)
    np.testing.assert_array_equal(m[:, 0], got.title[:, 0])
    np.testing.assert_array_equal(m[:, DIM], got.image[:, 0])
    assert got.index()["i3"] == 3
    assert got.manifest["dataset"] == "hand"


def test_expected_dim_mismatch_names_both(tmp_path):
    path = write_cache(tmp_path / "c", ["a", "b"])
    with pytest.raises(cache.CacheMismatchError, match="dimension is 4 but the model expects 64"):
        cache.load_cache(path, expected_dim=64)


def test_expected_manifest(tmp_path):
    path = write_cache(tmp_path / "c", ["a", "b"])
    manifest = cache.read_manifest(path)
    assert len(cache.load_cache(path, expected_manifest=manifest)) == 2
    # Only the identity matters: paths, counts, times may differ.
    assert len(cache.load_cache(path, expected_manifest=cache.identity(_manifest(9)))) == 2
    with pytest.raises(cache.CacheMismatchError,
                       match="image_encoder fingerprint is bbbb .* expected manifest has cccc"):
        cache.load_cache(path, expected_manifest=_manifest(2, image_fp="cccc"))
    with pytest.raises(cache.CacheMismatchError,
                       match="text_encoder fingerprint is aaaa .* expected manifest has zzzz"):
        cache.load_cache(path, expected_manifest=_manifest(2, text_fp="zzzz"))
    with pytest.raises(cache.CacheMismatchError, match="dimension is 4 but the expected .* 8"):
        cache.load_cache(path, expected_manifest=_manifest(2, dim=8))


def test_record_count_must_match_the_manifest(tmp_path):
    path = write_cache(tmp_path / "c", ["a", "b", "c"], manifest=_manifest(4))
    with pytest.raises(cache.CacheMismatchError, match="3 records in 2 shards .* counts 4"):
        cache.load_cache(path)


def test_duplicate_ids_refused(tmp_path):
    path = write_cache(tmp_path / "c", ["a", "b", "a", "c"])
    with pytest.raises(cache.CacheMismatchError, match=r"1 item ids occur more .*\['a'\]"):
        cache.load_cache(path)


def test_records_of_another_dimension_refused(tmp_path):
    path = write_cache(tmp_path / "c", ["a", "b"], record_dim=3)
    with pytest.raises(cache.CacheMismatchError, match="manifest's dim 4"):
        cache.load_cache(path)


def test_missing_or_foreign_manifest(tmp_path):
    path = write_cache(tmp_path / "c", ["a"])
    os.remove(os.path.join(path, cache.MANIFEST_FILE))
    with pytest.raises(FileNotFoundError, match="did not finish"):
        cache.load_cache(path)
    with open(os.path.join(path, cache.MANIFEST_FILE), "w") as f:
        json.dump({"format": "something-else"}, f)
    with pytest.raises(cache.CacheMismatchError, match="'something-else'"):
        cache.read_manifest(path)
