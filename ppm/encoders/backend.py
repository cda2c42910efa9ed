"""Selects the TensorFlow backend of Keras 3 before ``keras`` is imported.

keras-hub's BERT tokenizer runs tensorflow-text ops and the encoders are exported as TF
SavedModels, so the encoders need Keras 3 on its TensorFlow backend.
"""

import os

import ppm  # noqa: F401  (Keras 2 for tf.keras; Keras 3 stays available as `keras`)

_backend = os.environ.setdefault("KERAS_BACKEND", "tensorflow")
if _backend != "tensorflow":
    raise ImportError(f"KERAS_BACKEND={_backend!r}: ppm encoders need the 'tensorflow' backend")
