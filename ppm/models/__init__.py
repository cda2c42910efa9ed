"""Keras 2 ranking models: PPM (§3.1), URM and its ablations (§3.2, Table 3)."""

from ppm.models.factory import build_model, load_inputs
from ppm.models.ppm import PPM
from ppm.models.ranking import RankingModel
from ppm.models.urm import URM

__all__ = ["PPM", "URM", "RankingModel", "build_model", "load_inputs"]
