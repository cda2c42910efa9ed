"""The contract of an exported encoder SavedModel, shared by its writer and its readers.

Encoders are Keras 3 (``ppm.encoders.text`` / ``image``), their readers (``beam_jobs.embed_items``,
benchmarks, the embedding cache) are plain TensorFlow: the two meet only through this folder
layout (docs/architecture.md, "Two Keras worlds, one boundary")::

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

from ppm.data.canonical import file_exists, is_remote, open_file

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
    import tensorflow_text  # noqa: F401  (registers the WordPiece ops of text encoders)

    info = read_info(path)
    loaded = tf.saved_model.load(path)
    signature = loaded.signatures[SIGNATURE]

    def fn(inputs):
        return signature(**{INPUT_KEY: tf.convert_to_tensor(inputs, tf.string)})[OUTPUT_KEY]

    fn.loaded = loaded  # keep the resources alive as long as fn
    return fn, info


def signature_problem(path: str) -> str | None:
    """Why the SavedModel's ``serving_default`` does not follow the contract, or None.

    Reads ``saved_model.pb`` only (loading a large encoder here would cost seconds).
    """
    from tensorflow.core.protobuf import saved_model_pb2
    from tensorflow.python.framework import dtypes

    sm = saved_model_pb2.SavedModel()
    with open_file(os.path.join(path, "saved_model.pb")) as f:
        sm.ParseFromString(f.read())
    signatures = sm.meta_graphs[0].signature_def if sm.meta_graphs else {}
    if SIGNATURE not in signatures:
        return f"no {SIGNATURE!r} signature (it has {sorted(signatures)})"
    sig = signatures[SIGNATURE]
    if INPUT_KEY not in sig.inputs or OUTPUT_KEY not in sig.outputs:
        return (f"{SIGNATURE} maps {sorted(sig.inputs)} -> {sorted(sig.outputs)}, "
                f"expected {INPUT_KEY!r} -> {OUTPUT_KEY!r}")
    if sig.inputs[INPUT_KEY].dtype != dtypes.string.as_datatype_enum:
        return f"input {INPUT_KEY!r} is not tf.string"
    return None


def describe(path: str, modality: str, flag: str = "encoder") -> dict:
    """Checks an exported encoder and returns its manifest entry (path, fingerprint, info).

    Raises:
      FileNotFoundError: ``path`` is not an exported encoder.
      ValueError: it is an encoder of another modality, or breaks the contract.
    """
    if not file_exists(os.path.join(path, "saved_model.pb")):
        raise FileNotFoundError(f"{flag} {path} is not an exported encoder: saved_model.pb is "
                                "missing")
    try:
        info = read_info(path)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{flag}: {e}") from e
    if info.get("modality") != modality:
        raise ValueError(f"{flag} {path} is a {info.get('modality')!r} encoder (its "
                         f"{INFO_FILE}), expected {modality!r}")
    if not isinstance(info.get("dim"), int) or info["dim"] < 1:
        raise ValueError(f"{flag} {path}: {INFO_FILE} has no positive integer 'dim' "
                         f"({info.get('dim')!r})")
    problem = signature_problem(path)
    if problem:
        raise ValueError(f"{flag} {path} does not follow the encoder contract: {problem}")
    try:
        checksum = fingerprint(path)
    except Exception as e:  # TF raises several kinds for a missing or bad file
        raise ValueError(f"{flag} {path}: cannot read the SavedModel fingerprint "
                         f"(fingerprint.pb; re-export with TF >= 2.12): {e}") from e
    return {"path": path if is_remote(path) else os.path.abspath(path),
            "fingerprint": checksum, "info": info}
