"""Registered experiments and presets.

An experiment is a model choice (``ppm_pretrain``, ``urm`` and its plug-in modes and
ablations, each zoo model without and with the PPM plug-in, Taobao's ``make_pretrain`` and
its integration methods on DIN: ``din_vector``, ``din_simscore``, ``din_simtier``,
``din_make``, ``din_simtier_make``); a preset sizes it: ``paper``
carries PPM §4.2.3 (MirroredStrategy, global batch 20000, Adam 4e-4 -> 1e-4, N(0, 0.01)
initialisation, 64-d id and modal embeddings, 2 layers, 4 heads), ``demo`` fits a 2-core
CPU in minutes, ``tiny`` is for tests and smoke runs. Each is registered with
``official.core.exp_factory`` as ``<preset>_<experiment>`` (e.g. ``paper_urm``). Presets
derive from one another, so no config is copied.
"""

from __future__ import annotations

import os

import tensorflow as tf
import yaml
from official.core import exp_factory
from official.modeling import hyperparams

from ppm.configs import legacy
from ppm.configs.definitions import ExperimentConfig, adam_linear_decay
from ppm.configs.models import PRE_RANKING, PRETRAINED_MODULES, model_types

# The paper's URM: loaded, then fine-tuned, at a tenth of the model's learning rate. At the
# model's rate Adam moved an under-trained plug-in 22% (relative L2) in its first 40 steps and
# the head stopped using it (MovieLens-format click AUC 0.618, frozen 0.769); at a tenth it
# moved 2% and kept what it knew (0.767), and with a well-trained PPM a tenth costs nothing
# measurable (docs/benchmarks.md, "The plug-in on cold items").
PLUGIN_LEARNING_RATE_MULTIPLIER = 0.1
PPM_PLUGIN = {"kind": "ppm", "init": "finetune",
              "learning_rate_multiplier": PLUGIN_LEARNING_RATE_MULTIPLIER}
# PPM Table 2's baselines: every model type but URM and the pre-trained modules (a model's
# config block in ppm/configs/models.py is enough to give it the experiments <model> and
# <model>_ppm).
ZOO = tuple(t for t in model_types() if t not in ("urm", *PRETRAINED_MODULES, *PRE_RANKING))
# Taobao §6's integration methods on its ID-based production model, DIN (Table 3): the cached
# multimodal vectors as side information, and the MAKE plug-in of a make_pretrain run (fine-
# tuned at a tenth of the model's rate, as the PPM plug-in).
MAKE_PLUGIN = {**PPM_PLUGIN, "kind": "make"}
# MAKE's pre-training passes over the training window (Taobao §4.3 "multiple epochs"; Fig.
# 6(c) sweeps 0-8 with trainer.train_passes).
MAKE_PASSES = 4.0
TAOBAO = {
    "din_vector": {"multimodal": {"side": ["vector"]}},
    "din_simscore": {"multimodal": {"side": ["simscore"]}},
    "din_simtier": {"multimodal": {"side": ["simtier"]}},
    "din_make": {"plugin": MAKE_PLUGIN},
    "din_simtier_make": {"multimodal": {"side": ["simtier"]}, "plugin": MAKE_PLUGIN},
}

# GRACE (search pre-ranking, SIGIR 2024, arXiv:2405.05606): its Table 1 rows and Table 2
# ablations, the model's overrides. K = {10, 30, 50, 100} and lambda1 = lambda2 = 0.1 (§3.1.4);
# the paper gives no w_k: 1 each, so each top<k> task weighs lambda1 * w_k = 0.1. The
# distillation baseline regresses the ranking model's score with the same total weight as
# GRACE's rank tasks (0.4). model.grace.graph_embeddings is set when training (a
# ppm.graph.pretrain output).
GRACE_K = (10, 30, 50, 100)
GRACE_LAMBDA = 0.1
_FEEDBACK = ["click", "order"]
_RANK = {"tasks": _FEEDBACK + [f"top{k}" for k in GRACE_K],
         "task_weights": [1.0, 1.0] + [GRACE_LAMBDA] * len(GRACE_K)}
