"""Model configs: one dataclass per registered model type, a plug-in and a head setting.

``model`` is a one-of config (tf-models-official ``OneOfConfig``): ``model.type`` names the
model builder (:mod:`ppm.models.registry`) and selects ``model.<type>``, that model's own
sizes; the other fields (tasks, embedding widths, the Behavior-Transformer, the plug-in, the
head) are shared by every model. Only the selected model's block is written to a run's
``config.yaml``.

Adding a model: a dataclass here, one field in :class:`ModelConfig`, and a builder registered
under the same name in ``ppm/models/<name>.py`` (README, "Adding a model").
"""

from __future__ import annotations

import dataclasses

from official.modeling import hyperparams

PLUGIN_KINDS = ("", "ppm", "make")  # "": no plug-in
# Models that are pre-trained to be plugged into others (model.plugin.kind of the same name):
# they take no plug-in and learn click only.
PRETRAINED_MODULES = ("ppm", "make")
MULTIMODAL_SIDE = ("vector", "simscore", "simtier")
# model.multimodal.modality -> the cache's modalities it reads
MODALITIES = {"image": ("image",), "text": ("text",), "both": ("text", "image")}
TASK_LOSSES = ("bce",)  # ppm.losses.LOSSES (configs import no TensorFlow)
PLUGIN_INITS = ("random", "frozen", "finetune")
HEAD_TYPES = ("mmoe", "mlp", "ple")
TARGET_MODES = ("token", "history")  # the Behavior-Transformer's (ppm.layers)
ITEM_REPRESENTATIONS = ("generalized", "attributes", "id", "pretrained")  # model.grace
# Pre-ranking models (GRACE): not among PPM Table 2's baselines.
PRE_RANKING = ("grace",)


@dataclasses.dataclass
class TransformerConfig(hyperparams.Config):
    """Behavior-Transformer of IDSM and the PPM module (PPM: 2 layers, 4 heads).

    ``target_mode`` is IDSM's (and base's shared module's): ``token``, the target item is the
    transformer's first token; ``history``, the transformer reads the history alone and the
    target joins after it, so the user side is computed once per request at serving
    (:class:`~ppm.layers.BehaviorTransformer`). The PPM module's is ``model.ppm.target_mode``.
    """

    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 256
    dropout: float = 0.1
    num_positions: int = 64
    target_mode: str = "token"


