"""The contract of an exported encoder SavedModel, shared by its writer and its readers.

Encoders are Keras 3 (``ppm.encoders.text`` / ``image``), their readers (``beam_jobs.embed_items``,
benchmarks, the embedding cache) are plain TensorFlow: the two meet only through this folder
layout (ARCHITECTURE.md, "Two Keras worlds, one boundary")::

    <encoder dir>/
      saved_model.pb, variables/, fingerprint.pb   a TF SavedModel
      assets.extra/encoder.json                    modality, dim, preset, task, ...

The SavedModel has one signature, ``serving_default``, taking ``inputs``: ``tf.string [None]``
(raw titles for text, encoded JPEG/PNG bytes for images) and returning ``embedding``:
``float32 [None, dim]``, L2-normalised. Tokenisation and image decoding happen inside the graph.

This module imports no Keras.
"""

from __future__ import annotations

import json
import os

SIGNATURE = "serving_default"
INPUT_KEY = "inputs"
OUTPUT_KEY = "embedding"
INFO_FILE = os.path.join("assets.extra", "encoder.json")
MODALITIES = ("text", "image")
DEFAULT_DIM = 64


def read_info(path: str) -> dict:
    """Reads ``assets.extra/encoder.json`` of an exported encoder.

    Raises:
      FileNotFoundError: ``path`` is not an exported encoder.
    """
    import tensorflow as tf

    info_path = os.path.join(path, INFO_FILE)
    if not tf.io.gfile.exists(info_path):
        raise FileNotFoundError(
            f"{path} is not an exported ppm encoder: {INFO_FILE} is missing (export encoders "
            "with `python -m ppm.encoders.train`)")
    with tf.io.gfile.GFile(info_path) as f:
        return json.load(f)


def fingerprint(path: str) -> str:
    """A stable identifier of a SavedModel's content (its saved_model checksum)."""
    import tensorflow as tf

    fp = tf.saved_model.experimental.read_fingerprint(path)
    return f"{fp.saved_model_checksum:016x}"


def load(path: str):
    """Loads an exported encoder. Returns ``(fn, info)``; ``fn(tf.string [n]) -> [n, dim]``."""
    import tensorflow as tf

    info = read_info(path)
    loaded = tf.saved_model.load(path)
    signature = loaded.signatures[SIGNATURE]

    def fn(inputs):
        return signature(**{INPUT_KEY: tf.convert_to_tensor(inputs, tf.string)})[OUTPUT_KEY]

    fn.loaded = loaded  # keep the resources alive as long as fn
    return fn, info
