"""PPM: pre-trained plug-in CTR models, multimodal pre-training and pre-ranking in TensorFlow 2.

Importing :mod:`ppm` selects Keras 2 (``tf_keras``) as ``tf.keras`` for the ranking side, because
tensorflow-recommenders and tf-models-official are written against Keras 2. It does so by setting
``TF_USE_LEGACY_KERAS=1`` before TensorFlow resolves ``tf.keras``. The modality encoders
(``ppm.encoders``) import ``keras`` (Keras 3) and ``keras_hub`` directly and are unaffected: the
two worlds meet only through files (encoder SavedModels and the embedding cache). See
ARCHITECTURE.md, "Two Keras worlds, one boundary".

Import ``ppm`` before anything uses ``tf.keras`` (importing TensorFlow first is fine: its
``tf.keras`` resolves lazily). If ``tf.keras`` was already resolved to Keras 3, ranking code
would silently mix Keras versions, so a warning is logged.
"""

import logging
import os
import sys

__version__ = "0.1.0"

_LEGACY_KERAS_ENV = "TF_USE_LEGACY_KERAS"


def _select_legacy_keras() -> None:
    value = os.environ.get(_LEGACY_KERAS_ENV)
    if value is not None and value.strip().lower() in ("0", "false", "no"):
        raise ImportError(
            f"{_LEGACY_KERAS_ENV}={value!r} is set, but the ranking models of ppm need "
            f"Keras 2 (tf_keras). Unset it or set {_LEGACY_KERAS_ENV}=1.")
    os.environ[_LEGACY_KERAS_ENV] = "1"
    # tf.keras is a lazy loader that picks Keras 2 or 3 on first use (then it is replaced by
    # the chosen module); warn only if it was already resolved to something but tf_keras.
    tf = sys.modules.get("tensorflow")
    resolved = tf.__dict__.get("keras") if tf is not None else None
    if (resolved is not None and resolved.__dict__.get("_tfll_initialized", True)
            and not resolved.__name__.startswith("tf_keras")):
        logging.getLogger(__name__).warning(
            "tf.keras was already resolved to %s before ppm was imported; the ranking "
            "models need Keras 2 (tf_keras). Import ppm before anything uses tf.keras.",
            resolved.__name__)

_select_legacy_keras()