@dataclasses.dataclass
class PluginConfig(hyperparams.Config):
    """A pre-trained module plugged into any ranking model (PPM §3.2.2, Table 2 w. PPM).

    Attributes:
      kind: ``ppm`` (the PPM module: cached modal items + Behavior-Transformer, whose
        ``[U_MO | I_MO]`` joins the model's representation), ``make`` (Taobao's MAKE module:
        DIN over the cached multimodal vectors + MLP_MAKE, whose ``v_MAKE`` and MLP outputs
        join it) or ``""`` (none).
      init: ``random`` (trained from scratch), ``frozen`` (loaded from ``checkpoint``, not
        trained) or ``finetune`` (loaded and trained: the paper's URM).
      checkpoint: a ``<kind>_pretrain`` run folder (its latest checkpoint) or checkpoint
        path.
      learning_rate_multiplier: the plug-in's learning rate is the optimizer's times this
        (its own optimizer, same type and schedule); 1.0: one optimizer for the whole model.
      frozen_steps: ``finetune``: the plug-in stays frozen for this many steps (the ID side
        and the head learn to use it first), then trains.
      l2_sp: ``finetune``: strength of L2-SP (Li et al., ICML 2018), the penalty
        ``l2_sp / 2 * ||w - w_pretrained||^2`` over the plug-in's trainable weights, which
        keeps fine-tuning near what the pre-trained module knows.
    """

    kind: str = ""
    init: str = "finetune"
    checkpoint: str = ""
    learning_rate_multiplier: float = 1.0
    frozen_steps: int = 0
    l2_sp: float = 0.0

    @property
    def own_optimizer(self) -> bool:
        """Whether the plug-in trains with an optimizer of its own (its learning rate differs
        from the model's, or it starts frozen)."""
        return bool(self.kind) and self.init != "frozen" and (
            self.learning_rate_multiplier != 1.0 or self.frozen_steps > 0)

    def validate(self) -> None:
        """Raises ValueError naming the field when the settings contradict each other."""
        if self.learning_rate_multiplier <= 0:
            raise ValueError("model.plugin.learning_rate_multiplier must be > 0 (a plug-in "
                             "that should not train is init: frozen), got "
                             f"{self.learning_rate_multiplier}")
        if self.frozen_steps < 0 or self.l2_sp < 0:
            raise ValueError("model.plugin.frozen_steps and model.plugin.l2_sp must be >= 0, "
                             f"got {self.frozen_steps}, {self.l2_sp}")
        for name in ("frozen_steps", "l2_sp"):
            if getattr(self, name) and self.init != "finetune":
                raise ValueError(f"model.plugin.{name} applies to a fine-tuned pre-trained "
                                 f"plug-in (init: finetune), not init: {self.init}")

    def describe(self) -> str:
        """``"none"``, or ``"<kind> (<init>[, settings])"``, e.g. ``"ppm (finetune)"`` or
        ``"ppm (finetune, lr x0.1, frozen 100 steps, L2-SP 0.01)"``."""
        if not self.kind:
            return "none"
        parts = [self.init]
        if self.learning_rate_multiplier != 1.0:
            parts.append(f"lr x{self.learning_rate_multiplier:g}")
        if self.frozen_steps:
            parts.append(f"frozen {self.frozen_steps} steps")
        if self.l2_sp:
            parts.append(f"L2-SP {self.l2_sp:g}")
        return f"{self.kind} ({', '.join(parts)})"


@dataclasses.dataclass
class HeadConfig(hyperparams.Config):
    """The multi-task head over the model's representation.

    Attributes:
      type: ``mmoe`` (PPM §3.2.3: shared experts, one gate and tower per task), ``mlp``
        (a shared-bottom MLP of ``expert_units``, then one tower per task) or ``ple``
        (Progressive Layered Extraction, Tang et al. 2020: GRACE's base model).
      num_experts, expert_units, tower_units: MMoE sizes (``expert_units`` is the shared
        bottom of ``mlp`` and each expert of ``ple``).
      num_levels, specific_experts, shared_experts: PLE's CGC levels, experts per task and
        shared experts per level.
    """

    type: str = "mmoe"
    num_experts: int = 4
    expert_units: list[int] = dataclasses.field(default_factory=lambda: [256, 128])
    tower_units: list[int] = dataclasses.field(default_factory=lambda: [64])
    num_levels: int = 2
    specific_experts: int = 1
    shared_experts: int = 1


@dataclasses.dataclass
class PPMModelConfig(hyperparams.Config):
    """PPM, the ID-free pre-trained CTR model (§3.1): ``head_units`` of its CTR prediction
    layer (then one logit unit: three fully connected layers with the defaults, §3.1.3), and
    ``target_mode`` of the PPM module's Behavior-Transformer (``token`` or ``history``; see
    :class:`TransformerConfig`), in PPM pre-training and wherever the module is plugged in."""

    head_units: list[int] = dataclasses.field(default_factory=lambda: [256, 128])
    target_mode: str = "token"


@dataclasses.dataclass
class URMConfig(hyperparams.Config):
    """URM (§3.2): IDSM + the plug-in + the head.

    Attributes:
      modal_in_idsm: Table 3's ``base``: every item of IDSM is its ID embeddings and its
        cached modal vector concatenated, through one shared transformer.
    """

    modal_in_idsm: bool = False


