"""Image tower: decoding in the graph, unit vectors, serialization."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from ppm.encoders import image
from ppm.encoders.backend import keras


def _encoded(fmt, size=(20, 30), colour=(200, 10, 10)):
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format=fmt)
    return buf.getvalue()


def test_decode_png_and_jpeg_and_resize():
    out = image.decode_images(tf.constant([_encoded("PNG"), _encoded("JPEG")]), 16).numpy()
    assert out.shape == (2, 16, 16, 3)
    np.testing.assert_allclose(out[0, 5, 5], [200, 10, 10], atol=1)
    np.testing.assert_allclose(out[1, 5, 5], [200, 10, 10], atol=12)  # JPEG is lossy


def test_undecodable_bytes_raise():
    with pytest.raises(tf.errors.InvalidArgumentError):
        image.decode_images(tf.constant([b"not an image"]), 16)


def test_unit_vectors_and_round_trip(small_image, tiny_items, tmp_path):
    imgs = image.decode_images(tf.constant(tiny_items["image"].dropna().head(3).tolist()), 32)
    out = small_image(imgs).numpy()
    assert out.shape == (3, 16)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    path = str(tmp_path / "image.keras")
    small_image.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_allclose(restored(imgs).numpy(), out, atol=1e-5)


def test_pixel_normalization_hand_computed():
    x = tf.fill([1, 1, 1, 3], 255.0)
    expected = (1.0 - np.array(image.IMAGENET_MEAN)) / np.array(image.IMAGENET_STD)
    np.testing.assert_allclose(image.PixelNormalization()(x).numpy()[0, 0, 0], expected,
                               rtol=1e-6)
