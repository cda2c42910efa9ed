"""Config dataclasses of ranking experiments (PPM §4.2.3 for the paper's values).

Built on ``official.modeling.hyperparams.Config`` (tf-models-official), so every field is typed,
``override``-able from a dict, YAML file or ``--params_override`` string, and serialisable to
the ``config.yaml`` written into each run folder.
"""

import dataclasses

from official.modeling import hyperparams

MODEL_NAMES = ("ppm", "urm", "urm_wo_ppm", "base")
PPM_INITS = ("random", "frozen", "finetune")
STRATEGIES = ("mirrored", "multi_worker_mirrored")


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


@dataclasses.dataclass
class TransformerConfig(hyperparams.Config):
    """Behavior-Transformer of IDSM and the PPM module (PPM: 2 layers, 4 heads)."""

    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 256
    dropout: float = 0.1
    num_positions: int = 64


@dataclasses.dataclass
class ModelConfig(hyperparams.Config):
    """Which model and its sizes.

    Attributes:
      name: ``ppm`` (the ID-free pre-trained CTR model, §3.1), ``urm`` (IDSM + PPM module +
        MMoE, §3.2), ``urm_wo_ppm`` (IDSM + MMoE), ``base`` (ID and modal features of each
        item concatenated and encoded by one shared transformer, Table 3).
      ppm_init: initialisation of URM's PPM module: ``random``, ``frozen`` (loaded from
        ``ppm_checkpoint``, not trained) or ``finetune`` (loaded and trained: the paper's URM).
      ppm_checkpoint: a ``ppm_pretrain`` run folder (its latest checkpoint) or checkpoint path.
      id_dim: width of each ID embedding (sku, shop, brand, category).
      profile_dim: width of each user profile feature embedding (part of D).
      profile_hash_bins: hash buckets per profile feature.
      transformer: the Behavior-Transformer of each sequence module.
      head_units: hidden layers of PPM's CTR prediction layer (then one logit unit: three
        fully connected layers with the defaults, §3.1.3).
      num_experts, expert_units, tower_units: the MMoE head of URM (§3.2.3).
      dropout: dropout in the heads.
      init_stddev: N(0, s) initialisation of every embedding and kernel (PPM: 0.01).
      tasks: labels to learn (``ppm`` learns ``click`` only).
      task_weights: loss weight of each task, same order as ``tasks`` (empty: 1.0 each).
    """

    name: str = "urm"
    ppm_init: str = "finetune"
    ppm_checkpoint: str = ""
    id_dim: int = 64
    profile_dim: int = 8
    profile_hash_bins: int = 64
    transformer: TransformerConfig = dataclasses.field(default_factory=TransformerConfig)
    head_units: list[int] = dataclasses.field(default_factory=lambda: [256, 128])
    num_experts: int = 4
    expert_units: list[int] = dataclasses.field(default_factory=lambda: [256, 128])
    tower_units: list[int] = dataclasses.field(default_factory=lambda: [64])
    dropout: float = 0.0
    init_stddev: float = 0.01
    tasks: list[str] = dataclasses.field(default_factory=lambda: ["click", "order", "cart"])
    task_weights: list[float] = dataclasses.field(default_factory=list)


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
      checkpoint_interval: steps between checkpoints (also one Keras progress-bar "epoch"); a
        last, shorter loop ends at ``train_steps`` when it is not a multiple.
      max_to_keep: checkpoints kept in ``<model_dir>/checkpoints``.
      learning_rate, end_learning_rate: Adam's rate decays linearly from the first to the
        second over ``train_steps`` (PPM: 4e-4 to 1e-4).
      jit_compile: XLA-compile the dense part of the model (the id lookups stay outside).
      mixed_precision: ``mixed_float16`` compute (GPU), float32 variables and losses.
      eval_batch_size: batch size of ``ppm.evaluate``.
    """

    train_passes: float = 0.0
    train_steps: int = 10_000
    checkpoint_interval: int = 500
    max_to_keep: int = 3
    learning_rate: float = 4e-4
    end_learning_rate: float = 1e-4
    jit_compile: bool = False
    mixed_precision: bool = False
    eval_batch_size: int = 4096


@dataclasses.dataclass
class RuntimeConfig(hyperparams.Config):
    """``mirrored`` (all local devices) or ``multi_worker_mirrored`` (TF_CONFIG)."""

    strategy: str = "mirrored"


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

    def validate(self) -> None:
        """Raises ValueError naming the field when the config cannot be trained."""
        m, t, d = self.model, self.trainer, self.data
        if m.name not in MODEL_NAMES:
            raise ValueError(f"model.name must be one of {MODEL_NAMES}, got {m.name!r}")
        if m.ppm_init not in PPM_INITS:
            raise ValueError(f"model.ppm_init must be one of {PPM_INITS}, got {m.ppm_init!r}")
        if self.runtime.strategy not in STRATEGIES:
            raise ValueError(f"runtime.strategy must be one of {STRATEGIES}, got "
                             f"{self.runtime.strategy!r}")
        tasks = list(m.tasks)
        if not tasks or len(set(tasks)) != len(tasks):
            raise ValueError(f"model.tasks must be non-empty and unique, got {tasks}")
        if m.name == "ppm" and tasks != ["click"]:
            raise ValueError(f"the ppm model learns click only (PPM §3.1.3), got {tasks}")
        if m.task_weights and len(m.task_weights) != len(tasks):
            raise ValueError(f"model.task_weights has {len(m.task_weights)} values for "
                             f"{len(tasks)} tasks {tasks}")
        for name, value in (("trainer.train_steps", t.train_steps),
                            ("trainer.checkpoint_interval", t.checkpoint_interval),
                            ("data.global_batch_size", d.global_batch_size)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if t.train_passes < 0:
            raise ValueError(f"trainer.train_passes must be >= 0, got {t.train_passes}")
        if m.name == "urm" and m.ppm_init != "random" and not m.ppm_checkpoint:
            raise ValueError(f"model.ppm_init={m.ppm_init!r} loads a pre-trained PPM: set "
                             "model.ppm_checkpoint to a ppm_pretrain run folder")