@dataclasses.dataclass
class WideDeepConfig(hyperparams.Config):
    """Wide&Deep (Cheng et al. 2016): a hashed linear model over ids and crossed ids, plus
    the deep part (the head over the field embeddings).

    Attributes:
      hash_bins: buckets of each wide feature's weight table.
      crosses: ``"a:b"`` pairs of feature names crossed in the wide part (a target feature
        with a history feature gives one cross per history item).
    """

    hash_bins: int = 100_000
    crosses: list[str] = dataclasses.field(default_factory=lambda: [
        "category_id:hist_category_id", "brand_id:hist_brand_id", "shop_id:hist_shop_id"])


@dataclasses.dataclass
class DeepFMConfig(hyperparams.Config):
    """DeepFM (Guo et al. 2017): first-order weights + FM over the shared field embeddings,
    plus the deep part.

    Attributes:
      hash_bins: buckets of the first-order (linear) weight tables.
    """

    hash_bins: int = 100_000


@dataclasses.dataclass
class DINConfig(hyperparams.Config):
    """DIN (Zhou et al. 2018): target attention over the history.

    Attributes:
      attention_units: hidden layers of the local activation unit (DeepCTR: 80, 40).
      attention_activation: ``dice`` (DIN's data-adaptive activation), ``prelu`` or
        ``sigmoid``.
      normalize: softmax over the history (DIN: no).
    """

    attention_units: list[int] = dataclasses.field(default_factory=lambda: [80, 40])
    attention_activation: str = "dice"
    normalize: bool = False


@dataclasses.dataclass
class DSINConfig(hyperparams.Config):
    """DSIN (Feng et al. 2019): sessions of the history (a new one after 30 minutes).

    Attributes:
      max_sessions, session_length: the most recent sessions kept, and items per session
        (DeepCTR: 5, 10).
      num_heads: heads of the self-attention within a session.
      lstm_units: units of each direction of the Bi-LSTM over sessions.
    """

    max_sessions: int = 5
    session_length: int = 10
    num_heads: int = 4
    lstm_units: int = 32


@dataclasses.dataclass
class MIANConfig(hyperparams.Config):
    """MIAN (Zhang et al., WSDM 2021): item-behaviour, item-user, item-context and global
    interaction modules."""

    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 128


@dataclasses.dataclass
class MAKEConfig(hyperparams.Config):
    """MAKE, the multimodal knowledge extractor (Taobao §4.3, Eq. 3-5), used as the ``make``
    model (its CTR pre-training, ``make_pretrain``) and as the ``make`` plug-in (whose run
    config keeps this block too). It reads ``model.multimodal.modality``.

    Attributes:
      attention_units, attention_activation: DIN's local activation unit over the modal
        vectors (Eq. 3).
      mlp_units: the hidden layers of MLP_MAKE; with its logit unit, ``len + 1`` layers
        (the paper's four: three hidden layers).
      hidden_outputs: the hidden layers of MLP_MAKE (indices, -1 the last) whose outputs join
        the downstream model beside ``v_MAKE`` (§4.3 "intermediate outputs").
      logit_output: MAKE's CTR logit joins the downstream model too.
    """

    attention_units: list[int] = dataclasses.field(default_factory=lambda: [80, 40])
    attention_activation: str = "dice"
    mlp_units: list[int] = dataclasses.field(default_factory=lambda: [200, 80, 40])
    hidden_outputs: list[int] = dataclasses.field(default_factory=lambda: [-1])
    logit_output: bool = True

    def validate(self) -> None:
        if not self.mlp_units or min(self.mlp_units) < 1:
            raise ValueError(f"model.make.mlp_units must be positive widths, got "
                             f"{list(self.mlp_units)}")
        n = len(self.mlp_units)
        if any(not -n <= i < n for i in self.hidden_outputs):
            raise ValueError(f"model.make.hidden_outputs {list(self.hidden_outputs)} must "
                             f"index the {n} hidden layers of model.make.mlp_units")


