"""PPM: pre-trained plug-in CTR models, multimodal pre-training and pre-ranking in TensorFlow 2.

Importing :mod:`ppm` selects Keras 2 (``tf_keras``) as ``tf.keras`` for the ranking side, because
tensorflow-recommenders and tf-models-official are written against Keras 2. It does so by setting
``TF_USE_LEGACY_KERAS=1`` before TensorFlow resolves ``tf.keras``. The modality encoders
(``ppm.encoders``) import ``keras`` (Keras 3) and ``keras_hub`` directly and are unaffected: the
two worlds meet only through files (encoder SavedModels and the embedding cache). See
ARCHITECTURE.md, "Two Keras worlds, one boundary".

Import ``ppm`` before anything touches ``tf.keras``. If a Keras 3 ``tf.keras`` was already
resolved (another library used it first), ranking code would silently mix Keras versions, so a
warning is logged.
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
    tf = sys.modules.get("tensorflow")
    if tf is not None and "keras.src" in sys.modules and "tf_keras" not in sys.modules:
        logging.getLogger(__name__).warning(
            "TensorFlow was imported and Keras 3 loaded before ppm; if tf.keras already "
            "resolved to Keras 3, the ranking models will not work. Import ppm first.")


_select_legacy_keras()
