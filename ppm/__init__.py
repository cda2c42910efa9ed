"""PPM: pre-trained plug-in CTR models, multimodal pre-training and pre-ranking in TensorFlow 2.

Importing :mod:`ppm` selects Keras 2 (``tf_keras``) as ``tf.keras`` for the ranking side, because
tensorflow-recommenders and tf-models-official are written against Keras 2. It does so by setting
``TF_USE_LEGACY_KERAS=1`` before TensorFlow resolves ``tf.keras``. The modality encoders
(``ppm.encoders``) import ``keras`` (Keras 3) and ``keras_hub`` directly and are unaffected: the
two worlds meet only through files (encoder SavedModels and the embedding cache). See
docs/architecture.md, "Two Keras worlds, one boundary".

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
    resolved = _resolved_tf_keras()
    if resolved is not None and not resolved.startswith("tf_keras"):
        logging.getLogger(__name__).warning(
            "tf.keras was already resolved to %s before ppm was imported; the ranking "
            "models need Keras 2 (tf_keras). Import ppm before anything uses tf.keras (e.g. "
            "tensorflow_hub, which apache_beam.ml.inference.tensorflow_inference imports, "
            "reads tf.keras.version at import).", resolved)


def _resolved_tf_keras() -> str | None:
    """The package ``tf.keras`` already resolved to, or None while it is still unresolved.

    ``tf.keras`` starts as TensorFlow's ``KerasLazyLoader``, which picks Keras 2 or 3 (from
    ``TF_USE_LEGACY_KERAS``) on first attribute access and then replaces itself in
    ``tensorflow``'s namespace by the chosen module. So: TensorFlow not imported, or the loader
    not initialised -> None; an initialised loader -> the package it chose; a module -> its name.
    """
    tf = sys.modules.get("tensorflow")
    if tf is None:
        return None
    keras = tf.__dict__.get("keras")
    if keras is None:
        return None
    state = vars(keras)
    if "_tfll_initialized" in state:  # still the lazy loader
        if not state["_tfll_initialized"]:
            return None
        version = state.get("_tfll_keras_version")
        return "tf_keras" if version == "tf_keras" else state.get("__name__", str(version))
    return getattr(keras, "__name__", type(keras).__name__)


_select_legacy_keras()