@dataclasses.dataclass
class GraceConfig(hyperparams.Config):
    """GRACE, the search pre-ranking model (Xu et al., SIGIR 2024, arXiv:2405.05606): a PLE
    head (``model.head.type=ple``) over the user, the query and the item; its rank-consistency
    tasks are ``top<k>`` entries of ``model.tasks`` (Eq. 6-9, weights ``lambda1 * w_k`` in
    ``model.task_weights``).

    Attributes:
      item_representation: the item's embedding (§2.4, Table 2): ``generalized`` (GRACE: a
        hash-ID embedding of ``hash_buckets`` rows beside the shop, brand and category
        embeddings), ``attributes`` (w/o hash id: the attributes alone), ``id`` (w/o
        generalization: the item-id vocabulary's embedding beside the attributes; the PLE
        baseline) or ``pretrained`` (pre-trained item id: the graph embeddings as a fixed item
        table beside the attributes; items without one share a zero vector).
      hash_buckets: rows of the hash-ID table (the paper: 3M for 30M items).
      graph_embeddings: the pre-trained item embeddings (``python -m ppm.graph.pretrain``
        output), for the alignment loss and the ``pretrained`` representation.
      alignment_weight: lambda2 of Eq. 11 (0: no alignment loss, "w/o generalization").
      temperature: tau of Eq. 10.
      alignment_negatives: Eq. 10's denominator: ``pretrained`` (InfoNCE over the batch's
        pre-trained embeddings) or ``items`` (as printed; :func:`ppm.losses.alignment_info_nce`).
      query_hash_bins: hash buckets of the query's words (a bag of words; search examples only).
    """

    item_representation: str = "generalized"
    hash_buckets: int = 3_000_000
    graph_embeddings: str = ""
    alignment_weight: float = 0.1
    temperature: float = 0.1
    alignment_negatives: str = "pretrained"
    query_hash_bins: int = 100_000

    def validate(self) -> None:
        if self.item_representation not in ITEM_REPRESENTATIONS:
            raise ValueError(f"model.grace.item_representation must be one of "
                             f"{ITEM_REPRESENTATIONS}, got {self.item_representation!r}")
        if self.hash_buckets < 1 or self.query_hash_bins < 1:
            raise ValueError("model.grace.hash_buckets and query_hash_bins must be >= 1")
        if self.alignment_weight < 0 or self.temperature <= 0:
            raise ValueError("model.grace.alignment_weight must be >= 0 and temperature > 0")
        if self.alignment_negatives not in ("pretrained", "items"):
            raise ValueError("model.grace.alignment_negatives must be 'pretrained' or 'items', "
                             f"got {self.alignment_negatives!r}")
        needs = self.alignment_weight > 0 or self.item_representation == "pretrained"
        if needs and not self.graph_embeddings:
            raise ValueError("model.grace.graph_embeddings is not set: the alignment loss "
                             "(alignment_weight > 0) and the pretrained representation read the "
                             "pre-trained item embeddings (python -m ppm.graph.pretrain)")


@dataclasses.dataclass
class MultimodalConfig(hyperparams.Config):
    """Pre-trained multimodal vectors (the embedding cache) in an ID model (Taobao §4, §6.1.3).

    Attributes:
      side: what the zoo model's fields and MLP input receive, any of ``vector`` (each item's
        vector, projected to one more field), ``simscore`` (each history item's similarity to
        the target, embedded as one more field) and ``simtier`` (the similarities' counts in
        ``num_tiers`` tiers, into the MLP input); empty: none.
      modality: the cache's ``image`` (the paper's §6 case study), ``text``, or ``both``.
      num_tiers: SimTier's N.
    """

    side: list[str] = dataclasses.field(default_factory=list)
    modality: str = "image"
    num_tiers: int = 10

    @property
    def modalities(self) -> tuple[str, ...]:
        return MODALITIES[self.modality]

    def validate(self) -> None:
        """Raises ValueError naming the field when the settings cannot be built."""
        bad = [x for x in self.side if x not in MULTIMODAL_SIDE]
        if bad or len(set(self.side)) != len(self.side):
            raise ValueError(f"model.multimodal.side must hold distinct values of "
                             f"{MULTIMODAL_SIDE}, got {list(self.side)}")
        if self.modality not in MODALITIES:
            raise ValueError(f"model.multimodal.modality must be one of {tuple(MODALITIES)}, "
                             f"got {self.modality!r}")
        if self.num_tiers < 1:
            raise ValueError(f"model.multimodal.num_tiers must be >= 1, got {self.num_tiers}")


