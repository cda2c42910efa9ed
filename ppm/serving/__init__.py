"""Serving: TF Serving's gRPC API for development and CI, and a client for it.

Production serves the SavedModels of :mod:`ppm.export` with TensorFlow Serving
(``serving_config/``, README "Serving"). :mod:`ppm.serving.server` implements the same gRPC
calls (PredictionService ``Predict`` and ``GetModelMetadata``, ModelService ``GetModelStatus``)
over the same config file and version folders, because the TF Serving binary cannot be
installed from the package registries; :mod:`ppm.serving.client` works against either.
"""