_PLE = {"type": "grace", "head": {"type": "ple"}}
_ID = {"item_representation": "id", "alignment_weight": 0.0}
_GENERALIZED = {"item_representation": "generalized", "alignment_weight": GRACE_LAMBDA}
GRACE = {
    "grace": {**_PLE, **_RANK, "grace": _GENERALIZED},
    "grace_ple": {**_PLE, "tasks": _FEEDBACK, "grace": _ID},
    "grace_mmoe": {**_PLE, "head": {"type": "mmoe"}, "tasks": _FEEDBACK, "grace": _ID},
    "grace_distillation": {**_PLE, "tasks": _FEEDBACK + ["ranker_score"],
                           "task_weights": [1.0, 1.0, GRACE_LAMBDA * len(GRACE_K)],
                           "grace": _ID},
    "grace_wo_consistency": {**_PLE, "tasks": _FEEDBACK, "grace": _GENERALIZED},
    "grace_wo_generalization": {**_PLE, **_RANK, "grace": _ID},
    "grace_pretrained_id": {**_PLE, **_RANK, "grace": {"item_representation": "pretrained",
                                                       "alignment_weight": 0.0}},
    "grace_wo_hash_id": {**_PLE, **_RANK, "grace": {**_GENERALIZED,
                                                    "item_representation": "attributes"}},
}
# §3.1.4: batch 1024, Adagrad at 0.05; the hash-ID table 3M x 32 (§3.3.1). The demo's table
# has a quarter as many rows as the search demo world has items (4,000), as the paper's has a
# tenth of its 30M. The demo keeps the demo preset's Adam (2e-3 decaying to 5e-4): on the search
# demo world Adagrad at 0.05 learnt nothing in a third of a pass (training AUC 0.50 on every
# task, at init_stddev 0.01, 0.05 and 0.2, and with initial_accumulator_value 0.001), where Adam
# at 2e-3 reached a click AUC of 0.82 (docs/benchmarks.md, "GRACE").
_ADAGRAD = {"optimizer": {"type": "adagrad"},
            "learning_rate": {"type": "constant", "constant": {"learning_rate": 0.05}}}
GRACE_PRESETS = {
    "paper": {"data": {"global_batch_size": 1024},
              "model": {"id_dim": 32, "grace": {"hash_buckets": 3_000_000}},
              "trainer": {"optimizer": _ADAGRAD}},
    "demo": {"data": {"global_batch_size": 1024},
             "model": {"id_dim": 16, "grace": {"hash_buckets": 1000, "query_hash_bins": 5000}},
             "trainer": {"checkpoint_interval": 200}},
    "tiny": {"model": {"grace": {"hash_buckets": 100, "query_hash_bins": 500}}},
}

# experiment -> overrides of the preset (a plug-in's checkpoint is set when training: the
# demo pre-trains one, elsewhere --params_override model.plugin.checkpoint=RUN)
EXPERIMENTS = {
    "ppm_pretrain": {"model": {"type": "ppm", "tasks": ["click"]},
                     "data": {"train_window": "pretrain"}},
    # MAKE pre-trains on the ID model's own training window (Taobao §4.3)
    "make_pretrain": {"model": {"type": "make", "tasks": ["click"]}},
    "urm": {"model": {"type": "urm", "plugin": PPM_PLUGIN}},
    "urm_ppm_frozen": {"model": {"type": "urm", "plugin": {"kind": "ppm", "init": "frozen"}}},
    # random: the module learns from scratch, at the model's rate
    "urm_ppm_random": {"model": {"type": "urm", "plugin": {"kind": "ppm", "init": "random"}}},
    "urm_wo_ppm": {"model": {"type": "urm"}},
    "base": {"model": {"type": "urm", "urm": {"modal_in_idsm": True}}},
}
for _model in ZOO:  # each baseline without and with the PPM plug-in (Table 2)
    EXPERIMENTS[_model] = {"model": {"type": _model}}
    EXPERIMENTS[f"{_model}_ppm"] = {"model": {"type": _model, "plugin": PPM_PLUGIN}}
for _name, _model_override in TAOBAO.items():
    EXPERIMENTS[_name] = {"model": {"type": "din", **_model_override}}
for _name, _model_override in GRACE.items():
    EXPERIMENTS[_name] = {"model": _model_override}
PRESETS = ("paper", "demo", "tiny")
RUN_CONFIG_FILE = "config.yaml"  # the resolved config, in every run folder


def paper() -> ExperimentConfig:
    """PPM §4.2.3, trained for one pass over the training window.

    The paper gives no step count; one pass is how industrial CTR models are trained (see
    :func:`demo`), and a length in passes means the same on any dataset.
    """
    c = ExperimentConfig()
    c.override({"trainer": {"train_passes": 1.0}})
    return c


def demo() -> ExperimentConfig:
    """Sized for the demo world on a 2-core CPU (minutes, not hours).

    One pass over the training window (``trainer.train_passes``; on the demo world's
    train_large window, 82,800 examples at batch 512 = 162 steps), as industrial CTR models are
    trained: ID embeddings overfit from the second epoch on (Zhang et al., "Towards
    understanding the overfitting phenomenon of deep click-through rate models", CIKM 2022; on
    the demo world three passes lowered URM's test AUC). PPM pre-training makes three passes
    over the pretrain window (about 980 steps on the demo world): the ID-free model
    sits on a loss plateau for its first ~300 steps, and after one pass it is barely past it
    (test click AUC 0.678 after one pass, 0.738 after three; benchmarks/table3.py).
    """
    c = paper()
    c.override({
        "data": {"global_batch_size": 512, "max_history": 20, "shuffle_buffer": 20_000},
        "model": {"id_dim": 16, "transformer": {"num_layers": 1, "intermediate_size": 64},
                  "ppm": {"head_units": [64, 32]},
                  "head": {"expert_units": [64], "tower_units": [32], "num_experts": 3},
                  "wide_deep": {"hash_bins": 20_000}, "deepfm": {"hash_bins": 20_000},
                  "din": {"attention_units": [32, 16]},
                  "dsin": {"num_heads": 2, "lstm_units": 16},
                  "mian": {"num_layers": 1, "num_heads": 2, "intermediate_size": 64},
                  "make": {"attention_units": [32, 16], "mlp_units": [64, 32, 16]}},
        "trainer": {"train_passes": 1.0, "checkpoint_interval": 40,
                    "optimizer": _linear_decay(2e-3, 5e-4)},
    })
    return c


