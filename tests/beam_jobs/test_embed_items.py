"""The Beam embedding job: every item exactly once, zero vectors and flags, RunInference outputs
equal to the encoders called directly, refusals before running.

The encoders are tiny fake SavedModels that follow :mod:`ppm.encoders.contract` (fixture
:func:`fake_encoder`); the image one decodes with ``tf.io.decode_image``, so a corrupt image
would crash it: the job must catch those on the Beam side.
"""

import io
import json
import os

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from PIL import Image

from beam_jobs import embed_items
from ppm.data import cache, canonical
from ppm.encoders import contract
from tests.conftest import copy_dataset

DIM = 8
BATCH = 16


class _FakeText(tf.Module):
    """Title -> a deterministic unit vector from FarmHash buckets of (title, j) and its length."""

    def __init__(self, dim):
        super().__init__()
        self.dim = dim
        self.scale = tf.Variable(tf.linspace(1.0, 2.0, dim))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve(self, inputs):
        n = tf.shape(inputs)[0]
        suffix = tf.strings.as_string(tf.range(self.dim))
        keys = tf.strings.join([tf.broadcast_to(inputs[:, None], [n, self.dim]),
                                tf.broadcast_to(suffix[None, :], [n, self.dim])], "#")
        buckets = tf.cast(tf.strings.to_hash_bucket_fast(keys, 1000), tf.float32) + 1.0
        length = tf.cast(tf.strings.length(inputs), tf.float32)[:, None]
        return {contract.OUTPUT_KEY: tf.math.l2_normalize((buckets + length) * self.scale, 1)}


