"""Config dataclasses of ranking experiments (PPM §4.2.3 for the paper's values).

Built on ``official.modeling.hyperparams.Config`` (tf-models-official), so every field is typed,
``override``-able from a dict, YAML file or ``--params_override`` string, and serialisable to
the ``config.yaml`` written into each run folder.
"""

import dataclasses

from official.modeling import hyperparams, optimization

from ppm.configs.models import ModelConfig

OPTIMIZERS = ("adam", "adagrad", "sgd", "rmsprop", "adamw_experimental")
STRATEGIES = ("mirrored", "multi_worker_mirrored", "parameter_server")


@dataclasses.dataclass
class DataConfig(hyperparams.Config):
    """Where the inputs are and how they are batched.

    The three paths have no default: a config never reads a folder relative to the working
    directory unless told to (``python -m ppm.train`` without them uses the demo's folders under
    ``--run_root``).

    Attributes:
      dataset: the canonical dataset (evaluation reads the synthetic world's true
        probabilities from it for the oracle AUC, when present).
      examples: output folder of ``beam_jobs.build_examples`` (windows, vocab/, schema.json).
      embeddings: the embedding cache of ``beam_jobs.embed_items``.
      train_window: example window to train on (``pretrain`` for PPM, ``train_large`` or
        ``train_small`` for URM: PPM Table 1).
      eval_window: window that ``ppm.evaluate`` scores by default.
      global_batch_size: examples per step over all replicas (PPM: 20000).
      max_history: keep the most recent N history items (0: all that the examples hold).
      shuffle_buffer: examples in the shuffle buffer.
      seed: shuffle and initialisation seed.
      max_missing_cache_fraction: training, evaluation and export refuse an embedding cache
        that lacks more than this fraction of the catalogue's items (any missing item is
        reported: it would be scored with the cache's unknown row).
    """

    dataset: str = ""
    examples: str = ""
    embeddings: str = ""
    train_window: str = "train_large"
    eval_window: str = "test"
    global_batch_size: int = 20000
    max_history: int = 0
    shuffle_buffer: int = 100_000
    seed: int = 0
    max_missing_cache_fraction: float = 0.01


def adam_linear_decay(start: float, end: float) -> optimization.OptimizationConfig:
    """Adam whose rate decays linearly from ``start`` to ``end`` over the run (PPM §4.2.3)."""
    return optimization.OptimizationConfig({
        "optimizer": {"type": "adam"},
        "learning_rate": {"type": "polynomial", "polynomial": {
            "initial_learning_rate": start, "end_learning_rate": end, "power": 1.0}}})


@dataclasses.dataclass
class TrainerConfig(hyperparams.Config):
    """The training loop.

    Attributes:
      train_passes: when > 0, the length of the run in passes over its training window:
        ``train_steps`` is then set at the start of training to
        ``ceil(train_passes * examples in the window / global_batch_size)`` (the window's
        example count from the examples' ``stats.json``), so a preset means the same thing on
        any dataset. 0: ``train_steps`` as given.
      train_steps: optimizer steps in all (derived from ``train_passes`` when that is set).
      min_train_steps: with ``train_passes``, at least this many steps: a length that
        must not fall below a step count whatever the window's size (PPM pre-training sits
        on a loss plateau for its first few hundred steps, so a small pretrain window needs
        more passes). 0: no floor.
      checkpoint_interval: steps between checkpoints (also one Keras progress-bar "epoch"); a
        last, shorter loop ends at ``train_steps`` when it is not a multiple.
      max_to_keep: checkpoints kept in ``<model_dir>/checkpoints``.
      optimizer: the optimizer and its learning-rate schedule, a tf-models-official
        ``OptimizationConfig`` (``optimizer.type``: adam, adagrad, sgd, rmsprop,
        adamw_experimental; ``learning_rate.type``: constant, polynomial, cosine, stepwise,
        exponential, ...; optional ``warmup``). The default is PPM §4.2.3: Adam, its rate
        decaying linearly from 4e-4 to 1e-4; a schedule's ``decay_steps`` left at 0 (or
        unset) is set to ``train_steps``. GRACE's Adagrad 0.05 is
        ``trainer.optimizer.optimizer.type=adagrad`` with a constant rate of 0.05.
      jit_compile: XLA-compile the dense part of the model (the id lookups stay outside).
      mixed_precision: ``mixed_float16`` compute (GPU), float32 variables and losses.
      eval_batch_size: batch size of ``ppm.evaluate``.
      deterministic_input: read the training examples in a reproducible order (a slower
        interleave of the files): two runs with the same ``data.seed`` and cluster see the
        same batches (the multi-worker test compares a cluster with one process this way).
    """

    train_passes: float = 0.0
    train_steps: int = 10_000
    min_train_steps: int = 0
    checkpoint_interval: int = 500
    max_to_keep: int = 3
    optimizer: optimization.OptimizationConfig = dataclasses.field(
        default_factory=lambda: adam_linear_decay(4e-4, 1e-4))
    jit_compile: bool = False
    mixed_precision: bool = False
    eval_batch_size: int = 4096
    deterministic_input: bool = False


@dataclasses.dataclass
class RuntimeConfig(hyperparams.Config):
    """The distribution strategy (:mod:`ppm.distribute`).

    Attributes:
      strategy: ``mirrored`` (all local devices), ``multi_worker_mirrored`` (data parallel
        over the workers of ``TF_CONFIG``) or ``parameter_server`` (``TF_CONFIG`` with a
        chief, workers and parameter servers: the chief coordinates, the workers compute, the
        parameter servers hold the variables).
      shard_min_rows: under ``parameter_server``, every 2-D variable with at least this many
        rows (the ID and hash-ID embedding tables, and their optimizer slots) is split by rows
        across the parameter servers; smaller ones live whole on one of them.
    """

    strategy: str = "mirrored"
    shard_min_rows: int = 100_000


@dataclasses.dataclass
class ExperimentConfig(hyperparams.Config):
    """One training run."""

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    trainer: TrainerConfig = dataclasses.field(default_factory=TrainerConfig)
    runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)

    def task_weights(self) -> dict:
        """``{task: loss weight}``."""
        weights = list(self.model.task_weights) or [1.0] * len(self.model.tasks)
        return dict(zip(self.model.tasks, weights))

    def task_losses(self) -> dict:
        """``{task: loss name}`` (:mod:`ppm.losses`)."""
        names = list(self.model.task_losses) or ["bce"] * len(self.model.tasks)
        return dict(zip(self.model.tasks, names))

    def validate(self) -> None:
        """Raises ValueError naming the field when the config cannot be trained."""
        t, d = self.trainer, self.data
        self.model.validate()
        if self.runtime.strategy not in STRATEGIES:
            raise ValueError(f"runtime.strategy must be one of {STRATEGIES}, got "
                             f"{self.runtime.strategy!r}")
        optimizer = t.optimizer.optimizer.type
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"trainer.optimizer.optimizer.type must be one of {OPTIMIZERS}, "
                             f"got {optimizer!r}")
        if t.optimizer.learning_rate.type is None:
            raise ValueError("trainer.optimizer.learning_rate.type is not set (e.g. constant, "
                             "polynomial, cosine)")
        for name, value in (("trainer.train_steps", t.train_steps),
                            ("trainer.checkpoint_interval", t.checkpoint_interval),
                            ("data.global_batch_size", d.global_batch_size)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if t.train_passes < 0:
            raise ValueError(f"trainer.train_passes must be >= 0, got {t.train_passes}")
        if t.min_train_steps < 0:
            raise ValueError(f"trainer.min_train_steps must be >= 0, got {t.min_train_steps}")
