"""Keras 2 (`tf_keras`) layers of the ranking models, one concept per module.

Every layer is registered with ``register_keras_serializable(package="ppm")`` and has a
complete ``get_config`` (round-trip tests in ``tests/layers``).
"""

from ppm.layers.behavior_transformer import BehaviorTransformer
from ppm.layers.embedding_cache import CachedItemEmbedding
from ppm.layers.hash_embedding import HashEmbedding
from ppm.layers.id_embedding import IdEmbedding
from ppm.layers.mlp import MLP
from ppm.layers.mmoe import MMoE

__all__ = ["BehaviorTransformer", "CachedItemEmbedding", "HashEmbedding", "IdEmbedding", "MLP",
           "MMoE"]
