"""Modality encoders (Keras 3 + keras-hub): text (BERT) and image (ResNet) towers, their
pre-training tasks (query matching, entity prediction, semantic-aware contrastive learning)
and their export as SavedModels that map raw strings or image bytes to 64-d embeddings.

This package's ``__init__`` imports nothing heavy: ``ppm.encoders.contract`` is read by plain
TensorFlow code (the Beam embedding job, the cache) that must not load Keras 3. Modules that
build models (``text``, ``image``, ``contrastive``, ``tasks``, ``train``) import
:mod:`ppm.encoders.backend` first, which selects the TensorFlow backend of Keras 3.
"""
