"""Keras 2 (`tf_keras`) layers of the ranking models, one concept per module.

Every layer is registered with ``register_keras_serializable(package="ppm")`` and has a
complete ``get_config`` (round-trip tests in ``tests/layers``).
"""

from ppm.layers.behavior_transformer import BehaviorTransformer
from ppm.layers.dice import Dice
from ppm.layers.embedding_cache import CachedItemEmbedding
from ppm.layers.fm import FactorizationMachine
from ppm.layers.hash_embedding import HashEmbedding
from ppm.layers.id_embedding import IdEmbedding
from ppm.layers.mian import MIANInterest
from ppm.layers.mlp import MLP
from ppm.layers.mmoe import MMoE
from ppm.layers.ple import PLE
from ppm.layers.session_interest import (
    SessionActivation,
    SessionInterestExtractor,
    SessionInterestInteractor,
    SessionSplit,
)
from ppm.layers.shared_bottom import SharedBottom
from ppm.layers.simtier import SimTier
from ppm.layers.target_attention import TargetAttention
from ppm.layers.wide import HashedLinear

__all__ = ["BehaviorTransformer", "CachedItemEmbedding", "Dice", "FactorizationMachine",
           "HashEmbedding", "HashedLinear", "IdEmbedding", "MIANInterest", "MLP", "MMoE", "PLE",
           "SessionActivation", "SessionInterestExtractor", "SessionInterestInteractor",
           "SessionSplit", "SharedBottom", "SimTier", "TargetAttention"]
