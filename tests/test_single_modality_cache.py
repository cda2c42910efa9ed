"""A cache of one modality (a dataset without images, such as MIND, or without titles).

``beam_jobs.embed_items`` with only ``--text_model`` (or only ``--image_model``) writes a cache
whose manifest lists that modality; it loads with a matrix of that modality alone, and PPM and
URM train, predict and export on it, the SavedModel's outputs equal to the in-process model's.
"""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

import ppm  # noqa: F401
from beam_jobs import embed_items
from ppm import evaluate, export, train
from ppm.data import cache
from ppm.layers import CachedItemEmbedding
from tests.beam_jobs.test_embed_items import DIM, _small_world, write_fake_encoder
from tests.conftest import CACHE_DIM, write_fake_cache
from tests.ranking_fixtures import one_batch, serving_names, tiny_config

ONE = [("text",), ("image",)]
# Training on an image-only cache repeats the text-only path with the other column block.
ONE_TRAINED = [("text",), pytest.param(("image",), marks=pytest.mark.slow)]


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    return {m: write_fake_encoder(str(tmp_path_factory.mktemp(f"enc_{m}")), m)
            for m in ("text", "image")}


@pytest.mark.parametrize("modality", ["text", "image"])
def test_embed_items_with_one_encoder_writes_a_one_modality_cache(tiny_world, encoders,
                                                                  modality, tmp_path):
    small = _small_world(tiny_world, str(tmp_path / "small"), n=12)
    out = str(tmp_path / "cache")
    manifest = embed_items.run(["--dataset", small, f"--{modality}_model", encoders[modality],
                                "--out", out, "--num_shards", "1"])
    other = "image" if modality == "text" else "text"
    assert manifest["modalities"] == [modality]
    assert manifest[f"{other}_encoder"] is None
    assert manifest[f"{modality}_encoder"]["path"] == encoders[modality]
    assert manifest["counts"]["items"] == 12
    assert not any(other_key in manifest["counts"]
                   for other_key in (["with_image", "missing_image", "undecodable_image"]
                                     if other == "image" else ["with_title", "missing_title"]))
    assert list(manifest["inference"]) == [modality]
    assert cache.read_manifest(out)["modalities"] == [modality]

    # The records carry that modality's features only.
    shard = os.path.join(out, "part-00000-of-00001.tfrecord")
    record = tf.train.Example.FromString(next(iter(tf.data.TFRecordDataset(shard))).numpy())
    emb, flag = cache.FEATURES_OF[modality]
    assert sorted(record.features.feature) == sorted(["item_id", emb, flag,
                                                     cache.FINGERPRINT_FEATURE])

    got = cache.load_cache(out, expected_dim=DIM)
    assert got.modalities == (modality,) and got.dim == DIM and got.width == DIM
    assert got.matrix().shape == (12, DIM)
    present = got.title if modality == "text" else got.image
    np.testing.assert_array_equal(got.matrix(), present)
    assert np.abs(present).sum() > 0
    absent_flags = got.has_image if modality == "text" else got.has_title
    assert not absent_flags.any()
    layer = CachedItemEmbedding.from_cache(got)
    assert layer.width == DIM
    assert layer(tf.constant([got.ids[0], "unknown"]))["embedding"].shape == (2, DIM)


def test_embed_items_needs_at_least_one_encoder(tiny_world, tmp_path, capsys):
    with pytest.raises(SystemExit):
        embed_items.parse_args(["--dataset", tiny_world, "--out", str(tmp_path / "o")])
    assert "--text_model, --image_model or both" in capsys.readouterr().err


def test_modalities_are_part_of_the_cache_identity(tiny_world, tmp_path):
    text = write_fake_cache(tiny_world, str(tmp_path / "text"), modalities=("text",))
    both = write_fake_cache(tiny_world, str(tmp_path / "both"))
    text_id = cache.identity(cache.read_manifest(text))
    assert text_id["modalities"] == ["text"] and text_id["image_encoder"]["fingerprint"] is None
    # An identity recorded before the key existed means both modalities.
    legacy = {k: v for k, v in cache.identity(cache.read_manifest(both)).items()
              if k != "modalities"}
    assert len(cache.load_cache(both, expected_manifest=legacy)) > 0
    with pytest.raises(cache.CacheMismatchError, match=r"holds modalities \['text', 'image'\] "
                       r"but the expected manifest has \['text'\]"):
        cache.load_cache(both, expected_manifest=text_id)
    with pytest.raises(cache.CacheMismatchError, match=r"holds modalities \['text'\]"):
        cache.load_cache(text, expected_manifest=legacy)


