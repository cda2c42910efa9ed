"""Exported encoders follow the contract and equal the in-process models."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from ppm.encoders import contract, export, image, projection


def test_text_export_round_trip(tiny_text, tmp_path):
    pre, enc = tiny_text
    path = export.export_text(pre, enc, str(tmp_path / "text"), {"task": "qm"})
    fn, info = contract.load(path)
    assert info == {"modality": "text", "dim": 16, "sequence_length": 16, "task": "qm"}
    titles = ["red cotton sneakers", "", "Kraidur portable purple silk pillowcase A864"]
    np.testing.assert_allclose(fn(titles).numpy(), enc(pre(tf.constant(titles))).numpy(),
                               atol=1e-5)
    assert len(contract.fingerprint(path)) == 16
    # Re-exporting replaces the folder atomically and leaves no temporary folder behind.
    export.export_text(pre, enc, path)
    assert sorted(os.listdir(tmp_path)) == ["text"]


def test_image_export_round_trip(small_image, tiny_items, tmp_path):
    path = export.export_image(small_image, str(tmp_path / "image"))
    fn, info = contract.load(path)
    assert info["modality"] == "image" and info["image_size"] == 32 and info["dim"] == 16
    data = tiny_items["image"].dropna().head(4).tolist()
    expected = small_image(image.decode_images(tf.constant(data), 32)).numpy()
    np.testing.assert_allclose(fn(data).numpy(), expected, atol=1e-5)
    loaded = tf.saved_model.load(path)
    sig = loaded.signatures[contract.SIGNATURE]
    assert list(sig.structured_outputs) == [contract.OUTPUT_KEY]


def test_not_an_encoder(tmp_path):
    with pytest.raises(FileNotFoundError, match="not an exported ppm encoder"):
        contract.read_info(str(tmp_path))


def test_pca_projection_preserves_distances_of_low_rank_features(small_image):
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(200, 10)) @ rng.normal(size=(10, 128))  # rank 10 <= dim 16
    assert projection.pca_init(small_image, feats)
    out = small_image.projection(tf.constant(feats, tf.float32)).numpy()
    d_in = np.linalg.norm(feats[:20, None] - feats[None, :20], axis=-1)
    d_out = np.linalg.norm(out[:20, None] - out[None, :20], axis=-1)
    np.testing.assert_allclose(d_out, d_in, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-3)
    assert not projection.pca_init(small_image, feats[:, :8])  # fewer features than dim


def test_encoder_json_is_json(tiny_text, tmp_path):
    path = export.export_text(*tiny_text, str(tmp_path / "t"), {"eval": {"acc@1": 0.5}})
    with open(os.path.join(path, contract.INFO_FILE)) as f:
        assert json.load(f)["eval"] == {"acc@1": 0.5}


def test_text_export_loads_in_a_plain_tensorflow_process(tiny_text, tmp_path):
    """Readers (Beam workers, benchmarks) load encoders without keras-hub: the tokenizer's
    tensorflow-text ops must still be registered."""
    import subprocess
    import sys

    pre, enc = tiny_text
    path = export.export_text(pre, enc, str(tmp_path / "text"))
    expected = enc(pre(tf.constant(["red cotton sneakers"]))).numpy()
    code = ("import sys, numpy as np\n"
            "from ppm.encoders import contract\n"
            f"fn, _ = contract.load({path!r})\n"
            "assert 'keras_hub' not in sys.modules\n"
            "np.save(sys.argv[1], fn(['red cotton sneakers']).numpy())\n")
    out = str(tmp_path / "out.npy")
    proc = subprocess.run([sys.executable, "-c", code, out], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    np.testing.assert_allclose(np.load(out), expected, atol=1e-5)