def tiny() -> ExperimentConfig:
    """For tests: a handful of steps on a tiny world."""
    c = demo()
    c.override({
        "data": {"global_batch_size": 64, "max_history": 0, "shuffle_buffer": 1000},
        "model": {"id_dim": 8, "profile_dim": 4, "profile_hash_bins": 16,
                  "transformer": {"num_heads": 2, "intermediate_size": 16, "dropout": 0.0},
                  "ppm": {"head_units": [16, 8]},
                  "head": {"expert_units": [16], "tower_units": [8], "num_experts": 2},
                  "wide_deep": {"hash_bins": 1000}, "deepfm": {"hash_bins": 1000},
                  "din": {"attention_units": [8]},
                  "dsin": {"max_sessions": 3, "session_length": 4, "lstm_units": 4},
                  "mian": {"num_layers": 1, "intermediate_size": 16},
                  "make": {"attention_units": [8], "mlp_units": [16, 8, 4]},
                  "multimodal": {"num_tiers": 4}},
        "trainer": {"train_passes": 0.0, "train_steps": 4, "checkpoint_interval": 2,
                    "eval_batch_size": 256},
    })
    return c


def _linear_decay(start: float, end: float) -> dict:
    return {"learning_rate": adam_linear_decay(start, end).learning_rate.as_dict()}


_PRESET_FACTORIES = {"paper": paper, "demo": demo, "tiny": tiny}


def _factory(experiment: str, preset: str):
    def make() -> ExperimentConfig:
        c = _PRESET_FACTORIES[preset]()
        c.override(EXPERIMENTS[experiment])
        if c.model.type == "ppm" and preset == "demo":
            # three passes over the pretrain window, at least 1000 steps (see demo())
            c.override({"trainer": {"train_passes": 3.0, "min_train_steps": 1000,
                                    "checkpoint_interval": 160}})
        if c.model.type == "make" and preset != "tiny":
            c.override({"trainer": {"train_passes": MAKE_PASSES}})
        if c.model.type == "grace":
            c.override(GRACE_PRESETS[preset])
        return c
    return make


for _experiment in EXPERIMENTS:
    for _preset in PRESETS:
        exp_factory.register_config_factory(f"{_preset}_{_experiment}")(
            _factory(_experiment, _preset))


def data_paths(root: str) -> dict:
    """The ``data`` fields for a folder laid out like ``runs/demo`` (``python -m ppm.demo``):
    ``dataset/``, ``examples/`` and ``embeddings/`` under ``root``."""
    return {name: os.path.join(root, name) for name in ("dataset", "examples", "embeddings")}


def get_config(experiment: str, preset: str = "demo") -> ExperimentConfig:
    """The registered config ``<preset>_<experiment>`` (or ``experiment`` if already full).

    Raises:
      ValueError: unknown experiment or preset.
    """
    name = experiment if experiment.split("_", 1)[0] in PRESETS else f"{preset}_{experiment}"
    prefix, _, base = name.partition("_")
    if prefix not in PRESETS or base not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {experiment!r} (preset {preset!r}); experiments: "
                         f"{sorted(EXPERIMENTS)}, presets: {list(PRESETS)}")
    return exp_factory.get_exp_config(name)


def resolve(experiment: str, preset: str = "demo", config_files=(),
            params_override: str = "", validate: bool = True) -> ExperimentConfig:
    """A registered config with YAML files, then ``params_override``, applied; validated.

    Args:
      experiment: e.g. ``urm`` or ``paper_urm``.
      preset: ``paper``, ``demo`` or ``tiny`` (ignored if ``experiment`` names one).
      config_files: YAML files, applied in order.
      params_override: ``"a.b=1,c.d=x"``, or a YAML/JSON string.
      validate: check that the config can be trained.

    Raises:
      ValueError: unknown names or fields, or a config that cannot be trained.
    """
    c = get_config(experiment, preset)
    for path in config_files or ():
        c = hyperparams.override_params_dict(c, path, is_strict=True)
    if params_override:
        c = hyperparams.override_params_dict(c, params_override, is_strict=True)
    if validate:
        c.validate()
    return c


def read_run_config(run_dir: str) -> ExperimentConfig:
    """The resolved config that ``python -m ppm.train`` wrote into a run folder.

    Raises:
      FileNotFoundError: ``run_dir`` is not a training run.
    """
    path = os.path.join(run_dir, RUN_CONFIG_FILE)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{path} is missing: {run_dir} is not a training run")
    with tf.io.gfile.GFile(path) as f:
        written = yaml.safe_load(f) or {}
    return hyperparams.override_params_dict(ExperimentConfig(), legacy.upgrade(written),
                                            is_strict=True)