def test_bad_modalities_are_refused(tiny_world, tmp_path):
    path = write_fake_cache(tiny_world, str(tmp_path / "c"), modalities=("text",))
    manifest_path = os.path.join(path, cache.MANIFEST_FILE)
    with open(manifest_path) as f:
        manifest = json.load(f)
    for bad in ([], ["audio"], ["text", "text"], "text"):
        manifest["modalities"] = bad
        with open(manifest_path, "w") as f:
            json.dump(manifest, f)
        with pytest.raises(cache.CacheMismatchError, match="manifest.json: modalities"):
            cache.read_manifest(path)
    with pytest.raises(ValueError, match="distinct modalities"):
        CachedItemEmbedding(["a"], dim=2, modalities=["video"])


def test_layer_config_keeps_the_modalities():
    layer = CachedItemEmbedding(["a", "b"], dim=3, embeddings=np.ones((2, 3)),
                                flags=[[1, 0], [1, 0]], modalities=["image"])
    clone = CachedItemEmbedding.from_config(layer.get_config())
    assert clone.modalities == ("image",) and clone.width == 3
    with pytest.raises(ValueError, match=r"embeddings must be \[2, 3\]"):
        CachedItemEmbedding(["a", "b"], dim=3, embeddings=np.ones((2, 6)), modalities=["text"])


@pytest.mark.parametrize("modalities", ONE_TRAINED, ids=lambda m: m[0])
def test_ppm_and_urm_train_predict_and_export(modalities, tiny_world, tiny_examples,
                                              encoders, tmp_path):
    one = write_fake_cache(tiny_world, str(tmp_path / "cache"), modalities=modalities)
    ppm_dir = str(tmp_path / "ppm")
    train.train(tiny_config("ppm_pretrain", tiny_world, tiny_examples, one), ppm_dir,
                verbose=0)
    run = str(tmp_path / "urm")
    train.train(tiny_config("urm", tiny_world, tiny_examples, one,
                            model={"plugin": {"checkpoint": ppm_dir}}), run, verbose=0)

    model, inputs, _ = evaluate.load_model(run)
    assert inputs.cache.modalities == modalities
    layers = [m for m in model.submodules if isinstance(m, CachedItemEmbedding)]
    assert layers and all(layer.modalities == modalities and layer.width == CACHE_DIM
                          for layer in layers)
    (feats, _), schema = one_batch(tiny_examples, 16, "test")
    expected = model.probabilities(feats)
    assert all(np.isfinite(v.numpy()).all() for v in expected.values())

    version = export.export(run, "urm", str(tmp_path / "saved_models"))
    serve = tf.saved_model.load(version).signatures[export.SIGNATURE]
    got = serve(**{k: feats[k] for k in serving_names(schema)})
    for task, p in expected.items():
        np.testing.assert_allclose(got[f"p_{task}"].numpy(), p.numpy(), rtol=1e-5, atol=1e-6)

    # The uncached variant (both encoders in the request path) refuses it by name.
    from ppm.serving import uncached

    with pytest.raises(ValueError, match=rf"holds \('{modalities[0]}',\) only"):
        uncached.UncachedServingModule(model, inputs.schema, encoders["text"],
                                       encoders["image"],
                                       os.path.join(tiny_world, "items.parquet"))

    # A cache of both modalities cannot be plugged into the run trained on one.
    both = write_fake_cache(tiny_world, str(tmp_path / "both"))
    with pytest.raises(cache.CacheMismatchError, match="modalities"):
        cache.load_cache(both, expected_manifest=cache.identity(inputs.cache.manifest))


def test_mind_has_a_text_only_route(tmp_path, encoders):
    """MIND publishes no images: its cache is built from the text encoder alone."""
    from ppm.data.public import mind
    from tests.data.public.test_mind import BEHAVIORS, NEWS, write_split

    src = write_split(tmp_path / "MINDsmall_train", BEHAVIORS, NEWS)
    dataset = str(tmp_path / "dataset")
    mind.convert(src, dataset)
    out = str(tmp_path / "cache")
    manifest = embed_items.run(["--dataset", dataset, "--text_model", encoders["text"],
                                "--out", out])
    assert manifest["modalities"] == ["text"]
    counts = manifest["counts"]
    assert counts["with_title"] > 0 and "with_image" not in counts
    assert counts["with_title"] + counts["missing_title"] == counts["items"]
    got = cache.load_cache(out)
    assert got.has_title.sum() == counts["with_title"] and not got.has_image.any()
    assert got.matrix().shape == (len(got), DIM)
