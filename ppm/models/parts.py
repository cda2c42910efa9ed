"""The parts every ranking model is assembled from, built once per model.

A builder (:mod:`ppm.models.registry`) asks :class:`Parts` for what it shares with other
models instead of constructing it, which keeps two things true:

- **one embedding-cache layer per cache**: every module that reads the cache (URM's IDSM in
  Table 3's ``base``, the PPM plug-in, PPM itself) gets the same
  :class:`~ppm.layers.CachedItemEmbedding`, so the table is held in memory once;
- **settings, not names**: the plug-in (``model.plugin``) and the head (``model.head``) come
  from the config, the same for every model type.
"""

from __future__ import annotations

from ppm.features import ID_FIELDS
from ppm.layers import PLE, BehaviorTransformer, CachedItemEmbedding, MMoE, TargetAttention
from ppm.layers.cold_start import FrequencyGate, IdDropout
from ppm.layers.shared_bottom import SharedBottom
from ppm.models import plugins
from ppm.models.fields import FieldEmbedding
from ppm.models.modules import ItemIdEmbedding, ModalItemEmbedding, SequenceModule
from ppm.models.multimodal import ModalVectors, MultimodalSide


class Parts:
    """Factories of shared parts for one model build.

    Args:
      config: the experiment config.
      inputs: the :class:`~ppm.models.factory.ModelInputs` (schema, vocabularies, cache).
    """

    def __init__(self, config, inputs):
        self.config, self.inputs = config, inputs
        self.model_config = config.model
        self._cache_layer = None
        self._side = ()  # not yet built (None: the model has none)

    @property
    def task_weights(self) -> dict:
        return self.config.task_weights()

    @property
    def task_losses(self) -> dict:
        return self.config.task_losses()

    @property
    def global_batch_size(self) -> int:
        return self.config.data.global_batch_size

    def ranking_kwargs(self) -> dict:
        """The :class:`~ppm.models.ranking.RankingModel` arguments every model shares: tasks,
        their weights and losses, the global batch, and the ID side's cold-start layers
        (``model.id_dropout``, ``model.frequency_gate``; :mod:`ppm.layers.cold_start`)."""
        m = self.model_config
        gate = None
        if m.frequency_gate:
            gate = FrequencyGate(self.inputs.vocabularies["item_id"], self.inputs.item_counts,
                                 init_stddev=m.init_stddev, name="frequency_gate")
        return {"task_weights": self.task_weights, "task_losses": self.task_losses,
                "global_batch_size": self.global_batch_size,
                "id_dropout": IdDropout(m.id_dropout, name="id_dropout") if m.id_dropout
                else None,
                "frequency_gate": gate}

    @property
    def cache_layer(self) -> CachedItemEmbedding:
        """The embedding-cache layer, created on first use and shared afterwards.

        Raises:
          ValueError: the inputs have no cache.
        """
        if self._cache_layer is None:
            if self.inputs.cache is None:
                raise ValueError(f"model {self.model_config.type!r} (plug-in "
                                 f"{self.model_config.plugin.kind or 'none'}) reads the "
                                 "embedding cache, but none was loaded")
            self._cache_layer = CachedItemEmbedding.from_cache(self.inputs.cache, name="cache")
        return self._cache_layer

    def modal_items(self, name: str = "modal_items") -> ModalItemEmbedding:
        """Cached ``[E_title | E_image]`` items (Eq. 8) over the shared cache layer."""
        return ModalItemEmbedding(self.cache_layer, init_stddev=self.model_config.init_stddev,
                                  name=name)

    def id_items(self, name: str = "id_items") -> ItemIdEmbedding:
        """``[E_sku | E_shop | E_brand | E_category]`` (Eq. 7), ``id_dim`` each."""
        m = self.model_config
        return ItemIdEmbedding(self.inputs.vocabularies, m.id_dim, init_stddev=m.init_stddev,
                               name=name)

    def transformer(self, name: str = "transformer",
                    target_mode: str | None = None) -> BehaviorTransformer:
        """The Behavior-Transformer of ``model.transformer`` (its ``target_mode`` unless
        another is given)."""
        m = self.model_config
        t = m.transformer
        return BehaviorTransformer(
            num_layers=t.num_layers, num_heads=t.num_heads,
            intermediate_size=t.intermediate_size, dropout=t.dropout,
            num_positions=t.num_positions, init_stddev=m.init_stddev,
            target_mode=target_mode or t.target_mode, name=name)

    def sequence_module(self, embedders, name: str,
                        target_mode: str | None = None) -> SequenceModule:
        return SequenceModule(embedders, self.transformer("transformer", target_mode),
                              max_history=self.config.data.max_history, name=name)

    def ppm_module(self) -> SequenceModule:
        """The PPM module (§3.1.2 / §3.2.2): cached modal items + Behavior-Transformer, in
        ``model.ppm.target_mode``."""
        return self.sequence_module([self.modal_items()], name="ppm",
                                    target_mode=self.model_config.ppm.target_mode)

    def plugin(self):
        """The plug-in of ``model.plugin`` (a layer ``features -> tuple``), or None."""
        plugin = plugins.get(self.model_config.plugin.kind)
        return None if plugin is None else plugin.build(self)

    def modal_vectors(self, name: str = "modal_vectors") -> ModalVectors:
        """The cached vectors of ``model.multimodal.modality``, over the shared cache layer."""
        return ModalVectors(self.cache_layer, self.model_config.multimodal.modalities,
                            name=name)

    def side(self) -> MultimodalSide | None:
        """Vector / SimScore / SimTier of ``model.multimodal.side`` (built once), or None."""
        if self._side == ():
            mm, m = self.model_config.multimodal, self.model_config
            self._side = None if not mm.side else MultimodalSide(
                self.modal_vectors(), mm.side, m.id_dim, num_tiers=mm.num_tiers,
                max_history=self.config.data.max_history, init_stddev=m.init_stddev,
                name="multimodal_side")
        return self._side

    @property
    def item_width(self) -> int:
        """Width of a zoo item: its ID fields and the side fields, ``id_dim`` each."""
        side = self.side()
        return self.model_config.id_dim * (len(ID_FIELDS) + (side.num_fields if side else 0))

    def ranker_kwargs(self) -> dict:
        """:class:`~ppm.models.ranker.Ranker`'s shared arguments: :meth:`ranking_kwargs`, the
        plug-in and the multimodal side information."""
        return {**self.ranking_kwargs(), "plugin": self.plugin(), "side": self.side()}

    def make_module(self):
        """MAKE's module (Taobao §4.3): DIN over the modal vectors + MLP_MAKE."""
        from ppm.models.make import MAKEModule  # noqa: PLC0415 - make registers a builder

        m, mk = self.model_config, self.model_config.make
        attention = TargetAttention(hidden_units=mk.attention_units,
                                    activation=mk.attention_activation,
                                    init_stddev=m.init_stddev, name="attention")
        return MAKEModule(self.modal_vectors(), attention, mlp_units=mk.mlp_units,
                          hidden_outputs=mk.hidden_outputs, logit_output=mk.logit_output,
                          max_history=self.config.data.max_history,
                          init_stddev=m.init_stddev, name="make")

    def fields(self) -> FieldEmbedding:
        """The zoo's embedded fields (:class:`~ppm.models.fields.FieldEmbedding`)."""
        m = self.model_config
        return FieldEmbedding(self.id_items(), self.inputs.schema.profile_features,
                              profile_hash_bins=m.profile_hash_bins,
                              num_positions=m.transformer.num_positions,
                              max_history=self.config.data.max_history,
                              init_stddev=m.init_stddev, name="fields")

    def head(self, name: str = "head"):
        """The multi-task head of ``model.head``: ``x [B, d] -> {task: logits [B]}``."""
        m, h = self.model_config, self.model_config.head
        tasks = list(self.task_weights)
        if h.type == "mmoe":
            return MMoE(tasks, num_experts=h.num_experts, expert_units=h.expert_units,
                        tower_units=h.tower_units, dropout=m.dropout,
                        init_stddev=m.init_stddev, name=name)
        if h.type == "mlp":
            return SharedBottom(tasks, bottom_units=h.expert_units, tower_units=h.tower_units,
                                dropout=m.dropout, init_stddev=m.init_stddev, name=name)
        if h.type == "ple":
            return PLE(tasks, num_levels=h.num_levels, specific_experts=h.specific_experts,
                       shared_experts=h.shared_experts, expert_units=h.expert_units,
                       tower_units=h.tower_units, dropout=m.dropout,
                       init_stddev=m.init_stddev, name=name)
        raise ValueError(f"model.head.type {h.type!r} is not a head (mmoe, mlp, ple)")