@dataclasses.dataclass
class ModelConfig(hyperparams.OneOfConfig):
    """Which model (``type``), its own sizes (``model.<type>``), and the shared settings.

    Attributes:
      type: a registered model builder: ``ppm``, ``urm``, ``wide_deep``, ``deepfm``, ``din``,
        ``dsin``, ``mian``, ``make``, ``grace``.
      plugin: the pre-trained plug-in (any model but ``ppm`` and ``make``, the pre-trained
        modules themselves): :class:`PluginConfig`.
      head: the multi-task head (every model but ``ppm`` and ``make``): :class:`HeadConfig`.
      multimodal: the cached multimodal vectors as side information of a zoo model (Vector,
        SimScore, SimTier) and the modality MAKE reads: :class:`MultimodalConfig`.
      id_dim: width of each ID embedding (sku, shop, brand, category).
      profile_dim: width of each user profile feature embedding (part of D).
      profile_hash_bins: hash buckets per profile feature.
      transformer: the Behavior-Transformer of IDSM and of the PPM module (and plug-in).
      dropout: dropout in the heads.
      id_dropout: the share of item ids (target and history) that training replaces by an
        unknown id, on the ID side only (the plug-in still sees the item): the model learns
        what to do for items its ID tables know nothing of, as at serving time for new items.
      frequency_gate: weigh the ID side's representation by the target item's training
        frequency (a learnt gate per log2 frequency bucket, from a table of the item
        vocabulary's counts held in the model, so the served model has it too; a dropped id
        counts as never seen).
      init_stddev: N(0, s) initialisation of every embedding and kernel (PPM: 0.01).
      tasks: labels to learn (``ppm`` learns ``click`` only).
      task_weights: loss weight of each task, same order as ``tasks`` (empty: 1.0 each).
      task_losses: the loss of each task (:mod:`ppm.losses`), same order as ``tasks`` (empty:
        ``bce`` each, binary cross-entropy on logits, PPM Eq. 6).
    """

    type: str = "urm"
    ppm: PPMModelConfig = dataclasses.field(default_factory=PPMModelConfig)
    urm: URMConfig = dataclasses.field(default_factory=URMConfig)
    wide_deep: WideDeepConfig = dataclasses.field(default_factory=WideDeepConfig)
    deepfm: DeepFMConfig = dataclasses.field(default_factory=DeepFMConfig)
    din: DINConfig = dataclasses.field(default_factory=DINConfig)
    dsin: DSINConfig = dataclasses.field(default_factory=DSINConfig)
    mian: MIANConfig = dataclasses.field(default_factory=MIANConfig)
    make: MAKEConfig = dataclasses.field(default_factory=MAKEConfig)
    grace: GraceConfig = dataclasses.field(default_factory=GraceConfig)
    plugin: PluginConfig = dataclasses.field(default_factory=PluginConfig)
    head: HeadConfig = dataclasses.field(default_factory=HeadConfig)
    multimodal: MultimodalConfig = dataclasses.field(default_factory=MultimodalConfig)
    id_dim: int = 64
    profile_dim: int = 8
    profile_hash_bins: int = 64
    transformer: TransformerConfig = dataclasses.field(default_factory=TransformerConfig)
    dropout: float = 0.0
    id_dropout: float = 0.0
    frequency_gate: bool = False
    init_stddev: float = 0.01
    tasks: list[str] = dataclasses.field(default_factory=lambda: ["click", "order", "cart"])
    task_weights: list[float] = dataclasses.field(default_factory=list)
    task_losses: list[str] = dataclasses.field(default_factory=list)

    def as_dict(self):
        """The shared fields, the selected model's block and the plug-in's (not the others')."""
        out = {k: self._export_config(v) for k, v in self.__dict__.items()
               if k not in self.RESERVED_ATTR and k not in model_types()}
        for name in (self.type, self.plugin.kind):  # a plug-in's module has its model's sizes
            if name in model_types():
                out[name] = self._export_config(getattr(self, name))
        return out

    def validate(self) -> None:
        """Raises ValueError naming the field when the model cannot be built."""
        if self.type not in model_types():
            raise ValueError(f"model.type must be one of {model_types()}, got {self.type!r}")
        p = self.plugin
        if p.kind not in PLUGIN_KINDS:
            raise ValueError(f"model.plugin.kind must be one of {PLUGIN_KINDS[1:]} or '' "
                             f"(none), got {p.kind!r}")
        if p.init not in PLUGIN_INITS:
            raise ValueError(f"model.plugin.init must be one of {PLUGIN_INITS}, got {p.init!r}")
        if p.kind and self.type in PRETRAINED_MODULES:
            raise ValueError(f"the {self.type} model is what a plug-in is made of: it takes no "
                             "plug-in (model.plugin.kind='')")
        p.validate()
        self.multimodal.validate()
        self.make.validate()
        if self.type == "grace":
            self.grace.validate()
        if self.multimodal.side and self.type in (*PRETRAINED_MODULES, "urm"):
            raise ValueError(f"model.multimodal.side {list(self.multimodal.side)} applies to "
                             f"the zoo's models (wide_deep, deepfm, din, dsin, mian), not "
                             f"{self.type}")
        if not 0.0 <= self.id_dropout < 1.0:
            raise ValueError(f"model.id_dropout must be in [0, 1), got {self.id_dropout}")
        if self.type in PRETRAINED_MODULES and (self.id_dropout or self.frequency_gate):
            raise ValueError(f"the {self.type} model is ID-free: model.id_dropout and "
                             "model.frequency_gate apply to ID models")
        if p.kind and p.init != "random" and not p.checkpoint:
            raise ValueError(f"model.plugin.init={p.init!r} loads a pre-trained {p.kind}: set "
                             f"model.plugin.checkpoint to a {p.kind}_pretrain run folder")
        for name, mode in (("transformer", self.transformer.target_mode),
                           ("ppm", self.ppm.target_mode)):
            if mode not in TARGET_MODES:
                raise ValueError(f"model.{name}.target_mode must be one of {TARGET_MODES}, "
                                 f"got {mode!r}")
        if self.head.type not in HEAD_TYPES:
            raise ValueError(f"model.head.type must be one of {HEAD_TYPES}, got "
                             f"{self.head.type!r}")
        tasks = list(self.tasks)
        if not tasks or len(set(tasks)) != len(tasks):
            raise ValueError(f"model.tasks must be non-empty and unique, got {tasks}")
        if self.type in PRETRAINED_MODULES and tasks != ["click"]:
            raise ValueError(f"the {self.type} model learns click only (PPM §3.1.3, Taobao "
                             f"§4.3 Eq. 5), got {tasks}")
        for name in ("task_weights", "task_losses"):
            values = getattr(self, name)
            if values and len(values) != len(tasks):
                raise ValueError(f"model.{name} has {len(values)} values for {len(tasks)} "
                                 f"tasks {tasks}")
        bad = [x for x in self.task_losses if x not in TASK_LOSSES]
        if bad:
            raise ValueError(f"model.task_losses: {bad} are not losses ({TASK_LOSSES})")


def model_types() -> tuple[str, ...]:
    """The one-of choices of :class:`ModelConfig` (its sub-config fields)."""
    return tuple(f.name for f in dataclasses.fields(ModelConfig)
                 if isinstance(f.default_factory, type)
                 and issubclass(f.default_factory, hyperparams.Config)
                 and f.name not in ("plugin", "head", "transformer", "multimodal"))
