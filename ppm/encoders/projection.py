"""Initialisation of an encoder's projection to the cached dimension.

A randomly initialised ``Dense(hidden -> 64)`` on top of a pre-trained backbone distorts the
pre-trained similarity structure before any fine-tuning. Initialising it with the principal
components of the backbone's pooled features on the catalogue keeps as much of that structure
as 64 dimensions can hold, so the "pre-trained, no fine-tuning" encoder is a fair baseline and
fine-tuning starts from it.
"""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)


def pca_init(encoder, features: np.ndarray) -> bool:
    """Sets ``encoder.projection`` to the top principal components of ``features`` [N, C].

    The projection computes ``(x - mean) @ components``; its bias is ``-mean @ components``.

    Returns:
      True if initialised; False (projection left as is, with a log line) when there are fewer
      feature dimensions or samples than the output dimension.
    """
    features = np.asarray(features, np.float64)
    n, c = features.shape
    dim = encoder.dim
    if c < dim or n < dim:
        logger.info("PCA init skipped: %d samples of %d features for %d outputs", n, c, dim)
        return False
    mean = features.mean(axis=0)
    _, _, vt = np.linalg.svd(features - mean, full_matrices=False)
    components = vt[:dim].T  # [C, dim], orthonormal columns
    encoder.projection.build((None, c))
    encoder.projection.kernel.assign(components.astype(np.float32))
    encoder.projection.bias.assign((-mean @ components).astype(np.float32))
    return True
