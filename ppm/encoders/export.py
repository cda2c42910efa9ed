"""Exports encoders as SavedModels that follow :mod:`ppm.encoders.contract`.

Text: raw title strings -> tokenizer (in graph) -> :class:`TextEncoder` -> [B, dim].
Image: encoded image bytes -> decode and resize (in graph) -> :class:`ImageEncoder` -> [B, dim].

The folder is written next to its destination and renamed into place, so a reader never sees
half an encoder.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import tensorflow as tf

from ppm.encoders import contract
from ppm.encoders.backend import keras
from ppm.encoders.image import ImageEncoder, decode_images
from ppm.encoders.text import TextEncoder


def _write(archive: keras.export.ExportArchive, path: str, info: dict) -> str:
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-", dir=parent)
    try:
        archive.write_out(tmp, verbose=False)
        os.makedirs(os.path.join(tmp, "assets.extra"), exist_ok=True)
        with open(os.path.join(tmp, contract.INFO_FILE), "w") as f:
            json.dump(info, f, indent=2, sort_keys=True)
        if os.path.exists(path):
            shutil.rmtree(path)
        os.rename(tmp, path)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
    return path


def export_text(preprocessor, encoder: TextEncoder, path: str, info: dict | None = None) -> str:
    """Writes the text encoder (strings -> embeddings). Returns the absolute path."""
    encoder(preprocessor(tf.constant([""])))  # builds an encoder that was never called
    archive = keras.export.ExportArchive()
    archive.track(preprocessor)
    archive.track(encoder)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=contract.INPUT_KEY)])
    def serve(inputs):
        return {contract.OUTPUT_KEY: encoder(preprocessor(inputs), training=False)}

    archive.add_endpoint(contract.SIGNATURE, serve)
    meta = {"modality": "text", "dim": encoder.dim,
            "sequence_length": int(preprocessor.sequence_length)}
    meta.update(info or {})
    return _write(archive, path, meta)


def export_image(encoder: ImageEncoder, path: str, info: dict | None = None) -> str:
    """Writes the image encoder (encoded bytes -> embeddings). Returns the absolute path."""
    encoder(tf.zeros([1, encoder.image_size, encoder.image_size, 3]))  # builds it if needed
    archive = keras.export.ExportArchive()
    archive.track(encoder)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=contract.INPUT_KEY)])
    def serve(inputs):
        images = decode_images(inputs, encoder.image_size)
        return {contract.OUTPUT_KEY: encoder(images, training=False)}

    archive.add_endpoint(contract.SIGNATURE, serve)
    meta = {"modality": "image", "dim": encoder.dim, "image_size": encoder.image_size}
    meta.update(info or {})
    return _write(archive, path, meta)
