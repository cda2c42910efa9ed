"""Experiment configs: typed dataclasses registered by name (tf-models-official machinery).

``get_config("urm", "demo")`` returns the registered ``demo_urm`` config; a YAML file or a
``--params_override`` string changes any field (see :func:`ppm.configs.experiments.resolve`).
"""

from ppm.configs.definitions import DataConfig, ExperimentConfig, RuntimeConfig, TrainerConfig
from ppm.configs.experiments import (
                                     EXPERIMENTS,
                                     GRACE,
                                     PRESETS,
                                     RUN_CONFIG_FILE,
                                     TAOBAO,
                                     ZOO,
                                     data_paths,
                                     get_config,
                                     read_run_config,
                                     resolve,
)
from ppm.configs.models import (
    MODALITIES,
    PRE_RANKING,
    GraceConfig,
    HeadConfig,
    MAKEConfig,
    ModelConfig,
    MultimodalConfig,
    PluginConfig,
    TransformerConfig,
)

__all__ = ["DataConfig", "ExperimentConfig", "ModelConfig", "RuntimeConfig", "TrainerConfig",
           "TransformerConfig", "HeadConfig", "PluginConfig", "MAKEConfig", "MultimodalConfig",
           "GraceConfig", "MODALITIES", "EXPERIMENTS", "PRESETS", "TAOBAO", "ZOO", "GRACE",
           "PRE_RANKING",
           "RUN_CONFIG_FILE", "data_paths", "get_config", "read_run_config", "resolve"]