class _FakeImage(tf.Module):
    """Image bytes -> a unit vector from its 2x2 thumbnail; decoding fails on corrupt bytes."""

    def __init__(self, dim):
        super().__init__()
        self.proj = tf.Variable(np.random.default_rng(0).uniform(0.1, 1.0, (12, dim))
                                .astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve(self, inputs):
        def thumbnail(data):
            image = tf.io.decode_image(data, channels=3, expand_animations=False)
            return tf.reshape(tf.image.resize(tf.cast(image, tf.float32) / 255.0, [2, 2]), [12])

        x = tf.map_fn(thumbnail, inputs, fn_output_signature=tf.TensorSpec([12], tf.float32))
        return {contract.OUTPUT_KEY: tf.math.l2_normalize(x @ self.proj + 0.01, 1)}


def write_fake_encoder(path: str, modality: str, dim: int = DIM) -> str:
    """Exports a fake encoder following the contract (SavedModel + assets.extra/encoder.json)."""
    module = (_FakeText if modality == "text" else _FakeImage)(dim)
    tf.saved_model.save(module, path, signatures={contract.SIGNATURE: module.serve})
    os.makedirs(os.path.join(path, "assets.extra"), exist_ok=True)
    with open(os.path.join(path, contract.INFO_FILE), "w") as f:
        json.dump({"modality": modality, "dim": dim, "preset": "fake", "task": "none"}, f)
    return path


@pytest.fixture(scope="session")
def fake_encoder(tmp_path_factory):
    """``fake_encoder(modality, dim=8)`` -> path of an exported fake encoder (made once)."""
    made = {}

    def make(modality, dim=DIM):
        if (modality, dim) not in made:
            path = str(tmp_path_factory.mktemp(f"fake_{modality}_{dim}"))
            made[modality, dim] = write_fake_encoder(path, modality, dim)
        return made[modality, dim]

    return make


def _png(size=8, seed=0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


def _tiff() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(buf, "TIFF")
    return buf.getvalue()


BAD_IMAGES = {"garbage": b"not an image at all", "truncated": _png(32)[:120], "tiff": _tiff(),
              "empty": b""}


def _write_items(path: str, items: pd.DataFrame) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    file = os.path.join(path, canonical.ITEMS_FILE)
    schema = pq.read_schema(file).remove_metadata()
    pq.write_table(pa.Table.from_pandas(items, schema=schema, preserve_index=False), file)


def _read_items(path: str) -> pd.DataFrame:
    return pd.read_parquet(os.path.join(path, canonical.ITEMS_FILE))


@pytest.fixture(scope="module")
def broken_world(tiny_world, tmp_path_factory):
    """The tiny world with a few broken items; returns (path, items, ids of bad images)."""
    path = copy_dataset(tiny_world, str(tmp_path_factory.mktemp("broken_world")))
    items = _read_items(path)
    ok = items.index[(items.title != "") & items.image.notna()]
    items.loc[ok[0], "title"] = ""
    items.loc[ok[1], "title"] = "   "
    items.loc[ok[2], "image"] = None
    items.loc[ok[3], ["title", "image"]] = ["", None]
    bad = {}
    for k, (kind, data) in enumerate(BAD_IMAGES.items()):
        items.at[ok[4 + k], "image"] = data
        bad[items.item_id[ok[4 + k]]] = kind
    _write_items(path, items)
    return path, items, bad


@pytest.fixture(scope="module")
def embedded(broken_world, fake_encoder, tmp_path_factory):
    """The job run on :func:`broken_world`; returns (out, manifest)."""
    path, _, _ = broken_world
    out = str(tmp_path_factory.mktemp("cache"))
    manifest = embed_items.run([
        "--dataset", path, "--text_model", fake_encoder("text"),
        "--image_model", fake_encoder("image"), "--out", out, "--batch_size", str(BATCH),
        "--num_shards", "2"])
    return out, manifest


def _expected_flags(items, bad):
    has_title = items.title.str.strip() != ""
    has_image = items.image.notna() & ~items.item_id.isin(list(bad))
    return has_title.to_numpy(), has_image.to_numpy()


def test_every_item_exactly_once_with_flags_and_zero_vectors(broken_world, embedded):
    _, items, bad = broken_world
    out, _ = embedded
    # Raw records, not through the cache loader: the loader has checks of its own.
    files = tf.io.gfile.glob(os.path.join(out, cache.SHARD_PATTERN))
    assert len(files) == 2
    records = [tf.io.parse_single_example(r, cache.feature_spec(DIM))
               for r in tf.data.TFRecordDataset(files)]
    ids = [r["item_id"].numpy().decode() for r in records]
    assert sorted(ids) == sorted(items.item_id) and len(set(ids)) == len(items)

    got = cache.load_cache(out, expected_dim=DIM)
    items = items.set_index("item_id").loc[got.ids].reset_index()
    has_title, has_image = _expected_flags(items, bad)
    assert (~has_title).sum() >= 4 and (~has_image).sum() >= 2 + len(BAD_IMAGES)
    np.testing.assert_array_equal(got.has_title, has_title)
    np.testing.assert_array_equal(got.has_image, has_image)
    assert not got.title[~has_title].any() and not got.image[~has_image].any()
    np.testing.assert_allclose(np.linalg.norm(got.title[has_title], axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got.image[has_image], axis=1), 1, atol=1e-5)
    np.testing.assert_array_equal(got.matrix(), np.concatenate([got.title, got.image], 1))


def test_embeddings_equal_the_encoders_called_directly(broken_world, embedded, fake_encoder):
    _, items, bad = broken_world
    out, _ = embedded
    got = cache.load_cache(out)
    items = items.set_index("item_id").loc[got.ids].reset_index()
    has_title, has_image = _expected_flags(items, bad)
    text, _ = contract.load(fake_encoder("text"))
    image, _ = contract.load(fake_encoder("image"))
    np.testing.assert_allclose(got.title[has_title],
                               text(items.title[has_title].tolist()).numpy(), atol=1e-6)
    np.testing.assert_allclose(got.image[has_image],
                               image(items.image[has_image].tolist()).numpy(), atol=1e-6)
    # Not trivially equal: items differ from each other.
    assert len(np.unique(got.title[has_title].round(4), axis=0)) > 0.9 * has_title.sum()


def test_manifest_counts_and_encoders(broken_world, embedded, fake_encoder):
    path, items, bad = broken_world
    out, manifest = embedded
    has_title, has_image = _expected_flags(items, bad)
    assert manifest["version"] == 1 and manifest["parent"] is None
    assert manifest["counts"] == {
        "items": len(items), "embedded": len(items),
        "with_title": int(has_title.sum()), "missing_title": int((~has_title).sum()),
        "with_image": int(has_image.sum()), "missing_image": int(items.image.isna().sum()),
        "undecodable_image": len(BAD_IMAGES)}
    with open(os.path.join(out, cache.MANIFEST_FILE)) as f:
        assert json.load(f) == manifest
    assert manifest["dim"] == DIM
    assert manifest["dataset"] == canonical.read_meta(path).name
    for modality in ("text", "image"):
        entry = manifest[f"{modality}_encoder"]
        assert entry["path"] == os.path.abspath(fake_encoder(modality))
        assert entry["fingerprint"] == contract.fingerprint(fake_encoder(modality))
        assert entry["info"]["modality"] == modality and entry["info"]["dim"] == DIM
    assert (manifest["text_encoder"]["fingerprint"]
            != manifest["image_encoder"]["fingerprint"])
    # RunInference batched: each item went through it once, in batches of at most BATCH.
    text, image = manifest["inference"]["text"], manifest["inference"]["image"]
    assert text["embedded"] == has_title.sum() and image["embedded"] == has_image.sum()
    assert text["batches"] >= has_title.sum() / BATCH and text["mean_batch_size"] > 1
    assert image["mean_batch_size"] <= BATCH


def test_the_bad_images_would_crash_the_encoder(fake_encoder):
    """The Beam-side check is needed: the SavedModel fails a whole batch on one bad image."""
    image, _ = contract.load(fake_encoder("image"))
    assert image([_png()]).shape == (1, DIM)
    for kind, data in BAD_IMAGES.items():
        if kind == "tiff":
            continue  # PIL reads TIFF; the job refuses it by format, as the contract is JPEG/PNG
        with pytest.raises(tf.errors.InvalidArgumentError):
            image([_png(), data])
        assert embed_items.image_problem(data) is not None, kind
    assert "TIFF" in embed_items.image_problem(BAD_IMAGES["tiff"])
    assert embed_items.image_problem(_png()) is None


def _small_world(tiny_world, path, n=12):
    path = copy_dataset(tiny_world, path)
    _write_items(path, _read_items(path).head(n))
    return path


def test_overwrite_refusal_and_replacement(tiny_world, fake_encoder, embedded, tmp_path):
    old_out, old_manifest = embedded
    small = _small_world(tiny_world, str(tmp_path / "small"))
    args = ["--dataset", small, "--text_model", fake_encoder("text"),
            "--image_model", fake_encoder("image")]
    with pytest.raises(FileExistsError, match="--overwrite"):
        embed_items.run(args + ["--out", old_out])
    assert cache.read_manifest(old_out) == old_manifest

    out = tmp_path / "out"
    out.mkdir()
    (out / "part-00000-of-00009.tfrecord").write_bytes(b"stale")
    with pytest.raises(FileExistsError):
        embed_items.run(args + ["--out", str(out)])
    manifest = embed_items.run(args + ["--out", str(out), "--overwrite", "--num_shards", "1"])
    assert manifest["counts"]["items"] == 12
    assert sorted(os.listdir(out)) == [cache.MANIFEST_FILE, "part-00000-of-00001.tfrecord"]
    assert len(cache.load_cache(str(out))) == 12


def test_refusals_before_running(tiny_world, fake_encoder, tmp_path):
    def run(text, image):
        out = tmp_path / "out"
        try:
            return embed_items.run(["--dataset", tiny_world, "--text_model", text,
                                    "--image_model", image, "--out", str(out)])
        finally:
            assert not out.exists()  # refused before touching --out

    with pytest.raises(ValueError, match="text encoder's dim is 8 but the image encoder's is 4"):
        run(fake_encoder("text"), fake_encoder("image", dim=4))
    with pytest.raises(ValueError, match="is a 'image' encoder .* expected 'text'"):
        run(fake_encoder("image"), fake_encoder("image"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="--image_model .* not an exported encoder"):
        run(fake_encoder("text"), str(tmp_path / "empty"))
    no_info = tmp_path / "no_info"
    tf.saved_model.save(tf.Module(), str(no_info))
    with pytest.raises(FileNotFoundError, match="--text_model: .*encoder.json is missing"):
        run(str(no_info), fake_encoder("image"))


def test_duplicate_item_ids_fail_without_a_manifest(tiny_world, fake_encoder, tmp_path):
    path = _small_world(tiny_world, str(tmp_path / "dup"), n=6)
    items = _read_items(path)
    items.loc[5, "item_id"] = items.item_id[0]
    _write_items(path, items)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="repeats 1 item ids"):
        embed_items.run(["--dataset", path, "--text_model", fake_encoder("text"),
                         "--image_model", fake_encoder("image"), "--out", str(out)])
    assert not (out / cache.MANIFEST_FILE).exists()


def test_batch_size_flags():
    args, beam_args = embed_items.parse_args(
        ["--dataset", "d", "--text_model", "t", "--image_model", "i", "--out", "o",
         "--batch_size", "32", "--runner", "DirectRunner"])
    assert (args.min_batch_size, args.batch_size) == (32, 32)
    assert beam_args == ["--runner", "DirectRunner"]
    handler = embed_items.EncoderModelHandler("t", DIM, 4, 32)
    assert handler.batch_elements_kwargs() == {"min_batch_size": 4, "max_batch_size": 32}
    with pytest.raises(SystemExit):
        embed_items.parse_args(["--dataset", "d", "--text_model", "t", "--image_model", "i",
                                "--out", "o", "--batch_size", "8", "--min_batch_size", "9"])


# --- versions (--parent) ----------------------------------------------------------------------

def _embed(dataset, out, fake_encoder, *extra):
    return embed_items.run(["--dataset", dataset, "--text_model", fake_encoder("text"),
                            "--image_model", fake_encoder("image"), "--out", str(out),
                            "--batch_size", str(BATCH), *extra])


def _vectors(path):
    c = cache.load_cache(str(path))
    return {i: (c.title[k], c.image[k], c.has_title[k], c.has_image[k])
            for k, i in enumerate(c.ids.tolist())}


def test_a_version_embeds_only_new_and_changed_items(tiny_world, fake_encoder, tmp_path):
    """Taobao §5: new items get vectors without re-embedding the catalogue. Nothing is lost or
    duplicated, unchanged records are copied bit for bit, and the catalogue's vectors equal
    those of a cache built from scratch."""
    full = _small_world(tiny_world, str(tmp_path / "full"), n=20)
    items = _read_items(full)
    old = copy_dataset(full, str(tmp_path / "old"))
    _write_items(old, items.iloc[:15])  # items 15-19 land later
    v1 = _embed(old, tmp_path / "v1", fake_encoder, "--num_shards", "2")
    assert v1["version"] == 1
    # Today's catalogue: 5 new items, a new title, a new image, one item withdrawn.
    items.loc[0, "title"] = items.title[0] + " (new edition)"
    items.at[1, "image"] = _png(seed=42)
    withdrawn = items.item_id[2]
    _write_items(full, items.drop(index=2))
    v2 = _embed(full, tmp_path / "v2", fake_encoder, "--parent", str(tmp_path / "v1"))
    assert v2["version"] == 2 and v2["parent"]["version"] == 1
    assert v2["parent"]["path"] == str(tmp_path / "v1")
    counts = v2["counts"]
    assert {k: counts[k] for k in ("items", "embedded", "new", "changed", "copied",
                                   "kept_not_in_dataset")} == {
        "items": 20, "embedded": 7, "new": 5, "changed": 2, "copied": 12,
        "kept_not_in_dataset": 1}
    # The encoders ran on the 7 items only (those with a title / a usable image).
    assert v2["inference"]["text"]["embedded"] <= 7 < v1["inference"]["text"]["embedded"]

    old_vectors, new_vectors = _vectors(tmp_path / "v1"), _vectors(tmp_path / "v2")
    assert set(old_vectors) <= set(new_vectors)  # never lost (load_cache refuses duplicates)
    assert set(new_vectors) == set(items.item_id)  # the catalogue and the withdrawn item
    scratch = _embed(full, tmp_path / "scratch", fake_encoder)
    assert scratch["counts"]["items"] == 19
    for item_id, expected in _vectors(tmp_path / "scratch").items():
        for a, b in zip(new_vectors[item_id], expected):
            np.testing.assert_allclose(a, b, rtol=1e-6, err_msg=item_id)
    for item_id in items.item_id[3:15]:  # unchanged: the parent's record as it was
        for a, b in zip(new_vectors[item_id], old_vectors[item_id]):
            np.testing.assert_array_equal(a, b)
    assert not np.allclose(new_vectors[items.item_id[0]][0], old_vectors[items.item_id[0]][0])
    assert not np.allclose(new_vectors[items.item_id[1]][1], old_vectors[items.item_id[1]][1])
    for a, b in zip(new_vectors[withdrawn], old_vectors[withdrawn]):
        np.testing.assert_array_equal(a, b)
    # Its own child: nothing changed, everything is copied.
    v3 = _embed(full, tmp_path / "v3", fake_encoder, "--parent", str(tmp_path / "v2"))
    assert (v3["version"], v3["counts"]["embedded"], v3["counts"]["copied"]) == (3, 0, 19)


def test_a_version_refuses_other_encoders_and_its_parent_folder(tiny_world, fake_encoder,
                                                                tmp_path):
    small = _small_world(tiny_world, str(tmp_path / "small"), n=6)
    _embed(small, tmp_path / "v1", fake_encoder)
    with pytest.raises(ValueError, match="must use its parent's encoders"):
        embed_items.run(["--dataset", small, "--text_model", fake_encoder("text", dim=4),
                         "--out", str(tmp_path / "v2"), "--parent", str(tmp_path / "v1")])
    with pytest.raises(ValueError, match="into a new folder"):
        _embed(small, tmp_path / "v1", fake_encoder, "--parent", str(tmp_path / "v1"))
    with pytest.raises(FileNotFoundError, match="manifest.json is missing"):
        _embed(small, tmp_path / "v2", fake_encoder, "--parent", str(tmp_path / "nothing"))
    assert not (tmp_path / "v2").exists()
