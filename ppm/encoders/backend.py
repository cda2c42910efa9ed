"""Selects the TensorFlow backend of Keras 3 and imports ``keras`` for the encoders.

keras-hub's BERT tokenizer runs tensorflow-text ops and the encoders are exported as TF
SavedModels, so the encoders need Keras 3 on its TensorFlow backend. Encoder modules import
Keras as ``from ppm.encoders.backend import keras, keras_hub``, so the backend is chosen
before Keras loads, whatever order an import sorter puts the other imports in.
"""

import os

import ppm  # noqa: F401  (Keras 2 for tf.keras; Keras 3 stays available as `keras`)

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402

if keras.backend.backend() != "tensorflow":
    raise ImportError(f"Keras 3 runs on the {keras.backend.backend()!r} backend; ppm encoders "
                      "need 'tensorflow' (set KERAS_BACKEND=tensorflow before importing keras)")

import keras_hub  # noqa: E402  (after the backend check: it builds on keras)

__all__ = ["keras", "keras_hub"]
